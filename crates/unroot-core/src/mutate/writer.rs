//! The JSON Patch (RFC 6902) a mutation writes: operations recorded as the
//! mutation decides them, folded so the patch stays minimal, written out once.
//!
//! The mutation keeps its own working copy (the [`crate::view`] it changes
//! as it goes) and tells the writer, for each change, how much of the path
//! exists there already. The writer turns that into the fewest operations:
//! a missing parent is created by the operation that sets the field, and a
//! later change below a value this patch created is folded into that value.
//!
//! The patch is then written straight into the answer's buffer
//! ([`Writer::write_json`]), or described line by line for `warn` mode
//! ([`Writer::describe`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::BuildHasherDefault;

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::{Map, Value};

/// One step of a path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    /// An object member.
    Key(&'static str),
    /// An object member whose name is not known at build time (an
    /// annotation key).
    Name(String),
    /// An array element.
    Index(usize),
}

impl Seg {
    fn key(&self) -> Option<&str> {
        match self {
            Seg::Key(k) => Some(k),
            Seg::Name(k) => Some(k),
            Seg::Index(_) => None,
        }
    }
}

impl From<&'static str> for Seg {
    fn from(key: &'static str) -> Self {
        Seg::Key(key)
    }
}

impl From<usize> for Seg {
    fn from(index: usize) -> Self {
        Seg::Index(index)
    }
}

/// A path into the document.
pub type Path = Vec<Seg>;

/// `base` followed by `keys`.
#[must_use]
pub fn at(base: &[Seg], keys: &[&'static str]) -> Path {
    let mut path = Vec::with_capacity(base.len() + keys.len());
    path.extend_from_slice(base);
    path.extend(keys.iter().map(|k| Seg::Key(k)));
    path
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Add(Value),
    Replace { value: Value, old: Value },
    Remove { old: Value },
}

#[derive(Debug, Clone, PartialEq)]
struct Op {
    path: Path,
    kind: Kind,
}

/// The operations of one patch.
#[derive(Clone, Default)]
pub struct Writer {
    ops: Vec<Op>,
    /// The operations at each path, by the path's hash: a change finds the
    /// operation it folds into by looking up its path's prefixes, not by
    /// scanning every operation, which would make a pod's cost quadratic in
    /// its containers.
    by_path: HashMap<u64, Vec<usize>, BuildHasherDefault<Prehashed>>,
    /// Changes made, folded ones included: tells a step whether it changed
    /// anything.
    changes: usize,
}

impl Writer {
    /// A patch with no operation.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no operation was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many changes were made so far.
    #[must_use]
    pub fn changes(&self) -> usize {
        self.changes
    }

    /// Sets `path` to `value`, where the first `exists` segments of `path`
    /// exist in the working copy (the member itself, when `exists` is the
    /// whole path, is absent or null: `add` sets it). The parents past
    /// `exists` are created around `value`; an index past `exists` can only
    /// be the element appended to an array this patch creates.
    pub fn add(&mut self, path: &[Seg], exists: usize, value: Value) {
        let split = (exists + 1).min(path.len());
        let mut nested = value;
        for seg in path[split..].iter().rev() {
            nested = match seg.key() {
                Some(k) => {
                    let mut map = Map::new();
                    map.insert(k.to_owned(), nested);
                    Value::Object(map)
                }
                None => Value::Array(vec![nested]),
            };
        }
        self.changes += 1;
        let target = &path[..split];
        if let Some(i) = self.op_above(target)
            && let Op {
                path: above,
                kind: Kind::Add(v) | Kind::Replace { value: v, .. },
            } = &mut self.ops[i]
        {
            insert_at(v, &target[above.len()..], nested);
            return;
        }
        self.record(target, Kind::Add(nested));
    }

    /// Replaces the present value `old` at `path` by `value`.
    pub fn replace(&mut self, path: &[Seg], value: Value, old: Value) {
        self.changes += 1;
        if let Some(i) = self.op_above(path)
            && let Op {
                path: above,
                kind: Kind::Add(v) | Kind::Replace { value: v, .. },
            } = &mut self.ops[i]
        {
            set_at(v, &path[above.len()..], value);
            return;
        }
        self.record(path, Kind::Replace { value, old });
    }

    /// Removes the present value `old` at `path`.
    pub fn remove(&mut self, path: &[Seg], old: Value) {
        self.changes += 1;
        if let Some(i) = self.op_above(path)
            && let Op {
                path: above,
                kind: Kind::Add(v) | Kind::Replace { value: v, .. },
            } = &mut self.ops[i]
        {
            remove_at(v, &path[above.len()..]);
            return;
        }
        self.record(path, Kind::Remove { old });
    }

    fn record(&mut self, path: &[Seg], kind: Kind) {
        let hash = path.iter().fold(PathHash::EMPTY, PathHash::push);
        self.by_path.entry(hash.0).or_default().push(self.ops.len());
        self.ops.push(Op {
            path: path.to_vec(),
            kind,
        });
    }

    /// The first operation at a strict prefix of `path`, if any.
    fn op_above(&self, path: &[Seg]) -> Option<usize> {
        let mut first: Option<usize> = None;
        let mut hash = PathHash::EMPTY;
        for (len, seg) in path.iter().enumerate() {
            if let Some(indexes) = self.by_path.get(&hash.0)
                && let Some(i) = indexes
                    .iter()
                    .copied()
                    .find(|&i| self.ops[i].path.as_slice() == &path[..len])
            {
                first = Some(first.map_or(i, |f| f.min(i)));
            }
            hash = hash.push(seg);
        }
        first
    }

    /// The patch, as `json_patch` types.
    #[must_use]
    pub fn to_patch(&self) -> Patch {
        Patch(
            self.ops
                .iter()
                .map(|op| {
                    let path = PointerBuf::from_tokens(op.path.iter().map(|s| match s {
                        Seg::Key(k) => Token::new(*k),
                        Seg::Name(k) => Token::new(k.clone()),
                        Seg::Index(i) => Token::new(i.to_string()),
                    }));
                    match &op.kind {
                        Kind::Add(value) => PatchOperation::Add(AddOperation {
                            path,
                            value: value.clone(),
                        }),
                        Kind::Replace { value, .. } => PatchOperation::Replace(ReplaceOperation {
                            path,
                            value: value.clone(),
                        }),
                        Kind::Remove { .. } => PatchOperation::Remove(RemoveOperation { path }),
                    }
                })
                .collect(),
        )
    }

    /// Writes the patch as JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, op) in self.ops.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let (name, value) = match &op.kind {
                Kind::Add(value) => ("add", Some(value)),
                Kind::Replace { value, .. } => ("replace", Some(value)),
                Kind::Remove { .. } => ("remove", None),
            };
            out.extend_from_slice(b"{\"op\":\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\",\"path\":\"");
            for seg in &op.path {
                out.push(b'/');
                match seg {
                    Seg::Index(i) => {
                        let mut digits = String::new();
                        let _ = write!(digits, "{i}");
                        out.extend_from_slice(digits.as_bytes());
                    }
                    Seg::Key(k) => push_token(out, k),
                    Seg::Name(k) => push_token(out, k),
                }
            }
            out.push(b'"');
            if let Some(value) = value {
                out.extend_from_slice(b",\"value\":");
                // Writing a Value to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, value);
            }
            out.push(b'}');
        }
        out.push(b']');
    }

    /// One line per field the patch changes, as `warn` mode tells the client
    /// what `on` would do: `would set securityContext.runAsNonRoot=true on
    /// pod`, `would set securityContext.runAsUser=65532 on container "app"
    /// (instead of 0)`, `would add "ALL" to securityContext.capabilities.drop
    /// on container "app"`, `would remove "NET_RAW" from
    /// securityContext.capabilities.add on container "app"`. An added object
    /// is named field by field. `spec` is the path of the pod spec the patch
    /// is about; `container` names the container at a list and index.
    #[must_use]
    pub fn describe(&self, spec: &[Seg], container: impl Fn(&str, usize) -> String) -> Vec<String> {
        let json = |v: &Value| serde_json::to_string(v).unwrap_or_default();
        let mut lines = Vec::new();
        for op in &self.ops {
            let (target, field) = describe_path(&op.path, spec, &container);
            let into_array = matches!(op.path.last(), Some(Seg::Index(_)));
            match &op.kind {
                Kind::Add(value) if into_array => {
                    lines.push(format!("would add {} to {field} on {target}", json(value)));
                }
                Kind::Add(value) => {
                    let mut leaves = Vec::new();
                    flatten(&field, value, &mut leaves);
                    for (field, value) in leaves {
                        lines.push(format!("would set {field}={} on {target}", json(value)));
                    }
                }
                Kind::Replace { value, old } => lines.push(format!(
                    "would set {field}={} on {target} (instead of {})",
                    json(value),
                    json(old)
                )),
                Kind::Remove { old } if into_array => {
                    lines.push(format!(
                        "would remove {} from {field} on {target}",
                        json(old)
                    ));
                }
                Kind::Remove { .. } => lines.push(format!("would remove {field} from {target}")),
            }
        }
        lines
    }

    /// Applies the patch to `doc` (the object the working copy was read
    /// from): what `unroot mutate` prints.
    pub fn apply(&self, doc: &mut Value) -> Result<(), json_patch::PatchError> {
        json_patch::patch(doc, &self.to_patch())
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("ops", &self.ops)
            .finish_non_exhaustive()
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

    fn push(self, seg: &Seg) -> Self {
        match seg {
            // The tag and terminator keep ["ab"] and ["a", "b"] apart.
            Seg::Key(k) => self.bytes(&[0]).bytes(k.as_bytes()).bytes(&[0xff]),
            Seg::Name(k) => self.bytes(&[0]).bytes(k.as_bytes()).bytes(&[0xff]),
            Seg::Index(i) => self.bytes(&[1]).bytes(&(*i as u64).to_le_bytes()),
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

/// An RFC 6901 reference token, escaped, inside a JSON string.
fn push_token(out: &mut Vec<u8>, key: &str) {
    // The keys unroot writes are plain names: nothing to escape.
    if key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        out.extend_from_slice(key.as_bytes());
        return;
    }
    let escaped = key.replace('~', "~0").replace('/', "~1");
    // The key is a JSON string's content: escape it as one.
    let quoted = serde_json::to_string(&escaped).unwrap_or_default();
    out.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
}

/// Who a path is about (`pod`, `container "app"`) and the field below it,
/// dotted (`securityContext.capabilities.drop`); array indexes inside the
/// field are dropped from the name.
fn describe_path(
    path: &[Seg],
    spec: &[Seg],
    container: &impl Fn(&str, usize) -> String,
) -> (String, String) {
    let dotted = |rest: &[Seg]| {
        rest.iter()
            .filter_map(Seg::key)
            .collect::<Vec<_>>()
            .join(".")
    };
    let Some(rest) = path.strip_prefix(spec) else {
        return ("pod".to_owned(), dotted(path));
    };
    match rest {
        [list, Seg::Index(i), field @ ..]
            if matches!(
                list.key(),
                Some("initContainers" | "containers" | "ephemeralContainers")
            ) =>
        {
            let name = container(list.key().unwrap_or_default(), *i);
            (format!("container {name:?}"), dotted(field))
        }
        _ => ("pod".to_owned(), dotted(rest)),
    }
}

/// The leaves of `value` below `field`: an object is named key by key, any
/// other value (a list included) is one leaf.
fn flatten<'v>(field: &str, value: &'v Value, out: &mut Vec<(String, &'v Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                let name = if field.is_empty() {
                    key.clone()
                } else {
                    format!("{field}.{key}")
                };
                flatten(&name, v, out);
            }
        }
        _ => out.push((field.to_owned(), value)),
    }
}

fn walk_mut<'v>(doc: &'v mut Value, path: &[Seg]) -> Option<&'v mut Value> {
    path.iter()
        .try_fold(doc, |cursor, seg| match (cursor, seg) {
            (Value::Object(map), seg) if seg.key().is_some() => map.get_mut(seg.key()?),
            (Value::Array(items), Seg::Index(i)) => items.get_mut(*i),
            _ => None,
        })
}

/// Inserts `value` at `path` inside `doc`, creating missing objects on the
/// way (an added value is built from what the mutation decided, so every
/// parent past the first missing one is an object).
fn insert_at(doc: &mut Value, path: &[Seg], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *doc = value;
        return;
    };
    let mut cursor = doc;
    for seg in parents {
        cursor = match (cursor, seg) {
            (Value::Object(map), seg) => {
                let Some(key) = seg.key() else { return };
                map.entry(key.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()))
            }
            (Value::Array(items), Seg::Index(i)) => match items.get_mut(*i) {
                Some(item) => item,
                None => return,
            },
            _ => return,
        };
    }
    match (cursor, last) {
        (Value::Object(map), seg) => {
            if let Some(key) = seg.key() {
                map.insert(key.to_owned(), value);
            }
        }
        (Value::Array(items), Seg::Index(i)) if *i <= items.len() => items.insert(*i, value),
        _ => {}
    }
}

fn set_at(doc: &mut Value, path: &[Seg], value: Value) {
    if let Some(target) = walk_mut(doc, path) {
        *target = value;
    }
}

fn remove_at(doc: &mut Value, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    match (walk_mut(doc, parents), last) {
        (Some(Value::Object(map)), seg) => {
            if let Some(key) = seg.key() {
                map.remove(key);
            }
        }
        (Some(Value::Array(items)), Seg::Index(i)) if *i < items.len() => {
            items.remove(*i);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patched(doc: &Value, w: &Writer) -> Value {
        let mut out = doc.clone();
        w.apply(&mut out).expect("the patch applies");
        out
    }

    fn written(w: &Writer) -> Value {
        let mut out = Vec::new();
        w.write_json(&mut out);
        let written: Value = serde_json::from_slice(&out).expect("the patch is JSON");
        assert_eq!(written, serde_json::to_value(w.to_patch()).unwrap());
        written
    }

    #[test]
    fn a_missing_parent_is_created_by_one_operation() {
        let doc = json!({"spec": {}});
        let mut w = Writer::new();
        w.add(
            &at(&[], &["spec", "securityContext", "runAsNonRoot"]),
            1,
            json!(true),
        );
        w.add(
            &at(&[], &["spec", "securityContext", "runAsUser"]),
            2,
            json!(7),
        );
        assert_eq!(
            written(&w),
            json!([{"op": "add", "path": "/spec/securityContext",
                    "value": {"runAsNonRoot": true, "runAsUser": 7}}])
        );
        assert_eq!(
            patched(&doc, &w),
            json!({"spec": {"securityContext": {"runAsNonRoot": true, "runAsUser": 7}}})
        );
    }

    #[test]
    fn appends_fold_into_an_array_this_patch_created() {
        let doc = json!({"l": [1], "m": {}});
        let mut w = Writer::new();
        w.add(&[Seg::Key("l"), Seg::Index(1)], 1, json!(2));
        w.add(&[Seg::Key("m"), Seg::Key("n")], 1, json!([3]));
        w.add(&[Seg::Key("m"), Seg::Key("n"), Seg::Index(1)], 2, json!(4));
        assert_eq!(w.to_patch().0.len(), 2);
        assert_eq!(patched(&doc, &w), json!({"l": [1, 2], "m": {"n": [3, 4]}}));
    }

    #[test]
    fn keys_are_escaped_per_rfc6901_and_as_json() {
        let mut w = Writer::new();
        w.add(
            &[
                Seg::Key("metadata"),
                Seg::Key("annotations"),
                Seg::Name("a~b/c\"d".to_owned()),
            ],
            2,
            json!("x"),
        );
        assert_eq!(
            written(&w)[0]["path"],
            json!("/metadata/annotations/a~0b~1c\"d")
        );
    }

    #[test]
    fn replace_and_remove_record_the_old_value_for_warn_mode() {
        let doc = json!({"spec": {"securityContext": {"runAsUser": 0},
            "containers": [{"name": "app", "securityContext": {"capabilities": {"add": ["NET_RAW", "CHOWN"]}}}]}});
        let mut w = Writer::new();
        w.replace(
            &at(&[], &["spec", "securityContext", "runAsUser"]),
            json!(65532),
            json!(0),
        );
        let caps = at(
            &[Seg::Key("spec"), Seg::Key("containers"), Seg::Index(0)],
            &["securityContext", "capabilities"],
        );
        let mut add0 = at(&caps, &["add"]);
        add0.push(Seg::Index(0));
        w.remove(&add0, json!("NET_RAW"));
        let mut drop = at(&caps, &["drop"]);
        w.add(&drop, 5, json!(["ALL"]));
        drop.push(Seg::Index(1));
        w.add(&drop, 6, json!("X"));
        let result = patched(&doc, &w);
        assert_eq!(result["spec"]["securityContext"]["runAsUser"], 65532);
        assert_eq!(
            result["spec"]["containers"][0]["securityContext"]["capabilities"],
            json!({"add": ["CHOWN"], "drop": ["ALL", "X"]})
        );
        assert_eq!(
            w.describe(&[Seg::Key("spec")], |_, _| "app".to_owned()),
            [
                "would set securityContext.runAsUser=65532 on pod (instead of 0)",
                "would remove \"NET_RAW\" from securityContext.capabilities.add on container \"app\"",
                "would set securityContext.capabilities.drop=[\"ALL\",\"X\"] on container \"app\"",
            ]
        );
    }
}
