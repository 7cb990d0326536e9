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

use serde_json::{Value, json};

use super::mounts::{config_map_of, ensure_env, mount_at, name_of, with};
use super::patch::{Builder, Seg};
use super::security_context::containers;
use crate::policy::TrustBundle;

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

/// Adds the trust bundle to the pod spec at `spec`. `skip` is the path of
/// the provisioning init container, which is never touched.
pub(crate) fn add_trust_bundle(
    b: &mut Builder,
    spec: &[Seg<'_>],
    display: &str,
    policy: &TrustBundle,
    skip: Option<&[Seg<'_>]>,
    warnings: &mut Vec<String>,
) {
    let mut ours = false;
    let present: &[Value] = match b.get(&with(spec, &["volumes"])) {
        Some(Value::Array(items)) => items,
        _ => &[],
    };
    for (i, v) in present.iter().enumerate() {
        let name = name_of(v);
        let source = config_map_of(v);
        if name == VOLUME && source == Some(policy.config_map.as_str()) {
            ours = true;
        } else if name == VOLUME {
            warnings.push(format!(
                "unroot: {display}spec.volumes[{i}] is named {VOLUME:?} but is not the trust bundle ConfigMap {:?}: the trust bundle is not mounted",
                policy.config_map
            ));
            return;
        } else if source == Some(policy.config_map.as_str()) {
            warnings.push(format!(
                "unroot: {display}spec.volumes[{i}] ({name:?}) already projects the trust bundle ConfigMap {:?}: the pod is left as it is",
                policy.config_map
            ));
            return;
        }
    }

    let mut plan = Vec::new();
    let prefix = format!("{display}spec.");
    for c in containers(b, spec, &prefix, &["initContainers", "containers"]) {
        if Some(c.path.as_slice()) == skip || !policy.containers.selects(&c.name) {
            continue;
        }
        match mount_at(b, &c.path, &policy.mount_path) {
            Some((_, m)) if name_of(&m) == VOLUME => plan.push((c, false)),
            Some((j, m)) => warnings.push(format!(
                "unroot: {}.volumeMounts[{j}] (container {:?}) already mounts volume {:?} at {}: the trust bundle is not mounted in this container",
                c.display,
                c.name,
                name_of(&m),
                policy.mount_path
            )),
            None => plan.push((c, true)),
        }
    }
    if plan.is_empty() {
        return;
    }
    if !ours {
        b.push(&with(spec, &["volumes"]), volume(policy));
    }
    let file = format!(
        "{}/{}",
        policy.mount_path,
        policy.file_names.first().map_or("", String::as_str)
    );
    for (c, needs_mount) in plan {
        if needs_mount {
            b.push(
                &with(&c.path, &["volumeMounts"]),
                json!({"name": VOLUME, "mountPath": policy.mount_path, "readOnly": true}),
            );
        }
        if policy.set_env {
            for var in ENV_VARS {
                ensure_env(b, &c.path, var, &file);
            }
        }
    }
}
