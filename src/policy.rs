//! The policy document: what unroot does to pods, loaded from YAML.
//!
//! The embedded default is `webhook-config/policy.yaml`, compiled in, so the
//! shipped file and the default in force cannot drift.

use std::fmt::{self, Write as _};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// The `webhook` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Webhook {
    /// Namespaces whose objects are never mutated or validated.
    #[serde(default)]
    pub excluded_namespaces: Vec<String>,
}

impl Document {
    /// Parses and validates a policy from YAML (or JSON) text.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let doc: Self = serde_saphyr::from_str(text).map_err(|e| Error::Parse(e.to_string()))?;
        let errors = doc.validate();
        if errors.is_empty() {
            Ok(doc)
        } else {
            Err(Error::Invalid(errors))
        }
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
        for (i, ns) in self.webhook.excluded_namespaces.iter().enumerate() {
            if ns.is_empty() {
                err(
                    &format!("webhook.excludedNamespaces[{i}]"),
                    "must not be empty".to_owned(),
                );
            }
        }
        errors
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

/// The policy in force, shared read-only by every request.
pub type Shared = Arc<Document>;

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
            .replace("fsGroup: 65532", "fsGroup: -1");
        let Err(Error::Invalid(errors)) = Document::from_yaml(&text) else {
            panic!("expected invalid");
        };
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "securityContext.runAsUser: 0 is not allowed: must be a non-root id between 1 and 4294967294",
                "securityContext.fsGroup: -1 is not allowed: must be a non-root id between 1 and 4294967294",
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
