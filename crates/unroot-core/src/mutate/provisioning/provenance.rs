//! Provenance for `/validate`: what a pod's identity claim is worth once
//! stored, and which init container is exactly the one the policy injects
//! (every field compared, as the API server stores it), so Pod Security
//! exempts that container and only that one.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::artifacts::injected_container;
use super::claim::{Identity, Requester, identity_of};
use super::{IDENTITY_ANNOTATIONS, USER_ANNOTATION};
use crate::mutate::Input;
use crate::view;

/// Where the ServiceAccount admission plugin mounts the pod's token.
const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Resources a LimitRange may add to, or change in, any container: the
/// stored init container may differ from the injected one in these alone.
/// Any other resource (a GPU, a device plugin's resource) is a difference.
const LIMIT_RANGE_RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// Whether `container` is exactly `expected` (what [`injected_container`]
/// builds now) as the API server stores it, every field compared: its
/// defaults for what unroot leaves unset, the ServiceAccount admission
/// plugin's token mount of the pod's own token volume (in `volumes`), and a
/// LimitRange's cpu, memory and ephemeral-storage aside. Anything else a
/// later webhook or the spawner adds (a port, a probe, a lifecycle hook,
/// `envFrom`, `restartPolicy`, another mount, a mount over the token path)
/// is a difference.
#[must_use]
pub fn is_injected(container: &Value, expected: &Value, volumes: &[Value]) -> bool {
    // Defaults fill what is absent in either: a container seen before the
    // API server defaulted it (a re-mutation) is the same container.
    let mut actual = as_stored(container.clone());
    let mut expected = as_stored(expected.clone());
    if let Some(mounts) = actual.get_mut("volumeMounts").and_then(Value::as_array_mut)
        && mounts
            .last()
            .is_some_and(|m| is_service_account_mount(m, volumes))
    {
        mounts.pop();
    }
    let (Some(actual_fields), Some(expected_fields)) =
        (actual.as_object_mut(), expected.as_object_mut())
    else {
        return false;
    };
    let actual_resources = actual_fields.remove("resources");
    let expected_resources = expected_fields.remove("resources");
    if !same_resources(actual_resources.as_ref(), expected_resources.as_ref()) {
        return false;
    }
    normalized(actual) == normalized(expected)
}

/// `expected` with the API server's defaults for a container filled in
/// (`SetDefaults_Container`): the termination message path and policy, and
/// the pull policy from the image reference.
fn as_stored(mut expected: Value) -> Value {
    if let Some(fields) = expected.as_object_mut() {
        let pull = match fields.get("image").and_then(Value::as_str) {
            Some(image) if image_tag(image) == "latest" => "Always",
            _ => "IfNotPresent",
        };
        for (key, value) in [
            ("terminationMessagePath", "/dev/termination-log"),
            ("terminationMessagePolicy", "File"),
            ("imagePullPolicy", pull),
        ] {
            fields
                .entry(key.to_owned())
                .or_insert_with(|| Value::String(value.to_owned()));
        }
    }
    expected
}

/// The tag of an image reference as the API server reads it: `latest` when
/// it names neither a tag nor a digest, empty for a digest alone.
fn image_tag(image: &str) -> &str {
    let (name, digest) = image.split_once('@').unwrap_or((image, ""));
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag,
        None if digest.is_empty() => "latest",
        None => "",
    }
}

/// The token mount the ServiceAccount admission plugin adds to every
/// container: read-only at the token path, of a volume that holds the pod's
/// service-account token (a projected `serviceAccountToken` with the
/// cluster CA and namespace, or a `*-token-*` Secret before 1.21), and
/// nothing else.
fn is_service_account_mount(mount: &Value, volumes: &[Value]) -> bool {
    let Some(mount) = mount.as_object() else {
        return false;
    };
    let plain = mount
        .keys()
        .all(|k| ["name", "mountPath", "readOnly"].contains(&k.as_str()));
    let name = mount.get("name").and_then(Value::as_str);
    plain
        && mount.get("mountPath").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_MOUNT)
        && mount.get("readOnly") == Some(&Value::Bool(true))
        && volumes
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == name)
            .is_some_and(is_service_account_volume)
}

fn is_service_account_volume(volume: &Value) -> bool {
    let sources: Vec<&str> = volume
        .as_object()
        .map(|v| {
            v.keys()
                .map(String::as_str)
                .filter(|k| *k != "name")
                .collect()
        })
        .unwrap_or_default();
    match sources.as_slice() {
        ["projected"] => {
            let Some(parts) = volume
                .pointer("/projected/sources")
                .and_then(Value::as_array)
            else {
                return false;
            };
            let token = parts.iter().any(|p| p.get("serviceAccountToken").is_some());
            let only_token_parts = parts.iter().all(|p| {
                p.get("serviceAccountToken").is_some()
                    || p.pointer("/configMap/name").and_then(Value::as_str)
                        == Some("kube-root-ca.crt")
                    || p.pointer("/downwardAPI/items")
                        .and_then(Value::as_array)
                        .is_some_and(|items| {
                            items.iter().all(|i| {
                                i.pointer("/fieldRef/fieldPath").and_then(Value::as_str)
                                    == Some("metadata.namespace")
                            })
                        })
            });
            token && only_token_parts
        }
        ["secret"] => {
            let secret = volume.pointer("/secret/secretName").and_then(Value::as_str);
            secret.is_some_and(|s| s.contains("-token-"))
                && secret == volume.get("name").and_then(Value::as_str)
        }
        _ => false,
    }
}

/// Whether two containers' `resources` are the same but for what a
/// LimitRange sets: cpu, memory and ephemeral-storage may be added or
/// changed (a LimitRange defaults them, the API server copies limits to
/// requests, and quantities are re-spelt); no other resource may appear,
/// change or go.
fn same_resources(actual: Option<&Value>, expected: Option<&Value>) -> bool {
    let other = |resources: Option<&Value>, part: &str| -> BTreeMap<String, Value> {
        resources
            .and_then(|r| r.get(part))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !LIMIT_RANGE_RESOURCES.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let parts_known = |resources: Option<&Value>| {
        resources
            .and_then(Value::as_object)
            .is_none_or(|r| r.keys().all(|k| k == "requests" || k == "limits"))
    };
    parts_known(actual)
        && parts_known(expected)
        && ["requests", "limits"]
            .iter()
            .all(|part| other(actual, part) == other(expected, part))
}

/// `value` without what the API server does not store: null, empty strings,
/// lists and objects (absent and empty are the same once the pod is stored).
fn normalized(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, normalized(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalized).collect()),
        other => other,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// What a pod's identity claim is worth: the identity it holds, if the
/// claim is vouched for (a trusted requester at creation, the stored pod
/// afterwards: see [`Requester`]), and the index in `spec.initContainers`
/// of the init container that is exactly the one the policy injects for it
/// (every field: see [`is_injected`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vouched {
    /// The vouched identity; `None` when the pod claims none, or its claim
    /// breaks a rule.
    pub identity: Option<Identity>,
    /// The provisioning init container, exempt from evaluation by
    /// provenance: a tag instead of the digest, an extra capability or a
    /// look-alike with the same name is `None`.
    pub init: Option<usize>,
}

/// Reads what a pod's identity claim is worth (see [`Vouched`]).
#[must_use]
pub fn vouch(pod: &view::Pod<'_>, input: &Input<'_>, requester: Requester) -> Vouched {
    // Runs for every pod /validate sees: most claim no identity.
    if pod.annotation(USER_ANNOTATION).is_none() || pod.is_windows() {
        return Vouched::default();
    }
    let annotations = serde_json::to_value(&pod.metadata.annotations).ok();
    let Ok(Some(identity)) = identity_of(annotations.as_ref(), input, requester) else {
        return Vouched::default();
    };
    let volumes = pod
        .spec
        .volumes
        .as_ref()
        .and_then(|v| serde_json::to_value(v).ok());
    let volumes = volumes
        .as_ref()
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let init = injected_container(&identity, &input.policy.provisioning).and_then(|expected| {
        pod.spec.init_containers.iter().flatten().position(|c| {
            c.whole
                .as_deref()
                .is_some_and(|c| is_injected(c, &expected, volumes))
        })
    });
    Vouched {
        identity: Some(identity),
        init,
    }
}

/// The index in `spec.initContainers` of the init container that is exactly
/// the one the policy injects for this pod's identity (every field: see
/// [`is_injected`]), if any. Pod Security evaluation exempts that container,
/// and only that one.
///
/// `None` when the pod claims no identity, the claim breaks a rule (at
/// creation the requester is part of it: see [`Requester`]), or no init
/// container matches: a tag instead of the digest, an extra capability or a
/// look-alike with the same name are evaluated like any other container.
#[must_use]
pub fn provenance_index(pod: &Pod, input: &Input<'_>, requester: Requester) -> Option<usize> {
    vouch(&view::Pod::from(pod), input, requester).init
}

/// The identity annotations an UPDATE adds, changes or removes, in their
/// canonical order. Identity annotations are immutable after creation: that
/// is what lets the stored pod vouch for its provisioning init container.
#[must_use]
pub fn identity_annotations_changed(
    old: Option<&BTreeMap<String, String>>,
    new: Option<&BTreeMap<String, String>>,
) -> Vec<&'static str> {
    let get = |m: Option<&BTreeMap<String, String>>, k: &str| m.and_then(|m| m.get(k)).cloned();
    IDENTITY_ANNOTATIONS
        .iter()
        .copied()
        .filter(|k| get(old, k) != get(new, k))
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};

    use super::super::testing::*;
    use super::super::{Requester, provenance_index};
    use crate::mutate::Input;

    type Edit = fn(&mut Value);

    #[test]
    #[allow(clippy::too_many_lines)] // one table, one row per difference
    fn provenance_is_exact_not_by_name() {
        let mutated = admit(&spawned(&identity(), &notebook())).object;
        let cases: Vec<(&str, Edit, &str, Option<usize>)> = vec![
            ("the injected container", |_| {}, HUB, Some(0)),
            (
                "after the API server's defaults and a LimitRange",
                |p| {
                    let c = &mut p["spec"]["initContainers"][0];
                    c["imagePullPolicy"] = json!("IfNotPresent");
                    c["terminationMessagePath"] = json!("/dev/termination-log");
                    c["terminationMessagePolicy"] = json!("File");
                    c["resources"] = json!({"limits": {"memory": "64Mi"}});
                },
                HUB,
                Some(0),
            ),
            (
                "another init container put first",
                |p| {
                    p["spec"]["initContainers"]
                        .as_array_mut()
                        .unwrap()
                        .insert(0, json!({"name": "first", "image": "x"}));
                },
                HUB,
                Some(1),
            ),
            (
                "a tag instead of the digest",
                |p| {
                    p["spec"]["initContainers"][0]["image"] =
                        json!("registry.example.com/unroot/provisioner:1.0");
                },
                HUB,
                None,
            ),
            (
                "an extra capability",
                |p| {
                    p["spec"]["initContainers"][0]["securityContext"]["capabilities"]["add"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!("SYS_ADMIN"));
                },
                HUB,
                None,
            ),
            (
                "privilege escalation",
                |p| {
                    p["spec"]["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"] =
                        json!(true);
                },
                HUB,
                None,
            ),
            (
                "another command",
                |p| {
                    p["spec"]["initContainers"][0]["command"] =
                        json!(["/bin/sh", "-c", "chown -R 0 /home"]);
                },
                HUB,
                None,
            ),
            (
                "an extra mount",
                |p| {
                    p["spec"]["initContainers"][0]["volumeMounts"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "unroot-identity", "mountPath": "/x"}));
                },
                HUB,
                None,
            ),
            (
                "another user's env",
                |p| p["spec"]["initContainers"][0]["env"][1]["value"] = json!("1002"),
                HUB,
                None,
            ),
            (
                "a user-added container with the same name",
                |p| p["spec"]["initContainers"][0] = json!({"name": "unroot-provision", "image": "busybox", "securityContext": {"runAsUser": 0}}),
                HUB,
                None,
            ),
            (
                "a forged identity (untrusted requester)",
                |_| {},
                "alice",
                None,
            ),
            (
                "identity annotations removed",
                |p| p["metadata"]["annotations"] = json!({}),
                HUB,
                None,
            ),
        ];
        let policy = policy();
        let labels = selected();
        for (name, edit, requester, want) in cases {
            let mut value = mutated.clone();
            edit(&mut value);
            let pod: Pod = serde_json::from_value(value).unwrap();
            let input = Input {
                policy: &policy,
                namespace_labels: &labels,
                requester,
            };
            assert_eq!(
                provenance_index(&pod, &input, Requester::MustBeTrusted),
                want,
                "{name}"
            );
            // After creation the stored pod vouches: the requester no longer
            // matters, everything else still does.
            let stored = if name == "a forged identity (untrusted requester)" {
                Some(0)
            } else {
                want
            };
            assert_eq!(
                provenance_index(&pod, &input, Requester::StoredPod),
                stored,
                "{name} (stored pod)"
            );
        }
    }
}
