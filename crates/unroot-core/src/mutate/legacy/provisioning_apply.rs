//! The provisioning mutation over a `Value` tree (reference only).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::mounts::{config_map_of, mount_at, name_of, volumes, with};
use super::patch::{Builder, Seg};
use super::security_context::{CONTAINER_LISTS, ContainerRef, containers};
use crate::mutate::provisioning::{
    Denial, GID_ANNOTATION, GROUPS_ANNOTATION, IDENTITY_VOLUME, Identity, Rule, UID_ANNOTATION,
    injected_container, is_injected,
};
use crate::policy::provisioning::Provisioning;

fn identity_volume(identity: &Identity) -> Value {
    json!({
        "name": IDENTITY_VOLUME,
        "configMap": {
            "name": identity.config_map_name(),
            "items": [{"key": "passwd", "path": "passwd"}, {"key": "group", "path": "group"}],
        },
    })
}

fn identity_mount(path: &str, file: &str) -> Value {
    json!({"name": IDENTITY_VOLUME, "mountPath": path, "subPath": file, "readOnly": true})
}

const IDENTITY_FILES: [(&str, &str); 2] = [("/etc/passwd", "passwd"), ("/etc/group", "group")];

fn list_of(c: &ContainerRef<'_>) -> Option<&'static str> {
    match c.path.get(c.path.len().checked_sub(2)?) {
        Some(Seg::Key("initContainers")) => Some("initContainers"),
        Some(Seg::Key("containers")) => Some("containers"),
        _ => None,
    }
}

fn conflict(field: &str, got: &Value, want: i64, annotation: &str) -> Denial {
    Denial::new(
        Rule::Conflict,
        format!(
            "{field}: {got} conflicts with the identity ({annotation}: {want}); remove it or set it to {want}"
        ),
    )
}

/// Applies `identity` to the pod spec at `spec`; returns the index of the
/// provisioning init container in `initContainers`.
pub(super) fn provision(
    b: &mut Builder,
    spec: &[Seg<'_>],
    display: &str,
    identity: &Identity,
    policy: &Provisioning,
    warnings: &mut Vec<String>,
) -> Result<usize, Vec<Denial>> {
    let (Some(expected), Some(_), Some(home)) = (
        injected_container(identity, policy),
        policy.init_container.as_ref(),
        policy.home_volume.as_ref(),
    ) else {
        return Err(vec![Denial::new(
            Rule::Disabled,
            "identity provisioning is disabled (the policy has no provisioning.initContainer or provisioning.homeVolume)",
        )]);
    };
    let prefix = format!("{display}spec.");
    let (existing, has_identity_volume) =
        check_conflicts(b, spec, &prefix, identity, policy, &expected)?;

    // Insert before any other operation: the operations below then address
    // the containers at their shifted indexes.
    let init_list = with(spec, &["initContainers"]);
    let index = if let Some(i) = existing {
        i
    } else {
        b.insert(&init_list, 0, expected);
        0
    };
    let psc = with(spec, &["securityContext"]);
    for (field, value) in [("runAsUser", identity.uid), ("runAsGroup", identity.gid)] {
        b.ensure(&with(&psc, &[field]), json!(value));
    }
    if policy.set_fs_group {
        // The kubelet re-owns every volume that supports ownership
        // management to fsGroup when the pod starts; on a shared home volume
        // that is every user's files, on every start. OnRootMismatch skips
        // the walk when the volume's root already has the right owner.
        let fs_group = with(&psc, &["fsGroup"]);
        if b.get(&fs_group).is_none() {
            b.ensure(&fs_group, json!(identity.gid));
            b.ensure(
                &with(&psc, &["fsGroupChangePolicy"]),
                json!("OnRootMismatch"),
            );
        }
    }
    let gids: Vec<i64> = identity.groups.iter().map(|(_, g)| *g).collect();
    if !gids.is_empty() {
        b.ensure(&with(&psc, &["supplementalGroups"]), json!(gids));
    }
    if !has_identity_volume {
        b.push(&with(spec, &["volumes"]), identity_volume(identity));
    }
    if !volumes(b, spec)
        .iter()
        .any(|(_, v)| name_of(v) == home.name)
    {
        b.push(&with(spec, &["volumes"]), home.volume());
    }
    let mut skip = init_list.clone();
    skip.push(Seg::Index(index));
    for c in containers(b, spec, &prefix, &["initContainers", "containers"]) {
        if c.path == skip {
            continue;
        }
        for (path, file) in IDENTITY_FILES {
            if mount_at(b, &c.path, path).is_none() {
                b.push(
                    &with(&c.path, &["volumeMounts"]),
                    identity_mount(path, file),
                );
            }
        }
        if list_of(&c) != Some("containers") {
            continue;
        }
        match mount_at(b, &c.path, &home.mount_path) {
            None => b.push(
                &with(&c.path, &["volumeMounts"]),
                json!({"name": home.name, "mountPath": home.mount_path}),
            ),
            Some((_, m)) if name_of(&m) == home.name => {}
            Some((j, m)) => warnings.push(format!(
                "unroot: {}.volumeMounts[{j}] (container {:?}) mounts volume {:?} at {}: the home volume {:?} is not mounted in this container",
                c.display,
                c.name,
                name_of(&m),
                home.mount_path,
                home.name
            )),
        }
    }
    Ok(index)
}

/// A container's own ids and its mounts at /etc/passwd and /etc/group must
/// agree with the identity.
fn check_container(
    b: &Builder,
    c: &ContainerRef<'_>,
    identity: &Identity,
    denials: &mut Vec<Denial>,
) {
    for (field, want, annotation) in [
        ("runAsUser", identity.uid, UID_ANNOTATION),
        ("runAsGroup", identity.gid, GID_ANNOTATION),
    ] {
        if let Some(v) = b.get(&with(&c.path, &["securityContext", field]))
            && v != &json!(want)
        {
            let at = format!(
                "{}.securityContext.{field} (container {:?})",
                c.display, c.name
            );
            denials.push(conflict(&at, v, want, annotation));
        }
    }
    for (path, file) in IDENTITY_FILES {
        if let Some((j, m)) = mount_at(b, &c.path, path)
            && !(name_of(&m) == IDENTITY_VOLUME && m.get("subPath") == Some(&json!(file)))
        {
            denials.push(Denial::new(
                Rule::Conflict,
                format!(
                    "{}.volumeMounts[{j}] (container {:?}) mounts volume {:?} at {path}, where unroot mounts the identity's {file} file; remove that mount",
                    c.display,
                    c.name,
                    name_of(&m)
                ),
            ));
        }
    }
}

/// Everything in the pod that contradicts `identity`, as denials; else the
/// index of an already injected init container (re-mutation) and whether
/// the identity volume is already there.
fn check_conflicts(
    b: &Builder,
    spec: &[Seg<'_>],
    prefix: &str,
    identity: &Identity,
    policy: &Provisioning,
    expected: &Value,
) -> Result<(Option<usize>, bool), Vec<Denial>> {
    let reserved = policy
        .init_container
        .as_ref()
        .map_or("", |init| init.name.as_str());
    let mut denials = Vec::new();
    let mut existing = None;
    let pod_volumes = b
        .get(&with(spec, &["volumes"]))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for c in containers(b, spec, prefix, &CONTAINER_LISTS) {
        if c.name == reserved {
            let exact = b
                .get(&c.path)
                .is_some_and(|v| is_injected(v, expected, pod_volumes));
            if exact && existing.is_none() && list_of(&c) == Some("initContainers") {
                existing = c.path.last().and_then(|s| match s {
                    Seg::Index(i) => Some(*i),
                    Seg::Key(_) => None,
                });
                continue;
            }
            denials.push(Denial::new(
                Rule::Conflict,
                format!(
                    "{}: the name {:?} is reserved for the provisioning init container, and this container is not exactly the one the policy injects (every field must match); rename it",
                    c.display, c.name
                ),
            ));
            continue;
        }
        check_container(b, &c, identity, &mut denials);
    }
    let psc = with(spec, &["securityContext"]);
    for (field, want, annotation) in [
        ("runAsUser", identity.uid, UID_ANNOTATION),
        ("runAsGroup", identity.gid, GID_ANNOTATION),
        ("fsGroup", identity.gid, GID_ANNOTATION),
    ] {
        if field == "fsGroup" && !policy.set_fs_group {
            continue;
        }
        if let Some(v) = b.get(&with(&psc, &[field]))
            && v != &json!(want)
        {
            denials.push(conflict(
                &format!("{prefix}securityContext.{field}"),
                v,
                want,
                annotation,
            ));
        }
    }
    let gids: Vec<i64> = identity.groups.iter().map(|(_, g)| *g).collect();
    if let Some(v) = b.get(&with(&psc, &["supplementalGroups"])) {
        let got: Option<BTreeSet<i64>> = v
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect());
        if got != Some(gids.iter().copied().collect()) {
            denials.push(Denial::new(
                Rule::Conflict,
                format!(
                    "{prefix}securityContext.supplementalGroups: {v} differs from the identity's groups {gids:?} ({GROUPS_ANNOTATION}); remove it"
                ),
            ));
        }
    }
    let wanted_volume = identity_volume(identity);
    let mut has_identity_volume = false;
    for (i, v) in volumes(b, spec) {
        if name_of(&v) != IDENTITY_VOLUME {
            continue;
        }
        if config_map_of(&v) == Some(identity.config_map_name().as_str())
            && v["configMap"]["items"] == wanted_volume["configMap"]["items"]
        {
            has_identity_volume = true;
        } else {
            denials.push(Denial::new(
                Rule::Conflict,
                format!(
                    "{prefix}volumes[{i}] is named {IDENTITY_VOLUME:?}, which is reserved for the identity's passwd and group files; rename it"
                ),
            ));
        }
    }
    if denials.is_empty() {
        Ok((existing, has_identity_volume))
    } else {
        Err(denials)
    }
}
