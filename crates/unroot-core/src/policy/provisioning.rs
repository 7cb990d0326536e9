//! The `provisioning` section: who may claim a user identity for a pod, and
//! the one privileged init container that creates the user's home.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ResourceRequirements, Volume};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::FieldError;
use super::names::{
    is_capability_name, is_clean_absolute_path, is_dns1123_label, is_pinned_image,
    is_portable_user_name,
};
use super::selector::LabelSelector;

/// The namespace label that selects provisioning in the default policy.
pub const DEFAULT_LABEL: &str = "unroot.dev/provisioning";

/// Largest user or group id Kubernetes accepts (`runAsUser` is validated
/// against `math.MaxInt32`).
pub const MAX_ID: i64 = 2_147_483_647;

/// The capabilities the Pod Security baseline level allows a container to
/// add; the provisioning container may add only from these.
pub use crate::pss::BASELINE_CAPABILITIES;

/// Volume names unroot uses itself; the home volume may not take them.
pub const RESERVED_VOLUME_NAMES: [&str; 2] = ["unroot-identity", "unroot-trust-bundle"];

/// The `provisioning` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Provisioning {
    /// Whether identity annotations are honoured at all (default false: any
    /// pod carrying them is denied).
    #[serde(default)]
    pub enabled: bool,
    /// The namespaces where identities may be claimed.
    pub namespace_selector: LabelSelector,
    /// The requesting users (AdmissionRequest `userInfo.username`, exact
    /// match) allowed to set identity annotations: the spawner's account.
    #[serde(default)]
    pub trusted_requesters: Vec<String>,
    /// The user ids an identity may claim.
    pub uid_range: IdRange,
    /// The group ids (primary and supplementary) an identity may claim.
    pub gid_range: IdRange,
    /// The init container that creates the home directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_container: Option<InitContainer>,
    /// The capabilities the init container adds after dropping ALL.
    #[serde(default = "default_capabilities")]
    pub capabilities: Vec<String>,
    /// The volume the homes live on, mounted in the init container and the
    /// pod's containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_volume: Option<HomeVolume>,
    /// The `/etc/passwd` and `/etc/group` lines every identity gets before
    /// its own.
    #[serde(default)]
    pub base_entries: BaseEntries,
    /// The login shell written into the user's passwd line.
    #[serde(default = "default_shell")]
    pub shell: String,
    /// Whether a provisioned pod gets `fsGroup` = the identity's gid (with
    /// `fsGroupChangePolicy: OnRootMismatch`) when it sets none.
    #[serde(default = "yes")]
    pub set_fs_group: bool,
}

fn yes() -> bool {
    true
}

fn default_capabilities() -> Vec<String> {
    ["CHOWN", "DAC_OVERRIDE", "FOWNER"]
        .map(str::to_owned)
        .to_vec()
}

fn default_shell() -> String {
    "/bin/sh".to_owned()
}

impl Default for Provisioning {
    /// Disabled, with the ranges and entries the embedded policy documents.
    fn default() -> Self {
        Self {
            enabled: false,
            namespace_selector: LabelSelector::match_label(DEFAULT_LABEL, "enabled"),
            trusted_requesters: Vec::new(),
            uid_range: IdRange {
                min: 10000,
                max: 60000,
            },
            gid_range: IdRange {
                min: 10000,
                max: 60000,
            },
            init_container: None,
            capabilities: default_capabilities(),
            home_volume: None,
            base_entries: BaseEntries::default(),
            shell: default_shell(),
            set_fs_group: true,
        }
    }
}

/// An inclusive range of ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdRange {
    /// Smallest allowed id (at least 1).
    #[schemars(range(min = 1, max = MAX_ID))]
    pub min: i64,
    /// Largest allowed id.
    #[schemars(range(min = 1, max = MAX_ID))]
    pub max: i64,
}

impl IdRange {
    /// Whether `id` is inside the range (never true for 0 in a valid range).
    #[must_use]
    pub fn contains(&self, id: i64) -> bool {
        id != 0 && (self.min..=self.max).contains(&id)
    }
}

/// The provisioning init container, as the policy pins it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InitContainer {
    /// Container name; also reserved: no other container may use it.
    #[serde(default = "default_init_name")]
    pub name: String,
    /// Image, pinned by digest (`name@sha256:<64 hex>`).
    pub image: String,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Resource requests and limits (a container's `resources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub resources: Option<ResourceRequirements>,
}

fn default_init_name() -> String {
    "unroot-provision".to_owned()
}

/// The home volume: a name, a mount path, and one Kubernetes volume source
/// written inline (`nfs: {...}`, `persistentVolumeClaim: {...}`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HomeVolume {
    /// Volume name in the pod.
    pub name: String,
    /// Where the volume is mounted; homes are directories below it.
    pub mount_path: String,
    /// The volume source (exactly one key, as in a pod's `volumes` entry).
    #[serde(flatten)]
    pub source: Map<String, Value>,
}

impl HomeVolume {
    /// The pod `volumes` entry for this volume.
    #[must_use]
    pub fn volume(&self) -> Value {
        let mut volume = self.source.clone();
        volume.insert("name".to_owned(), Value::String(self.name.clone()));
        Value::Object(volume)
    }
}

/// The base `/etc/passwd` and `/etc/group` lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BaseEntries {
    /// passwd lines (`name:x:uid:gid:gecos:home:shell`).
    #[serde(default)]
    pub passwd: Vec<String>,
    /// group lines (`name:x:gid:members`).
    #[serde(default)]
    pub group: Vec<String>,
}

impl Default for BaseEntries {
    fn default() -> Self {
        Self {
            passwd: vec![
                "root:x:0:0:root:/root:/sbin/nologin".to_owned(),
                "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin".to_owned(),
            ],
            group: vec!["root:x:0:".to_owned(), "nobody:x:65534:".to_owned()],
        }
    }
}

impl BaseEntries {
    /// The (name, id) of every passwd line.
    #[must_use]
    pub fn users(&self) -> Vec<(&str, i64)> {
        parse_entries(&self.passwd)
    }

    /// The (name, id) of every group line.
    #[must_use]
    pub fn groups(&self) -> Vec<(&str, i64)> {
        parse_entries(&self.group)
    }
}

fn parse_entries(lines: &[String]) -> Vec<(&str, i64)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut fields = l.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse().ok()?;
            Some((name, id))
        })
        .collect()
}

impl Provisioning {
    /// Every rule this section breaks, with paths below `provisioning`.
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        let mut err = |path: &str, message: String| {
            errors.push(FieldError::new(format!("provisioning.{path}"), message));
        };
        if self.enabled && self.trusted_requesters.is_empty() {
            err(
                "trustedRequesters",
                "must name at least one user when provisioning is enabled (the spawner's account, e.g. system:serviceaccount:hub:hub)".to_owned(),
            );
        }
        for (name, range) in [("uidRange", self.uid_range), ("gidRange", self.gid_range)] {
            if range.min < 1 || range.max > MAX_ID || range.min > range.max {
                err(
                    name,
                    format!(
                        "{}-{} is not allowed: must satisfy 1 <= min <= max <= {MAX_ID} (0 is root and never claimable)",
                        range.min, range.max
                    ),
                );
            }
        }
        match (&self.init_container, self.enabled) {
            (None, true) => err(
                "initContainer",
                "is required when provisioning is enabled".to_owned(),
            ),
            (None, false) => {}
            (Some(c), _) => {
                if !is_dns1123_label(&c.name) {
                    err(
                        "initContainer.name",
                        format!(
                            "{:?} is not a valid container name (DNS-1123 label)",
                            c.name
                        ),
                    );
                }
                if !is_pinned_image(&c.image) {
                    err(
                        "initContainer.image",
                        format!(
                            "{:?} must be pinned by digest (name@sha256:<64 hex>)",
                            c.image
                        ),
                    );
                }
            }
        }
        match (&self.home_volume, self.enabled) {
            (None, true) => err(
                "homeVolume",
                "is required when provisioning is enabled".to_owned(),
            ),
            (None, false) => {}
            (Some(v), _) => {
                for (path, message) in validate_home_volume(v) {
                    err(&path, message);
                }
            }
        }
        for (path, message) in self
            .validate_requesters()
            .into_iter()
            .chain(self.validate_capabilities())
            .chain(self.validate_entries())
        {
            err(&path, message);
        }
        if !is_clean_absolute_path(&self.shell) || self.shell.contains(':') {
            err(
                "shell",
                format!(
                    "{:?} must be an absolute path without ':' (e.g. /bin/sh)",
                    self.shell
                ),
            );
        }
        self.namespace_selector
            .validate("provisioning.namespaceSelector", errors);
    }

    fn validate_requesters(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, user) in self.trusted_requesters.iter().enumerate() {
            let at = format!("trustedRequesters[{i}]");
            let message = if user.is_empty() || user.contains(char::is_whitespace) {
                format!("{user:?} is not a user name (non-empty, no spaces)")
            } else if user.contains('*') {
                format!("{user:?}: wildcards are not supported; list exact user names")
            } else if user == "system:anonymous" {
                "system:anonymous cannot be trusted: anyone could claim any identity".to_owned()
            } else {
                continue;
            };
            out.push((at, message));
        }
        out
    }

    fn validate_capabilities(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, cap) in self.capabilities.iter().enumerate() {
            let message = if !is_capability_name(cap) {
                format!(
                    "{cap:?} is not a capability name (upper case, without the CAP_ prefix, e.g. CHOWN)"
                )
            } else if !BASELINE_CAPABILITIES.contains(&cap.as_str()) {
                format!(
                    "{cap:?} is not allowed: the provisioning container may add only capabilities of the Pod Security baseline level ({})",
                    BASELINE_CAPABILITIES.join(", ")
                )
            } else if !seen.insert(cap) {
                format!("{cap:?} is listed twice")
            } else {
                continue;
            };
            out.push((format!("capabilities[{i}]"), message));
        }
        out
    }

    fn validate_entries(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (list, lines, fields) in [
            ("passwd", &self.base_entries.passwd, 7),
            ("group", &self.base_entries.group, 4),
        ] {
            let mut names = BTreeSet::new();
            for (i, line) in lines.iter().enumerate() {
                let at = format!("baseEntries.{list}[{i}]");
                let parts: Vec<&str> = line.split(':').collect();
                let id_ok = parts.get(2).is_some_and(|id| id.parse::<u32>().is_ok())
                    && (list == "group" || parts.get(3).is_some_and(|g| g.parse::<u32>().is_ok()));
                if parts.len() != fields
                    || !id_ok
                    || line.chars().any(char::is_control)
                    || !is_portable_user_name(parts[0])
                {
                    let shape = if list == "passwd" {
                        "name:x:uid:gid:gecos:home:shell"
                    } else {
                        "name:x:gid:members"
                    };
                    out.push((
                        at,
                        format!("{line:?} is not a {list} line ({shape}, a portable name and numeric ids)"),
                    ));
                } else if !names.insert(parts[0]) {
                    out.push((at, format!("{:?} is listed twice", parts[0])));
                }
            }
        }
        out
    }
}

fn validate_home_volume(v: &HomeVolume) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !is_dns1123_label(&v.name) {
        out.push((
            "homeVolume.name".to_owned(),
            format!("{:?} is not a valid volume name (DNS-1123 label)", v.name),
        ));
    } else if RESERVED_VOLUME_NAMES.contains(&v.name.as_str()) {
        out.push((
            "homeVolume.name".to_owned(),
            format!("{:?} is reserved for unroot's own volumes", v.name),
        ));
    }
    if !is_clean_absolute_path(&v.mount_path) || v.mount_path.contains(':') {
        out.push((
            "homeVolume.mountPath".to_owned(),
            format!(
                "{:?} must be an absolute path without '.', '..', ':', empty components or a trailing '/' (e.g. /home)",
                v.mount_path
            ),
        ));
    } else if v.mount_path == "/etc" || v.mount_path.starts_with("/etc/") {
        out.push((
            "homeVolume.mountPath".to_owned(),
            format!("{:?} would cover /etc/passwd and /etc/group", v.mount_path),
        ));
    }
    let keys: Vec<&String> = v.source.keys().collect();
    match keys.as_slice() {
        [] => out.push((
            "homeVolume".to_owned(),
            "needs a volume source (e.g. nfs: {server: ..., path: ...} or persistentVolumeClaim: {claimName: ...})".to_owned(),
        )),
        [key] if key.as_str() == "hostPath" => out.push((
            "homeVolume.hostPath".to_owned(),
            "hostPath volumes are denied by Pod Security baseline; use nfs, a persistentVolumeClaim or another network volume".to_owned(),
        )),
        [key] => {
            // Round-trip through the Kubernetes type: a key it does not know,
            // or a field inside the source it drops, is a typo to report.
            let volume = v.volume();
            match serde_json::from_value::<Volume>(volume.clone()) {
                Err(e) => out.push((format!("homeVolume.{key}"), format!("is not a valid volume source: {e}"))),
                Ok(parsed) => {
                    if serde_json::to_value(&parsed).ok().as_ref() != Some(&volume) {
                        out.push((
                            format!("homeVolume.{key}"),
                            "is not a Kubernetes volume source, or has fields Kubernetes does not know".to_owned(),
                        ));
                    }
                }
            }
        }
        _ => out.push((
            "homeVolume".to_owned(),
            format!(
                "has more than one volume source or unknown fields ({}); keep name, mountPath and exactly one source",
                keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
    out
}
