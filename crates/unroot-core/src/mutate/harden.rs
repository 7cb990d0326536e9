//! Drops root: the pod- and container-level securityContext every pod gets,
//! decided on the [`view`] and written as patch operations.
//!
//! Pod level (`spec.securityContext`), when unset: `runAsNonRoot: true`,
//! `runAsUser`/`runAsGroup`/`fsGroup` from the policy (`fsGroup` only while
//! `securityContext.setFsGroup` holds), `seccompProfile` of the policy's
//! type. With an `fsGroup` it sets, `fsGroupChangePolicy: OnRootMismatch`
//! unless the pod chose a policy: the kubelet then walks a volume only when
//! its root has another owner, instead of re-owning every file at every
//! start. Every container, init container and ephemeral container, when
//! unset: `allowPrivilegeEscalation: false`, and `capabilities.drop` gains
//! `ALL`.
//!
//! An explicit insecure value is never silently rewritten: it is left in place
//! with a warning, or — when the policy says `override` — rewritten with a
//! warning. `privileged: true` is never rewritten; validation denies it.
//! Windows pods only get `runAsNonRoot`, the one field that is not Linux-only.

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext as ContainerContext,
};
use serde_json::{Value, json};

use super::writer::{Path, Seg, Writer, at};
use crate::policy::SecurityContext;
use crate::view;

/// The container lists of a pod spec, in the order Kubernetes visits them.
pub const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// How every warning about a value the pass changed ends (an overridden or a
/// removed value), as opposed to one about a value left as set: in `warn`
/// mode nothing changes, so these are dropped and the change itself is named.
pub const CHANGE_NOTE: &str = "by policy (securityContext.override)";

/// Where a container is: its list, its index in it, and the field path for
/// messages (`spec.containers[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// `initContainers`, `containers` or `ephemeralContainers`.
    pub list: &'static str,
    /// Its index in the list.
    pub index: usize,
    /// `spec.containers[1]`, prefixed for a workload's template.
    pub display: String,
}

/// The containers of `spec` in `lists`, in Kubernetes' visit order.
#[must_use]
pub fn places(spec: &view::Spec<'_>, display_prefix: &str, lists: &[&'static str]) -> Vec<Place> {
    let mut found = Vec::new();
    for list in lists {
        let count = container_list(spec, list).map_or(0, Vec::len);
        found.extend((0..count).map(|index| Place {
            list,
            index,
            display: format!("{display_prefix}{list}[{index}]"),
        }));
    }
    found
}

/// The list called `list`.
#[must_use]
pub fn container_list<'s, 'a>(
    spec: &'s view::Spec<'a>,
    list: &str,
) -> Option<&'s Vec<view::Container<'a>>> {
    match list {
        "initContainers" => spec.init_containers.as_ref(),
        "containers" => Some(&spec.containers),
        "ephemeralContainers" => spec.ephemeral_containers.as_ref(),
        _ => None,
    }
}

/// The list called `list`, for changing it.
pub fn container_list_mut<'s, 'a>(
    spec: &'s mut view::Spec<'a>,
    list: &str,
) -> Option<&'s mut Vec<view::Container<'a>>> {
    match list {
        "initContainers" => spec.init_containers.as_mut(),
        "containers" => Some(&mut spec.containers),
        "ephemeralContainers" => spec.ephemeral_containers.as_mut(),
        _ => None,
    }
}

/// Everything a hardening pass needs to know and records.
pub struct Context<'c, 'a> {
    /// The working copy of the pod.
    pub pod: &'c mut view::Pod<'a>,
    /// The path of the pod spec in the document (`spec`, or
    /// `spec.template.spec` for a Deployment).
    pub spec_path: &'c [Seg],
    /// The field path prefix of the pod object in messages (`""`, or
    /// `spec.template.`).
    pub display: &'c str,
    /// The patch being written.
    pub writer: &'c mut Writer,
    /// The securityContext settings for the pod's namespace: the policy's,
    /// with a matching `namespaceOverrides` entry laid over them.
    pub settings: &'c SecurityContext,
    /// Warnings for the response, one per field left or made insecure.
    pub warnings: &'c mut Vec<String>,
    /// Whether the pod gets an `fsGroup` when it sets none (not when the
    /// policy's `securityContext.setFsGroup` is off, nor for a provisioned
    /// pod whose policy opts out: see `provisioning.setFsGroup`).
    pub fs_group: bool,
}

/// A value as the warnings render it (JSON).
fn shown(value: &Value) -> String {
    value.to_string()
}

impl Context<'_, '_> {
    fn warn_left(&mut self, field: &str, value: &Value, why: &str) {
        self.warnings.push(format!(
            "unroot: {field}={} is left as set: {why}",
            shown(value)
        ));
    }

    fn warn_overridden(&mut self, field: &str, old: &Value, new: &Value) {
        self.warnings.push(format!(
            "unroot: {field}={} is overridden to {} {CHANGE_NOTE}",
            shown(old),
            shown(new)
        ));
    }

    /// An explicit insecure value: overwritten (with a warning) when the
    /// policy overrides, else left (with a warning). `true` when it was
    /// overwritten: the caller then updates its working copy.
    fn insecure(&mut self, path: &[Seg], field: &str, old: &Value, fix: Value, why: &str) -> bool {
        if self.settings.r#override {
            self.warn_overridden(field, old, &fix);
            self.writer.replace(path, fix, old.clone());
            true
        } else {
            self.warn_left(field, old, why);
            false
        }
    }

    fn container_path(&self, place: &Place) -> Path {
        let mut path = self.spec_path.to_vec();
        path.push(Seg::Key(place.list));
        path.push(Seg::Index(place.index));
        path
    }

    /// Hardens the pod-level securityContext.
    pub fn harden_pod(&mut self, windows: bool) {
        if !windows {
            self.harden_pod_ids();
            self.harden_pod_seccomp();
        }
        self.harden_pod_non_root();
    }

    /// `spec.securityContext`'s path and the segments of a field's path
    /// below it that exist: the spec, and the securityContext when the pod
    /// has one.
    fn pod_sc_at(&self, field: &'static str) -> (Path, usize) {
        let spec = &self.pod.spec;
        let path = at(self.spec_path, &["securityContext", field]);
        let exists = path.len()
            - 1
            - usize::from(spec.security_context.is_none())
            - usize::from(!spec.present);
        (path, exists)
    }

    fn pod_field(&self, name: &str) -> String {
        format!("{}spec.securityContext.{name}", self.display)
    }

    /// The pod's user, group and volume group.
    fn harden_pod_ids(&mut self) {
        let settings = self.settings;
        for (name, default) in [
            ("runAsUser", settings.run_as_user),
            ("runAsGroup", settings.run_as_group),
            ("fsGroup", settings.fs_group),
        ] {
            if name == "fsGroup" && !(self.fs_group && settings.set_fs_group) {
                continue;
            }
            let sc = self.pod.spec.security_context.as_ref();
            let current = match name {
                "runAsUser" => sc.and_then(|s| s.run_as_user),
                "runAsGroup" => sc.and_then(|s| s.run_as_group),
                _ => sc.and_then(|s| s.fs_group),
            };
            let (path, exists) = self.pod_sc_at(name);
            match current {
                None => {
                    self.writer.add(&path, exists, json!(default));
                    set_pod_id(self.pod_sc(), name, default);
                }
                Some(0) => {
                    let f = self.pod_field(name);
                    let why = "it runs the pod as root";
                    if self.insecure(&path, &f, &json!(0), json!(default), why) {
                        set_pod_id(self.pod_sc(), name, default);
                    }
                }
                Some(_) => continue,
            }
            // An fsGroup unroot set (added, or overridden from 0) comes with
            // OnRootMismatch, unless the pod chose how its volumes are
            // re-owned.
            let sc = self.pod.spec.security_context.as_ref();
            if name == "fsGroup"
                && sc.and_then(|s| s.fs_group) == Some(default)
                && sc.and_then(|s| s.fs_group_change_policy.as_ref()).is_none()
            {
                let (path, exists) = self.pod_sc_at("fsGroupChangePolicy");
                self.writer.add(&path, exists, json!("OnRootMismatch"));
                self.pod_sc().fs_group_change_policy = Some("OnRootMismatch".to_owned());
            }
        }
    }

    /// The pod's seccomp profile.
    fn harden_pod_seccomp(&mut self) {
        let seccomp_type = self.settings.seccomp_profile_type.as_str();
        let (path, exists) = self.pod_sc_at("seccompProfile");
        let current = self
            .pod
            .spec
            .security_context
            .as_ref()
            .and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.type_.clone());
        match current {
            None => {
                self.writer
                    .add(&path, exists, json!({"type": seccomp_type}));
                self.pod_sc().seccomp_profile = Some(SeccompProfile {
                    type_: seccomp_type.to_owned(),
                    localhost_profile: None,
                });
            }
            Some(ty) if ty != "RuntimeDefault" && ty != "Localhost" => {
                let f = self.pod_field("seccompProfile.type");
                let why = "it disables syscall filtering";
                if self.insecure(
                    &at(&path, &["type"]),
                    &f,
                    &json!(ty),
                    json!(seccomp_type),
                    why,
                ) && let Some(profile) = self.pod_sc().seccomp_profile.as_mut()
                {
                    seccomp_type.clone_into(&mut profile.type_);
                }
            }
            Some(_) => {}
        }
    }

    /// `runAsNonRoot: true`, unless a container explicitly runs as root.
    fn harden_pod_non_root(&mut self) {
        let (path, exists) = self.pod_sc_at("runAsNonRoot");
        let current = self
            .pod
            .spec
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root);
        match current {
            None => {
                // runAsNonRoot with an explicit uid 0 in effect is a pod the
                // kubelet refuses to start; the explicit choice stands and
                // validation decides, so leave runAsNonRoot unset then.
                if let Some(root) = self.explicit_root() {
                    let field = self.pod_field("runAsNonRoot");
                    self.warnings.push(format!(
                        "unroot: {field} is not set because {root} explicitly runs as root"
                    ));
                } else {
                    self.writer.add(&path, exists, json!(true));
                    self.pod_sc().run_as_non_root = Some(true);
                }
            }
            Some(false) => {
                let f = self.pod_field("runAsNonRoot");
                let why = "it lets the pod run as root";
                if self.insecure(&path, &f, &json!(false), json!(true), why) {
                    self.pod_sc().run_as_non_root = Some(true);
                }
            }
            Some(true) => {}
        }
    }

    /// The pod's securityContext in the working copy, after a change was
    /// written to it (which created the spec, too, if the pod had none).
    fn pod_sc(&mut self) -> &mut PodSecurityContext {
        self.pod.spec.present = true;
        self.pod
            .spec
            .security_context
            .get_or_insert_with(PodSecurityContext::default)
    }

    /// The field that makes some container run as uid 0 explicitly, if any.
    fn explicit_root(&self) -> Option<String> {
        let spec = &self.pod.spec;
        let pod_is_root = spec.security_context.as_ref().and_then(|s| s.run_as_user) == Some(0);
        for place in places(spec, &format!("{}spec.", self.display), &CONTAINER_LISTS) {
            let sc = container_list(spec, place.list)
                .and_then(|l| l.get(place.index))
                .and_then(|c| c.security_context.as_ref());
            if sc.and_then(|s| s.run_as_non_root).is_some() {
                continue;
            }
            match sc.and_then(|s| s.run_as_user) {
                Some(0) => return Some(format!("{}.securityContext.runAsUser", place.display)),
                None if pod_is_root => {
                    return Some(format!("{}spec.securityContext.runAsUser", self.display));
                }
                _ => {}
            }
        }
        None
    }

    fn container(&self, place: &Place) -> Option<&view::Container<'_>> {
        container_list(&self.pod.spec, place.list).and_then(|l| l.get(place.index))
    }

    fn container_sc(&mut self, place: &Place) -> Option<&mut ContainerContext> {
        container_list_mut(&mut self.pod.spec, place.list)
            .and_then(|l| l.get_mut(place.index))
            .map(|c| &mut **c.security_context.get_or_insert_with(Box::default))
    }

    /// Hardens one container's securityContext.
    pub fn harden_container(&mut self, place: &Place, windows: bool) {
        if windows {
            return;
        }
        let Some(c) = self.container(place) else {
            return;
        };
        let name = c.name.to_string();
        let sc = c.security_context.clone();
        let sc_path = at(&self.container_path(place), &["securityContext"]);
        let field = |f: &str| format!("{}.securityContext.{f} (container {name:?})", place.display);

        let privileged = sc.as_ref().and_then(|s| s.privileged) == Some(true);
        if privileged {
            self.warn_left(
                &field("privileged"),
                &json!(true),
                "unroot never rewrites privileged; Pod Security enforcement decides",
            );
        }
        let adds: Vec<String> = sc
            .as_ref()
            .and_then(|s| s.capabilities.as_ref())
            .and_then(|c| c.add.clone())
            .unwrap_or_default();
        // The API server rejects allowPrivilegeEscalation=false next to
        // privileged=true or an added CAP_SYS_ADMIN; setting it would turn a
        // pod validation may allow into one the API server refuses.
        if !privileged && !adds.iter().any(|a| a == "CAP_SYS_ADMIN") {
            self.forbid_escalation(place, &sc_path, &field("allowPrivilegeEscalation"));
        }
        self.drop_all(place, &sc_path);
        self.check_added_capabilities(place, &name, &sc_path, &adds);
        self.harden_container_identity(place, &name, &sc_path);
    }

    /// Segments of `path` (below the container's securityContext at
    /// `sc_path`) that exist in the working copy.
    fn container_exists(&self, place: &Place, sc_path: &[Seg], path: &[Seg]) -> usize {
        let sc = self
            .container(place)
            .and_then(|c| c.security_context.as_ref());
        match (sc, path.get(sc_path.len())) {
            (None, _) => sc_path.len() - 1,
            (Some(s), Some(Seg::Key("capabilities"))) if s.capabilities.is_some() => {
                sc_path.len() + 1
            }
            (Some(_), _) => sc_path.len(),
        }
    }

    /// `allowPrivilegeEscalation: false`.
    fn forbid_escalation(&mut self, place: &Place, sc_path: &[Seg], field: &str) {
        let path = at(sc_path, &["allowPrivilegeEscalation"]);
        let current = self
            .container(place)
            .and_then(|c| c.security_context.as_ref())
            .and_then(|s| s.allow_privilege_escalation);
        let fixed = match current {
            None => {
                let exists = self.container_exists(place, sc_path, &path);
                self.writer.add(&path, exists, json!(false));
                true
            }
            Some(true) => {
                let why = "it lets processes gain privileges (setuid binaries)";
                self.insecure(&path, field, &json!(true), json!(false), why)
            }
            Some(false) => false,
        };
        if fixed && let Some(s) = self.container_sc(place) {
            s.allow_privilege_escalation = Some(false);
        }
    }

    /// `capabilities.drop` gains `ALL`.
    fn drop_all(&mut self, place: &Place, sc_path: &[Seg]) {
        let path = at(sc_path, &["capabilities", "drop"]);
        let drops = self
            .container(place)
            .and_then(|c| c.security_context.as_ref())
            .and_then(|s| s.capabilities.as_ref())
            .and_then(|c| c.drop.as_ref())
            .map(|d| (d.len(), d.iter().any(|d| d == "ALL")));
        match drops {
            Some((_, true)) => {}
            Some((len, false)) => {
                let mut at_end = path;
                at_end.push(Seg::Index(len));
                self.writer.add(&at_end, at_end.len() - 1, json!("ALL"));
                if let Some(drop) = self
                    .container_sc(place)
                    .and_then(|s| s.capabilities.as_mut())
                    .and_then(|c| c.drop.as_mut())
                {
                    drop.push("ALL".to_owned());
                }
            }
            None => {
                let exists = self.container_exists(place, sc_path, &path);
                self.writer.add(&path, exists, json!(["ALL"]));
                if let Some(s) = self.container_sc(place) {
                    s.capabilities
                        .get_or_insert_with(Capabilities::default)
                        .drop = Some(vec!["ALL".to_owned()]);
                }
            }
        }
    }

    /// Added capabilities outside the policy's list: removed with
    /// `override`, else left with a warning.
    fn check_added_capabilities(
        &mut self,
        place: &Place,
        name: &str,
        sc_path: &[Seg],
        adds: &[String],
    ) {
        let mut removed = 0;
        for (i, cap) in adds.iter().enumerate() {
            if self.settings.allowed_capabilities.iter().any(|a| a == cap) {
                continue;
            }
            let field = format!(
                "{}.securityContext.capabilities.add[{i}] (container {name:?})",
                place.display
            );
            if !self.settings.r#override {
                let why = "the capability is not in the policy's allowedCapabilities";
                self.warn_left(&field, &json!(cap), why);
                continue;
            }
            let mut path = at(sc_path, &["capabilities", "add"]);
            path.push(Seg::Index(i - removed));
            self.writer.remove(&path, json!(cap));
            if let Some(list) = self
                .container_sc(place)
                .and_then(|s| s.capabilities.as_mut())
                .and_then(|c| c.add.as_mut())
                && i - removed < list.len()
            {
                list.remove(i - removed);
            }
            removed += 1;
            self.warnings.push(format!(
                "unroot: {field}={} is removed {CHANGE_NOTE}",
                shown(&json!(cap))
            ));
        }
    }

    /// The user, group, seccomp and root filesystem part of a container.
    fn harden_container_identity(&mut self, place: &Place, name: &str, sc_path: &[Seg]) {
        let field = |f: &str| format!("{}.securityContext.{f} (container {name:?})", place.display);
        let sc = self
            .container(place)
            .and_then(|c| c.security_context.clone());
        let (uid, gid) = (self.settings.run_as_user, self.settings.run_as_group);
        for (f, fix, why) in [
            ("runAsUser", uid, "it runs the container as root"),
            (
                "runAsGroup",
                gid,
                "it runs the container with the root group",
            ),
        ] {
            let current = match f {
                "runAsUser" => sc.as_ref().and_then(|s| s.run_as_user),
                _ => sc.as_ref().and_then(|s| s.run_as_group),
            };
            if current == Some(0)
                && self.insecure(&at(sc_path, &[f]), &field(f), &json!(0), json!(fix), why)
                && let Some(s) = self.container_sc(place)
            {
                if f == "runAsUser" {
                    s.run_as_user = Some(fix);
                } else {
                    s.run_as_group = Some(fix);
                }
            }
        }
        if sc.as_ref().and_then(|s| s.run_as_non_root) == Some(false)
            && self.insecure(
                &at(sc_path, &["runAsNonRoot"]),
                &field("runAsNonRoot"),
                &json!(false),
                json!(true),
                "it lets the container run as root",
            )
            && let Some(s) = self.container_sc(place)
        {
            s.run_as_non_root = Some(true);
        }
        if let Some(ty) = sc
            .as_ref()
            .and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.type_.clone())
            && ty != "RuntimeDefault"
            && ty != "Localhost"
        {
            let fix = self.settings.seccomp_profile_type.as_str();
            if self.insecure(
                &at(sc_path, &["seccompProfile", "type"]),
                &field("seccompProfile.type"),
                &json!(ty),
                json!(fix),
                "it disables syscall filtering",
            ) && let Some(profile) = self
                .container_sc(place)
                .and_then(|s| s.seccomp_profile.as_mut())
            {
                fix.clone_into(&mut profile.type_);
            }
        }
        if self.settings.read_only_root_filesystem
            && sc
                .as_ref()
                .and_then(|s| s.read_only_root_filesystem)
                .is_none()
        {
            let exists = sc_path.len() - usize::from(sc.is_none());
            self.writer.add(
                &at(sc_path, &["readOnlyRootFilesystem"]),
                exists,
                json!(true),
            );
            if let Some(s) = self.container_sc(place) {
                s.read_only_root_filesystem = Some(true);
            }
        }
    }
}

fn set_pod_id(sc: &mut PodSecurityContext, name: &str, value: i64) {
    match name {
        "runAsUser" => sc.run_as_user = Some(value),
        "runAsGroup" => sc.run_as_group = Some(value),
        _ => sc.fs_group = Some(value),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::mutate::{self, Checked, Input, Outcome, Result};
    use crate::policy::Document;

    fn pod(object: &Value, input: &Input<'_>) -> Result<Outcome> {
        Checked::object(object)
            .and_then(|pod| mutate::pod(pod, input))
            .and_then(|planned| planned.apply_to(object))
    }

    fn pod_with(security_context: &Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"securityContext": security_context,
                        "containers": [{"name": "app", "image": "x"}]}})
    }

    fn mutated(policy: &Document, security_context: &Value) -> Value {
        let outcome = pod(&pod_with(security_context), &Input::new(policy)).unwrap();
        outcome.object["spec"]["securityContext"].clone()
    }

    #[test]
    fn an_added_fs_group_comes_with_on_root_mismatch_unless_the_pod_chose() {
        let policy = Document::embedded();
        let mut overriding = Document::embedded();
        overriding.security_context.r#override = true;
        // (policy, the pod's securityContext, fsGroup and policy after).
        let cases = [
            (&policy, json!({}), json!(65532), json!("OnRootMismatch")),
            (
                &policy,
                json!({"fsGroupChangePolicy": "Always"}),
                json!(65532),
                json!("Always"),
            ),
            // The pod's own fsGroup and its (absent) policy are left alone.
            (&policy, json!({"fsGroup": 5}), json!(5), Value::Null),
            // An fsGroup 0 left with a warning gets no policy of unroot's...
            (&policy, json!({"fsGroup": 0}), json!(0), Value::Null),
            // ...one overridden to the policy's fsGroup does.
            (
                &overriding,
                json!({"fsGroup": 0}),
                json!(65532),
                json!("OnRootMismatch"),
            ),
        ];
        for (policy, given, fs_group, change_policy) in cases {
            let sc = mutated(policy, &given);
            assert_eq!(
                (&sc["fsGroup"], &sc["fsGroupChangePolicy"]),
                (&fs_group, &change_policy),
                "{given}"
            );
        }
    }

    #[test]
    fn a_mutated_pod_gets_no_second_patch() {
        let policy = Document::embedded();
        let once = pod(&pod_with(&json!({})), &Input::new(&policy)).unwrap();
        let twice = pod(&once.object, &Input::new(&policy)).unwrap();
        assert!(twice.patch.0.is_empty(), "{:?}", twice.patch);
    }

    #[test]
    fn set_fs_group_false_leaves_volume_ownership_to_the_pod() {
        let mut policy = Document::embedded();
        policy.security_context.set_fs_group = false;
        let sc = mutated(&policy, &json!({}));
        assert!(sc.get("fsGroup").is_none(), "{sc}");
        assert!(sc.get("fsGroupChangePolicy").is_none(), "{sc}");
        assert_eq!(sc["runAsUser"], 65532, "the rest is hardened as before");
    }
}
