//! User provisioning without sudo: a pod runs as the identity its trusted
//! spawner claims, with a generated `/etc/passwd` and `/etc/group`, and one
//! vetted init container creates the home directory.
//!
//! The identity comes from pod annotations: `unroot.dev/user`,
//! `unroot.dev/uid`, `unroot.dev/gid` (required), `unroot.dev/groups`
//! (`name:gid,...`) and `unroot.dev/home` (optional). They are honoured only
//! when every rule holds — provisioning enabled, the namespace selected by
//! `provisioning.namespaceSelector`, the requester listed in
//! `provisioning.trustedRequesters`, ids inside the policy's ranges (never 0),
//! a POSIX portable user name that can also name the ConfigMap
//! `unroot-identity-<user>`, a home below the home volume — and a pod that
//! carries any of them while breaking a rule is denied with every broken rule
//! named, so a tenant cannot claim someone else's identity.
//!
//! For an honoured identity the pod gets:
//! - pod-level `runAsUser`, `runAsGroup`, `fsGroup` and `supplementalGroups`
//!   from the identity (an explicit different value, at pod or container
//!   level, is denied, never overwritten);
//! - the volume `unroot-identity` (the ConfigMap `unroot-identity-<user>`,
//!   which the admission shell server-side-applies) mounted read-only with
//!   `subPath` at `/etc/passwd` and `/etc/group` in every container and init
//!   container but the provisioning one;
//! - the policy's home volume, unless the pod has a volume of that name, and
//!   its mount in every container;
//! - the provisioning init container, first in `initContainers`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value, json};

use k8s_openapi::api::core::v1::{PodSecurityContext, VolumeMount};
use serde::Deserialize as _;

use super::Input;
use super::harden::{CONTAINER_LISTS, container_list, container_list_mut, places};
use super::mounts::{mount_at, push_mount, push_volume};
use super::writer::{Seg, Writer, at};
use crate::policy::names::{
    is_below, is_clean_absolute_path, is_dns1123_subdomain, is_portable_user_name,
};
use crate::policy::provisioning::{HomeVolume, IdRange, Provisioning};
use crate::policy::selector_matches;
use crate::view;

/// The user name annotation.
pub const USER_ANNOTATION: &str = "unroot.dev/user";
/// The user id annotation.
pub const UID_ANNOTATION: &str = "unroot.dev/uid";
/// The primary group id annotation.
pub const GID_ANNOTATION: &str = "unroot.dev/gid";
/// The supplementary groups annotation (`name:gid,...`).
pub const GROUPS_ANNOTATION: &str = "unroot.dev/groups";
/// The home directory annotation (default `<homeVolume.mountPath>/<user>`).
pub const HOME_ANNOTATION: &str = "unroot.dev/home";
/// Every identity annotation; a pod carrying any of them claims an identity.
pub const IDENTITY_ANNOTATIONS: [&str; 5] = [
    USER_ANNOTATION,
    UID_ANNOTATION,
    GID_ANNOTATION,
    GROUPS_ANNOTATION,
    HOME_ANNOTATION,
];
/// The volume holding the generated passwd and group files.
pub const IDENTITY_VOLUME: &str = "unroot-identity";
/// The identity ConfigMap is this prefix followed by the user name.
pub const CONFIG_MAP_PREFIX: &str = "unroot-identity-";
/// Which identity rule a pod broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Provisioning is disabled in the policy.
    Disabled,
    /// The pod's namespace is not selected by `provisioning.namespaceSelector`.
    NamespaceNotSelected,
    /// The requester is not in `provisioning.trustedRequesters`.
    RequesterNotTrusted,
    /// A required annotation is missing.
    Incomplete,
    /// The user name is not portable, cannot name the ConfigMap, or is taken.
    InvalidUser,
    /// The uid is 0, outside `provisioning.uidRange`, or taken.
    UidNotAllowed,
    /// A gid is 0, outside `provisioning.gidRange`, or taken.
    GidNotAllowed,
    /// `unroot.dev/groups` is malformed or contradicts itself.
    InvalidGroups,
    /// `unroot.dev/home` is not a directory below the home volume.
    InvalidHome,
    /// The pod sets something the identity would have to overwrite.
    Conflict,
    /// The pod cannot be provisioned (a Windows pod).
    Unsupported,
}

impl Rule {
    /// A stable, kebab-case name for logs and metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::NamespaceNotSelected => "namespace-not-selected",
            Self::RequesterNotTrusted => "requester-not-trusted",
            Self::Incomplete => "incomplete",
            Self::InvalidUser => "invalid-user",
            Self::UidNotAllowed => "uid-not-allowed",
            Self::GidNotAllowed => "gid-not-allowed",
            Self::InvalidGroups => "invalid-groups",
            Self::InvalidHome => "invalid-home",
            Self::Conflict => "conflict",
            Self::Unsupported => "unsupported",
        }
    }
}

/// One reason an identity claim is denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The rule broken.
    pub rule: Rule,
    /// What is wrong and what to do, naming the field.
    pub message: String,
}

impl Denial {
    pub(crate) fn new(rule: Rule, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An identity that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub user: String,
    /// User id.
    pub uid: i64,
    /// Primary group id.
    pub gid: i64,
    /// Primary group name: the `unroot.dev/groups` entry with the primary
    /// gid, else the user name (a user private group).
    pub primary_group: String,
    /// Supplementary groups, in annotation order, without the primary one.
    pub groups: Vec<(String, i64)>,
    /// Home directory.
    pub home: String,
}

impl Identity {
    /// `unroot-identity-<user>`.
    #[must_use]
    pub fn config_map_name(&self) -> String {
        format!("{CONFIG_MAP_PREFIX}{}", self.user)
    }

    /// The supplementary groups as `name:gid,...` (`UNROOT_GROUPS`).
    #[must_use]
    pub fn groups_value(&self) -> String {
        self.groups
            .iter()
            .map(|(n, g)| format!("{n}:{g}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The generated `/etc/passwd`. Every field was validated to hold no `:`
    /// or line break, so nothing needs escaping.
    #[must_use]
    pub fn passwd(&self, policy: &Provisioning) -> String {
        let mut out = String::new();
        for line in &policy.base_entries.passwd {
            out.push_str(line);
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{}:x:{}:{}::{}:{}",
            self.user, self.uid, self.gid, self.home, policy.shell
        );
        out
    }

    /// The generated `/etc/group`: base entries, the primary group, then each
    /// supplementary group with the user as its member.
    #[must_use]
    pub fn group(&self, policy: &Provisioning) -> String {
        let mut out = String::new();
        for line in &policy.base_entries.group {
            out.push_str(line);
            out.push('\n');
        }
        let _ = writeln!(out, "{}:x:{}:", self.primary_group, self.gid);
        for (name, gid) in &self.groups {
            let _ = writeln!(out, "{name}:x:{gid}:{}", self.user);
        }
        out
    }
}

/// Reads the identity the pod's annotations claim and checks every rule.
///
/// `Ok(None)`: the pod claims no identity. `Err`: it claims one that breaks
/// rules, each named. The admission gates (enabled, namespace, requester)
/// are checked first and alone: their failure makes the rest moot.
pub fn claimed_identity(
    annotations: Option<&Value>,
    input: &Input<'_>,
) -> Result<Option<Identity>, Vec<Denial>> {
    identity_of(annotations, input, Requester::MustBeTrusted)
}

/// Whether an identity claim needs a trusted requester: at creation it does;
/// afterwards the stored pod vouches for it, since identity annotations can
/// neither be set by anyone else at creation (`/mutate`) nor changed later
/// (`/validate`, [`identity_annotations_changed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    /// The request creates the pod: the requester must be trusted.
    MustBeTrusted,
    /// The pod exists: its annotations were vetted when it was created.
    StoredPod,
}

fn identity_of(
    annotations: Option<&Value>,
    input: &Input<'_>,
    requester: Requester,
) -> Result<Option<Identity>, Vec<Denial>> {
    let get = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .filter(|v| !v.is_null())
    };
    let text = |key: &str| get(key).map(|v| v.as_str().unwrap_or_default());
    let claimed: Vec<&str> = IDENTITY_ANNOTATIONS
        .iter()
        .copied()
        .filter(|k| get(k).is_some())
        .collect();
    if claimed.is_empty() {
        return Ok(None);
    }
    let p = &input.policy.provisioning;
    let home_root = check_gates(&claimed.join(", "), input, requester).map_err(|d| vec![d])?;
    let mut denials = Vec::new();
    let base_users = p.base_entries.users();
    let base_groups = p.base_entries.groups();
    let missing = |key: &str| {
        Denial::new(
            Rule::Incomplete,
            format!(
                "{key} is missing: an identity needs {USER_ANNOTATION}, {UID_ANNOTATION} and {GID_ANNOTATION}"
            ),
        )
    };
    let user = match text(USER_ANNOTATION) {
        None => {
            denials.push(missing(USER_ANNOTATION));
            None
        }
        Some(u) => check_user(u, &base_users, &mut denials),
    };
    let uid_check = IdCheck {
        annotation: UID_ANNOTATION,
        range: p.uid_range,
        range_field: "provisioning.uidRange",
        rule: Rule::UidNotAllowed,
        taken: &base_users,
        taken_field: "provisioning.baseEntries.passwd",
    };
    let gid_check = IdCheck {
        annotation: GID_ANNOTATION,
        range: p.gid_range,
        range_field: "provisioning.gidRange",
        rule: Rule::GidNotAllowed,
        taken: &base_groups,
        taken_field: "provisioning.baseEntries.group",
    };
    let uid = match text(UID_ANNOTATION) {
        None => {
            denials.push(missing(UID_ANNOTATION));
            None
        }
        Some(s) => uid_check.check(s, &mut denials),
    };
    let gid = match text(GID_ANNOTATION) {
        None => {
            denials.push(missing(GID_ANNOTATION));
            None
        }
        Some(s) => gid_check.check(s, &mut denials),
    };
    let groups = text(GROUPS_ANNOTATION)
        .map(|s| {
            let check = IdCheck {
                annotation: GROUPS_ANNOTATION,
                ..gid_check
            };
            parse_groups(s, &check, &base_groups, &mut denials)
        })
        .unwrap_or_default();
    let home = check_home(
        text(HOME_ANNOTATION),
        user.as_deref(),
        home_root,
        &mut denials,
    );
    let (Some(user), Some(uid), Some(gid), Some(home)) = (user, uid, gid, home) else {
        return Err(denials);
    };
    let (primary_group, groups) = split_primary(&user, gid, groups, &base_groups, &mut denials);
    if denials.is_empty() {
        Ok(Some(Identity {
            user,
            uid,
            gid,
            primary_group,
            groups,
            home,
        }))
    } else {
        Err(denials)
    }
}

/// The admission gates: provisioning enabled, namespace selected, requester
/// trusted (when `requester` says so). Returns the home volume's mount path.
fn check_gates<'a>(
    listed: &str,
    input: &Input<'a>,
    requester: Requester,
) -> Result<&'a str, Denial> {
    let p = &input.policy.provisioning;
    let Some(home_volume) = p.home_volume.as_ref().filter(|_| p.enabled) else {
        return Err(Denial::new(
            Rule::Disabled,
            format!(
                "the pod sets {listed}, but identity provisioning is disabled (provisioning.enabled: false); remove the annotations"
            ),
        ));
    };
    if !selector_matches(&p.namespace_selector, input.namespace_labels) {
        return Err(Denial::new(
            Rule::NamespaceNotSelected,
            format!(
                "the pod sets {listed}, but its namespace is not selected by provisioning.namespaceSelector"
            ),
        ));
    }
    if requester == Requester::MustBeTrusted
        && !p.trusted_requesters.iter().any(|t| t == input.requester)
    {
        return Err(Denial::new(
            Rule::RequesterNotTrusted,
            format!(
                "requester {:?} is not in provisioning.trustedRequesters: only the platform's spawner may set {listed}",
                input.requester
            ),
        ));
    }
    Ok(&home_volume.mount_path)
}

fn check_home(
    home: Option<&str>,
    user: Option<&str>,
    root: &str,
    denials: &mut Vec<Denial>,
) -> Option<String> {
    match (home, user) {
        (Some(h), _) => {
            if is_clean_absolute_path(h) && !h.contains(':') && is_below(h, root) {
                return Some(h.to_owned());
            }
            denials.push(Denial::new(
                Rule::InvalidHome,
                format!(
                    "{HOME_ANNOTATION}: {h:?} must be a clean absolute path below provisioning.homeVolume.mountPath ({root}), without ':'"
                ),
            ));
            None
        }
        (None, Some(u)) => Some(format!("{root}/{u}")),
        (None, None) => None,
    }
}

fn check_user(u: &str, base: &[(&str, i64)], denials: &mut Vec<Denial>) -> Option<String> {
    let message = if !is_portable_user_name(u) {
        format!(
            "{USER_ANNOTATION}: {u:?} is not a portable user name ([a-z_][a-z0-9_-]*[$]?, at most 32 characters)"
        )
    } else if !is_dns1123_subdomain(&format!("{CONFIG_MAP_PREFIX}{u}")) {
        format!(
            "{USER_ANNOTATION}: {u:?} cannot name the ConfigMap \"{CONFIG_MAP_PREFIX}{u}\" (a DNS-1123 subdomain: lower-case letters, digits and '-', ending with a letter or digit)"
        )
    } else if base.iter().any(|(n, _)| *n == u) {
        format!(
            "{USER_ANNOTATION}: {u:?} is a base entry of provisioning.baseEntries.passwd and cannot be claimed"
        )
    } else {
        return Some(u.to_owned());
    };
    denials.push(Denial::new(Rule::InvalidUser, message));
    None
}

/// How one id annotation is checked.
#[derive(Clone, Copy)]
struct IdCheck<'a> {
    annotation: &'a str,
    range: IdRange,
    range_field: &'a str,
    rule: Rule,
    taken: &'a [(&'a str, i64)],
    taken_field: &'a str,
}

impl IdCheck<'_> {
    fn check(&self, text: &str, denials: &mut Vec<Denial>) -> Option<i64> {
        let annotation = self.annotation;
        let id = (!text.is_empty() && text.len() <= 10 && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<i64>().ok())
            .flatten();
        let message = match id {
            None => format!("{annotation}: {text:?} is not a decimal id"),
            Some(0) => format!("{annotation}: 0 is root and can never be claimed"),
            Some(id) if !self.range.contains(id) => format!(
                "{annotation}: {id} is outside {} ({}-{})",
                self.range_field, self.range.min, self.range.max
            ),
            Some(id) if self.taken.iter().any(|(_, t)| *t == id) => format!(
                "{annotation}: {id} belongs to a base entry of {} and cannot be claimed",
                self.taken_field
            ),
            Some(id) => return Some(id),
        };
        denials.push(Denial::new(self.rule, message));
        None
    }
}

fn parse_groups(
    text: &str,
    check: &IdCheck<'_>,
    base: &[(&str, i64)],
    denials: &mut Vec<Denial>,
) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    if text.trim().is_empty() {
        return out;
    }
    let invalid = |message: String| Denial::new(Rule::InvalidGroups, message);
    for entry in text.split(',').map(str::trim) {
        let Some((name, gid)) = entry.split_once(':') else {
            denials.push(invalid(format!(
                "{GROUPS_ANNOTATION}: {entry:?} is not name:gid (e.g. research:2001,staff:2002)"
            )));
            continue;
        };
        if !is_portable_user_name(name) {
            denials.push(invalid(format!(
                "{GROUPS_ANNOTATION}: {name:?} is not a portable group name ([a-z_][a-z0-9_-]*[$]?, at most 32 characters)"
            )));
            continue;
        }
        if base.iter().any(|(n, _)| *n == name) {
            denials.push(invalid(format!(
                "{GROUPS_ANNOTATION}: {name:?} is a base entry of provisioning.baseEntries.group and cannot be claimed"
            )));
            continue;
        }
        let Some(gid) = check.check(gid, denials) else {
            continue;
        };
        if out.iter().any(|(n, g)| n == name || *g == gid) {
            denials.push(invalid(format!(
                "{GROUPS_ANNOTATION}: {entry:?} repeats a group name or gid"
            )));
            continue;
        }
        out.push((name.to_owned(), gid));
    }
    out
}

/// Splits the primary group out of the claimed groups.
fn split_primary(
    user: &str,
    gid: i64,
    mut groups: Vec<(String, i64)>,
    base: &[(&str, i64)],
    denials: &mut Vec<Denial>,
) -> (String, Vec<(String, i64)>) {
    if let Some(i) = groups.iter().position(|(_, g)| *g == gid) {
        let (name, _) = groups.remove(i);
        return (name, groups);
    }
    if let Some((_, other)) = groups.iter().find(|(n, _)| n == user) {
        denials.push(Denial::new(
            Rule::InvalidGroups,
            format!(
                "{GROUPS_ANNOTATION}: group {user:?} is the user's own group, but has gid {other}, not {GID_ANNOTATION} {gid}"
            ),
        ));
    } else if base.iter().any(|(n, _)| *n == user) {
        denials.push(Denial::new(
            Rule::InvalidGroups,
            format!(
                "{USER_ANNOTATION}: the user's own group {user:?} is a base entry of provisioning.baseEntries.group; name the primary group in {GROUPS_ANNOTATION}"
            ),
        ));
    }
    (user.to_owned(), groups)
}

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
pub(crate) fn identity_volume(identity: &Identity) -> Value {
    json!({
        "name": IDENTITY_VOLUME,
        "configMap": {
            "name": identity.config_map_name(),
            "items": [{"key": "passwd", "path": "passwd"}, {"key": "group", "path": "group"}],
        },
    })
}

pub(crate) fn identity_mount(path: &str, file: &str) -> VolumeMount {
    VolumeMount {
        name: IDENTITY_VOLUME.to_owned(),
        mount_path: path.to_owned(),
        sub_path: Some(file.to_owned()),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

pub(crate) const IDENTITY_FILES: [(&str, &str); 2] =
    [("/etc/passwd", "passwd"), ("/etc/group", "group")];

pub(crate) fn conflict(field: &str, got: &Value, want: i64, annotation: &str) -> Denial {
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
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};

    use super::{Requester, Rule, provenance_index};
    use crate::mutate::{self, Error, Input, Outcome};
    use crate::policy::Document;

    const POLICY: &str = include_str!("../../../../tests/fixtures/provisioning/policy.yaml");
    const HUB: &str = "system:serviceaccount:jupyterhub:hub";
    const DIGEST: &str = "registry.example.com/unroot/provisioner@sha256:4f2c8a61d0e5b9a7c3f1e8d2b6a4c0e9f7d5b3a1c8e6f4d2b0a9c7e5f3d1b8a6";

    fn policy() -> Document {
        Document::from_yaml(POLICY).unwrap()
    }

    fn selected() -> BTreeMap<String, String> {
        BTreeMap::from([("unroot.dev/provisioning".to_owned(), "enabled".to_owned())])
    }

    fn identity() -> Value {
        json!({"unroot.dev/user": "alice", "unroot.dev/uid": "1001", "unroot.dev/gid": "1001",
               "unroot.dev/groups": "research:2001,staff:2002"})
    }

    fn spawned(annotations: &Value, spec: &Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "jupyter-alice", "namespace": "hub-users", "annotations": annotations},
               "spec": spec})
    }

    fn notebook() -> Value {
        json!({"containers": [{"name": "notebook", "image": "jupyter/base-notebook"}]})
    }

    fn run(
        object: &Value,
        policy: &Document,
        labels: &BTreeMap<String, String>,
        requester: &str,
    ) -> mutate::Result<Outcome> {
        let input = Input {
            policy,
            namespace_labels: labels,
            requester,
        };
        mutate::pod_value(object, &input)
    }

    /// Mutates as the hub in a selected namespace, checks the patch applies
    /// and that re-mutation adds nothing.
    fn admit(object: &Value) -> Outcome {
        let policy = policy();
        let outcome = run(object, &policy, &selected(), HUB).unwrap();
        let mut applied = object.clone();
        json_patch::patch(&mut applied, &outcome.patch).unwrap();
        assert_eq!(applied, outcome.object);
        let again = run(&outcome.object, &policy, &selected(), HUB).unwrap();
        assert!(
            again.patch.0.is_empty(),
            "re-mutation patched {:?}",
            again.patch
        );
        assert_eq!(again.identity, outcome.identity);
        outcome
    }

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

    struct Forged {
        name: &'static str,
        annotations: Value,
        spec: Value,
        requester: &'static str,
        selected: bool,
        policy: fn(&mut Document),
        /// (rule, exact message), in order.
        denials: Vec<(Rule, &'static str)>,
    }

    fn with(edits: &[(&str, &str)]) -> Value {
        let mut a = identity();
        for (k, v) in edits {
            if v.is_empty() {
                a.as_object_mut().unwrap().remove(*k);
            } else {
                a[*k] = json!(v);
            }
        }
        a
    }

    fn keep(_: &mut Document) {}

    #[allow(clippy::too_many_lines)] // one table, one row per rule
    fn forged() -> Vec<Forged> {
        let row = |name, annotations, denials| Forged {
            name,
            annotations,
            spec: notebook(),
            requester: HUB,
            selected: true,
            policy: keep,
            denials,
        };
        vec![
            Forged {
                requester: "alice",
                ..row(
                    "a tenant cannot claim an identity",
                    identity(),
                    vec![(
                        Rule::RequesterNotTrusted,
                        "requester \"alice\" is not in provisioning.trustedRequesters: only the platform's spawner may set unroot.dev/user, unroot.dev/uid, unroot.dev/gid, unroot.dev/groups",
                    )],
                )
            },
            Forged {
                requester: "alice",
                ..row(
                    "one annotation is a claim",
                    json!({"unroot.dev/home": "/home/bob"}),
                    vec![(
                        Rule::RequesterNotTrusted,
                        "requester \"alice\" is not in provisioning.trustedRequesters: only the platform's spawner may set unroot.dev/home",
                    )],
                )
            },
            Forged {
                selected: false,
                ..row(
                    "unselected namespace",
                    identity(),
                    vec![(
                        Rule::NamespaceNotSelected,
                        "the pod sets unroot.dev/user, unroot.dev/uid, unroot.dev/gid, unroot.dev/groups, but its namespace is not selected by provisioning.namespaceSelector",
                    )],
                )
            },
            Forged {
                policy: |p| p.provisioning.enabled = false,
                ..row(
                    "provisioning disabled",
                    with(&[("unroot.dev/groups", "")]),
                    vec![(
                        Rule::Disabled,
                        "the pod sets unroot.dev/user, unroot.dev/uid, unroot.dev/gid, but identity provisioning is disabled (provisioning.enabled: false); remove the annotations",
                    )],
                )
            },
            row(
                "uid 0",
                with(&[("unroot.dev/uid", "0")]),
                vec![(
                    Rule::UidNotAllowed,
                    "unroot.dev/uid: 0 is root and can never be claimed",
                )],
            ),
            row(
                "gid 0",
                with(&[("unroot.dev/gid", "0")]),
                vec![(
                    Rule::GidNotAllowed,
                    "unroot.dev/gid: 0 is root and can never be claimed",
                )],
            ),
            row(
                "uid outside the range",
                with(&[("unroot.dev/uid", "70000")]),
                vec![(
                    Rule::UidNotAllowed,
                    "unroot.dev/uid: 70000 is outside provisioning.uidRange (1000-60000)",
                )],
            ),
            row(
                "gid below the range",
                with(&[("unroot.dev/gid", "999")]),
                vec![(
                    Rule::GidNotAllowed,
                    "unroot.dev/gid: 999 is outside provisioning.gidRange (1000-60000)",
                )],
            ),
            row(
                "uid not a number",
                with(&[("unroot.dev/uid", "-1")]),
                vec![(
                    Rule::UidNotAllowed,
                    "unroot.dev/uid: \"-1\" is not a decimal id",
                )],
            ),
            row(
                "supplementary gid 0",
                with(&[("unroot.dev/groups", "wheel:0")]),
                vec![(
                    Rule::GidNotAllowed,
                    "unroot.dev/groups: 0 is root and can never be claimed",
                )],
            ),
            row(
                "supplementary gid of a base entry",
                with(&[("unroot.dev/groups", "research:2001, nogroup:65534")]),
                vec![(
                    Rule::GidNotAllowed,
                    "unroot.dev/groups: 65534 is outside provisioning.gidRange (1000-60000)",
                )],
            ),
            row(
                "non-portable user name",
                with(&[("unroot.dev/user", "Alice")]),
                vec![(
                    Rule::InvalidUser,
                    "unroot.dev/user: \"Alice\" is not a portable user name ([a-z_][a-z0-9_-]*[$]?, at most 32 characters)",
                )],
            ),
            row(
                "user name with a colon",
                with(&[("unroot.dev/user", "a:0:0")]),
                vec![(
                    Rule::InvalidUser,
                    "unroot.dev/user: \"a:0:0\" is not a portable user name ([a-z_][a-z0-9_-]*[$]?, at most 32 characters)",
                )],
            ),
            row(
                "portable name that cannot name a ConfigMap",
                with(&[("unroot.dev/user", "al_ice")]),
                vec![(
                    Rule::InvalidUser,
                    "unroot.dev/user: \"al_ice\" cannot name the ConfigMap \"unroot-identity-al_ice\" (a DNS-1123 subdomain: lower-case letters, digits and '-', ending with a letter or digit)",
                )],
            ),
            row(
                "machine account name",
                with(&[("unroot.dev/user", "host$")]),
                vec![(
                    Rule::InvalidUser,
                    "unroot.dev/user: \"host$\" cannot name the ConfigMap \"unroot-identity-host$\" (a DNS-1123 subdomain: lower-case letters, digits and '-', ending with a letter or digit)",
                )],
            ),
            row(
                "base user name",
                with(&[("unroot.dev/user", "nobody")]),
                vec![(
                    Rule::InvalidUser,
                    "unroot.dev/user: \"nobody\" is a base entry of provisioning.baseEntries.passwd and cannot be claimed",
                )],
            ),
            row(
                "missing gid",
                with(&[("unroot.dev/gid", "")]),
                vec![(
                    Rule::Incomplete,
                    "unroot.dev/gid is missing: an identity needs unroot.dev/user, unroot.dev/uid and unroot.dev/gid",
                )],
            ),
            row(
                "malformed groups",
                with(&[("unroot.dev/groups", "research")]),
                vec![(
                    Rule::InvalidGroups,
                    "unroot.dev/groups: \"research\" is not name:gid (e.g. research:2001,staff:2002)",
                )],
            ),
            row(
                "repeated group",
                with(&[("unroot.dev/groups", "research:2001,research:2003")]),
                vec![(
                    Rule::InvalidGroups,
                    "unroot.dev/groups: \"research:2003\" repeats a group name or gid",
                )],
            ),
            row(
                "user's own group with another gid",
                with(&[("unroot.dev/groups", "alice:2001")]),
                vec![(
                    Rule::InvalidGroups,
                    "unroot.dev/groups: group \"alice\" is the user's own group, but has gid 2001, not unroot.dev/gid 1001",
                )],
            ),
            row(
                "base group name",
                with(&[("unroot.dev/groups", "root:2001")]),
                vec![(
                    Rule::InvalidGroups,
                    "unroot.dev/groups: \"root\" is a base entry of provisioning.baseEntries.group and cannot be claimed",
                )],
            ),
            row(
                "home outside the volume",
                with(&[("unroot.dev/home", "/etc")]),
                vec![(
                    Rule::InvalidHome,
                    "unroot.dev/home: \"/etc\" must be a clean absolute path below provisioning.homeVolume.mountPath (/home), without ':'",
                )],
            ),
            row(
                "home escaping with ..",
                with(&[("unroot.dev/home", "/home/../root")]),
                vec![(
                    Rule::InvalidHome,
                    "unroot.dev/home: \"/home/../root\" must be a clean absolute path below provisioning.homeVolume.mountPath (/home), without ':'",
                )],
            ),
            row(
                "every broken rule is named",
                with(&[("unroot.dev/user", "Root"), ("unroot.dev/uid", "0")]),
                vec![
                    (
                        Rule::InvalidUser,
                        "unroot.dev/user: \"Root\" is not a portable user name ([a-z_][a-z0-9_-]*[$]?, at most 32 characters)",
                    ),
                    (
                        Rule::UidNotAllowed,
                        "unroot.dev/uid: 0 is root and can never be claimed",
                    ),
                ],
            ),
            Forged {
                spec: json!({"securityContext": {"runAsUser": 0, "fsGroup": 5}, "containers": [{"name": "notebook", "image": "x"}]}),
                ..row(
                    "explicit pod ids that differ",
                    identity(),
                    vec![
                        (
                            Rule::Conflict,
                            "spec.securityContext.runAsUser: 0 conflicts with the identity (unroot.dev/uid: 1001); remove it or set it to 1001",
                        ),
                        (
                            Rule::Conflict,
                            "spec.securityContext.fsGroup: 5 conflicts with the identity (unroot.dev/gid: 1001); remove it or set it to 1001",
                        ),
                    ],
                )
            },
            Forged {
                spec: json!({"containers": [{"name": "notebook", "image": "x", "securityContext": {"runAsUser": 1002}}]}),
                ..row(
                    "explicit container uid that differs",
                    identity(),
                    vec![(
                        Rule::Conflict,
                        "spec.containers[0].securityContext.runAsUser (container \"notebook\"): 1002 conflicts with the identity (unroot.dev/uid: 1001); remove it or set it to 1001",
                    )],
                )
            },
            Forged {
                spec: json!({"securityContext": {"supplementalGroups": [2001, 0]}, "containers": [{"name": "notebook", "image": "x"}]}),
                ..row(
                    "extra supplemental groups",
                    identity(),
                    vec![(
                        Rule::Conflict,
                        "spec.securityContext.supplementalGroups: [2001,0] differs from the identity's groups [2001, 2002] (unroot.dev/groups); remove it",
                    )],
                )
            },
            Forged {
                spec: json!({"initContainers": [{"name": "unroot-provision", "image": "busybox", "securityContext": {"privileged": true}}],
                    "containers": [{"name": "notebook", "image": "x"}]}),
                ..row(
                    "a look-alike provisioning container",
                    identity(),
                    vec![(
                        Rule::Conflict,
                        "spec.initContainers[0]: the name \"unroot-provision\" is reserved for the provisioning init container, and this container is not exactly the one the policy injects (every field must match); rename it",
                    )],
                )
            },
            Forged {
                spec: json!({"volumes": [{"name": "unroot-identity", "configMap": {"name": "unroot-identity-bob"}}],
                    "containers": [{"name": "notebook", "image": "x"}]}),
                ..row(
                    "someone else's identity volume",
                    identity(),
                    vec![(
                        Rule::Conflict,
                        "spec.volumes[0] is named \"unroot-identity\", which is reserved for the identity's passwd and group files; rename it",
                    )],
                )
            },
            Forged {
                spec: json!({"volumes": [{"name": "etc", "configMap": {"name": "mine"}}],
                    "containers": [{"name": "notebook", "image": "x", "volumeMounts": [{"name": "etc", "mountPath": "/etc/passwd", "subPath": "passwd"}]}]}),
                ..row(
                    "a passwd of the pod's own",
                    identity(),
                    vec![(
                        Rule::Conflict,
                        "spec.containers[0].volumeMounts[0] (container \"notebook\") mounts volume \"etc\" at /etc/passwd, where unroot mounts the identity's passwd file; remove that mount",
                    )],
                )
            },
            Forged {
                spec: json!({"os": {"name": "windows"}, "containers": [{"name": "notebook", "image": "x"}]}),
                ..row(
                    "windows pods",
                    identity(),
                    vec![(
                        Rule::Unsupported,
                        "spec.os.name is windows: identity provisioning (passwd, group, uid) needs a Linux pod",
                    )],
                )
            },
        ]
    }

    #[test]
    fn forged_or_conflicting_identities_are_denied_naming_the_rule() {
        for case in forged() {
            let mut policy = policy();
            (case.policy)(&mut policy);
            let labels = if case.selected {
                selected()
            } else {
                BTreeMap::new()
            };
            let object = spawned(&case.annotations, &case.spec);
            let Err(Error::Forbidden(denials)) = run(&object, &policy, &labels, case.requester)
            else {
                panic!("{}: not denied", case.name);
            };
            let got: Vec<(Rule, &str)> = denials
                .iter()
                .map(|d| (d.rule, d.message.as_str()))
                .collect();
            assert_eq!(got, case.denials, "{}", case.name);
        }
    }

    #[test]
    fn pods_without_identity_annotations_are_not_provisioned() {
        let policy = policy();
        let object = spawned(&json!({"team": "a"}), &notebook());
        let outcome = run(&object, &policy, &selected(), "alice").unwrap();
        assert!(outcome.identity.is_none());
        assert!(outcome.object["spec"].get("initContainers").is_none());
        assert_eq!(
            outcome.object["spec"]["securityContext"]["runAsUser"],
            65532
        );
    }

    #[test]
    fn the_deny_message_lists_every_rule() {
        let policy = policy();
        let object = spawned(
            &with(&[("unroot.dev/uid", "0"), ("unroot.dev/gid", "0")]),
            &notebook(),
        );
        let err = run(&object, &policy, &selected(), HUB)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "identity claim denied: unroot.dev/uid: 0 is root and can never be claimed; unroot.dev/gid: 0 is root and can never be claimed"
        );
    }

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
