//! The identity claim: the annotations a pod claims an identity with, parsed
//! and checked against every rule (provisioning enabled, the namespace
//! selected, a trusted requester, ids in range, a portable user name, a home
//! below the home volume); each broken rule is a [`Denial`].

use std::fmt::{self, Write as _};

use serde_json::Value;

use super::{
    CONFIG_MAP_PREFIX, GID_ANNOTATION, GROUPS_ANNOTATION, HOME_ANNOTATION, IDENTITY_ANNOTATIONS,
    UID_ANNOTATION, USER_ANNOTATION,
};
use crate::mutate::Input;
use crate::policy::names::{
    is_below, is_clean_absolute_path, is_dns1123_subdomain, is_portable_user_name,
};
use crate::policy::provisioning::{IdRange, Provisioning};
use crate::policy::selector_matches;

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

/// The identity the annotations claim, checked against every rule; each
/// broken rule is a [`Denial`]. `Ok(None)`: no identity claimed.
pub(super) fn identity_of(
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
    let user = required(&text, USER_ANNOTATION, &mut denials, |u, d| {
        check_user(u, &base_users, d)
    });
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
    let uid = required(&text, UID_ANNOTATION, &mut denials, |s, d| {
        uid_check.check(s, d)
    });
    let gid = required(&text, GID_ANNOTATION, &mut denials, |s, d| {
        gid_check.check(s, d)
    });
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

/// The required annotation `key` (of `text`), read by `check`; a missing
/// one is a denial.
fn required<'v, T>(
    text: &impl Fn(&str) -> Option<&'v str>,
    key: &str,
    denials: &mut Vec<Denial>,
    check: impl FnOnce(&'v str, &mut Vec<Denial>) -> Option<T>,
) -> Option<T> {
    if let Some(value) = text(key) {
        return check(value, denials);
    }
    denials.push(Denial::new(
        Rule::Incomplete,
        format!(
            "{key} is missing: an identity needs {USER_ANNOTATION}, {UID_ANNOTATION} and {GID_ANNOTATION}"
        ),
    ));
    None
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::super::Rule;
    use super::super::testing::*;
    use crate::mutate::Error;
    use crate::policy::Document;

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
}
