//! Reading Kubernetes objects from files or stdin, as the CLI commands do.
//!
//! A file holds one or more YAML documents (`---` separated) or JSON, each an
//! object, or a `List` of objects (what `kubectl get -o yaml` prints).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Errors from reading manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{file}: failed to read: {source}")]
    Read {
        /// The file as given on the command line (`-` for stdin).
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is neither YAML nor JSON.
    #[error("{file}: failed to parse: {message}")]
    Parse {
        /// The file as given.
        file: String,
        /// The parser's explanation, with line and column.
        message: String,
    },
    /// A document is not a Kubernetes object.
    #[error("{file}: document {index}: {message}")]
    NotAnObject {
        /// The file as given.
        file: String,
        /// 1-based position of the document in the file.
        index: usize,
        /// What is missing.
        message: String,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One object read from a file.
#[derive(Debug, Clone)]
pub struct Object {
    /// The file it came from, as given (`-` for stdin).
    pub file: String,
    /// 1-based position of the document in the file.
    pub index: usize,
    /// The object.
    pub value: Value,
}

impl Object {
    /// The object's `kind` (empty when absent).
    #[must_use]
    pub fn kind(&self) -> &str {
        self.value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// A `metadata` string field (empty when absent).
    #[must_use]
    pub fn meta(&self, field: &str) -> &str {
        self.value
            .get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Reads every object from `paths` (`-` is stdin), in order.
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    for path in paths {
        out.extend(read_one(path)?);
    }
    Ok(out)
}

fn read_one(path: &Path) -> Result<Vec<Object>> {
    let file = path.display().to_string();
    let mut text = String::new();
    let read = if file == "-" {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|source| Error::Read {
        file: file.clone(),
        source,
    })?;
    parse(&file, &text)
}

/// Parses the text of one file into objects.
pub fn parse(file: &str, text: &str) -> Result<Vec<Object>> {
    let docs: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
        // JSON: one value, or several concatenated (`kubectl ... -o json` of
        // many objects prints them back to back).
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Parse {
                file: file.to_owned(),
                message: e.to_string(),
            })?
    } else {
        serde_saphyr::from_multiple::<Value>(text).map_err(|e| Error::Parse {
            file: file.to_owned(),
            message: e.to_string(),
        })?
    };
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let index = i + 1;
        let not_object = |message: &str| Error::NotAnObject {
            file: file.to_owned(),
            index,
            message: message.to_owned(),
        };
        match doc {
            // Empty documents (a trailing `---`) are no objects.
            Value::Null => {}
            Value::Object(ref map) => {
                let kind = map.get("kind").and_then(Value::as_str);
                if map
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(not_object("not a Kubernetes object: apiVersion is missing"));
                }
                match kind {
                    None | Some("") => {
                        return Err(not_object("not a Kubernetes object: kind is missing"));
                    }
                    Some(k) if k.ends_with("List") => {
                        let Some(Value::Array(items)) = map.get("items") else {
                            return Err(not_object("a List without items"));
                        };
                        for item in items {
                            if !item.is_object() {
                                return Err(not_object("a List item is not an object"));
                            }
                            out.push(Object {
                                file: file.to_owned(),
                                index,
                                value: item.clone(),
                            });
                        }
                    }
                    Some(_) => out.push(Object {
                        file: file.to_owned(),
                        index,
                        value: doc,
                    }),
                }
            }
            _ => return Err(not_object("not a Kubernetes object: expected a mapping")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_multi_document_yaml_json_and_lists() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: b}}\n";
        let objs = parse("f.yaml", yaml).unwrap();
        let names: Vec<&str> = objs.iter().map(|o| o.meta("name")).collect();
        assert_eq!(names, ["a", "b"]);
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"}} {"apiVersion":"v1","kind":"Pod"}"#;
        assert_eq!(parse("f.json", json).unwrap().len(), 2);
    }

    #[test]
    fn bad_input_names_the_file_and_the_problem() {
        for (text, want) in [
            (
                "kind: Pod\n",
                "f: document 1: not a Kubernetes object: apiVersion is missing",
            ),
            (
                "apiVersion: v1\n",
                "f: document 1: not a Kubernetes object: kind is missing",
            ),
            (
                "- a\n- b\n",
                "f: document 1: not a Kubernetes object: expected a mapping",
            ),
            ("{\"apiVersion\": ", "f: failed to parse: "),
            ("a: [b\n", "f: failed to parse: "),
        ] {
            let err = parse("f", text).unwrap_err().to_string();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
    }
}
