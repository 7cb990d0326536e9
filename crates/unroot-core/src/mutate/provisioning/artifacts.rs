//! What provisioning injects for an identity: the provisioning init
//! container, the identity ConfigMap with its passwd and group files, and
//! the volume and mounts that carry them into the pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value, json};

use super::claim::Identity;
use super::{IDENTITY_VOLUME, USER_ANNOTATION};
use crate::policy::provisioning::Provisioning;

/// The init container the policy injects for `identity`; `None` when the
/// policy has no init container or home volume.
#[must_use]
pub fn injected_container(identity: &Identity, policy: &Provisioning) -> Option<Value> {
    let (init, home) = (
        policy.init_container.as_ref()?,
        policy.home_volume.as_ref()?,
    );
    let mut c = Map::new();
    c.insert("name".to_owned(), json!(init.name));
    c.insert("image".to_owned(), json!(init.image));
    if !init.command.is_empty() {
        c.insert("command".to_owned(), json!(init.command));
    }
    if !init.args.is_empty() {
        c.insert("args".to_owned(), json!(init.args));
    }
    let env: Vec<Value> = [
        ("UNROOT_USER", identity.user.clone()),
        ("UNROOT_UID", identity.uid.to_string()),
        ("UNROOT_GID", identity.gid.to_string()),
        ("UNROOT_GROUPS", identity.groups_value()),
        ("UNROOT_HOME", identity.home.clone()),
    ]
    .into_iter()
    // The API server drops an empty `value` (omitempty); so do we, or the
    // stored container would no longer equal the injected one.
    .map(|(name, value)| {
        if value.is_empty() {
            json!({"name": name})
        } else {
            json!({"name": name, "value": value})
        }
    })
    .collect();
    c.insert("env".to_owned(), Value::Array(env));
    if let Some(resources) = &init.resources {
        c.insert(
            "resources".to_owned(),
            serde_json::to_value(resources).ok()?,
        );
    }
    let mut capabilities = Map::new();
    capabilities.insert("drop".to_owned(), json!(["ALL"]));
    if !policy.capabilities.is_empty() {
        capabilities.insert("add".to_owned(), json!(policy.capabilities));
    }
    // Root on purpose, and only here: chown needs uid 0 (with CHOWN). The pod
    // keeps runAsNonRoot: true for every other container; this container
    // says runAsNonRoot: false itself, because the kubelet refuses to start a
    // uid-0 container under an inherited runAsNonRoot: true. Leaving the
    // pod-level field unset instead would weaken every user container.
    c.insert(
        "securityContext".to_owned(),
        json!({
            "runAsUser": 0,
            "runAsNonRoot": false,
            "allowPrivilegeEscalation": false,
            "capabilities": capabilities,
            "seccompProfile": {"type": "RuntimeDefault"},
        }),
    );
    c.insert(
        "volumeMounts".to_owned(),
        json!([{"name": home.name, "mountPath": home.mount_path}]),
    );
    Some(Value::Object(c))
}

/// The `unroot-identity-<user>` ConfigMap for `identity` in `namespace`.
#[must_use]
pub fn identity_config_map(
    identity: &Identity,
    policy: &Provisioning,
    namespace: Option<&str>,
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(identity.config_map_name()),
            namespace: namespace.map(str::to_owned),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    "unroot".to_owned(),
                ),
                (USER_ANNOTATION.to_owned(), identity.user.clone()),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            ("passwd".to_owned(), identity.passwd(policy)),
            ("group".to_owned(), identity.group(policy)),
        ])),
        ..ConfigMap::default()
    }
}

/// The volume holding the identity's passwd and group files.
pub(super) fn identity_volume(identity: &Identity) -> Value {
    json!({
        "name": IDENTITY_VOLUME,
        "configMap": {
            "name": identity.config_map_name(),
            "items": [{"key": "passwd", "path": "passwd"}, {"key": "group", "path": "group"}],
        },
    })
}

pub(super) fn identity_mount(path: &str, file: &str) -> VolumeMount {
    VolumeMount {
        name: IDENTITY_VOLUME.to_owned(),
        mount_path: path.to_owned(),
        sub_path: Some(file.to_owned()),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

pub(super) const IDENTITY_FILES: [(&str, &str); 2] =
    [("/etc/passwd", "passwd"), ("/etc/group", "group")];
