//! The policy document: what unroot does to pods, loaded from YAML.
//!
//! - `document`: the document's types, parsing and printing, and what it
//!   says for a namespace's labels;
//! - `validate`: every rule a document breaks, with its field path;
//! - `snapshot`: the document in force with its hash, shared by requests;
//! - [`names`], [`selector`], [`trust_bundle`], [`provisioning`]: the
//!   syntax rules, the label selector, and the two optional sections.
//!
//! The embedded default is `webhook-config/policy.yaml`, compiled in, so the
//! shipped file and the default in force cannot drift.

mod document;
mod load;
pub mod names;
pub mod provisioning;
pub mod selector;
mod snapshot;
pub mod trust_bundle;
mod validate;

pub use self::document::{
    Document, Exemptions, HardenMode, InvalidHardenMode, NamespaceLabelAdmins, NamespaceOverride,
    PodSecurity, PodSecurityDefaults, SeccompProfileType, SecurityContext, Webhook,
};
pub use self::provisioning::Provisioning;
pub use self::selector::{LabelSelector, selector_matches};
pub use self::snapshot::{Shared, Snapshot};
pub use self::trust_bundle::TrustBundle;
pub use self::validate::FieldError;

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
