//! Reading a policy that states only what it changes.
//!
//! A policy document is laid over the embedded default (the shipped
//! `webhook-config/policy.yaml`), the way Kubernetes defaults omitted fields:
//! objects merge key by key, and anything else (a number, a string, a list, a
//! label selector, the provisioning init container or home volume) replaces
//! the default whole. The default file is therefore the one place where every
//! default is written down.
//!
//! Every error is reported in one answer: each structural error (an unknown
//! key, a wrong type) is recorded with its field path and the offending entry
//! is dropped so that its default applies, and decoding goes on; then the
//! decoded document's values are validated.

use std::fmt::Write as _;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::{DEFAULT_YAML, Document, Error, FieldError, Result};

/// Objects that are replaced whole, never merged: a selector or a volume
/// merged key by key with the default would mean something nobody wrote.
const ATOMIC: [&str; 3] = ["namespaceSelector", "homeVolume", "initContainer"];

/// Most structural errors reported before giving up (a document that is
/// mostly wrong gets the first ones).
const MAX_ERRORS: usize = 50;

/// The embedded default as a JSON tree, parsed once.
fn default_tree() -> &'static Map<String, Value> {
    static TREE: OnceLock<Map<String, Value>> = OnceLock::new();
    TREE.get_or_init(|| match serde_saphyr::from_str::<Value>(DEFAULT_YAML) {
        Ok(Value::Object(map)) => map,
        // A unit test proves the embedded file parses.
        _ => Map::new(),
    })
}

/// Lays `over` on `base`: objects merge, `null` keeps the default, anything
/// else replaces.
fn merge(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (_, Value::Null) => {}
            (Some(Value::Object(b)), Value::Object(o)) if !ATOMIC.contains(&key.as_str()) => {
                merge(b, o);
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// List elements already removed, by the list's path (as decoded now), so
/// that later errors name the index the user wrote.
#[derive(Default)]
struct Removed(Vec<(String, Vec<usize>)>);

impl Removed {
    /// The index the user wrote for element `index` of the list at `list`.
    fn original(&self, list: &str, index: usize) -> usize {
        let Some((_, removed)) = self.0.iter().find(|(l, _)| l == list) else {
            return index;
        };
        let mut original = index;
        for r in removed {
            if *r <= original {
                original += 1;
            }
        }
        original
    }

    /// `path` (of an error found after decoding) as the user wrote it.
    fn translate(&self, path: &str) -> String {
        for (list, _) in &self.0 {
            let Some(rest) = path
                .strip_prefix(list.as_str())
                .and_then(|r| r.strip_prefix('['))
            else {
                continue;
            };
            let Some((index, tail)) = rest.split_once(']') else {
                continue;
            };
            if let Ok(index) = index.parse::<usize>() {
                return format!("{list}[{}]{tail}", self.original(list, index));
            }
        }
        path.to_owned()
    }

    fn record(&mut self, list: &str, original: usize) {
        match self.0.iter_mut().find(|(l, _)| l == list) {
            Some((_, removed)) => {
                removed.push(original);
                removed.sort_unstable();
            }
            None => self.0.push((list.to_owned(), vec![original])),
        }
    }
}

/// Removes the entry at `path` from `tree` (recording removed list elements
/// in `removed`) and returns the path as the user wrote it; `None` when the
/// entry is not in `tree`.
fn remove(
    tree: &mut Value,
    path: &serde_path_to_error::Path,
    removed: &mut Removed,
) -> Option<String> {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let (last, parents) = segments.split_last()?;
    let mut shown = String::new();
    let mut current = String::new();
    let mut cursor = tree;
    for segment in parents {
        let next = match (segment, cursor) {
            (Segment::Map { key }, Value::Object(map)) => {
                push_key(&mut shown, key);
                push_key(&mut current, key);
                map.get_mut(key)
            }
            (Segment::Seq { index }, Value::Array(items)) => {
                let _ = write!(shown, "[{}]", removed.original(&current, *index));
                let _ = write!(current, "[{index}]");
                items.get_mut(*index)
            }
            _ => None,
        };
        cursor = next?;
    }
    match (last, cursor) {
        (Segment::Map { key }, Value::Object(map)) => {
            map.remove(key.as_str())?;
            push_key(&mut shown, key);
        }
        (Segment::Seq { index }, Value::Array(items)) if *index < items.len() => {
            items.remove(*index);
            let original = removed.original(&current, *index);
            removed.record(&current, original);
            let _ = write!(shown, "[{original}]");
        }
        _ => return None,
    }
    Some(shown)
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// A serde error message, made to read like a field error.
fn message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = expected.trim_start_matches(',').trim().replace('`', "");
        return if expected.is_empty() {
            format!("unknown field {field:?}")
        } else {
            format!("unknown field {field:?} ({expected})")
        };
    }
    text
}

/// Parses `text`, lays it over the embedded default, decodes and validates
/// it, reporting every error.
pub(super) fn from_yaml(text: &str) -> Result<Document> {
    let parsed: Value = serde_saphyr::from_str(text).map_err(|e| Error::Parse(e.to_string()))?;
    let mut user = match parsed {
        Value::Object(map) => Value::Object(map),
        Value::Null => Value::Object(Map::new()),
        other => {
            return Err(Error::Parse(format!(
                "a policy is a YAML mapping (apiVersion: unroot.dev/v1, kind: Policy, ...), not {}",
                kind_of(&other)
            )));
        }
    };
    let mut errors = Vec::new();
    let mut removed = Removed::default();
    for (key, example) in [("apiVersion", "unroot.dev/v1"), ("kind", "Policy")] {
        if user.get(key).is_none_or(Value::is_null) {
            errors.push(FieldError::new(
                key,
                format!("is required: set it to {example:?}"),
            ));
        }
    }
    let document = loop {
        let mut merged = default_tree().clone();
        if let Value::Object(over) = &user {
            merge(&mut merged, over);
        }
        match serde_path_to_error::deserialize::<_, Document>(Value::Object(merged)) {
            Ok(document) => break Some(document),
            Err(e) => {
                let Some(shown) = remove(&mut user, e.path(), &mut removed) else {
                    // Not something the user wrote: report it as it is.
                    errors.push(FieldError::new(e.path().to_string(), message(e.inner())));
                    break None;
                };
                errors.push(FieldError::new(shown, message(e.inner())));
                if errors.len() >= MAX_ERRORS {
                    break None;
                }
            }
        }
    };
    if let Some(document) = &document {
        errors.extend(document.validate().into_iter().map(|mut e| {
            e.path = removed.translate(&e.path);
            e
        }));
    }
    match document {
        Some(document) if errors.is_empty() => Ok(document),
        _ => Err(Error::Invalid(errors)),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_parses_as_a_tree() {
        assert!(default_tree().contains_key("securityContext"));
    }

    #[test]
    fn selectors_replace_and_objects_merge() {
        let mut base = serde_json::json!({"a": {"x": 1, "y": 2}, "namespaceSelector": {"matchLabels": {"k": "v"}}});
        let over = serde_json::json!({"a": {"y": 3}, "namespaceSelector": {"matchExpressions": []}, "b": null});
        let (Value::Object(base_map), Value::Object(over_map)) = (&mut base, &over) else {
            unreachable!()
        };
        merge(base_map, over_map);
        assert_eq!(
            base,
            serde_json::json!({"a": {"x": 1, "y": 3}, "namespaceSelector": {"matchExpressions": []}})
        );
    }
}
