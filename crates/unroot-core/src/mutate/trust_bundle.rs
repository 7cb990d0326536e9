//! The cluster's CA bundle at `/etc/ssl/certs`, read-only, for pods in the
//! namespaces the policy's `trustBundle.namespaceSelector` selects.
//!
//! The pod gets one ConfigMap volume, `unroot-trust-bundle`, whose items map
//! the policy's `key` to every `fileNames` entry (`optional: false`: a pod
//! must not start without the CA it was promised). Every selected container
//! and init container gets a read-only mount of it at `mountPath` and, with
//! `setEnv`, `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `NODE_EXTRA_CA_CERTS` and
//! `CURL_CA_BUNDLE` pointing at the first file name, where it sets none.
//!
//! What the pod already chose is left alone, with a warning: a container
//! that mounts something else at `mountPath` gets nothing; a pod with a
//! volume of that name that is not the bundle, or that already mounts the
//! bundle's ConfigMap under another volume name, gets nothing. The volume
//! and mounts unroot added itself are recognised, so re-mutation adds
//! nothing. Windows pods are skipped (there is no `/etc/ssl/certs`), and so
//! is the provisioning init container, whose spec must stay exactly the one
//! the policy pins.

use k8s_openapi::api::core::v1::{Volume, VolumeMount};
use serde_json::{Value, json};

use super::harden::{container_list, container_list_mut, places};
use super::mounts::{mount_at, push_env, push_mount, push_volume};
use super::writer::{Seg, Writer};
use crate::policy::TrustBundle;
use crate::view;

/// The name of the volume unroot adds.
pub const VOLUME: &str = "unroot-trust-bundle";

/// The environment variables pointed at the bundle file: OpenSSL and Go,
/// Python requests, Node.js (added to its built-in roots), curl.
pub const ENV_VARS: [&str; 4] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
];

/// The `volumes` entry for the bundle.
#[must_use]
pub fn volume(policy: &TrustBundle) -> Value {
    let items: Vec<Value> = policy
        .file_names
        .iter()
        .map(|f| json!({"key": policy.key, "path": f}))
        .collect();
    json!({
        "name": VOLUME,
        "configMap": {"name": policy.config_map, "items": items, "optional": false},
    })
}

/// The ConfigMap a volume projects, if it is a ConfigMap volume.
fn config_map_of(volume: &Volume) -> Option<&str> {
    volume.config_map.as_ref().map(|c| c.name.as_str())
}

/// Adds the trust bundle to the pod spec at `spec` (its path) of `pod`.
/// `skip` is the index of the provisioning init container, which is never
/// touched.
pub(crate) fn add_trust_bundle(
    pod: &mut view::Pod<'_>,
    w: &mut Writer,
    spec: &[Seg],
    display: &str,
    policy: &TrustBundle,
    skip: Option<usize>,
    warnings: &mut Vec<String>,
) {
    let mut ours = false;
    for (i, v) in pod.spec.volumes.iter().flatten().enumerate() {
        let source = config_map_of(v);
        if v.name == VOLUME && source == Some(policy.config_map.as_str()) {
            ours = true;
        } else if v.name == VOLUME {
            warnings.push(format!(
                "unroot: {display}spec.volumes[{i}] is named {VOLUME:?} but is not the trust bundle ConfigMap {:?}: the trust bundle is not mounted",
                policy.config_map
            ));
            return;
        } else if source == Some(policy.config_map.as_str()) {
            warnings.push(format!(
                "unroot: {display}spec.volumes[{i}] ({:?}) already projects the trust bundle ConfigMap {:?}: the pod is left as it is",
                v.name, policy.config_map
            ));
            return;
        }
    }

    let mut plan = Vec::new();
    let prefix = format!("{display}spec.");
    for place in places(&pod.spec, &prefix, &["initContainers", "containers"]) {
        let Some(c) = container_list(&pod.spec, place.list).and_then(|l| l.get(place.index)) else {
            continue;
        };
        let is_skipped = place.list == "initContainers" && Some(place.index) == skip;
        if is_skipped || !policy.containers.selects(&c.name) {
            continue;
        }
        match mount_at(c, &policy.mount_path) {
            Some((_, m)) if m.name == VOLUME => plan.push((place, false)),
            Some((j, m)) => warnings.push(format!(
                "unroot: {}.volumeMounts[{j}] (container {:?}) already mounts volume {:?} at {}: the trust bundle is not mounted in this container",
                place.display, c.name, m.name, policy.mount_path
            )),
            None => plan.push((place, true)),
        }
    }
    if plan.is_empty() {
        return;
    }
    if !ours {
        push_volume(pod, w, spec, volume(policy));
    }
    let file = format!(
        "{}/{}",
        policy.mount_path,
        policy.file_names.first().map_or("", String::as_str)
    );
    for (place, needs_mount) in plan {
        let mut path = spec.to_vec();
        path.extend([Seg::Key(place.list), Seg::Index(place.index)]);
        let Some(c) =
            container_list_mut(&mut pod.spec, place.list).and_then(|l| l.get_mut(place.index))
        else {
            continue;
        };
        if needs_mount {
            push_mount(
                c,
                w,
                &path,
                VolumeMount {
                    name: VOLUME.to_owned(),
                    mount_path: policy.mount_path.clone(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
            );
        }
        if policy.set_env {
            for var in ENV_VARS {
                if !c.env.iter().flatten().any(|e| e.name == var) {
                    push_env(c, w, &path, var, json!({"name": var, "value": file}));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use crate::mutate::{self, Input};
    use crate::policy::Document;
    use crate::policy::trust_bundle::Containers;

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("unroot.dev/trust-bundle".to_owned(), "enabled".to_owned())])
    }

    fn pod(spec: &Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    fn app(name: &str) -> Value {
        json!({"name": name, "image": "x"})
    }

    fn bundle_mount() -> Value {
        json!({"name": "unroot-trust-bundle", "mountPath": "/etc/ssl/certs", "readOnly": true})
    }

    struct Case {
        name: &'static str,
        spec: Value,
        policy: fn(&mut Document),
        selected: bool,
        /// Pointer → expected value (`null`: absent).
        holds: Vec<(&'static str, Value)>,
        /// Substrings, one per expected warning, in order.
        warnings: &'static [&'static str],
    }

    fn default_policy(_: &mut Document) {}

    #[allow(clippy::too_many_lines)] // one table, one row per rule
    fn cases() -> Vec<Case> {
        let file = json!("/etc/ssl/certs/ca-certificates.crt");
        vec![
            Case {
                name: "every container and init container gets the volume, mount and env",
                spec: json!({"initContainers": [app("init")], "containers": [app("a"), app("b")]}),
                policy: default_policy,
                selected: true,
                holds: vec![
                    (
                        "/spec/volumes",
                        json!([{"name": "unroot-trust-bundle", "configMap": {"name": "trust-bundle", "optional": false, "items": [
                            {"key": "ca-certificates.crt", "path": "ca-certificates.crt"},
                            {"key": "ca-certificates.crt", "path": "ca-bundle.crt"},
                            {"key": "ca-certificates.crt", "path": "cert.pem"}]}}]),
                    ),
                    (
                        "/spec/initContainers/0/volumeMounts",
                        json!([bundle_mount()]),
                    ),
                    ("/spec/containers/0/volumeMounts", json!([bundle_mount()])),
                    ("/spec/containers/1/volumeMounts", json!([bundle_mount()])),
                    (
                        "/spec/containers/1/env/0",
                        json!({"name": "SSL_CERT_FILE", "value": file}),
                    ),
                    (
                        "/spec/initContainers/0/env/3",
                        json!({"name": "CURL_CA_BUNDLE", "value": file}),
                    ),
                ],
                warnings: &[],
            },
            Case {
                name: "unselected namespace gets nothing",
                spec: json!({"containers": [app("a")]}),
                policy: default_policy,
                selected: false,
                holds: vec![
                    ("/spec/volumes", Value::Null),
                    ("/spec/containers/0/env", Value::Null),
                ],
                warnings: &[],
            },
            Case {
                name: "disabled section gets nothing",
                spec: json!({"containers": [app("a")]}),
                policy: |p| p.trust_bundle.enabled = false,
                selected: true,
                holds: vec![("/spec/volumes", Value::Null)],
                warnings: &[],
            },
            Case {
                name: "env vars the container sets are kept, others added after them",
                spec: json!({"containers": [{"name": "a", "image": "x", "env": [
                    {"name": "SSL_CERT_FILE", "value": "/mine.pem"},
                    {"name": "NODE_EXTRA_CA_CERTS", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]}]}),
                policy: default_policy,
                selected: true,
                holds: vec![(
                    "/spec/containers/0/env",
                    json!([
                        {"name": "SSL_CERT_FILE", "value": "/mine.pem"},
                        {"name": "NODE_EXTRA_CA_CERTS", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
                        {"name": "REQUESTS_CA_BUNDLE", "value": file},
                        {"name": "CURL_CA_BUNDLE", "value": file}]),
                )],
                warnings: &[],
            },
            Case {
                name: "setEnv false mounts without env",
                spec: json!({"containers": [app("a")]}),
                policy: |p| p.trust_bundle.set_env = false,
                selected: true,
                holds: vec![
                    ("/spec/containers/0/volumeMounts", json!([bundle_mount()])),
                    ("/spec/containers/0/env", Value::Null),
                ],
                warnings: &[],
            },
            Case {
                name: "a container mounting something else at the path is left alone",
                spec: json!({"volumes": [{"name": "mine", "emptyDir": {}}], "containers": [
                    {"name": "a", "image": "x", "volumeMounts": [{"name": "mine", "mountPath": "/etc/ssl/certs/"}]},
                    app("b")]}),
                policy: default_policy,
                selected: true,
                holds: vec![
                    (
                        "/spec/containers/0/volumeMounts",
                        json!([{"name": "mine", "mountPath": "/etc/ssl/certs/"}]),
                    ),
                    ("/spec/containers/0/env", Value::Null),
                    ("/spec/containers/1/volumeMounts", json!([bundle_mount()])),
                    ("/spec/volumes/1/name", json!("unroot-trust-bundle")),
                ],
                warnings: &[
                    "spec.containers[0].volumeMounts[0] (container \"a\") already mounts volume \"mine\" at /etc/ssl/certs: the trust bundle is not mounted in this container",
                ],
            },
            Case {
                name: "no volume is added when no container can mount it",
                spec: json!({"volumes": [{"name": "mine", "emptyDir": {}}], "containers": [
                    {"name": "a", "image": "x", "volumeMounts": [{"name": "mine", "mountPath": "/etc/ssl/certs"}]}]}),
                policy: default_policy,
                selected: true,
                holds: vec![("/spec/volumes", json!([{"name": "mine", "emptyDir": {}}]))],
                warnings: &["already mounts volume \"mine\""],
            },
            Case {
                name: "a foreign volume with unroot's name leaves the pod alone",
                spec: json!({"volumes": [{"name": "unroot-trust-bundle", "emptyDir": {}}], "containers": [app("a")]}),
                policy: default_policy,
                selected: true,
                holds: vec![("/spec/containers/0/volumeMounts", Value::Null)],
                warnings: &[
                    "spec.volumes[0] is named \"unroot-trust-bundle\" but is not the trust bundle ConfigMap \"trust-bundle\": the trust bundle is not mounted",
                ],
            },
            Case {
                name: "a pod already projecting the bundle ConfigMap is left alone",
                spec: json!({"volumes": [{"name": "ca", "configMap": {"name": "trust-bundle"}}], "containers": [
                    {"name": "a", "image": "x", "volumeMounts": [{"name": "ca", "mountPath": "/certs"}]}]}),
                policy: default_policy,
                selected: true,
                holds: vec![
                    ("/spec/volumes/1", Value::Null),
                    ("/spec/containers/0/volumeMounts/1", Value::Null),
                    ("/spec/containers/0/env", Value::Null),
                ],
                warnings: &[
                    "spec.volumes[0] (\"ca\") already projects the trust bundle ConfigMap \"trust-bundle\": the pod is left as it is",
                ],
            },
            Case {
                name: "the volume as the API server defaults it is recognised as unroot's",
                spec: json!({"volumes": [{"name": "unroot-trust-bundle", "configMap": {"name": "trust-bundle", "defaultMode": 420}}],
                    "containers": [app("a")]}),
                policy: default_policy,
                selected: true,
                holds: vec![
                    ("/spec/volumes/1", Value::Null),
                    ("/spec/containers/0/volumeMounts", json!([bundle_mount()])),
                ],
                warnings: &[],
            },
            Case {
                name: "a list of names selects only those containers",
                spec: json!({"initContainers": [app("init")], "containers": [app("model"), app("sidecar")]}),
                policy: |p| p.trust_bundle.containers = Containers::Names(vec!["model".to_owned()]),
                selected: true,
                holds: vec![
                    ("/spec/initContainers/0/volumeMounts", Value::Null),
                    ("/spec/containers/0/volumeMounts", json!([bundle_mount()])),
                    ("/spec/containers/1/volumeMounts", Value::Null),
                    ("/spec/containers/1/env", Value::Null),
                ],
                warnings: &[],
            },
            Case {
                name: "custom mount path, key and file names",
                spec: json!({"containers": [app("a")]}),
                policy: |p| {
                    p.trust_bundle.mount_path = "/certs".to_owned();
                    p.trust_bundle.key = "bundle.pem".to_owned();
                    p.trust_bundle.file_names = vec!["ca.pem".to_owned()];
                },
                selected: true,
                holds: vec![
                    (
                        "/spec/volumes/0/configMap/items",
                        json!([{"key": "bundle.pem", "path": "ca.pem"}]),
                    ),
                    (
                        "/spec/containers/0/volumeMounts/0/mountPath",
                        json!("/certs"),
                    ),
                    ("/spec/containers/0/env/0/value", json!("/certs/ca.pem")),
                ],
                warnings: &[],
            },
            Case {
                name: "windows pods are skipped",
                spec: json!({"os": {"name": "windows"}, "containers": [app("a")]}),
                policy: default_policy,
                selected: true,
                holds: vec![
                    ("/spec/volumes", Value::Null),
                    ("/spec/containers/0/volumeMounts", Value::Null),
                ],
                warnings: &[],
            },
        ]
    }

    #[test]
    fn trust_bundle_rules() {
        for case in cases() {
            let mut policy = Document::embedded();
            (case.policy)(&mut policy);
            let selected = labels();
            let none = BTreeMap::new();
            let input = Input {
                policy: &policy,
                namespace_labels: if case.selected { &selected } else { &none },
                requester: "",
            };
            let object = pod(&case.spec);
            let outcome = mutate::Checked::object(&object)
                .and_then(|pod| mutate::pod(pod, &input))
                .and_then(|planned| planned.apply_to(&object))
                .unwrap();
            let mut applied = object.clone();
            json_patch::patch(&mut applied, &outcome.patch).unwrap();
            assert_eq!(applied, outcome.object, "{}", case.name);
            for (pointer, want) in &case.holds {
                let got = outcome
                    .object
                    .pointer(pointer)
                    .cloned()
                    .unwrap_or(Value::Null);
                assert_eq!(
                    &got, want,
                    "{}: {pointer} in {:#}",
                    case.name, outcome.object
                );
            }
            let ours: Vec<&String> = outcome
                .warnings
                .iter()
                .filter(|w| w.contains("trust") || w.contains("bundle"))
                .collect();
            assert_eq!(ours.len(), case.warnings.len(), "{}: {ours:#?}", case.name);
            for (got, want) in ours.iter().zip(case.warnings) {
                assert!(got.contains(want), "{}: {got:?} lacks {want:?}", case.name);
            }
            let again = mutate::Checked::object(&outcome.object)
                .and_then(|pod| mutate::pod(pod, &input))
                .and_then(|planned| planned.apply_to(&outcome.object))
                .unwrap();
            assert!(
                again.patch.0.is_empty(),
                "{}: re-mutation patched {:?}",
                case.name,
                again.patch
            );
        }
    }
}
