//! The `trustBundle` section: which pods get the cluster's CA bundle
//! mounted at `/etc/ssl/certs`, and how.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::FieldError;
use super::names::{
    is_clean_absolute_path, is_config_map_key, is_dns1123_label, is_dns1123_subdomain, is_file_name,
};
use super::selector::LabelSelector;

/// The namespace label that selects the trust bundle in the default policy.
pub const DEFAULT_LABEL: &str = "unroot.dev/trust-bundle";

/// The `trustBundle` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrustBundle {
    /// Whether the trust bundle is mounted at all (default true; the
    /// namespace selector decides where).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The namespaces whose pods get the bundle (a standard label selector;
    /// `{}` selects every namespace).
    pub namespace_selector: LabelSelector,
    /// The ConfigMap holding the bundle in each selected namespace (what
    /// trust-manager's `Bundle` target writes; it is named after the Bundle).
    pub config_map: String,
    /// The ConfigMap key holding the PEM bundle.
    pub key: String,
    /// Where the bundle directory is mounted.
    #[serde(default = "default_mount_path")]
    pub mount_path: String,
    /// The file names the bundle is exposed under, each the whole bundle.
    #[serde(default = "default_file_names")]
    pub file_names: Vec<String>,
    /// Set `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `NODE_EXTRA_CA_CERTS` and
    /// `CURL_CA_BUNDLE` to the first file name, where a container sets none.
    #[serde(default = "yes")]
    pub set_env: bool,
    /// The containers (and init containers) that get the bundle.
    #[serde(default)]
    pub containers: Containers,
}

fn yes() -> bool {
    true
}

fn default_mount_path() -> String {
    "/etc/ssl/certs".to_owned()
}

/// Debian/Ubuntu, RHEL/Fedora and Alpine/OpenSSL spellings of the bundle.
fn default_file_names() -> Vec<String> {
    ["ca-certificates.crt", "ca-bundle.crt", "cert.pem"]
        .map(str::to_owned)
        .to_vec()
}

impl Default for TrustBundle {
    /// The embedded default: namespaces labelled
    /// `unroot.dev/trust-bundle: enabled` get the `trust-bundle` ConfigMap's
    /// `ca-certificates.crt`.
    fn default() -> Self {
        Self {
            enabled: true,
            namespace_selector: LabelSelector::match_label(DEFAULT_LABEL, "enabled"),
            config_map: "trust-bundle".to_owned(),
            key: "ca-certificates.crt".to_owned(),
            mount_path: default_mount_path(),
            file_names: default_file_names(),
            set_env: true,
            containers: Containers::All,
        }
    }
}

/// Which containers a mutation applies to: `all`, or a list of names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Containers {
    /// Every container and init container.
    #[default]
    All,
    /// Only the containers and init containers with these names.
    Names(Vec<String>),
}

impl Containers {
    /// Whether the container called `name` is selected.
    #[must_use]
    pub fn selects(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Names(names) => names.iter().any(|n| n == name),
        }
    }
}

impl schemars::JsonSchema for Containers {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Containers".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The containers (and init containers) that get the bundle: \"all\", or a list of names.",
            "oneOf": [
                {"const": "all"},
                {"type": "array", "items": {"type": "string"}}
            ]
        })
    }
}

impl Serialize for Containers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::All => serializer.serialize_str("all"),
            Self::Names(names) => names.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Containers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContainersVisitor;
        impl<'de> Visitor<'de> for ContainersVisitor {
            type Value = Containers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"all\" or a list of container names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Containers, E> {
                if v == "all" {
                    Ok(Containers::All)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Containers, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(Containers::Names(names))
            }
        }
        deserializer.deserialize_any(ContainersVisitor)
    }
}

impl TrustBundle {
    /// Every rule this section breaks, with paths below `trustBundle`.
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        let mut err = |path: &str, message: String| {
            errors.push(FieldError::new(format!("trustBundle.{path}"), message));
        };
        if !is_dns1123_subdomain(&self.config_map) {
            err(
                "configMap",
                format!(
                    "{:?} is not a valid ConfigMap name (lower-case DNS-1123 subdomain, e.g. trust-bundle)",
                    self.config_map
                ),
            );
        }
        if !is_config_map_key(&self.key) {
            err(
                "key",
                format!(
                    "{:?} is not a valid ConfigMap key (letters, digits, '-', '_', '.')",
                    self.key
                ),
            );
        }
        if !is_clean_absolute_path(&self.mount_path) {
            err(
                "mountPath",
                format!(
                    "{:?} must be an absolute path without '.', '..', empty components or a trailing '/' (e.g. /etc/ssl/certs)",
                    self.mount_path
                ),
            );
        }
        if self.file_names.is_empty() {
            err(
                "fileNames",
                "must name at least one file (e.g. ca-certificates.crt)".to_owned(),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, name) in self.file_names.iter().enumerate() {
            if !is_file_name(name) {
                err(
                    &format!("fileNames[{i}]"),
                    format!("{name:?} is not a file name (no '/', not '.' or '..', not empty)"),
                );
            } else if !seen.insert(name) {
                err(
                    &format!("fileNames[{i}]"),
                    format!("{name:?} is listed twice"),
                );
            }
        }
        if let Containers::Names(names) = &self.containers {
            if names.is_empty() {
                err(
                    "containers",
                    "must be \"all\" or name at least one container".to_owned(),
                );
            }
            for (i, name) in names.iter().enumerate() {
                if !is_dns1123_label(name) {
                    err(
                        &format!("containers[{i}]"),
                        format!("{name:?} is not a valid container name (DNS-1123 label)"),
                    );
                }
            }
        }
        self.namespace_selector
            .validate("trustBundle.namespaceSelector", errors);
    }
}
