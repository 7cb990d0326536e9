//! The policy document's types, parsing and printing, and what the document
//! says for a namespace with given labels.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{
    ALLOW_ROOT_LABEL, DEFAULT_YAML, Error, HARDEN_LABEL, LabelSelector, Provisioning, Result,
    TrustBundle, load, selector_matches,
};
use crate::pss;
use crate::pss::namespace_policy::Policy as NamespacePolicy;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::trust_bundle;

    #[test]
    fn embedded_default_is_valid() {
        let doc = Document::from_yaml(DEFAULT_YAML).unwrap();
        assert_eq!(doc.security_context.run_as_user, 65532);
        assert!(doc.is_excluded_namespace("kube-system"));
        assert_eq!(doc.hash().len(), 12);
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
