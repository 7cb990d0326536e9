//! Drops root: the pod- and container-level securityContext every pod gets.
//!
//! Pod level (`spec.securityContext`), when unset: `runAsNonRoot: true`,
//! `runAsUser`/`runAsGroup`/`fsGroup` from the policy (`fsGroup` only while
//! `securityContext.setFsGroup` holds), `seccompProfile` of the policy's
//! type. With an `fsGroup` it adds, `fsGroupChangePolicy: OnRootMismatch`
//! unless the pod chose a policy: the kubelet then walks a volume only when
//! its root has another owner, instead of re-owning every file at every
//! start. Every container, init container and ephemeral container,
//! when unset: `allowPrivilegeEscalation: false`, and `capabilities.drop`
//! gains `ALL`.
//!
//! An explicit insecure value is never silently rewritten: it is left in place
//! with a warning, or — when the policy says `override` — rewritten with a
//! warning. `privileged: true` is never rewritten; validation denies it.
//! Windows pods only get `runAsNonRoot`, the one field that is not Linux-only.

use serde_json::{Value, json};

use super::mounts::with;
use super::patch::{Builder, Seg};
use crate::policy::SecurityContext;

/// The container lists of a pod spec, in the order Kubernetes visits them.
pub const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// How every warning about a value the pass changed ends (an overridden or a
/// removed value), as opposed to one about a value left as set: in `warn`
/// mode nothing changes, so these are dropped and the change itself is named.
pub const CHANGE_NOTE: &str = "by policy (securityContext.override)";

/// Everything a hardening pass needs to know and records.
pub struct Context<'a> {
    /// The patch being built.
    pub builder: &'a mut Builder,
    /// The securityContext settings for the pod's namespace: the policy's,
    /// with a matching `namespaceOverrides` entry laid over them.
    pub settings: &'a SecurityContext,
    /// Warnings for the response, one per field left or made insecure.
    pub warnings: &'a mut Vec<String>,
    /// Whether the pod gets an `fsGroup` when it sets none (not when the
    /// policy's `securityContext.setFsGroup` is off, nor for a provisioned
    /// pod whose policy opts out: see `provisioning.setFsGroup`).
    pub fs_group: bool,
}

/// A container found in a pod spec.
#[derive(Debug, Clone)]
pub struct ContainerRef<'p> {
    /// Path to the container object.
    pub path: Vec<Seg<'p>>,
    /// Its name (empty when the object has none).
    pub name: String,
    /// Field path for messages, e.g. `spec.containers[1]`.
    pub display: String,
}

/// Lists the containers under `spec_path` (a path to a `PodSpec`-like object
/// whose container lists are named in [`CONTAINER_LISTS`]).
#[must_use]
pub fn containers<'p>(
    builder: &Builder,
    spec_path: &[Seg<'p>],
    display_prefix: &str,
    lists: &[&'p str],
) -> Vec<ContainerRef<'p>> {
    let mut found = Vec::new();
    for list in lists {
        let mut path = spec_path.to_vec();
        path.push(Seg::Key(list));
        let Some(Value::Array(items)) = builder.get(&path) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let mut p = path.clone();
            p.push(Seg::Index(i));
            found.push(ContainerRef {
                path: p,
                name: item
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                display: format!("{display_prefix}{list}[{i}]"),
            });
        }
    }
    found
}

impl Context<'_> {
    fn warn_left(&mut self, field: &str, value: &Value, why: &str) {
        self.warnings
            .push(format!("unroot: {field}={value} is left as set: {why}"));
    }

    fn warn_overridden(&mut self, field: &str, old: &Value, new: &Value) {
        self.warnings.push(format!(
            "unroot: {field}={old} is overridden to {new} {CHANGE_NOTE}"
        ));
    }

    /// Applies `fix` to an explicit insecure value: overwrite (with a
    /// warning) when the policy overrides, else leave it (with a warning).
    fn insecure(&mut self, path: &[Seg<'_>], field: &str, old: &Value, fix: Value, why: &str) {
        if self.settings.r#override {
            self.warn_overridden(field, old, &fix);
            self.builder.overwrite(path, fix);
        } else {
            self.warn_left(field, old, why);
        }
    }

    /// Hardens the pod-level securityContext of the pod object at `pod`
    /// (`[]` for a Pod, `["spec", "template"]` for a Deployment, …).
    pub fn harden_pod(&mut self, pod: &[Seg<'_>], display: &str, windows: bool) {
        let sc = with(pod, &["spec", "securityContext"]);
        let field = |name: &str| format!("{display}spec.securityContext.{name}");
        let policy = self.settings;
        let (uid, gid, fs_group) = (policy.run_as_user, policy.run_as_group, policy.fs_group);
        let seccomp_type = policy.seccomp_profile_type.as_str();

        if !windows {
            for (name, default) in [
                ("runAsUser", uid),
                ("runAsGroup", gid),
                ("fsGroup", fs_group),
            ] {
                if name == "fsGroup" && !(self.fs_group && policy.set_fs_group) {
                    continue;
                }
                let path = with(&sc, &[name]);
                match self.builder.get(&path).cloned() {
                    None => {
                        self.builder.ensure(&path, json!(default));
                    }
                    Some(v) if v == json!(0) => {
                        self.insecure(
                            &path,
                            &field(name),
                            &v,
                            json!(default),
                            "it runs the pod as root",
                        );
                    }
                    Some(_) => continue,
                }
                // An fsGroup unroot set (added, or overridden from 0) comes
                // with OnRootMismatch, unless the pod chose how its volumes
                // are re-owned.
                if name == "fsGroup" && self.builder.get(&path) == Some(&json!(default)) {
                    self.builder.ensure(
                        &with(&sc, &["fsGroupChangePolicy"]),
                        json!("OnRootMismatch"),
                    );
                }
            }
            let path = with(&sc, &["seccompProfile"]);
            match self.builder.get(&path).cloned() {
                None => {
                    self.builder.ensure(&path, json!({"type": seccomp_type}));
                }
                Some(profile) => {
                    let ty = profile
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if ty != "RuntimeDefault" && ty != "Localhost" {
                        self.insecure(
                            &with(&path, &["type"]),
                            &field("seccompProfile.type"),
                            &json!(ty),
                            json!(seccomp_type),
                            "it disables syscall filtering",
                        );
                    }
                }
            }
        }

        let path = with(&sc, &["runAsNonRoot"]);
        match self.builder.get(&path).cloned() {
            None => {
                // runAsNonRoot with an explicit uid 0 in effect is a pod the
                // kubelet refuses to start; the explicit choice stands and
                // validation decides, so leave runAsNonRoot unset then.
                if let Some(root) = self.explicit_root(pod, display) {
                    self.warnings.push(format!(
                        "unroot: {} is not set because {root} explicitly runs as root",
                        field("runAsNonRoot")
                    ));
                } else {
                    self.builder.ensure(&path, json!(true));
                }
            }
            Some(v) if v == json!(false) => {
                self.insecure(
                    &path,
                    &field("runAsNonRoot"),
                    &v,
                    json!(true),
                    "it lets the pod run as root",
                );
            }
            Some(_) => {}
        }
    }

    /// The field that makes some container run as uid 0 explicitly, if any.
    fn explicit_root(&self, pod: &[Seg<'_>], display: &str) -> Option<String> {
        let spec = with(pod, &["spec"]);
        let pod_uid = self
            .builder
            .get(&with(&spec, &["securityContext", "runAsUser"]));
        let pod_is_root = pod_uid == Some(&json!(0));
        for c in containers(
            self.builder,
            &spec,
            &format!("{display}spec."),
            &CONTAINER_LISTS,
        ) {
            let csc = with(&c.path, &["securityContext"]);
            if self.builder.get(&with(&csc, &["runAsNonRoot"])).is_some() {
                continue;
            }
            match self.builder.get(&with(&csc, &["runAsUser"])) {
                Some(v) if v == &json!(0) => {
                    return Some(format!("{}.securityContext.runAsUser", c.display));
                }
                None if pod_is_root => {
                    return Some(format!("{display}spec.securityContext.runAsUser"));
                }
                _ => {}
            }
        }
        None
    }

    /// Hardens one container's securityContext.
    pub fn harden_container(&mut self, c: &ContainerRef<'_>, windows: bool) {
        if windows {
            return;
        }
        let sc = with(&c.path, &["securityContext"]);
        let field = |name: &str| {
            format!(
                "{}.securityContext.{name} (container {:?})",
                c.display, c.name
            )
        };
        let get = |b: &Builder, name: &[&str]| b.get(&with(&sc, name)).cloned();

        let privileged = get(self.builder, &["privileged"]) == Some(json!(true));
        if privileged {
            self.warn_left(
                &field("privileged"),
                &json!(true),
                "unroot never rewrites privileged; Pod Security enforcement decides",
            );
        }

        // The API server rejects allowPrivilegeEscalation=false next to
        // privileged=true or an added CAP_SYS_ADMIN; setting it would turn a
        // pod validation may allow into one the API server refuses.
        let adds: Vec<String> = get(self.builder, &["capabilities", "add"])
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let can_forbid_escalation = !privileged && !adds.iter().any(|a| a == "CAP_SYS_ADMIN");
        let ape = with(&sc, &["allowPrivilegeEscalation"]);
        match get(self.builder, &["allowPrivilegeEscalation"]) {
            None if can_forbid_escalation => {
                self.builder.ensure(&ape, json!(false));
            }
            Some(v) if v == json!(true) && can_forbid_escalation => {
                self.insecure(
                    &ape,
                    &field("allowPrivilegeEscalation"),
                    &v,
                    json!(false),
                    "it lets processes gain privileges (setuid binaries)",
                );
            }
            _ => {}
        }

        let drop = with(&sc, &["capabilities", "drop"]);
        match get(self.builder, &["capabilities", "drop"]) {
            Some(Value::Array(items)) if items.iter().any(|d| d == "ALL") => {}
            Some(Value::Array(_)) => self.builder.push(&drop, json!("ALL")),
            _ => {
                self.builder.ensure(&drop, json!(["ALL"]));
            }
        }

        let allowed = &self.settings.allowed_capabilities;
        let mut removed = 0;
        for (i, cap) in adds.iter().enumerate() {
            if allowed.iter().any(|a| a == cap) {
                continue;
            }
            let at = format!(
                "{}.securityContext.capabilities.add[{i}] (container {:?})",
                c.display, c.name
            );
            if self.settings.r#override {
                let mut path = with(&sc, &["capabilities", "add"]);
                path.push(Seg::Index(i - removed));
                self.builder.remove(&path);
                removed += 1;
                self.warnings
                    .push(format!("unroot: {at}={cap:?} is removed {CHANGE_NOTE}"));
            } else {
                self.warn_left(
                    &at,
                    &json!(cap),
                    "the capability is not in the policy's allowedCapabilities",
                );
            }
        }

        self.harden_container_identity(c);
    }

    /// The user, group, seccomp and root filesystem part of a container.
    fn harden_container_identity(&mut self, c: &ContainerRef<'_>) {
        let sc = with(&c.path, &["securityContext"]);
        let field = |name: &str| {
            format!(
                "{}.securityContext.{name} (container {:?})",
                c.display, c.name
            )
        };
        let get = |b: &Builder, name: &[&str]| b.get(&with(&sc, name)).cloned();
        let uid = self.settings.run_as_user;
        let gid = self.settings.run_as_group;
        for (name, fix, why) in [
            ("runAsUser", json!(uid), "it runs the container as root"),
            (
                "runAsGroup",
                json!(gid),
                "it runs the container with the root group",
            ),
        ] {
            if let Some(v) = get(self.builder, &[name]).filter(|v| v == &json!(0)) {
                self.insecure(&with(&sc, &[name]), &field(name), &v, fix, why);
            }
        }
        if let Some(v) = get(self.builder, &["runAsNonRoot"]).filter(|v| v == &json!(false)) {
            self.insecure(
                &with(&sc, &["runAsNonRoot"]),
                &field("runAsNonRoot"),
                &v,
                json!(true),
                "it lets the container run as root",
            );
        }
        if let Some(profile) = get(self.builder, &["seccompProfile"]) {
            let ty = profile
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if ty != "RuntimeDefault" && ty != "Localhost" {
                let fix = self.settings.seccomp_profile_type.as_str();
                self.insecure(
                    &with(&sc, &["seccompProfile", "type"]),
                    &field("seccompProfile.type"),
                    &json!(ty),
                    json!(fix),
                    "it disables syscall filtering",
                );
            }
        }
        if self.settings.read_only_root_filesystem {
            self.builder
                .ensure(&with(&sc, &["readOnlyRootFilesystem"]), json!(true));
        }
    }
}
