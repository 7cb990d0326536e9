//! Reading and adding the volumes, volume mounts and environment variables
//! of a pod spec, as the trust-bundle and provisioning mutations need them.

use serde_json::{Value, json};

use super::patch::{Builder, Seg};

/// `base` extended by object keys.
pub(crate) fn with<'p>(base: &[Seg<'p>], rest: &[&'p str]) -> Vec<Seg<'p>> {
    let mut p = base.to_vec();
    p.extend(rest.iter().map(|k| Seg::Key(k)));
    p
}

/// Whether two mount paths name the same directory (`/a/` is `/a`).
pub(crate) fn same_path(a: &str, b: &str) -> bool {
    let trim = |s: &str| {
        let t = s.trim_end_matches('/');
        if t.is_empty() { "/" } else { t }.to_owned()
    };
    trim(a) == trim(b)
}

/// The volume mount of the container at `container` whose `mountPath` is
/// `path`: its index and value.
pub(crate) fn mount_at(b: &Builder, container: &[Seg<'_>], path: &str) -> Option<(usize, Value)> {
    let Some(Value::Array(mounts)) = b.get(&with(container, &["volumeMounts"])) else {
        return None;
    };
    mounts.iter().enumerate().find_map(|(i, m)| {
        m.get("mountPath")
            .and_then(Value::as_str)
            .filter(|p| same_path(p, path))
            .map(|_| (i, m.clone()))
    })
}

/// The `name` of a JSON object, or empty.
pub(crate) fn name_of(value: &Value) -> &str {
    value
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The volumes of the pod spec at `spec`, with their indexes.
pub(crate) fn volumes(b: &Builder, spec: &[Seg<'_>]) -> Vec<(usize, Value)> {
    match b.get(&with(spec, &["volumes"])) {
        Some(Value::Array(items)) => items.iter().cloned().enumerate().collect(),
        _ => Vec::new(),
    }
}

/// The name of the ConfigMap a volume projects, if it is a ConfigMap volume.
pub(crate) fn config_map_of(volume: &Value) -> Option<&str> {
    volume
        .get("configMap")
        .and_then(|c| c.get("name"))
        .and_then(Value::as_str)
}

/// Whether the container at `container` sets the environment variable `name`.
pub(crate) fn has_env(b: &Builder, container: &[Seg<'_>], name: &str) -> bool {
    matches!(
        b.get(&with(container, &["env"])),
        Some(Value::Array(vars)) if vars.iter().any(|v| name_of(v) == name)
    )
}

/// Sets the environment variable `name` in the container at `container`
/// unless it sets it already.
pub(crate) fn ensure_env(b: &mut Builder, container: &[Seg<'_>], name: &str, value: &str) {
    if !has_env(b, container, name) {
        b.push(
            &with(container, &["env"]),
            json!({"name": name, "value": value}),
        );
    }
}
