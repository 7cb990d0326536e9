//! A JSON Patch (RFC 6902) builder that only ever adds what is missing.
//!
//! Mutations describe the document they want ("this field must exist with this
//! value") and the builder turns that into the smallest set of `add`
//! operations: a missing parent object is created by the same operation that
//! sets the field, and later fields below a parent this patch created are
//! folded into that operation's value instead of becoming operations of their
//! own. The builder keeps a working copy of the document with every operation
//! applied, so each step sees the result of the previous ones.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::{Map, Value};

/// One step of a path into a JSON document: an object key or an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    /// An object member.
    Key(&'a str),
    /// An array element.
    Index(usize),
}

impl<'a> From<&'a str> for Seg<'a> {
    fn from(key: &'a str) -> Self {
        Seg::Key(key)
    }
}

impl From<usize> for Seg<'_> {
    fn from(index: usize) -> Self {
        Seg::Index(index)
    }
}

/// An owned path: what [`Builder`] remembers about the operations it made.
type OwnedPath = Vec<OwnedSeg>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnedSeg {
    Key(String),
    Index(usize),
}

impl OwnedSeg {
    fn from_seg(seg: Seg<'_>) -> Self {
        match seg {
            Seg::Key(k) => OwnedSeg::Key(k.to_owned()),
            Seg::Index(i) => OwnedSeg::Index(i),
        }
    }

    fn as_seg(&self) -> Seg<'_> {
        match self {
            OwnedSeg::Key(k) => Seg::Key(k),
            OwnedSeg::Index(i) => Seg::Index(*i),
        }
    }

    fn token(&self) -> Token<'static> {
        match self {
            OwnedSeg::Key(k) => Token::new(k.clone()),
            OwnedSeg::Index(i) => Token::new(i.to_string()),
        }
    }
}

/// FNV-1a over the segments of a path, extended one segment at a time, so
/// the hashes of every prefix of a path cost one pass over it.
#[derive(Clone, Copy)]
struct PathHash(u64);

impl PathHash {
    const EMPTY: Self = Self(0xcbf2_9ce4_8422_2325);

    fn bytes(self, bytes: &[u8]) -> Self {
        Self(bytes.iter().fold(self.0, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        }))
    }

    fn push(self, seg: Seg<'_>) -> Self {
        match seg {
            // The tag and terminator keep ["ab"] and ["a", "b"] apart.
            Seg::Key(k) => self.bytes(&[0]).bytes(k.as_bytes()).bytes(&[0xff]),
            Seg::Index(i) => self.bytes(&[1]).bytes(&(i as u64).to_le_bytes()),
        }
    }
}

/// The hashes are keys already: a map keyed by them needs no second hash.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByPath = HashMap<u64, Vec<usize>, BuildHasherDefault<Prehashed>>;

/// Builds a minimal JSON Patch against a document.
#[derive(Debug)]
pub struct Builder {
    doc: Value,
    ops: Vec<(OwnedPath, Op)>,
    /// The indexes in `ops` of the operations at each path, by the path's
    /// hash: finding the operation a change folds into looks up the prefixes
    /// of the change's path instead of scanning every operation, which
    /// would make a pod's cost quadratic in its containers.
    by_path: ByPath,
    /// Changes made so far (folded ones included): tells a step whether it
    /// changed anything.
    changes: usize,
}

#[derive(Debug)]
enum Op {
    Add(Value),
    Replace(Value),
    Remove,
}

impl Builder {
    /// Starts a patch against `doc`.
    #[must_use]
    pub fn new(doc: Value) -> Self {
        Self {
            doc,
            ops: Vec::new(),
            by_path: ByPath::default(),
            changes: 0,
        }
    }

    /// The document with every operation so far applied.
    #[must_use]
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// The value at `path` in the working document, treating `null` as absent.
    #[must_use]
    pub fn get(&self, path: &[Seg<'_>]) -> Option<&Value> {
        lookup(&self.doc, path)
    }

    /// Makes sure `path` holds a value; adds `value` when it is absent or `null`.
    ///
    /// Returns `true` when the patch changed. Parents that are absent are
    /// created. Paths through an array index that does not exist, or through a
    /// value that is not an object, are left alone (the caller validated the
    /// document's shape before, so that cannot happen for a decodable Pod).
    pub fn ensure(&mut self, path: &[Seg<'_>], value: Value) -> bool {
        if self.get(path).is_some() {
            return false;
        }
        self.set(path, value, false)
    }

    /// Sets `path` to `value` whatever it holds now (a `replace` when present).
    pub fn overwrite(&mut self, path: &[Seg<'_>], value: Value) -> bool {
        let present = match self.get(path) {
            Some(current) if *current == value => return false,
            current => current.is_some(),
        };
        self.set(path, value, present)
    }

    /// Appends `value` to the array at `path`, creating the array when absent.
    pub fn push(&mut self, path: &[Seg<'_>], value: Value) {
        match self.get(path) {
            Some(Value::Array(items)) => {
                let index = items.len();
                let mut full: Vec<Seg<'_>> = Vec::with_capacity(path.len() + 1);
                full.extend_from_slice(path);
                full.push(Seg::Index(index));
                self.set(&full, value, false);
            }
            _ => {
                self.set(path, Value::Array(vec![value]), false);
            }
        }
    }

    /// Inserts `value` at `index` of the array at `path` (RFC 6902 `add` on
    /// an element shifts the later elements), creating the array when absent.
    ///
    /// Insert before any other operation under the same array: operations
    /// recorded earlier keep the indexes they were made with.
    pub fn insert(&mut self, path: &[Seg<'_>], index: usize, value: Value) {
        match self.get(path) {
            Some(Value::Array(items)) if index <= items.len() => {
                let mut full: Vec<Seg<'_>> = path.to_vec();
                full.push(Seg::Index(index));
                self.set(&full, value, false);
            }
            Some(_) => {}
            None => {
                self.set(path, Value::Array(vec![value]), false);
            }
        }
    }

    /// Removes the value at `path`, if present.
    pub fn remove(&mut self, path: &[Seg<'_>]) -> bool {
        if lookup_raw(&self.doc, path).is_none() {
            return false;
        }
        remove_at(&mut self.doc, path);
        self.changes += 1;
        // An element removed from inside a value this patch added is dropped
        // from that value; anything else becomes an operation.
        if let Some(i) = self.first_op_above(path)
            && let (op_path, Op::Add(v) | Op::Replace(v)) = &mut self.ops[i]
        {
            remove_at(v, &path[op_path.len()..]);
            return true;
        }
        self.record(path, Op::Remove);
        true
    }

    fn set(&mut self, path: &[Seg<'_>], value: Value, replace: bool) -> bool {
        // Find how much of the path exists (a `null` member counts as absent:
        // `add` on it replaces it, which is what we want).
        let mut existing = 0;
        let mut cursor = &self.doc;
        for seg in path {
            match step(cursor, *seg) {
                Some(next) if !next.is_null() => {
                    cursor = next;
                    existing += 1;
                }
                _ => break,
            }
        }
        if existing < path.len() {
            let parent_ok = match (cursor, path[existing]) {
                (Value::Object(_), Seg::Key(_)) => true,
                (Value::Array(items), Seg::Index(i)) => i <= items.len(),
                _ => false,
            };
            if !parent_ok
                || path[existing + 1..]
                    .iter()
                    .any(|s| matches!(s, Seg::Index(_)))
            {
                return false;
            }
        }
        // The value to add at the first missing segment: the rest of the path
        // nested as objects around `value`.
        let split = if replace { path.len() } else { existing + 1 };
        let split = split.min(path.len());
        let mut nested = value;
        for seg in path[split..].iter().rev() {
            if let Seg::Key(k) = seg {
                let mut map = Map::new();
                map.insert((*k).to_owned(), nested);
                nested = Value::Object(map);
            }
        }
        let target = &path[..split];
        insert_at(&mut self.doc, target, nested.clone());
        self.changes += 1;

        // Fold into an operation of ours that created a parent of `target`.
        if let Some(i) = self.first_op_above(target)
            && let (op_path, Op::Add(v) | Op::Replace(v)) = &mut self.ops[i]
        {
            insert_at(v, &target[op_path.len()..], nested);
            return true;
        }
        let op = if replace {
            Op::Replace(nested)
        } else {
            Op::Add(nested)
        };
        self.record(target, op);
        true
    }

    /// The first operation recorded at a strict prefix of `path`, if any.
    fn first_op_above(&self, path: &[Seg<'_>]) -> Option<usize> {
        let mut first: Option<usize> = None;
        let mut hash = PathHash::EMPTY;
        for (len, seg) in path.iter().enumerate() {
            if let Some(indexes) = self.by_path.get(&hash.0)
                && let Some(i) = indexes.iter().copied().find(|&i| {
                    let at = &self.ops[i].0;
                    at.len() == len && at.iter().zip(path).all(|(a, b)| a.as_seg() == *b)
                })
            {
                first = Some(first.map_or(i, |f| f.min(i)));
            }
            hash = hash.push(*seg);
        }
        first
    }

    fn record(&mut self, path: &[Seg<'_>], op: Op) {
        let hash = path.iter().fold(PathHash::EMPTY, |h, s| h.push(*s));
        self.by_path.entry(hash.0).or_default().push(self.ops.len());
        self.ops
            .push((path.iter().copied().map(OwnedSeg::from_seg).collect(), op));
    }

    /// How many changes were made so far; compare before and after a step
    /// to tell whether it changed the document.
    #[must_use]
    pub fn changes(&self) -> usize {
        self.changes
    }

    /// Whether no operation was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The finished patch and the patched document.
    #[must_use]
    pub fn finish(self) -> (Patch, Value) {
        let ops = self
            .ops
            .into_iter()
            .map(|(path, op)| {
                let path = PointerBuf::from_tokens(path.iter().map(OwnedSeg::token));
                match op {
                    Op::Add(value) => PatchOperation::Add(AddOperation { path, value }),
                    Op::Replace(value) => PatchOperation::Replace(ReplaceOperation { path, value }),
                    Op::Remove => PatchOperation::Remove(RemoveOperation { path }),
                }
            })
            .collect();
        (Patch(ops), self.doc)
    }
}

fn step<'v>(value: &'v Value, seg: Seg<'_>) -> Option<&'v Value> {
    match (value, seg) {
        (Value::Object(map), Seg::Key(k)) => map.get(k),
        (Value::Array(items), Seg::Index(i)) => items.get(i),
        _ => None,
    }
}

fn lookup_raw<'v>(doc: &'v Value, path: &[Seg<'_>]) -> Option<&'v Value> {
    path.iter().try_fold(doc, |v, seg| step(v, *seg))
}

/// The value at `path`, with `null` treated as absent.
#[must_use]
pub fn lookup<'v>(doc: &'v Value, path: &[Seg<'_>]) -> Option<&'v Value> {
    lookup_raw(doc, path).filter(|v| !v.is_null())
}

/// The value at `path`, for changing it.
fn walk_mut<'v>(doc: &'v mut Value, path: &[Seg<'_>]) -> Option<&'v mut Value> {
    path.iter()
        .try_fold(doc, |cursor, seg| match (cursor, *seg) {
            (Value::Object(map), Seg::Key(k)) => map.get_mut(k),
            (Value::Array(items), Seg::Index(i)) => items.get_mut(i),
            _ => None,
        })
}

fn insert_at(doc: &mut Value, path: &[Seg<'_>], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *doc = value;
        return;
    };
    let Some(cursor) = walk_mut(doc, parents) else {
        return;
    };
    match (cursor, *last) {
        (Value::Object(map), Seg::Key(k)) => {
            map.insert(k.to_owned(), value);
        }
        (Value::Array(items), Seg::Index(i)) if i <= items.len() => {
            items.insert(i, value);
        }
        _ => {}
    }
}

fn remove_at(doc: &mut Value, path: &[Seg<'_>]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(cursor) = walk_mut(doc, parents) else {
        return;
    };
    match (cursor, *last) {
        (Value::Object(map), Seg::Key(k)) => {
            map.remove(k);
        }
        (Value::Array(items), Seg::Index(i)) if i < items.len() => {
            items.remove(i);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(doc: &Value, patch: &Patch) -> Value {
        let mut out = doc.clone();
        json_patch::patch(&mut out, patch).expect("patch applies");
        out
    }

    #[test]
    fn ensure_creates_missing_parents_in_one_operation() {
        let doc = json!({"spec": {}});
        let mut b = Builder::new(doc.clone());
        b.ensure(
            &[
                "spec".into(),
                "securityContext".into(),
                "runAsNonRoot".into(),
            ],
            json!(true),
        );
        b.ensure(
            &["spec".into(), "securityContext".into(), "runAsUser".into()],
            json!(7),
        );
        let (patch, result) = b.finish();
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!([{"op": "add", "path": "/spec/securityContext",
                    "value": {"runAsNonRoot": true, "runAsUser": 7}}])
        );
        assert_eq!(apply(&doc, &patch), result);
    }

    #[test]
    fn ensure_leaves_present_values_alone() {
        let doc = json!({"a": {"b": false}});
        let mut b = Builder::new(doc);
        assert!(!b.ensure(&["a".into(), "b".into()], json!(true)));
        assert!(b.is_empty());
    }

    #[test]
    fn null_counts_as_absent() {
        let doc = json!({"a": null});
        let mut b = Builder::new(doc.clone());
        b.ensure(&["a".into(), "b".into()], json!(1));
        let (patch, result) = b.finish();
        assert_eq!(result, json!({"a": {"b": 1}}));
        assert_eq!(apply(&doc, &patch), result);
    }

    #[test]
    fn keys_are_escaped_per_rfc6901() {
        let doc = json!({"metadata": {"annotations": {}}});
        let mut b = Builder::new(doc.clone());
        b.ensure(
            &["metadata".into(), "annotations".into(), "a~b/c".into()],
            json!("x"),
        );
        let (patch, result) = b.finish();
        assert_eq!(
            serde_json::to_value(&patch).unwrap()[0]["path"],
            json!("/metadata/annotations/a~0b~1c")
        );
        assert_eq!(apply(&doc, &patch), result);
    }

    #[test]
    fn push_appends_or_creates_the_array() {
        let doc = json!({"l": [1], "m": {}});
        let mut b = Builder::new(doc.clone());
        b.push(&["l".into()], json!(2));
        b.push(&["m".into(), "n".into()], json!(3));
        b.push(&["m".into(), "n".into()], json!(4));
        let (patch, result) = b.finish();
        assert_eq!(result, json!({"l": [1, 2], "m": {"n": [3, 4]}}));
        assert_eq!(patch.0.len(), 2);
        assert_eq!(apply(&doc, &patch), result);
    }

    #[test]
    fn insert_shifts_later_elements_or_creates_the_array() {
        let doc = json!({"l": [1, 2], "m": {}});
        let mut b = Builder::new(doc.clone());
        b.insert(&["l".into()], 0, json!(0));
        b.insert(&["m".into(), "n".into()], 0, json!(9));
        b.ensure(&["l".into(), 1.into()], json!("kept"));
        let (patch, result) = b.finish();
        assert_eq!(result, json!({"l": [0, 1, 2], "m": {"n": [9]}}));
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!([{"op": "add", "path": "/l/0", "value": 0},
                   {"op": "add", "path": "/m/n", "value": [9]}])
        );
        assert_eq!(apply(&doc, &patch), result);
    }

    #[test]
    fn overwrite_replaces_and_remove_deletes() {
        let doc = json!({"a": 0, "b": [1, 2, 3]});
        let mut b = Builder::new(doc.clone());
        assert!(b.overwrite(&["a".into()], json!(5)));
        assert!(!b.overwrite(&["a".into()], json!(5)));
        assert!(b.remove(&["b".into(), 1.into()]));
        let (patch, result) = b.finish();
        assert_eq!(result, json!({"a": 5, "b": [1, 3]}));
        assert_eq!(apply(&doc, &patch), result);
    }
}
