//! Applying an honoured identity to the pod: the pod-level ids, the
//! identity and home mounts in every container, the provisioning init
//! container first; an explicit value that differs from the identity is a
//! conflict, denied rather than overwritten.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{PodSecurityContext, VolumeMount};
use serde::Deserialize as _;
use serde_json::{Value, json};

use super::artifacts::{IDENTITY_FILES, identity_mount, identity_volume, injected_container};
use super::claim::{Denial, Identity, Rule};
use super::provenance::is_injected;
use super::{GID_ANNOTATION, GROUPS_ANNOTATION, IDENTITY_VOLUME, UID_ANNOTATION};
use crate::mutate::harden::{CONTAINER_LISTS, container_list, container_list_mut, places};
use crate::mutate::mounts::{mount_at, push_mount, push_volume};
use crate::mutate::writer::{Seg, Writer, at};
use crate::policy::provisioning::{HomeVolume, Provisioning};
use crate::view;

fn conflict(field: &str, got: &Value, want: i64, annotation: &str) -> Denial {
    Denial::new(
        Rule::Conflict,
        format!(
            "{field}: {got} conflicts with the identity ({annotation}: {want}); remove it or set it to {want}"
        ),
    )
}

/// Applies `identity` to `pod`, whose spec is at `spec` in the document;
/// returns the index of the provisioning init container in
/// `initContainers`.
pub(crate) fn provision(
    pod: &mut view::Pod<'_>,
    w: &mut Writer,
    spec: &[Seg],
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
        check_conflicts(pod, &prefix, identity, policy, &expected)?;
    // Insert before any other operation: the operations below then address
    // the containers at their shifted indexes.
    let index = existing.unwrap_or_else(|| insert_init_container(pod, w, spec, expected));
    set_identity_ids(pod, w, spec, identity, policy);
    if !has_identity_volume {
        push_volume(pod, w, spec, identity_volume(identity));
    }
    if !pod
        .spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == home.name)
    {
        push_volume(pod, w, spec, home.volume());
    }
    let ctx = MountContext {
        spec,
        prefix: &prefix,
        skip: index,
        home,
    };
    mount_identity(pod, w, &ctx, warnings);
    Ok(index)
}

/// Puts the injected init container first; returns its index, 0.
fn insert_init_container(
    pod: &mut view::Pod<'_>,
    w: &mut Writer,
    spec: &[Seg],
    expected: Value,
) -> usize {
    let mut path = at(spec, &["initContainers"]);
    path.push(Seg::Index(0));
    let exists = spec.len() - usize::from(!pod.spec.present)
        + usize::from(pod.spec.init_containers.is_some());
    w.add(&path, exists, expected.clone());
    let mut injected = view::Container::deserialize(expected.clone()).unwrap_or_default();
    injected.whole = Some(Box::new(expected));
    pod.spec.present = true;
    pod.spec
        .init_containers
        .get_or_insert_with(Vec::new)
        .insert(0, injected);
    0
}

/// The pod's securityContext in the working copy, after a change was
/// written to it (which created the spec, too, if the pod had none).
fn pod_sc<'p>(pod: &'p mut view::Pod<'_>) -> &'p mut PodSecurityContext {
    pod.spec.present = true;
    pod.spec
        .security_context
        .get_or_insert_with(PodSecurityContext::default)
}

/// The pod runs as the identity: its uid and gid, its groups and, unless
/// the policy says otherwise, its gid as the volumes' group.
fn set_identity_ids(
    pod: &mut view::Pod<'_>,
    w: &mut Writer,
    spec: &[Seg],
    identity: &Identity,
    policy: &Provisioning,
) {
    let psc = at(spec, &["securityContext"]);
    let depth = |pod: &view::Pod<'_>| {
        psc.len()
            - usize::from(pod.spec.security_context.is_none())
            - usize::from(!pod.spec.present)
    };
    let current = |pod: &view::Pod<'_>, f: fn(&PodSecurityContext) -> bool| {
        pod.spec.security_context.as_ref().is_some_and(f)
    };
    if !current(pod, |s| s.run_as_user.is_some()) {
        w.add(&at(&psc, &["runAsUser"]), depth(pod), json!(identity.uid));
        pod_sc(pod).run_as_user = Some(identity.uid);
    }
    if !current(pod, |s| s.run_as_group.is_some()) {
        w.add(&at(&psc, &["runAsGroup"]), depth(pod), json!(identity.gid));
        pod_sc(pod).run_as_group = Some(identity.gid);
    }
    // The kubelet re-owns every volume that supports ownership management
    // to fsGroup when the pod starts; on a shared home volume that is every
    // user's files, on every start. OnRootMismatch skips the walk when the
    // volume's root already has the right owner.
    if policy.set_fs_group && !current(pod, |s| s.fs_group.is_some()) {
        w.add(&at(&psc, &["fsGroup"]), depth(pod), json!(identity.gid));
        pod_sc(pod).fs_group = Some(identity.gid);
        if !current(pod, |s| s.fs_group_change_policy.is_some()) {
            w.add(
                &at(&psc, &["fsGroupChangePolicy"]),
                depth(pod),
                json!("OnRootMismatch"),
            );
            pod_sc(pod).fs_group_change_policy = Some("OnRootMismatch".to_owned());
        }
    }
    let gids: Vec<i64> = identity.groups.iter().map(|(_, g)| *g).collect();
    if !gids.is_empty() && !current(pod, |s| s.supplemental_groups.is_some()) {
        w.add(&at(&psc, &["supplementalGroups"]), depth(pod), json!(gids));
        pod_sc(pod).supplemental_groups = Some(gids);
    }
}

/// Where [`mount_identity`] mounts.
struct MountContext<'c> {
    spec: &'c [Seg],
    prefix: &'c str,
    /// The provisioning init container's index, which is left alone.
    skip: usize,
    home: &'c HomeVolume,
}

/// Every other init container and container gets the passwd and group
/// files; every container gets the home volume.
fn mount_identity(
    pod: &mut view::Pod<'_>,
    w: &mut Writer,
    ctx: &MountContext<'_>,
    warnings: &mut Vec<String>,
) {
    let home = ctx.home;
    for place in places(&pod.spec, ctx.prefix, &["initContainers", "containers"]) {
        if place.list == "initContainers" && place.index == ctx.skip {
            continue;
        }
        let mut path = ctx.spec.to_vec();
        path.extend([Seg::Key(place.list), Seg::Index(place.index)]);
        let Some(c) =
            container_list_mut(&mut pod.spec, place.list).and_then(|l| l.get_mut(place.index))
        else {
            continue;
        };
        for (at_path, file) in IDENTITY_FILES {
            if mount_at(c, at_path).is_none() {
                push_mount(c, w, &path, identity_mount(at_path, file));
            }
        }
        if place.list != "containers" {
            continue;
        }
        match mount_at(c, &home.mount_path) {
            None => push_mount(
                c,
                w,
                &path,
                VolumeMount {
                    name: home.name.clone(),
                    mount_path: home.mount_path.clone(),
                    ..VolumeMount::default()
                },
            ),
            Some((_, m)) if m.name == home.name => {}
            Some((j, m)) => warnings.push(format!(
                "unroot: {}.volumeMounts[{j}] (container {:?}) mounts volume {:?} at {}: the home volume {:?} is not mounted in this container",
                place.display, c.name, m.name, home.mount_path, home.name
            )),
        }
    }
}

/// The pod's own ids, groups and volumes must agree with the identity;
/// returns whether the identity volume is there already.
fn check_pod(
    pod: &view::Pod<'_>,
    prefix: &str,
    identity: &Identity,
    policy: &Provisioning,
    pod_volumes: &[Value],
    denials: &mut Vec<Denial>,
) -> bool {
    let psc = pod.spec.security_context.as_ref();
    for (field, got, want, annotation) in [
        (
            "runAsUser",
            psc.and_then(|s| s.run_as_user),
            identity.uid,
            UID_ANNOTATION,
        ),
        (
            "runAsGroup",
            psc.and_then(|s| s.run_as_group),
            identity.gid,
            GID_ANNOTATION,
        ),
        (
            "fsGroup",
            psc.and_then(|s| s.fs_group),
            identity.gid,
            GID_ANNOTATION,
        ),
    ] {
        if field == "fsGroup" && !policy.set_fs_group {
            continue;
        }
        if let Some(got) = got
            && got != want
        {
            denials.push(conflict(
                &format!("{prefix}securityContext.{field}"),
                &json!(got),
                want,
                annotation,
            ));
        }
    }
    let gids: Vec<i64> = identity.groups.iter().map(|(_, g)| *g).collect();
    if let Some(got) = psc.and_then(|s| s.supplemental_groups.as_ref()) {
        let set: BTreeSet<i64> = got.iter().copied().collect();
        if set != gids.iter().copied().collect() {
            denials.push(Denial::new(
                Rule::Conflict,
                format!(
                    "{prefix}securityContext.supplementalGroups: {} differs from the identity's groups {gids:?} ({GROUPS_ANNOTATION}); remove it",
                    json!(got)
                ),
            ));
        }
    }
    let wanted_volume = identity_volume(identity);
    let mut has_identity_volume = false;
    for (i, v) in pod_volumes.iter().enumerate() {
        if v.get("name").and_then(Value::as_str) != Some(IDENTITY_VOLUME) {
            continue;
        }
        if v.pointer("/configMap/name").and_then(Value::as_str)
            == Some(identity.config_map_name().as_str())
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
    has_identity_volume
}

/// A container's own ids and its mounts at /etc/passwd and /etc/group must
/// agree with the identity.
fn check_container(
    c: &view::Container<'_>,
    display: &str,
    identity: &Identity,
    denials: &mut Vec<Denial>,
) {
    let sc = c.security_context.as_ref();
    for (field, got, want, annotation) in [
        (
            "runAsUser",
            sc.and_then(|s| s.run_as_user),
            identity.uid,
            UID_ANNOTATION,
        ),
        (
            "runAsGroup",
            sc.and_then(|s| s.run_as_group),
            identity.gid,
            GID_ANNOTATION,
        ),
    ] {
        if let Some(got) = got
            && got != want
        {
            let at = format!("{display}.securityContext.{field} (container {:?})", c.name);
            denials.push(conflict(&at, &json!(got), want, annotation));
        }
    }
    for (path, file) in IDENTITY_FILES {
        if let Some((j, m)) = mount_at(c, path)
            && !(m.name == IDENTITY_VOLUME && m.sub_path.as_deref() == Some(file))
        {
            denials.push(Denial::new(
                Rule::Conflict,
                format!(
                    "{display}.volumeMounts[{j}] (container {:?}) mounts volume {:?} at {path}, where unroot mounts the identity's {file} file; remove that mount",
                    c.name, m.name
                ),
            ));
        }
    }
}

/// Everything in the pod that contradicts `identity`, as denials; else the
/// index of an already injected init container (re-mutation) and whether
/// the identity volume is already there.
fn check_conflicts(
    pod: &view::Pod<'_>,
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
    let pod_volumes: Vec<Value> = pod
        .spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect();
    for place in places(&pod.spec, prefix, &CONTAINER_LISTS) {
        let Some(c) = container_list(&pod.spec, place.list).and_then(|l| l.get(place.index)) else {
            continue;
        };
        if c.name == reserved {
            let exact = place.list == "initContainers"
                && c.whole
                    .as_deref()
                    .is_some_and(|whole| is_injected(whole, expected, &pod_volumes));
            if exact && existing.is_none() {
                existing = Some(place.index);
                continue;
            }
            denials.push(Denial::new(
                Rule::Conflict,
                format!(
                    "{}: the name {:?} is reserved for the provisioning init container, and this container is not exactly the one the policy injects (every field must match); rename it",
                    place.display, c.name
                ),
            ));
            continue;
        }
        check_container(c, &place.display, identity, &mut denials);
    }
    let has_identity_volume = check_pod(pod, prefix, identity, policy, &pod_volumes, &mut denials);
    if denials.is_empty() {
        Ok((existing, has_identity_volume))
    } else {
        Err(denials)
    }
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::super::testing::*;

    #[test]
    fn the_policy_can_leave_fs_group_to_the_pod() {
        let mut policy = policy();
        policy.provisioning.set_fs_group = false;
        // Neither the identity's gid nor the policy's default fsGroup is set,
        // and an fsGroup of the pod's own is no conflict.
        let outcome = run(
            &spawned(&identity(), &notebook()),
            &policy,
            &selected(),
            HUB,
        )
        .unwrap();
        let psc = &outcome.object["spec"]["securityContext"];
        assert!(psc.get("fsGroup").is_none(), "{psc}");
        assert!(psc.get("fsGroupChangePolicy").is_none(), "{psc}");
        assert_eq!(psc["runAsUser"], 1001);
        let own = json!({"securityContext": {"fsGroup": 5}, "containers": [{"name": "notebook", "image": "x"}]});
        let outcome = run(&spawned(&identity(), &own), &policy, &selected(), HUB).unwrap();
        assert_eq!(outcome.object["spec"]["securityContext"]["fsGroup"], 5);
        // With the default, a pod's own fsGroupChangePolicy is kept.
        let always = json!({"securityContext": {"fsGroupChangePolicy": "Always"}, "containers": [{"name": "notebook", "image": "x"}]});
        let outcome = admit(&spawned(&identity(), &always));
        let psc = &outcome.object["spec"]["securityContext"];
        assert_eq!(
            (psc["fsGroup"].as_i64(), psc["fsGroupChangePolicy"].as_str()),
            (Some(1001), Some("Always"))
        );
    }

    #[test]
    fn an_honoured_identity_runs_the_pod_as_the_user() {
        let outcome = admit(&spawned(&identity(), &notebook()));
        let pod = &outcome.object;
        assert_eq!(
            pod["spec"]["initContainers"][0],
            json!({
                "name": "unroot-provision",
                "image": DIGEST,
                "command": ["/bin/sh", "/provision.sh"],
                "env": [
                    {"name": "UNROOT_USER", "value": "alice"},
                    {"name": "UNROOT_UID", "value": "1001"},
                    {"name": "UNROOT_GID", "value": "1001"},
                    {"name": "UNROOT_GROUPS", "value": "research:2001,staff:2002"},
                    {"name": "UNROOT_HOME", "value": "/home/alice"},
                ],
                "securityContext": {
                    "runAsUser": 0, "runAsNonRoot": false, "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "volumeMounts": [{"name": "home", "mountPath": "/home"}],
            })
        );
        assert_eq!(
            pod["spec"]["securityContext"],
            json!({"runAsUser": 1001, "runAsGroup": 1001, "fsGroup": 1001, "fsGroupChangePolicy": "OnRootMismatch",
                   "supplementalGroups": [2001, 2002],
                   "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}})
        );
        assert_eq!(
            pod["spec"]["volumes"],
            json!([
                {"name": "unroot-identity", "configMap": {"name": "unroot-identity-alice",
                    "items": [{"key": "passwd", "path": "passwd"}, {"key": "group", "path": "group"}]}},
                {"name": "home", "nfs": {"server": "nfs.example.com", "path": "/export/home"}},
            ])
        );
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"],
            json!([
                {"name": "unroot-identity", "mountPath": "/etc/passwd", "subPath": "passwd", "readOnly": true},
                {"name": "unroot-identity", "mountPath": "/etc/group", "subPath": "group", "readOnly": true},
                {"name": "home", "mountPath": "/home"},
            ])
        );
        // The provisioning container is neither hardened nor warned about.
        assert_eq!(outcome.warnings, Vec::<String>::new());
        let cm = outcome.identity.unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("unroot-identity-alice"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("hub-users"));
        let data = cm.data.unwrap();
        assert_eq!(
            data["passwd"],
            "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nalice:x:1001:1001::/home/alice:/bin/sh\n"
        );
        assert_eq!(
            data["group"],
            "root:x:0:\nnobody:x:65534:\nalice:x:1001:\nresearch:x:2001:alice\nstaff:x:2002:alice\n"
        );
    }

    #[test]
    fn existing_init_containers_run_after_the_provisioning_one_and_get_passwd() {
        let spec = json!({"initContainers": [{"name": "fetch", "image": "x"}], "containers": [
            {"name": "notebook", "image": "x"}, {"name": "proxy", "image": "y"}]});
        let mut annotations = identity();
        annotations["unroot.dev/groups"] = json!("alice-g:1001,research:2001");
        annotations["unroot.dev/home"] = json!("/home/users/alice");
        let outcome = admit(&spawned(&annotations, &spec));
        let pod = &outcome.object;
        assert_eq!(pod["spec"]["initContainers"][0]["name"], "unroot-provision");
        assert_eq!(pod["spec"]["initContainers"][1]["name"], "fetch");
        assert_eq!(
            pod["spec"]["initContainers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            2,
            "passwd and group, no home"
        );
        assert_eq!(
            pod["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            pod["spec"]["securityContext"]["supplementalGroups"],
            json!([2001])
        );
        assert_eq!(
            pod["spec"]["initContainers"][0]["env"][4],
            json!({"name": "UNROOT_HOME", "value": "/home/users/alice"})
        );
        let data = outcome.identity.unwrap().data.unwrap();
        assert!(
            data["group"].ends_with("alice-g:x:1001:\nresearch:x:2001:alice\n"),
            "{}",
            data["group"]
        );
        assert!(data["passwd"].ends_with("alice:x:1001:1001::/home/users/alice:/bin/sh\n"));
    }

    #[test]
    fn the_spawners_own_home_volume_and_mounts_are_kept() {
        let spec = json!({
            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-alice"}}],
            "containers": [
                {"name": "notebook", "image": "x", "volumeMounts": [{"name": "home", "mountPath": "/home"}]},
                {"name": "side", "image": "x", "volumeMounts": [{"name": "scratch", "mountPath": "/home/"}]}]});
        let mut annotations = identity();
        annotations["unroot.dev/groups"] = json!("");
        let outcome = admit(&spawned(&annotations, &spec));
        let pod = &outcome.object;
        assert_eq!(
            pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "claim-alice"
        );
        assert_eq!(
            pod["spec"]["volumes"].as_array().unwrap().len(),
            2,
            "identity volume added, home kept"
        );
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            outcome.warnings,
            [
                "unroot: spec.containers[1].volumeMounts[0] (container \"side\") mounts volume \"scratch\" at /home: the home volume \"home\" is not mounted in this container"
            ]
        );
        assert!(
            pod["spec"]["securityContext"]
                .get("supplementalGroups")
                .is_none()
        );
        // An empty value is dropped, as the API server drops it.
        assert_eq!(
            pod["spec"]["initContainers"][0]["env"][3],
            json!({"name": "UNROOT_GROUPS"})
        );
    }

    #[test]
    fn explicit_values_equal_to_the_identity_are_accepted() {
        let spec = json!({"securityContext": {"runAsUser": 1001, "supplementalGroups": [2002, 2001]},
            "containers": [{"name": "notebook", "image": "x", "securityContext": {"runAsGroup": 1001}}]});
        let outcome = admit(&spawned(&identity(), &spec));
        assert_eq!(
            outcome.object["spec"]["securityContext"]["supplementalGroups"],
            json!([2002, 2001])
        );
    }
}
