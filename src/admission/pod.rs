//! Decoding a Pod from a review without materialising `managedFields`.
//!
//! The API server sends every pod with its `metadata.managedFields`: a trie
//! of every field each manager set, as large as the rest of the pod. unroot
//! never reads it, yet `k8s_openapi`'s `Pod` builds each entry's `fieldsV1`
//! as a `serde_json::Value` tree, which was about half the cost of a review.
//!
//! The decoders here accept exactly the pods the plain ones accept, with the
//! same results, and nothing more: `fieldsV1` is any JSON value (a `Value`
//! accepts any), so it is checked for well-formedness and skipped; every
//! other field has the type `k8s_openapi` gives it. Any failure falls back
//! to the plain decoder, so a pod that does not decode is refused with the
//! very message it always was.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ManagedFieldsEntry, ObjectMeta, OwnerReference, Time,
};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// `ObjectMeta` field for field, except that `fieldsV1` is skipped.
// A derived struct refuses a duplicate field where `ObjectMeta` keeps the
// last one: such a pod then takes the plain decoder, with the same result.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    managed_fields: Option<Vec<ManagedEntry>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

/// `ManagedFieldsEntry` with `fieldsV1` checked and dropped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManagedEntry {
    api_version: Option<String>,
    fields_type: Option<String>,
    // Checked to be JSON, then dropped.
    #[serde(rename = "fieldsV1")]
    _fields_v1: Option<IgnoredAny>,
    manager: Option<String>,
    operation: Option<String>,
    subresource: Option<String>,
    time: Option<Time>,
}

/// `Pod` with [`Meta`]: `apiVersion` and `kind`, when present, must be
/// `v1` and `Pod`, as `Pod` requires.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Lite {
    // Absent is fine, null is not: `Pod` reads them as strings.
    #[serde(default, deserialize_with = "present_string")]
    api_version: Option<String>,
    #[serde(default, deserialize_with = "present_string")]
    kind: Option<String>,
    metadata: Option<Meta>,
    spec: Option<PodSpec>,
    status: Option<PodStatus>,
}

fn present_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
}

impl Lite {
    fn into_pod(self) -> Option<Pod> {
        if self.api_version.as_deref().is_some_and(|v| v != "v1")
            || self.kind.as_deref().is_some_and(|k| k != "Pod")
        {
            return None;
        }
        let metadata = self
            .metadata
            .map_or_else(ObjectMeta::default, |m| ObjectMeta {
                annotations: m.annotations,
                creation_timestamp: m.creation_timestamp,
                deletion_grace_period_seconds: m.deletion_grace_period_seconds,
                deletion_timestamp: m.deletion_timestamp,
                finalizers: m.finalizers,
                generate_name: m.generate_name,
                generation: m.generation,
                labels: m.labels,
                managed_fields: m.managed_fields.map(|entries| {
                    entries
                        .into_iter()
                        .map(|e| ManagedFieldsEntry {
                            api_version: e.api_version,
                            fields_type: e.fields_type,
                            // Read by nothing in unroot.
                            fields_v1: None,
                            manager: e.manager,
                            operation: e.operation,
                            subresource: e.subresource,
                            time: e.time,
                        })
                        .collect()
                }),
                name: m.name,
                namespace: m.namespace,
                owner_references: m.owner_references,
                resource_version: m.resource_version,
                self_link: m.self_link,
                uid: m.uid,
            });
        Some(Pod {
            metadata,
            spec: self.spec,
            status: self.status,
        })
    }
}

/// `raw` as a `Pod` whose managedFields entries carry no `fieldsV1`;
/// `None` when that is not certain to equal the plain decode (the caller
/// then uses the plain one, which also gives the error message).
#[must_use]
pub fn decode(raw: &str) -> Option<Pod> {
    serde_json::from_str::<Lite>(raw).ok()?.into_pod()
}

/// `raw` as the `Value` the mutation works on: the plain `Value` without
/// `metadata.managedFields`, when `raw` certainly decodes as a `Pod` (every
/// field checked as `Pod` checks it). `None` otherwise: the caller then
/// decodes the plain way, which says what is wrong.
#[must_use]
pub fn mutation_value(raw: &str) -> Option<Value> {
    let value = value_without_managed_fields(raw)?;
    // The rest of the pod, checked on the tree rather than on the text:
    // that is cheaper than parsing it again.
    Pod::deserialize(&value).ok()?;
    Some(value)
}

/// `raw` (an object) as a `Value` without `metadata.managedFields`, whose
/// entries are checked as [`ManagedEntry`] (the fields `Pod` types, but
/// `fieldsV1`). `None` when `raw` is not an object or an entry is not one
/// `Pod` accepts.
fn value_without_managed_fields(raw: &str) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let value = de.deserialize_map(Object { depth: 0 }).ok()?;
    de.end().ok()?;
    Some(value)
}

/// An object, read as a `Value` except for `managedFields` inside the
/// top-level `metadata` (depth 0 is the pod, depth 1 its metadata).
struct Object {
    depth: u8,
}

impl<'de> Visitor<'de> for Object {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match (self.depth, key.as_str()) {
                (0, "metadata") => {
                    let value = map.next_value_seed(Member { depth: 1 })?;
                    out.insert(key, value);
                }
                (1, "managedFields") => {
                    map.next_value::<Option<Vec<ManagedEntry>>>()?;
                }
                _ => {
                    let value = map.next_value::<Value>()?;
                    out.insert(key, value);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// A member value: an object is read by [`Object`] at `depth`, anything
/// else as a plain `Value`.
struct Member {
    depth: u8,
}

impl<'de> DeserializeSeed<'de> for Member {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Member {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        Object { depth: self.depth }.visit_map(map)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_json() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"},
                "annotations": {"x": "y"}, "creationTimestamp": "2026-11-29T04:34:00Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true}],
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                    "apiVersion": "v1", "time": "2026-11-29T04:34:00Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:a": {}}}}}]},
            "spec": {"containers": [{"name": "c", "image": "i", "securityContext": {"runAsUser": 0}}]},
            "status": {"phase": "Pending"},
        })
    }

    #[test]
    fn the_lite_decode_equals_the_plain_one_but_for_fields_v1() {
        let text = pod_json().to_string();
        let mut plain: Pod = serde_json::from_str(&text).unwrap();
        for entry in plain.metadata.managed_fields.iter_mut().flatten() {
            assert!(entry.fields_v1.is_some());
            entry.fields_v1 = None;
        }
        assert_eq!(decode(&text), Some(plain));
    }

    #[test]
    fn what_the_plain_decode_refuses_the_lite_one_refuses() {
        let cases = [
            json!({"kind": "Service"}),
            json!({"apiVersion": "v2"}),
            json!({"apiVersion": null}),
            json!({"metadata": {"managedFields": [{"time": "yesterday"}]}}),
            json!({"metadata": {"managedFields": [{"fieldsV1": {}, "manager": 7}]}}),
            json!({"metadata": {"labels": {"a": 1}}}),
            json!({"spec": {"containers": "nope"}}),
            json!([]),
        ];
        for case in cases {
            let text = case.to_string();
            assert!(serde_json::from_str::<Pod>(&text).is_err(), "{case}");
            assert!(decode(&text).is_none(), "{case}");
        }
        // A duplicate key: the plain decode keeps the last, the lite one
        // leaves it to the plain one.
        let text = r#"{"metadata": {"name": "a", "name": "p"}}"#;
        assert!(serde_json::from_str::<Pod>(text).is_ok());
        assert!(decode(text).is_none());
    }

    #[test]
    fn the_mutation_value_is_the_plain_value_without_managed_fields() {
        let mut plain = pod_json();
        let text = plain.to_string();
        plain["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        assert_eq!(value_without_managed_fields(&text), Some(plain.clone()));
        assert_eq!(mutation_value(&text), Some(plain));

        let nested = json!({"metadata": null, "spec": {"metadata": {"managedFields": 1}}});
        assert_eq!(
            value_without_managed_fields(&nested.to_string()),
            Some(nested)
        );
        let dup = r#"{"metadata": {"managedFields": [], "a": 1, "managedFields": null}}"#;
        assert_eq!(
            value_without_managed_fields(dup),
            Some(json!({"metadata": {"a": 1}}))
        );
        assert_eq!(value_without_managed_fields("[1]"), None);
        let bad_entry = r#"{"metadata": {"managedFields": [{"time": 1}]}}"#;
        assert_eq!(value_without_managed_fields(bad_entry), None);
        let bad_spec = r#"{"spec": {"containers": "nope"}}"#;
        assert!(value_without_managed_fields(bad_spec).is_some());
        assert_eq!(mutation_value(bad_spec), None);
        assert_eq!(value_without_managed_fields("{} x"), None);
    }
}
