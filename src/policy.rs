//! The policy document: what unroot does to pods, loaded from YAML.
//!
//! The embedded default is `webhook-config/policy.yaml`, compiled in, so the
//! shipped file and the default in force cannot drift.

mod load;
pub mod names;
pub mod provisioning;
pub mod selector;
pub mod trust_bundle;
pub mod watch;

use std::fmt::{self, Write as _};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::pss;
use crate::pss::namespace_policy::Policy as NamespacePolicy;
use sha2::{Digest, Sha256};

pub use self::provisioning::Provisioning;
pub use self::selector::{LabelSelector, selector_matches};
pub use self::trust_bundle::TrustBundle;

/// The ConfigMap key that holds the policy document.
pub const CONFIGMAP_KEY: &str = "policy.yaml";
/// The label the policy ConfigMap carries; the validating webhook selects
/// ConfigMaps by it to refuse invalid policies before they are stored.
pub const CONFIGMAP_LABEL: &str = "unroot.dev/policy";

/// The embedded default policy, byte for byte the shipped file.
pub const DEFAULT_YAML: &str = include_str!("../webhook-config/policy.yaml");

/// Errors from reading a policy document.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy file could not be read.
    #[error("failed to read policy {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML of the policy's shape.
    #[error("failed to parse policy: {0}")]
    Parse(String),
    /// The document parsed but breaks one or more rules.
    #[error("invalid policy:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

/// The policy document (`apiVersion: unroot.dev/v1`, `kind: Policy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document {
    /// Always `unroot.dev/v1`.
    pub api_version: String,
    /// Always `Policy`.
    pub kind: String,
    /// What the mutating webhook writes into every pod.
    pub security_context: SecurityContext,
    /// Pod Security Standards enforcement (absent: enforce baseline, audit
    /// and warn restricted, all latest).
    #[serde(default)]
    pub pod_security: PodSecurity,
    /// Which pods get the cluster's CA bundle at `/etc/ssl/certs`.
    #[serde(default)]
    pub trust_bundle: TrustBundle,
    /// Who may claim a user identity for a pod, and how it is provisioned.
    #[serde(default)]
    pub provisioning: Provisioning,
    /// Where unroot never acts.
    pub webhook: Webhook,
}

/// The `securityContext` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityContext {
    /// Pod-level `runAsUser` when the pod sets none.
    pub run_as_user: i64,
    /// Pod-level `runAsGroup` when the pod sets none.
    pub run_as_group: i64,
    /// Pod-level `fsGroup` when the pod sets none.
    pub fs_group: i64,
    /// Pod-level seccomp profile type when the pod sets none.
    pub seccomp_profile_type: SeccompProfileType,
    /// Set `readOnlyRootFilesystem: true` on containers that do not choose.
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    /// Overwrite explicit insecure values instead of warning about them.
    #[serde(default)]
    pub r#override: bool,
    /// Capabilities a container may add without a warning.
    #[serde(default)]
    pub allowed_capabilities: Vec<String>,
}

/// Seccomp profile types the policy may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompProfileType {
    /// The container runtime's default profile.
    RuntimeDefault,
    /// A profile on the node (needs `localhostProfile`, so only honoured
    /// when the pod already names one).
    Localhost,
}

impl SeccompProfileType {
    /// The Kubernetes spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RuntimeDefault => "RuntimeDefault",
            Self::Localhost => "Localhost",
        }
    }
}

/// The `podSecurity` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSecurity {
    /// Levels and versions for namespaces without `unroot.dev/` labels.
    pub defaults: PodSecurityDefaults,
    /// Requests that are never evaluated.
    #[serde(default)]
    pub exemptions: Exemptions,
}

/// `podSecurity.defaults`: levels and versions as strings, checked by
/// [`Document::validate`] so every bad value is reported with its path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSecurityDefaults {
    /// Level whose violations deny pods.
    pub enforce: String,
    /// Version of `enforce`.
    #[serde(default = "latest")]
    pub enforce_version: String,
    /// Level whose violations are recorded in audit annotations.
    pub audit: String,
    /// Version of `audit`.
    #[serde(default = "latest")]
    pub audit_version: String,
    /// Level whose violations are returned as warnings.
    pub warn: String,
    /// Version of `warn`.
    #[serde(default = "latest")]
    pub warn_version: String,
}

fn latest() -> String {
    "latest".to_owned()
}

impl Default for PodSecurityDefaults {
    fn default() -> Self {
        Self {
            enforce: "baseline".to_owned(),
            enforce_version: latest(),
            audit: "restricted".to_owned(),
            audit_version: latest(),
            warn: "restricted".to_owned(),
            warn_version: latest(),
        }
    }
}

/// `podSecurity.exemptions`: exact names, never patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exemptions {
    /// Requesting user names (`userInfo.username`), e.g. a controller's.
    #[serde(default)]
    pub usernames: Vec<String>,
    /// Namespaces.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// `spec.runtimeClassName` values.
    #[serde(default)]
    pub runtime_class_names: Vec<String>,
}

/// The `webhook` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Webhook {
    /// Namespaces whose objects are never mutated or validated.
    #[serde(default)]
    pub excluded_namespaces: Vec<String>,
}

impl Document {
    /// Parses and validates a policy from YAML (or JSON) text. Omitted
    /// fields take the embedded default; every error is reported, each with
    /// its field path (see [`load`]).
    pub fn from_yaml(text: &str) -> Result<Self> {
        load::from_yaml(text)
    }

    /// The effective policy as YAML, every default filled in.
    pub fn to_yaml(&self) -> Result<String> {
        serde_saphyr::to_string(self)
            .map_err(|e| Error::Parse(format!("failed to print the policy: {e}")))
    }

    /// Reads, parses and validates a policy file; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            Error::Parse(message) => Error::Parse(format!("{shown}: {message}")),
            Error::Invalid(errors) => Error::Invalid(
                errors
                    .into_iter()
                    .map(|mut err| {
                        err.path = format!("{shown}: {}", err.path);
                        err
                    })
                    .collect(),
            ),
            other @ Error::Read { .. } => other,
        })
    }

    /// The embedded default policy.
    ///
    /// # Panics
    /// Never in a released build: a unit test proves the embedded file valid.
    #[must_use]
    pub fn embedded() -> Self {
        #[allow(clippy::expect_used)] // compiled-in constant, covered by a unit test
        Self::from_yaml(DEFAULT_YAML).expect("embedded policy is valid")
    }

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
            if value <= 0 || value > i64::from(u32::MAX - 1) {
                err(
                    path,
                    format!(
                        "{value} is not allowed: must be a non-root id between 1 and 4294967294"
                    ),
                );
            }
        }
        if sc.seccomp_profile_type == SeccompProfileType::Localhost {
            err(
                "securityContext.seccompProfileType",
                "Localhost needs a per-pod localhostProfile and cannot be injected; use RuntimeDefault".to_owned(),
            );
        }
        for (i, cap) in sc.allowed_capabilities.iter().enumerate() {
            if cap.is_empty()
                || cap.starts_with("CAP_")
                || !cap
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                err(
                    &format!("securityContext.allowedCapabilities[{i}]"),
                    format!(
                        "{cap:?} is not a capability name (upper case, without the CAP_ prefix, e.g. NET_BIND_SERVICE)"
                    ),
                );
            }
            if cap == "ALL" || cap == "SYS_ADMIN" {
                err(
                    &format!("securityContext.allowedCapabilities[{i}]"),
                    format!("{cap:?} would grant root-equivalent power and cannot be allowed"),
                );
            }
        }
        self.validate_pod_security(&mut errors);
        self.trust_bundle.validate(&mut errors);
        self.provisioning.validate(&mut errors);
        check_names(
            &mut errors,
            "webhook.excludedNamespaces",
            &self.webhook.excluded_namespaces,
            is_dns_label,
            "a namespace name",
        );
        errors
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
            is_dns_label,
            "a namespace name",
        );
        check_names(
            errors,
            "podSecurity.exemptions.runtimeClassNames",
            &ex.runtime_class_names,
            is_dns_subdomain,
            "a RuntimeClass name",
        );
    }

    /// The namespace defaults as levels and versions. Valid after
    /// [`Document::validate`]; a value that does not parse falls back as
    /// upstream does for labels (enforce restricted, others privileged,
    /// versions latest).
    #[must_use]
    pub fn pod_security_defaults(&self) -> NamespacePolicy {
        let d = &self.pod_security.defaults;
        let lv = |level: &str, version: &str, fallback: pss::Level| pss::LevelVersion {
            level: level.parse().unwrap_or(fallback),
            version: version.parse().unwrap_or(pss::Version::Latest),
        };
        NamespacePolicy {
            enforce: lv(&d.enforce, &d.enforce_version, pss::Level::Restricted),
            audit: lv(&d.audit, &d.audit_version, pss::Level::Privileged),
            warn: lv(&d.warn, &d.warn_version, pss::Level::Privileged),
        }
    }

    /// A short, stable hash of the document's content (hex SHA-256, 12 digits).
    #[must_use]
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&json);
        digest.iter().take(6).fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
    }

    /// Whether `namespace` is excluded from everything unroot does.
    #[must_use]
    pub fn is_excluded_namespace(&self, namespace: &str) -> bool {
        self.webhook
            .excluded_namespaces
            .iter()
            .any(|n| n == namespace)
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

/// An RFC 1123 label: what namespace names are.
#[must_use]
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An RFC 1123 subdomain: what most object names are.
#[must_use]
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// A loaded policy with its content hash, shared read-only by every request
/// and swapped whole on reload.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The document.
    pub document: Document,
    /// [`Document::hash`], computed once.
    pub hash: String,
    /// The namespace defaults, parsed once.
    pub pod_security_defaults: NamespacePolicy,
}

impl Snapshot {
    /// Wraps a validated document.
    #[must_use]
    pub fn new(document: Document) -> Self {
        Self {
            hash: document.hash(),
            pod_security_defaults: document.pod_security_defaults(),
            document,
        }
    }
}

impl std::ops::Deref for Snapshot {
    type Target = Document;

    fn deref(&self) -> &Document {
        &self.document
    }
}

/// The policy in force, shared read-only by every request.
pub type Shared = Arc<Snapshot>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let doc = Document::from_yaml(DEFAULT_YAML).unwrap();
        assert_eq!(doc.security_context.run_as_user, 65532);
        assert!(doc.is_excluded_namespace("kube-system"));
        assert_eq!(doc.hash().len(), 12);
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
    fn embedded_sections_are_safe_defaults() {
        let doc = Document::embedded();
        assert_eq!(doc.trust_bundle, TrustBundle::default());
        assert_eq!(doc.provisioning, Provisioning::default());
        assert!(!doc.provisioning.enabled);
        assert!(doc.provisioning.trusted_requesters.is_empty());
        // A policy that leaves the sections out gets the same defaults.
        let start = DEFAULT_YAML.find("\ntrustBundle:").unwrap();
        let end = DEFAULT_YAML.find("\n# Where unroot never acts.").unwrap();
        let without = format!("{}{}", &DEFAULT_YAML[..start], &DEFAULT_YAML[end..]);
        assert_eq!(Document::from_yaml(&without).unwrap(), doc);
    }

    const FIXTURE: &str = include_str!("../tests/fixtures/provisioning/policy.yaml");

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
    #[allow(clippy::too_many_lines)] // one table, one row per rule
    fn section_errors_name_their_fields() {
        use self::provisioning::{HomeVolume, IdRange};
        use self::selector::{Operator, Requirement};
        use self::trust_bundle::Containers;
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
    fn section_shapes_are_checked_when_parsing() {
        for (from, to, want) in [
            (
                "  containers: all",
                "  containers: some",
                "trustBundle.containers: invalid value: string \"some\", expected \"all\" or a list of container names",
            ),
            (
                "  enabled: false",
                "  enabled: false\n  trustedRequester: []",
                "trustedRequester",
            ),
        ] {
            let text = DEFAULT_YAML.replacen(from, to, 1);
            let err = Document::from_yaml(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{to}: {err}");
        }
        let text = DEFAULT_YAML.replacen("  containers: all", "  containers: [model, server]", 1);
        assert_eq!(
            Document::from_yaml(&text).unwrap().trust_bundle.containers,
            trust_bundle::Containers::Names(vec!["model".to_owned(), "server".to_owned()])
        );
    }

    #[test]
    fn a_policy_states_only_what_it_changes() {
        let doc = Document::from_yaml(
            "apiVersion: unroot.dev/v1\nkind: Policy\nsecurityContext: {runAsUser: 10001}\n",
        )
        .unwrap();
        let mut want = Document::embedded();
        want.security_context.run_as_user = 10001;
        assert_eq!(doc, want);
        let doc = Document::from_yaml(
            "apiVersion: unroot.dev/v1\nkind: Policy\npodSecurity: {defaults: {enforce: restricted}}\n",
        )
        .unwrap();
        assert_eq!(doc.pod_security.defaults.enforce, "restricted");
        assert_eq!(doc.pod_security.defaults.audit, "restricted");
        assert_eq!(doc.pod_security.defaults.warn_version, "latest");
        // A selector replaces the default one whole.
        let doc = Document::from_yaml(
            "apiVersion: unroot.dev/v1\nkind: Policy\ntrustBundle:\n  namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}\n",
        )
        .unwrap();
        assert!(doc.trust_bundle.namespace_selector.match_labels.is_empty());
        assert_eq!(
            doc.trust_bundle.namespace_selector.match_expressions.len(),
            1
        );
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
                "securityContext.overide: unknown field \"overide\" (expected one of runAsUser, runAsGroup, fsGroup, seccompProfileType, readOnlyRootFilesystem, override, allowedCapabilities)",
                "securityContext.runAsUser: 0 is not allowed: must be a non-root id between 1 and 4294967294",
                "securityContext.allowedCapabilities[3]: \"SYS_ADMIN\" would grant root-equivalent power and cannot be allowed",
                "podSecurity.defaults.enforce: \"strict\" is not one of privileged, baseline, restricted",
            ]
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = DEFAULT_YAML.replace("override: false", "overide: false");
        let err = Document::from_yaml(&text).unwrap_err().to_string();
        assert!(err.contains("overide"), "{err}");
    }
}
