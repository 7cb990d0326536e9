//! Validation: every rule a policy document breaks, each with the path of
//! the offending field, collected rather than stopping at the first.

use std::fmt;

use super::names::{self, is_dns1123_label, is_dns1123_subdomain};
use super::{Document, NamespaceLabelAdmins, NamespaceOverride, SeccompProfileType};
use crate::pss;

/// One rule a policy breaks, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `securityContext.runAsUser`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// An error at `path`.
    #[must_use]
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Document {
    /// Every rule this document breaks, each with its field path.
    #[must_use]
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut err = |path: &str, message: String| {
            errors.push(FieldError {
                path: path.to_owned(),
                message,
            });
        };
        if self.api_version != "unroot.dev/v1" {
            err(
                "apiVersion",
                format!(
                    "{:?} is not supported, use \"unroot.dev/v1\"",
                    self.api_version
                ),
            );
        }
        if self.kind != "Policy" {
            err(
                "kind",
                format!("{:?} is not supported, use \"Policy\"", self.kind),
            );
        }
        let sc = &self.security_context;
        for (path, value) in [
            ("securityContext.runAsUser", sc.run_as_user),
            ("securityContext.runAsGroup", sc.run_as_group),
            ("securityContext.fsGroup", sc.fs_group),
        ] {
            if let Some(message) = id_error(value) {
                err(path, message);
            }
        }
        if sc.seccomp_profile_type == SeccompProfileType::Localhost {
            err(
                "securityContext.seccompProfileType",
                LOCALHOST_ERROR.to_owned(),
            );
        }
        check_capabilities(
            &mut errors,
            "securityContext.allowedCapabilities",
            &sc.allowed_capabilities,
        );
        for (i, o) in sc.namespace_overrides.iter().enumerate() {
            o.validate(
                &format!("securityContext.namespaceOverrides[{i}]"),
                &mut errors,
            );
        }
        self.validate_pod_security(&mut errors);
        self.namespace_label_admins.validate(&mut errors);
        self.trust_bundle.validate(&mut errors);
        self.provisioning.validate(&mut errors);
        self.validate_reserved_ids(&mut errors);
        check_names(
            &mut errors,
            "webhook.excludedNamespaces",
            &self.webhook.excluded_namespaces,
            is_dns1123_label,
            "a namespace name",
        );
        errors
    }

    /// With provisioning on, the ids in `uidRange`/`gidRange` belong to
    /// provisioned identities: unroot must never give them to other pods.
    fn validate_reserved_ids(&self, errors: &mut Vec<FieldError>) {
        let p = &self.provisioning;
        if !p.enabled {
            return;
        }
        let sc = &self.security_context;
        let mut ids = vec![
            (
                "securityContext.runAsUser".to_owned(),
                sc.run_as_user,
                false,
            ),
            (
                "securityContext.runAsGroup".to_owned(),
                sc.run_as_group,
                true,
            ),
            ("securityContext.fsGroup".to_owned(), sc.fs_group, true),
        ];
        for (i, o) in sc.namespace_overrides.iter().enumerate() {
            let path = format!("securityContext.namespaceOverrides[{i}]");
            for (field, value, group) in [
                ("runAsUser", o.run_as_user, false),
                ("runAsGroup", o.run_as_group, true),
                ("fsGroup", o.fs_group, true),
            ] {
                if let Some(value) = value {
                    ids.push((format!("{path}.{field}"), value, group));
                }
            }
        }
        for (path, id, group) in ids {
            let (range, field) = if group {
                (p.gid_range, "provisioning.gidRange")
            } else {
                (p.uid_range, "provisioning.uidRange")
            };
            if range.contains(id) {
                errors.push(FieldError::new(
                    path,
                    format!(
                        "{id} is inside {field} ({}-{}): those ids belong to provisioned identities, and pods hardened with it would be refused; choose an id outside the range or move the range",
                        range.min, range.max
                    ),
                ));
            }
        }
    }

    fn validate_pod_security(&self, errors: &mut Vec<FieldError>) {
        let d = &self.pod_security.defaults;
        for (mode, level, version) in [
            ("enforce", &d.enforce, &d.enforce_version),
            ("audit", &d.audit, &d.audit_version),
            ("warn", &d.warn, &d.warn_version),
        ] {
            // "must be one of …" reads "is not one of …" after the value.
            let is_not = |e: pss::Error| e.to_string().replacen("must be", "is not", 1);
            if let Err(e) = level.parse::<pss::Level>() {
                errors.push(FieldError {
                    path: format!("podSecurity.defaults.{mode}"),
                    message: format!("{level:?} {}", is_not(e)),
                });
            }
            if let Err(e) = version.parse::<pss::Version>() {
                errors.push(FieldError {
                    path: format!("podSecurity.defaults.{mode}Version"),
                    message: format!("{version:?} {}", is_not(e)),
                });
            }
        }
        let ex = &self.pod_security.exemptions;
        check_names(
            errors,
            "podSecurity.exemptions.usernames",
            &ex.usernames,
            |s| !s.is_empty(),
            "a user name",
        );
        check_names(
            errors,
            "podSecurity.exemptions.namespaces",
            &ex.namespaces,
            is_dns1123_label,
            "a namespace name",
        );
        check_names(
            errors,
            "podSecurity.exemptions.runtimeClassNames",
            &ex.runtime_class_names,
            is_dns1123_subdomain,
            "a RuntimeClass name",
        );
    }
}

/// Every entry of `list` must satisfy `valid` and be unique.
fn check_names(
    errors: &mut Vec<FieldError>,
    path: &str,
    list: &[String],
    valid: fn(&str) -> bool,
    what: &str,
) {
    for (i, name) in list.iter().enumerate() {
        if !valid(name) {
            let hint = if name.contains('*') {
                " (names match exactly; there are no wildcards)"
            } else {
                ""
            };
            errors.push(FieldError {
                path: format!("{path}[{i}]"),
                message: format!("{name:?} is not {what}{hint}"),
            });
        } else if list[..i].contains(name) {
            errors.push(FieldError {
                path: format!("{path}[{i}]"),
                message: format!("{name:?} is listed twice"),
            });
        }
    }
}

/// Why a uid or gid cannot be injected, if it cannot.
fn id_error(value: i64) -> Option<String> {
    (value <= 0 || value > i64::from(u32::MAX - 1))
        .then(|| format!("{value} is not allowed: must be a non-root id between 1 and 4294967294"))
}

const LOCALHOST_ERROR: &str =
    "Localhost needs a per-pod localhostProfile and cannot be injected; use RuntimeDefault";

/// Every entry of an allowed-capabilities list must be a Linux capability
/// that does not amount to root.
fn check_capabilities(errors: &mut Vec<FieldError>, path: &str, list: &[String]) {
    for (i, cap) in list.iter().enumerate() {
        let message = if cap == "ALL" || cap == "SYS_ADMIN" {
            format!("{cap:?} would grant root-equivalent power and cannot be allowed")
        } else if !names::is_capability_name(cap) {
            format!(
                "{cap:?} is not a capability name (upper case, without the CAP_ prefix, e.g. NET_BIND_SERVICE)"
            )
        } else if !names::is_linux_capability(cap) {
            format!(
                "{cap:?} is not a Linux capability (see capabilities(7); e.g. IPC_LOCK, NET_ADMIN)"
            )
        } else {
            continue;
        };
        errors.push(FieldError::new(format!("{path}[{i}]"), message));
    }
}

impl NamespaceOverride {
    /// Every rule this entry breaks, with paths below `path`.
    fn validate(&self, path: &str, errors: &mut Vec<FieldError>) {
        self.namespace_selector
            .validate(&format!("{path}.namespaceSelector"), errors);
        if let Some(caps) = &self.allowed_capabilities {
            check_capabilities(errors, &format!("{path}.allowedCapabilities"), caps);
        }
        for (field, value) in [
            ("runAsUser", self.run_as_user),
            ("runAsGroup", self.run_as_group),
            ("fsGroup", self.fs_group),
        ] {
            if let Some(message) = value.and_then(id_error) {
                errors.push(FieldError::new(format!("{path}.{field}"), message));
            }
        }
        if self.seccomp_profile_type == Some(SeccompProfileType::Localhost) {
            errors.push(FieldError::new(
                format!("{path}.seccompProfileType"),
                LOCALHOST_ERROR,
            ));
        }
        if self.allowed_capabilities.is_none()
            && self.run_as_user.is_none()
            && self.run_as_group.is_none()
            && self.fs_group.is_none()
            && self.seccomp_profile_type.is_none()
            && self.allow_root.is_none()
        {
            errors.push(FieldError::new(
                path,
                "changes nothing: set at least one of allowedCapabilities, runAsUser, runAsGroup, fsGroup, seccompProfileType, allowRoot",
            ));
        }
    }
}

impl NamespaceLabelAdmins {
    /// Every rule this list breaks.
    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_names(
            errors,
            "namespaceLabelAdmins.users",
            &self.users,
            |s| !s.is_empty(),
            "a user name",
        );
        check_names(
            errors,
            "namespaceLabelAdmins.groups",
            &self.groups,
            |s| !s.is_empty(),
            "a group name",
        );
        for (i, user) in self.users.iter().enumerate() {
            if user == "system:anonymous" {
                errors.push(FieldError::new(
                    format!("namespaceLabelAdmins.users[{i}]"),
                    "system:anonymous cannot be trusted: anyone could weaken any namespace",
                ));
            }
        }
        for (i, group) in self.groups.iter().enumerate() {
            if [
                "system:authenticated",
                "system:unauthenticated",
                "system:serviceaccounts",
            ]
            .contains(&group.as_str())
            {
                errors.push(FieldError::new(
                    format!("namespaceLabelAdmins.groups[{i}]"),
                    format!("{group} cannot be trusted: every member could weaken any namespace; list the platform's administrators"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DEFAULT_YAML, Error};

    const FIXTURE: &str = include_str!("../../../../tests/fixtures/provisioning/policy.yaml");

    #[test]
    fn provisioning_fixture_is_valid() {
        let doc = Document::from_yaml(FIXTURE).unwrap();
        assert!(doc.provisioning.enabled);
        assert_eq!(
            doc.provisioning.home_volume.unwrap().source["nfs"]["server"],
            "nfs.example.com"
        );
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let text = DEFAULT_YAML
            .replace("runAsUser: 65532", "runAsUser: 0")
            .replace("fsGroup: 65532", "fsGroup: -1")
            .replace("enforce: baseline", "enforce: strict")
            .replace("warnVersion: latest", "warnVersion: \"1.25\"")
            .replace("namespaces: []", "namespaces: [\"*\", team-a, team-a]");
        let Err(Error::Invalid(errors)) = Document::from_yaml(&text) else {
            panic!("expected invalid");
        };
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "securityContext.runAsUser: 0 is not allowed: must be a non-root id between 1 and 4294967294",
                "securityContext.fsGroup: -1 is not allowed: must be a non-root id between 1 and 4294967294",
                "podSecurity.defaults.enforce: \"strict\" is not one of privileged, baseline, restricted",
                "podSecurity.defaults.warnVersion: \"1.25\" is not \"latest\" or \"v1.x\"",
                "podSecurity.exemptions.namespaces[0]: \"*\" is not a namespace name (names match exactly; there are no wildcards)",
                "podSecurity.exemptions.namespaces[2]: \"team-a\" is listed twice",
            ]
        );
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one table, one row per rule
    fn section_errors_name_their_fields() {
        use crate::policy::provisioning::{HomeVolume, IdRange};
        use crate::policy::selector::{Operator, Requirement};
        use crate::policy::trust_bundle::Containers;
        type Edit = fn(&mut Document);
        let cases: Vec<(&str, Edit, &[&str])> = vec![
            ("fixture is clean", |_| {}, &[]),
            (
                "trust bundle names",
                |d| {
                    d.trust_bundle.config_map = "Trust_Bundle".to_owned();
                    d.trust_bundle.key = "a/b".to_owned();
                    d.trust_bundle.mount_path = "etc/ssl".to_owned();
                },
                &[
                    "trustBundle.configMap: \"Trust_Bundle\" is not a valid ConfigMap name (lower-case DNS-1123 subdomain, e.g. trust-bundle)",
                    "trustBundle.key: \"a/b\" is not a valid ConfigMap key (letters, digits, '-', '_', '.')",
                    "trustBundle.mountPath: \"etc/ssl\" must be an absolute path without '.', '..', empty components or a trailing '/' (e.g. /etc/ssl/certs)",
                ],
            ),
            (
                "file names are file names, and unique",
                |d| {
                    d.trust_bundle.file_names =
                        vec!["a.crt".to_owned(), "x/y".to_owned(), "a.crt".to_owned()];
                },
                &[
                    "trustBundle.fileNames[1]: \"x/y\" is not a file name (no '/', not '.' or '..', not empty)",
                    "trustBundle.fileNames[2]: \"a.crt\" is listed twice",
                ],
            ),
            (
                "no file names",
                |d| d.trust_bundle.file_names.clear(),
                &["trustBundle.fileNames: must name at least one file (e.g. ca-certificates.crt)"],
            ),
            (
                "container lists",
                |d| d.trust_bundle.containers = Containers::Names(vec!["Model".to_owned()]),
                &[
                    "trustBundle.containers[0]: \"Model\" is not a valid container name (DNS-1123 label)",
                ],
            ),
            (
                "empty container list",
                |d| d.trust_bundle.containers = Containers::Names(vec![]),
                &["trustBundle.containers: must be \"all\" or name at least one container"],
            ),
            (
                "selector",
                |d| {
                    d.trust_bundle
                        .namespace_selector
                        .match_expressions
                        .push(Requirement {
                            key: "team".to_owned(),
                            operator: Operator::NotIn,
                            values: vec![],
                        });
                },
                &[
                    "trustBundle.namespaceSelector.matchExpressions[0].values: must not be empty for operator NotIn",
                ],
            ),
            (
                "enabled without requesters",
                |d| d.provisioning.trusted_requesters.clear(),
                &[
                    "provisioning.trustedRequesters: must name at least one user when provisioning is enabled (the spawner's account, e.g. system:serviceaccount:hub:hub)",
                ],
            ),
            (
                "requesters that trust everyone",
                |d| {
                    d.provisioning.trusted_requesters = vec![
                        "system:anonymous".to_owned(),
                        "system:serviceaccount:*".to_owned(),
                        String::new(),
                    ];
                },
                &[
                    "provisioning.trustedRequesters[0]: system:anonymous cannot be trusted: anyone could claim any identity",
                    "provisioning.trustedRequesters[1]: \"system:serviceaccount:*\": wildcards are not supported; list exact user names",
                    "provisioning.trustedRequesters[2]: \"\" is not a user name (non-empty, no spaces)",
                ],
            ),
            (
                "ranges never contain 0 and are ordered",
                |d| {
                    d.provisioning.uid_range = IdRange { min: 0, max: 100 };
                    d.provisioning.gid_range = IdRange {
                        min: 2000,
                        max: 1000,
                    };
                },
                &[
                    "provisioning.uidRange: 0-100 is not allowed: must satisfy 1 <= min <= max <= 2147483647 (0 is root and never claimable)",
                    "provisioning.gidRange: 2000-1000 is not allowed: must satisfy 1 <= min <= max <= 2147483647 (0 is root and never claimable)",
                ],
            ),
            (
                "image pinned by digest",
                |d| {
                    let c = d.provisioning.init_container.as_mut().unwrap();
                    c.image = "busybox:1.36".to_owned();
                    c.name = "Provision".to_owned();
                },
                &[
                    "provisioning.initContainer.name: \"Provision\" is not a valid container name (DNS-1123 label)",
                    "provisioning.initContainer.image: \"busybox:1.36\" must be pinned by digest (name@sha256:<64 hex>)",
                ],
            ),
            (
                "enabled without init container or home volume",
                |d| {
                    d.provisioning.init_container = None;
                    d.provisioning.home_volume = None;
                },
                &[
                    "provisioning.initContainer: is required when provisioning is enabled",
                    "provisioning.homeVolume: is required when provisioning is enabled",
                ],
            ),
            (
                "capabilities beyond baseline",
                |d| {
                    d.provisioning.capabilities = vec![
                        "SYS_ADMIN".to_owned(),
                        "cap_chown".to_owned(),
                        "CHOWN".to_owned(),
                        "CHOWN".to_owned(),
                    ];
                },
                &[
                    "provisioning.capabilities[0]: \"SYS_ADMIN\" is not allowed: the provisioning container may add only capabilities of the Pod Security baseline level (AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD, NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT)",
                    "provisioning.capabilities[1]: \"cap_chown\" is not a capability name (upper case, without the CAP_ prefix, e.g. CHOWN)",
                    "provisioning.capabilities[3]: \"CHOWN\" is listed twice",
                ],
            ),
            (
                "home volume",
                |d| {
                    d.provisioning.home_volume = Some(HomeVolume {
                        name: "unroot-identity".to_owned(),
                        mount_path: "/etc/homes".to_owned(),
                        source: serde_json::from_value(
                            serde_json::json!({"hostPath": {"path": "/srv"}}),
                        )
                        .unwrap(),
                    });
                },
                &[
                    "provisioning.homeVolume.name: \"unroot-identity\" is reserved for unroot's own volumes",
                    "provisioning.homeVolume.mountPath: \"/etc/homes\" would cover /etc/passwd and /etc/group",
                    "provisioning.homeVolume.hostPath: hostPath volumes are denied by Pod Security baseline; use nfs, a persistentVolumeClaim or another network volume",
                ],
            ),
            (
                "home volume source typos",
                |d| {
                    let v = d.provisioning.home_volume.as_mut().unwrap();
                    v.source = serde_json::from_value(
                        serde_json::json!({"nfs": {"sever": "x", "path": "/p"}}),
                    )
                    .unwrap();
                },
                &[
                    "provisioning.homeVolume.nfs: is not a Kubernetes volume source, or has fields Kubernetes does not know",
                ],
            ),
            (
                "home volume with two sources",
                |d| {
                    let v = d.provisioning.home_volume.as_mut().unwrap();
                    v.source
                        .insert("emptyDir".to_owned(), serde_json::json!({}));
                },
                &[
                    "provisioning.homeVolume: has more than one volume source or unknown fields (emptyDir, nfs); keep name, mountPath and exactly one source",
                ],
            ),
            (
                "base entries and shell",
                |d| {
                    d.provisioning
                        .base_entries
                        .passwd
                        .push("root:x:0:0:root:/root:/bin/sh".to_owned());
                    d.provisioning
                        .base_entries
                        .group
                        .push("staff:x:abc:".to_owned());
                    d.provisioning.shell = "sh".to_owned();
                },
                &[
                    "provisioning.baseEntries.passwd[2]: \"root\" is listed twice",
                    "provisioning.baseEntries.group[2]: \"staff:x:abc:\" is not a group line (name:x:gid:members, a portable name and numeric ids)",
                    "provisioning.shell: \"sh\" must be an absolute path without ':' (e.g. /bin/sh)",
                ],
            ),
        ];
        for (name, edit, want) in cases {
            let mut doc = Document::from_yaml(FIXTURE).unwrap();
            edit(&mut doc);
            let got: Vec<String> = doc.validate().iter().map(ToString::to_string).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn every_structural_and_value_error_is_reported_at_once() {
        let text = "kind: Policy\nsecurityContext:\n  runAsUser: 0\n  overide: true\n  allowedCapabilities: [NET_RAW, 7, {a: b}, SYS_ADMIN]\npodSecurity:\n  defaults: {enforce: strict}\n";
        let Err(Error::Invalid(errors)) = Document::from_yaml(text) else {
            panic!("expected invalid");
        };
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "apiVersion: is required: set it to \"unroot.dev/v1\"",
                "securityContext.allowedCapabilities[1]: invalid type: integer `7`, expected a string",
                "securityContext.allowedCapabilities[2]: invalid type: map, expected a string",
                "securityContext.overide: unknown field \"overide\" (expected one of runAsUser, runAsGroup, fsGroup, setFsGroup, seccompProfileType, readOnlyRootFilesystem, override, allowedCapabilities, harden, namespaceOverrides)",
                "securityContext.runAsUser: 0 is not allowed: must be a non-root id between 1 and 4294967294",
                "securityContext.allowedCapabilities[3]: \"SYS_ADMIN\" would grant root-equivalent power and cannot be allowed",
                "podSecurity.defaults.enforce: \"strict\" is not one of privileged, baseline, restricted",
            ]
        );
    }

    #[test]
    fn overrides_and_admins_are_validated() {
        let text = "apiVersion: unroot.dev/v1
kind: Policy
securityContext:
  allowedCapabilities: [IPC_LOK]
  namespaceOverrides:
    - namespaceSelector: {matchLabels: {team: a}}
      runAsUser: 0
      runAsGroup: 0
      fsGroup: -5
      allowedCapabilities: [IPC_LOCK, CAP_NET_ADMIN, NET_ADMN, ALL]
      seccompProfileType: Localhost
    - namespaceSelector: {matchExpressions: [{key: team, operator: In}]}
namespaceLabelAdmins:
  users: [\"\", system:anonymous]
  groups: [system:masters, system:authenticated, system:masters]
";
        let Err(Error::Invalid(errors)) = Document::from_yaml(text) else {
            panic!("expected invalid");
        };
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "securityContext.allowedCapabilities[0]: \"IPC_LOK\" is not a Linux capability (see capabilities(7); e.g. IPC_LOCK, NET_ADMIN)",
                "securityContext.namespaceOverrides[0].allowedCapabilities[1]: \"CAP_NET_ADMIN\" is not a capability name (upper case, without the CAP_ prefix, e.g. NET_BIND_SERVICE)",
                "securityContext.namespaceOverrides[0].allowedCapabilities[2]: \"NET_ADMN\" is not a Linux capability (see capabilities(7); e.g. IPC_LOCK, NET_ADMIN)",
                "securityContext.namespaceOverrides[0].allowedCapabilities[3]: \"ALL\" would grant root-equivalent power and cannot be allowed",
                "securityContext.namespaceOverrides[0].runAsUser: 0 is not allowed: must be a non-root id between 1 and 4294967294",
                "securityContext.namespaceOverrides[0].runAsGroup: 0 is not allowed: must be a non-root id between 1 and 4294967294",
                "securityContext.namespaceOverrides[0].fsGroup: -5 is not allowed: must be a non-root id between 1 and 4294967294",
                "securityContext.namespaceOverrides[0].seccompProfileType: Localhost needs a per-pod localhostProfile and cannot be injected; use RuntimeDefault",
                "securityContext.namespaceOverrides[1].namespaceSelector.matchExpressions[0].values: must not be empty for operator In",
                "securityContext.namespaceOverrides[1]: changes nothing: set at least one of allowedCapabilities, runAsUser, runAsGroup, fsGroup, seccompProfileType, allowRoot",
                "namespaceLabelAdmins.users[0]: \"\" is not a user name",
                "namespaceLabelAdmins.groups[2]: \"system:masters\" is listed twice",
                "namespaceLabelAdmins.users[1]: system:anonymous cannot be trusted: anyone could weaken any namespace",
                "namespaceLabelAdmins.groups[1]: system:authenticated cannot be trusted: every member could weaken any namespace; list the platform's administrators",
            ]
        );
    }
}
