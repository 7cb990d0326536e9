//! The policy document: what unroot does to pods, loaded from YAML.
//!
//! The embedded default is `webhook-config/policy.yaml`, compiled in, so the
//! shipped file and the default in force cannot drift.

mod load;
pub mod names;
pub mod provisioning;
pub mod selector;
pub mod trust_bundle;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;
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

/// The namespace label that stages the securityContext hardening: `on`,
/// `warn` or `off` (absent: the policy's `securityContext.harden`).
pub const HARDEN_LABEL: &str = "unroot.dev/harden";

/// The namespace label (`"true"`) that lets pods there run as root: an
/// explicit `runAsUser: 0` or `runAsNonRoot: false`. Only
/// `namespaceLabelAdmins` may set, change or remove it.
pub const ALLOW_ROOT_LABEL: &str = "unroot.dev/allow-root";

/// The namespace label (`"true"`) that the shipped NetworkPolicy lets reach
/// unroot's admin port (Prometheus). Only `namespaceLabelAdmins` may set,
/// change or remove it.
pub const MONITORING_LABEL: &str = "unroot.dev/monitoring";

/// The label the API server sets on every namespace (1.21+) to its name; the
/// webhook configurations exclude namespaces by it.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The embedded default policy, byte for byte the shipped file.
pub const DEFAULT_YAML: &str = include_str!("../../../webhook-config/policy.yaml");

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document {
    /// Always `unroot.dev/v1`.
    #[schemars(extend("const" = "unroot.dev/v1"))]
    pub api_version: String,
    /// Always `Policy`.
    #[schemars(extend("const" = "Policy"))]
    pub kind: String,
    /// What the mutating webhook writes into every pod.
    pub security_context: SecurityContext,
    /// Pod Security Standards enforcement (absent: enforce baseline, audit
    /// and warn restricted, all latest).
    #[serde(default)]
    pub pod_security: PodSecurity,
    /// Who may weaken a namespace's `unroot.dev/` labels.
    #[serde(default)]
    pub namespace_label_admins: NamespaceLabelAdmins,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityContext {
    /// Pod-level `runAsUser` when the pod sets none.
    #[schemars(range(min = 1, max = 4_294_967_294_i64))]
    pub run_as_user: i64,
    /// Pod-level `runAsGroup` when the pod sets none.
    #[schemars(range(min = 1, max = 4_294_967_294_i64))]
    pub run_as_group: i64,
    /// Pod-level `fsGroup` when the pod sets none.
    #[schemars(range(min = 1, max = 4_294_967_294_i64))]
    pub fs_group: i64,
    /// Whether pods get [`Self::fs_group`] (with `fsGroupChangePolicy:
    /// OnRootMismatch`) at all; off leaves volume ownership to the pod.
    #[serde(default = "yes")]
    pub set_fs_group: bool,
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
    /// The hardening mode of namespaces without an `unroot.dev/harden` label.
    #[serde(default)]
    pub harden: HardenMode,
    /// Settings for the namespaces a selector picks: the first entry that
    /// matches a namespace's labels wins, and what it omits comes from the
    /// fields above.
    #[serde(default)]
    pub namespace_overrides: Vec<NamespaceOverride>,
}

/// How a namespace's pods get the securityContext hardening
/// (`unroot.dev/harden`), ordered from weakest to strongest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HardenMode {
    /// No hardening; an audit annotation says so.
    Off,
    /// No hardening; a warning names each field `on` would set.
    Warn,
    /// Pods are hardened.
    #[default]
    On,
}

/// A value of `unroot.dev/harden` that is not `on`, `warn` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be one of on, warn, off")]
pub struct InvalidHardenMode;

impl HardenMode {
    /// The label spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Warn => "warn",
            Self::On => "on",
        }
    }

    /// Every mode, weakest first.
    pub const ALL: [HardenMode; 3] = [Self::Off, Self::Warn, Self::On];
}

impl FromStr for HardenMode {
    type Err = InvalidHardenMode;

    /// Exact and case-sensitive, like the Pod Security labels.
    fn from_str(s: &str) -> Result<Self, InvalidHardenMode> {
        match s {
            "on" => Ok(Self::On),
            "warn" => Ok(Self::Warn),
            "off" => Ok(Self::Off),
            _ => Err(InvalidHardenMode),
        }
    }
}

impl fmt::Display for HardenMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl schemars::JsonSchema for HardenMode {
    fn schema_name() -> Cow<'static, str> {
        "HardenMode".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // YAML 1.1 reads an unquoted `on` or `off` as a boolean, and so
        // does the parser.
        schemars::json_schema!({
            "description": "How pods are hardened: on, warn (a warning names each field on would set) or off.",
            "oneOf": [
                {"type": "string", "enum": ["on", "warn", "off"]},
                {"type": "boolean"}
            ]
        })
    }
}

impl Serialize for HardenMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for HardenMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HardenMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one of on, warn, off")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<HardenMode, E> {
                s.parse()
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(s), &self))
            }
            // YAML 1.1 reads an unquoted `on` or `off` as a boolean.
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<HardenMode, E> {
                Ok(if b { HardenMode::On } else { HardenMode::Off })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// One `securityContext.namespaceOverrides` entry: settings for the
/// namespaces its selector picks. Omitted fields keep the top-level value; a
/// list given replaces the top-level list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceOverride {
    /// The namespaces this entry applies to (a standard label selector).
    pub namespace_selector: LabelSelector,
    /// Replaces `securityContext.allowedCapabilities`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_capabilities: Option<Vec<String>>,
    /// Replaces `securityContext.runAsUser`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_294_i64))]
    pub run_as_user: Option<i64>,
    /// Replaces `securityContext.runAsGroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_294_i64))]
    pub run_as_group: Option<i64>,
    /// Replaces `securityContext.fsGroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_294_i64))]
    pub fs_group: Option<i64>,
    /// Replaces `securityContext.seccompProfileType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile_type: Option<SeccompProfileType>,
    /// `true`: pods here may run as root (an explicit `runAsUser: 0` or
    /// `runAsNonRoot: false`), like the namespace label
    /// [`ALLOW_ROOT_LABEL`]`=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_root: Option<bool>,
}

/// `namespaceLabelAdmins`: the requesters who may weaken a namespace
/// (lower `unroot.dev/harden` or `unroot.dev/enforce`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceLabelAdmins {
    /// User names (`userInfo.username`, exact).
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups (`userInfo.groups`, exact).
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Default for NamespaceLabelAdmins {
    fn default() -> Self {
        Self {
            users: Vec::new(),
            groups: vec!["system:masters".to_owned()],
        }
    }
}

impl NamespaceLabelAdmins {
    /// Whether a requester with `username` and `groups` is one of them.
    #[must_use]
    pub fn includes(&self, username: &str, groups: &[String]) -> bool {
        (!username.is_empty() && self.users.iter().any(|u| u == username))
            || groups
                .iter()
                .any(|g| !g.is_empty() && self.groups.contains(g))
    }
}

/// Seccomp profile types the policy may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSecurityDefaults {
    /// Level whose violations deny pods.
    #[schemars(extend("enum" = ["privileged", "baseline", "restricted"]))]
    pub enforce: String,
    /// Version of `enforce`.
    #[serde(default = "latest")]
    #[schemars(pattern(r"^(latest|v1\.(0|[1-9][0-9]*))$"))]
    pub enforce_version: String,
    /// Level whose violations are recorded in audit annotations.
    #[schemars(extend("enum" = ["privileged", "baseline", "restricted"]))]
    pub audit: String,
    /// Version of `audit`.
    #[serde(default = "latest")]
    #[schemars(pattern(r"^(latest|v1\.(0|[1-9][0-9]*))$"))]
    pub audit_version: String,
    /// Level whose violations are returned as warnings.
    #[schemars(extend("enum" = ["privileged", "baseline", "restricted"]))]
    pub warn: String,
    /// Version of `warn`.
    #[serde(default = "latest")]
    #[schemars(pattern(r"^(latest|v1\.(0|[1-9][0-9]*))$"))]
    pub warn_version: String,
}

fn latest() -> String {
    "latest".to_owned()
}

fn yes() -> bool {
    true
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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

    /// Parses and validates the text of the policy file `shown`, as
    /// [`Document::from_yaml`] does; each error names the file. The shell
    /// reads the file (`unroot::policy::DocumentFile`).
    pub fn from_named_yaml(shown: &str, text: &str) -> Result<Self> {
        Self::from_yaml(text).map_err(|e| match e {
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
            is_dns_label,
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

    /// The hardening mode of a namespace with `labels`: its
    /// `unroot.dev/harden` label, else `securityContext.harden`. An invalid
    /// value (the namespace webhook refuses them, but one may predate it)
    /// hardens: fail closed.
    #[must_use]
    pub fn harden_mode(&self, labels: &BTreeMap<String, String>) -> HardenMode {
        match labels.get(HARDEN_LABEL) {
            None => self.security_context.harden,
            Some(value) => value.parse().unwrap_or(HardenMode::On),
        }
    }

    /// The first `securityContext.namespaceOverrides` entry whose selector
    /// matches `labels`, with its index.
    #[must_use]
    pub fn namespace_override(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Option<(usize, &NamespaceOverride)> {
        self.security_context
            .namespace_overrides
            .iter()
            .enumerate()
            .find(|(_, o)| selector_matches(&o.namespace_selector, labels))
    }

    /// The securityContext settings for a namespace with `labels`: the
    /// top level, with the first matching namespace override laid over it.
    /// Borrowed (no copy) when no override matches.
    #[must_use]
    pub fn security_context_for(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Cow<'_, SecurityContext> {
        let top = &self.security_context;
        let Some((_, o)) = self.namespace_override(labels) else {
            return Cow::Borrowed(top);
        };
        Cow::Owned(SecurityContext {
            run_as_user: o.run_as_user.unwrap_or(top.run_as_user),
            run_as_group: o.run_as_group.unwrap_or(top.run_as_group),
            fs_group: o.fs_group.unwrap_or(top.fs_group),
            set_fs_group: top.set_fs_group,
            seccomp_profile_type: o.seccomp_profile_type.unwrap_or(top.seccomp_profile_type),
            read_only_root_filesystem: top.read_only_root_filesystem,
            r#override: top.r#override,
            allowed_capabilities: o
                .allowed_capabilities
                .clone()
                .unwrap_or_else(|| top.allowed_capabilities.clone()),
            harden: top.harden,
            namespace_overrides: Vec::new(),
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

    /// The list that names `namespace`, if any: a namespace of that name is
    /// excluded or exempt for its name alone, so only `namespaceLabelAdmins`
    /// may create it.
    #[must_use]
    pub fn reserving_list(&self, namespace: &str) -> Option<&'static str> {
        if self.is_excluded_namespace(namespace) {
            Some("webhook.excludedNamespaces")
        } else if self
            .pod_security
            .exemptions
            .namespaces
            .iter()
            .any(|n| n == namespace)
        {
            Some("podSecurity.exemptions.namespaces")
        } else {
            None
        }
    }

    /// The policy's namespace selectors that match `labels`, by field path:
    /// what a namespace gets for its labels (the trust bundle,
    /// provisioning, a namespace override), whether or not that part of the
    /// policy is enabled today. Only `namespaceLabelAdmins` may change this
    /// set for a namespace.
    #[must_use]
    pub fn selections(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        let mut selected = Vec::new();
        if selector_matches(&self.trust_bundle.namespace_selector, labels) {
            selected.push("trustBundle.namespaceSelector".to_owned());
        }
        if selector_matches(&self.provisioning.namespace_selector, labels) {
            selected.push("provisioning.namespaceSelector".to_owned());
        }
        if let Some((i, _)) = self.namespace_override(labels) {
            selected.push(format!("securityContext.namespaceOverrides[{i}]"));
        }
        selected
    }

    /// Whether pods in a namespace with `labels` may run as root (an
    /// explicit `runAsUser: 0` or `runAsNonRoot: false`): its
    /// [`ALLOW_ROOT_LABEL`] is `true`, or its namespace override says
    /// `allowRoot: true`.
    #[must_use]
    pub fn root_allowed(&self, labels: &BTreeMap<String, String>) -> bool {
        labels.get(ALLOW_ROOT_LABEL).is_some_and(|v| v == "true")
            || self
                .namespace_override(labels)
                .is_some_and(|(_, o)| o.allow_root == Some(true))
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

    const FIXTURE: &str = include_str!("../../../tests/fixtures/provisioning/policy.yaml");

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
                "securityContext.overide: unknown field \"overide\" (expected one of runAsUser, runAsGroup, fsGroup, setFsGroup, seccompProfileType, readOnlyRootFilesystem, override, allowedCapabilities, harden, namespaceOverrides)",
                "securityContext.runAsUser: 0 is not allowed: must be a non-root id between 1 and 4294967294",
                "securityContext.allowedCapabilities[3]: \"SYS_ADMIN\" would grant root-equivalent power and cannot be allowed",
                "podSecurity.defaults.enforce: \"strict\" is not one of privileged, baseline, restricted",
            ]
        );
    }

    #[test]
    fn set_fs_group_defaults_on_and_a_partial_policy_turns_it_off() {
        assert!(Document::embedded().security_context.set_fs_group);
        let off = Document::from_yaml(
            "apiVersion: unroot.dev/v1\nkind: Policy\nsecurityContext: {setFsGroup: false}\n",
        )
        .unwrap();
        assert!(!off.security_context.set_fs_group);
        assert_eq!(off.security_context.fs_group, 65532, "the rest is default");
        let Err(Error::Invalid(errors)) = Document::from_yaml(
            "apiVersion: unroot.dev/v1\nkind: Policy\nsecurityContext: {setFsGroup: sometimes}\n",
        ) else {
            panic!("expected invalid");
        };
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["securityContext.setFsGroup: invalid type: string \"sometimes\", expected a boolean"]
        );
    }

    #[test]
    fn harden_mode_reads_strings_and_yaml_booleans() {
        for (text, want) in [
            ("\"on\"", HardenMode::On),
            ("warn", HardenMode::Warn),
            ("\"off\"", HardenMode::Off),
            // YAML 1.1 readers turn a bare on/off into a boolean.
            ("on", HardenMode::On),
            ("off", HardenMode::Off),
        ] {
            let doc = Document::from_yaml(&format!(
                "apiVersion: unroot.dev/v1\nkind: Policy\nsecurityContext: {{harden: {text}}}\n"
            ))
            .unwrap();
            assert_eq!(doc.security_context.harden, want, "{text}");
        }
        let err = Document::from_yaml(
            "apiVersion: unroot.dev/v1\nkind: Policy\nsecurityContext: {harden: maybe}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("securityContext.harden: invalid value: string \"maybe\", expected one of on, warn, off"),
            "{err}"
        );
        assert_eq!(Document::embedded().security_context.harden, HardenMode::On);
        assert!(HardenMode::Off < HardenMode::Warn && HardenMode::Warn < HardenMode::On);
    }

    #[test]
    fn harden_mode_of_a_namespace() {
        let doc = Document::embedded();
        let labels = |v: &str| BTreeMap::from([(HARDEN_LABEL.to_owned(), v.to_owned())]);
        assert_eq!(doc.harden_mode(&BTreeMap::new()), HardenMode::On);
        assert_eq!(doc.harden_mode(&labels("warn")), HardenMode::Warn);
        assert_eq!(doc.harden_mode(&labels("off")), HardenMode::Off);
        // An invalid value hardens (fail closed).
        assert_eq!(doc.harden_mode(&labels("Off")), HardenMode::On);
        let mut warn_by_default = doc.clone();
        warn_by_default.security_context.harden = HardenMode::Warn;
        assert_eq!(
            warn_by_default.harden_mode(&BTreeMap::new()),
            HardenMode::Warn
        );
        assert_eq!(warn_by_default.harden_mode(&labels("on")), HardenMode::On);
    }

    const OVERRIDES: &str = "apiVersion: unroot.dev/v1
kind: Policy
securityContext:
  namespaceOverrides:
    - namespaceSelector: {matchLabels: {unroot.dev/profile: hpc}}
      allowedCapabilities: [NET_BIND_SERVICE, IPC_LOCK]
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: legacy}}
      runAsUser: 1000
      runAsGroup: 1001
      fsGroup: 1002
    - namespaceSelector: {}
      runAsUser: 4242
";

    #[test]
    fn the_first_matching_override_wins_and_omitted_fields_fall_back() {
        let doc = Document::from_yaml(OVERRIDES).unwrap();
        let labels = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        let top = &doc.security_context;

        let hpc = doc.security_context_for(&labels("unroot.dev/profile", "hpc"));
        assert!(matches!(hpc, Cow::Owned(_)));
        assert_eq!(hpc.allowed_capabilities, ["NET_BIND_SERVICE", "IPC_LOCK"]);
        assert_eq!(
            (hpc.run_as_user, hpc.run_as_group, hpc.fs_group),
            (65532, 65532, 65532)
        );

        let legacy = doc.security_context_for(&labels("kubernetes.io/metadata.name", "legacy"));
        assert_eq!(
            (legacy.run_as_user, legacy.run_as_group, legacy.fs_group),
            (1000, 1001, 1002)
        );
        assert_eq!(legacy.allowed_capabilities, top.allowed_capabilities);
        assert_eq!(legacy.seccomp_profile_type, top.seccomp_profile_type);

        // The catch-all entry comes last: anything else gets it.
        let other = doc.security_context_for(&BTreeMap::new());
        assert_eq!(other.run_as_user, 4242);
        assert_eq!(doc.namespace_override(&BTreeMap::new()).unwrap().0, 2);

        let plain = Document::embedded();
        assert!(matches!(
            plain.security_context_for(&BTreeMap::new()),
            Cow::Borrowed(_)
        ));
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

    #[test]
    fn admins_match_users_and_groups_exactly() {
        let admins = NamespaceLabelAdmins {
            users: vec!["alice".to_owned()],
            groups: vec!["platform".to_owned()],
        };
        let groups = |g: &[&str]| g.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(admins.includes("alice", &[]));
        assert!(admins.includes("bob", &groups(&["x", "platform"])));
        assert!(!admins.includes("bob", &groups(&["Platform", "system:authenticated"])));
        assert!(!admins.includes("", &groups(&[""])));
        assert!(NamespaceLabelAdmins::default().includes("x", &groups(&["system:masters"])));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = DEFAULT_YAML.replace("override: false", "overide: false");
        let err = Document::from_yaml(&text).unwrap_err().to_string();
        assert!(err.contains("overide"), "{err}");
    }
}
