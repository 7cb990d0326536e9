//! Pod Security Standards: levels, versions, checks and the evaluator.
//!
//! The verdicts, check IDs, reasons and details match the upstream Pod
//! Security Admission `policy` package (see `shared/pss-spec.md`), so a
//! platform can run unroot next to, or instead of, the built-in controller.
//!
//! Everything here is pure and synchronous. Evaluating a compliant pod does
//! not allocate: checks only build strings when they fail.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EphemeralContainer, HTTPGetAction, Lifecycle, LifecycleHandler,
    PodSecurityContext, PodSpec, Probe, SecurityContext, TCPSocketAction, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::view;

mod allow_privilege_escalation;
mod app_armor_profile;
mod capabilities_baseline;
mod capabilities_restricted;
mod host_namespaces;
mod host_path_volumes;
mod host_ports;
mod host_probes_and_host_lifecycle;
mod message;
pub mod namespace_policy;
mod privileged;
mod proc_mount;
mod proc_mount_restricted;
mod restricted_volumes;
mod run_as_non_root;
mod run_as_user;
mod se_linux_options;
mod seccomp_profile_baseline;
mod seccomp_profile_restricted;
mod sysctls;
mod windows_host_process;

pub use capabilities_baseline::ALLOWED as BASELINE_CAPABILITIES;
pub use message::{deny_message, deny_reason, go_quote, violation_message};

/// Errors from parsing levels and versions. The texts are upstream's, byte for
/// byte, because they end up in namespace label errors users compare with
/// the built-in controller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A level other than `privileged`, `baseline` or `restricted`.
    #[error("must be one of privileged, baseline, restricted")]
    InvalidLevel,
    /// A version other than `latest` or `v1.N`.
    #[error("must be \"latest\" or \"v1.x\"")]
    InvalidVersion,
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Pod Security Standards level, ordered from least to most strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// No checks at all.
    Privileged,
    /// Prevents known privilege escalations.
    Baseline,
    /// Current pod hardening best practice.
    Restricted,
}

impl Level {
    /// The label and message spelling of the level.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl FromStr for Level {
    type Err = Error;

    /// Exact and case-sensitive, like upstream (`Restricted` is invalid).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err(Error::InvalidLevel),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Pod Security Standards version: `v1.N`, or `latest` (which sorts after
/// every numbered version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// `v1.N`.
    Minor(u64),
    /// `latest`: the newest behaviour this binary knows.
    Latest,
}

/// `v(1, 25)` is `v1.25`; the only major version is 1.
pub(crate) const fn v(major: u64, minor: u64) -> Version {
    assert!(major == 1, "Pod Security Standards versions are v1.N");
    Version::Minor(minor)
}

impl FromStr for Version {
    type Err = Error;

    /// Accepts `latest` and `v1.N` where N has no leading zero and fits an
    /// `i64` (`^v1\.(0|[1-9][0-9]*)$`).
    fn from_str(s: &str) -> Result<Self> {
        if s == "latest" {
            return Ok(Version::Latest);
        }
        let digits = s.strip_prefix("v1.").ok_or(Error::InvalidVersion)?;
        let well_formed = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !well_formed {
            return Err(Error::InvalidVersion);
        }
        let minor = digits.parse::<i64>().map_err(|_| Error::InvalidVersion)?;
        u64::try_from(minor)
            .map(Version::Minor)
            .map_err(|_| Error::InvalidVersion)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Minor(minor) => write!(f, "v1.{minor}"),
            Version::Latest => f.write_str("latest"),
        }
    }
}

macro_rules! serde_via_str {
    ($ty:ty, $expecting:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$ty, E> {
                        s.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(Visitor)
            }
        }
    };
}

serde_via_str!(Level, "a Pod Security Standards level");
serde_via_str!(Version, "a Pod Security Standards version");

/// A level pinned to a version, printed `level:version` (`restricted:latest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    /// The level.
    pub level: Level,
    /// The version, as requested (printed as requested, even when newer than
    /// the newest version this binary knows).
    pub version: Version,
}

impl LevelVersion {
    /// Upstream equivalence: both privileged (versions do not matter then), or
    /// the same level and version.
    #[must_use]
    pub fn equivalent(&self, other: &LevelVersion) -> bool {
        (self.level == Level::Privileged && other.level == Level::Privileged) || self == other
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The upstream check ID, e.g. `runAsNonRoot`.
    pub check: &'static str,
    /// Short reason, e.g. `runAsNonRoot != true`.
    pub reason: Cow<'static, str>,
    /// What to change, e.g. `pod or container "app" must set securityContext.runAsNonRoot=true`.
    pub detail: String,
}

/// Evaluates a pod (or pod template) against `lv` and returns the failures in
/// upstream order. An empty result means allowed.
#[must_use]
pub fn evaluate(meta: &ObjectMeta, spec: &PodSpec, lv: LevelVersion) -> Vec<Violation> {
    evaluate_excluding_init(meta, spec, lv, None)
}

/// Same as [`evaluate`], but the init container at `skip_init` is not visited:
/// the provenance exemption for unroot's own vetted provisioning init container.
#[must_use]
pub fn evaluate_excluding_init(
    meta: &ObjectMeta,
    spec: &PodSpec,
    lv: LevelVersion,
    skip_init: Option<usize>,
) -> Vec<Violation> {
    run_profile(&Input::of_api(meta, spec, skip_init), lv)
}

/// [`evaluate_excluding_init`] on the [`view`] of a pod that admission
/// decoded.
#[must_use]
pub fn evaluate_view(
    pod: &view::Pod<'_>,
    lv: LevelVersion,
    skip_init: Option<usize>,
) -> Vec<Violation> {
    run_profile(&Input::of_view(pod, skip_init), lv)
}

fn run_profile(input: &Input<'_>, lv: LevelVersion) -> Vec<Violation> {
    let mut violations = Vec::new();
    for active in profile(lv) {
        if let Some(failure) = (active.eval)(input) {
            violations.push(Violation {
                check: active.id,
                reason: if failure.reason.is_empty() {
                    Cow::Borrowed("unknown forbidden reason")
                } else {
                    Cow::Borrowed(failure.reason)
                },
                detail: failure.detail,
            });
        }
    }
    violations
}

/// `{reason}` or `{reason} ({detail})` per violation, joined with `, `: the
/// text of deny messages, warnings and audit annotations.
#[must_use]
pub fn detail_list(violations: &[Violation]) -> String {
    let mut out = String::new();
    for (i, violation) in violations.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&violation.reason);
        if !violation.detail.is_empty() {
            out.push_str(" (");
            out.push_str(&violation.detail);
            out.push(')');
        }
    }
    out
}

/// The reasons alone, joined with `, ` (used to group pods in a namespace dry run).
#[must_use]
pub fn reason_list(violations: &[Violation]) -> String {
    let mut out = String::new();
    for (i, violation) in violations.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&violation.reason);
    }
    out
}

/// The newest version with distinct behaviour; `latest` and anything newer
/// evaluate as this.
#[must_use]
pub fn max_version() -> Version {
    Version::Minor(registry().max_minor)
}

/// Checks the registry invariants (spec §1.3): unique IDs, level baseline or
/// restricted, at least one version, strictly increasing numbered versions,
/// overrides only from restricted checks onto existing baseline checks, and
/// the list in evaluation order (baseline then restricted, each by ID).
/// `serve` calls this at start-up so a bad edit cannot ship silently.
pub fn validate_registry() -> Result<(), String> {
    validate_checks(&ALL.iter().map(|check| check()).collect::<Vec<_>>())
}

// ---------------------------------------------------------------------------
// Registry

/// Every check, in evaluation order (spec §1.4): baseline IDs sorted byte-wise,
/// then restricted IDs sorted byte-wise. [`validate_registry`] enforces it.
const ALL: &[fn() -> Check] = &[
    app_armor_profile::check,
    capabilities_baseline::check,
    host_namespaces::check,
    host_path_volumes::check,
    host_ports::check,
    host_probes_and_host_lifecycle::check,
    privileged::check,
    proc_mount::check,
    se_linux_options::check,
    seccomp_profile_baseline::check,
    sysctls::check,
    windows_host_process::check,
    allow_privilege_escalation::check,
    capabilities_restricted::check,
    proc_mount_restricted::check,
    restricted_volumes::check,
    run_as_non_root::check,
    run_as_user::check,
    seccomp_profile_restricted::check,
];

/// A check's evaluation function: `None` when the pod passes.
pub(crate) type Eval = fn(&Input<'_>) -> Option<Failure>;

/// A check with its versioned behaviours.
pub(crate) struct Check {
    /// Upstream check ID.
    pub id: &'static str,
    /// The level the check belongs to.
    pub level: Level,
    /// Behaviours by minimum version, strictly increasing.
    pub versions: &'static [VersionedCheck],
}

/// The behaviour of a check from `min` until the next entry's `min`.
pub(crate) struct VersionedCheck {
    pub min: Version,
    pub eval: Eval,
    /// Baseline check IDs this (restricted) check replaces in the restricted
    /// profile while this behaviour is active.
    pub overrides: &'static [&'static str],
}

impl VersionedCheck {
    /// A behaviour that overrides nothing.
    pub(crate) const fn new(min: Version, eval: Eval) -> Self {
        VersionedCheck {
            min,
            eval,
            overrides: &[],
        }
    }
}

impl Check {
    /// The behaviour active at `minor`, if any.
    fn at(&self, minor: u64) -> Option<&VersionedCheck> {
        self.versions
            .iter()
            .rev()
            .find(|vc| matches!(vc.min, Version::Minor(m) if m <= minor))
    }
}

/// A failed check, before it is tagged with its ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub reason: &'static str,
    pub detail: String,
}

impl Failure {
    pub(crate) fn new(reason: &'static str, detail: String) -> Failure {
        Failure { reason, detail }
    }
}

fn validate_checks(checks: &[Check]) -> Result<(), String> {
    let mut errors = Vec::new();
    for (i, check) in checks.iter().enumerate() {
        if checks[..i].iter().any(|other| other.id == check.id) {
            errors.push(format!("{}: duplicate check ID", check.id));
        }
        if check.level == Level::Privileged {
            errors.push(format!(
                "{}: level must be baseline or restricted",
                check.id
            ));
        }
        if check.versions.is_empty() {
            errors.push(format!("{}: must have at least one version", check.id));
        }
        let mut previous: Option<Version> = None;
        for vc in check.versions {
            if vc.min == Version::Latest {
                errors.push(format!("{}: minimum version must not be latest", check.id));
            }
            if previous.is_some_and(|p| p >= vc.min) {
                errors.push(format!(
                    "{}: versions must be strictly increasing ({} after {})",
                    check.id,
                    vc.min,
                    previous.unwrap_or(Version::Latest)
                ));
            }
            previous = Some(vc.min);
            for overridden in vc.overrides {
                if check.level != Level::Restricted {
                    errors.push(format!(
                        "{}: only restricted checks may override checks",
                        check.id
                    ));
                }
                match checks.iter().find(|c| c.id == *overridden) {
                    Some(target) if target.level == Level::Baseline => {}
                    Some(_) => errors.push(format!(
                        "{}: overrides {overridden}, which is not a baseline check",
                        check.id
                    )),
                    None => errors.push(format!(
                        "{}: overrides unknown check {overridden}",
                        check.id
                    )),
                }
            }
        }
    }
    let order_key = |c: &Check| (c.level, c.id);
    if let Some(pair) = checks
        .windows(2)
        .find(|pair| order_key(&pair[0]) >= order_key(&pair[1]))
    {
        errors.push(format!(
            "{}: must come before {} (baseline checks, then restricted, each sorted by ID)",
            pair[1].id, pair[0].id
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// A check active in a profile.
struct Active {
    id: &'static str,
    eval: Eval,
}

/// The active checks per level and version, computed once.
struct Registry {
    max_minor: u64,
    /// Indexed by minor version, `0..=max_minor`.
    baseline: Vec<Vec<Active>>,
    restricted: Vec<Vec<Active>>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| build_registry(&ALL.iter().map(|c| c()).collect::<Vec<_>>()))
}

fn build_registry(checks: &[Check]) -> Registry {
    let max_minor = checks
        .iter()
        .flat_map(|c| c.versions)
        .filter_map(|vc| match vc.min {
            Version::Minor(m) => Some(m),
            Version::Latest => None,
        })
        .max()
        .unwrap_or(0);
    let profile_at = |level: Level, minor: u64| -> Vec<Active> {
        let overridden: Vec<&str> = if level == Level::Restricted {
            checks
                .iter()
                .filter(|c| c.level == Level::Restricted)
                .filter_map(|c| c.at(minor))
                .flat_map(|vc| vc.overrides.iter().copied())
                .collect()
        } else {
            Vec::new()
        };
        checks
            .iter()
            .filter(|c| c.level <= level && !overridden.contains(&c.id))
            .filter_map(|c| {
                c.at(minor).map(|vc| Active {
                    id: c.id,
                    eval: vc.eval,
                })
            })
            .collect()
    };
    Registry {
        max_minor,
        baseline: (0..=max_minor)
            .map(|m| profile_at(Level::Baseline, m))
            .collect(),
        restricted: (0..=max_minor)
            .map(|m| profile_at(Level::Restricted, m))
            .collect(),
    }
}

/// The checks to run for `lv`, in evaluation order.
fn profile(lv: LevelVersion) -> &'static [Active] {
    let registry = registry();
    let minor = match lv.version {
        Version::Minor(m) => m.min(registry.max_minor),
        Version::Latest => registry.max_minor,
    };
    // `minor <= max_minor`, which indexes a Vec of that length plus one.
    let index = usize::try_from(minor).unwrap_or(usize::MAX);
    match lv.level {
        Level::Privileged => &[],
        Level::Baseline => &registry.baseline[index],
        Level::Restricted => &registry.restricted[index],
    }
}

// ---------------------------------------------------------------------------
// What checks see

/// The pod (or template) under evaluation: what checks read of it, from
/// `k8s_openapi` types (a pod read through the API or from a file) or from
/// the [`view`] admission decodes, which share their leaf types.
pub(crate) struct Input<'a> {
    /// `metadata.annotations`.
    pub annotations: Option<&'a BTreeMap<String, String>>,
    /// `spec.volumes`.
    volumes: Volumes<'a>,
    /// `spec.hostNetwork`, `spec.hostPID`, `spec.hostIPC`.
    pub host_network: Option<bool>,
    pub host_pid: Option<bool>,
    pub host_ipc: Option<bool>,
    security_context: Option<&'a PodSecurityContext>,
    windows: bool,
    host_users: Option<bool>,
    containers: Containers<'a>,
    skip_init: Option<usize>,
}

/// Where the volumes come from.
#[derive(Clone, Copy)]
enum Volumes<'a> {
    Api(&'a [Volume]),
    View(&'a [Box<Volume>]),
}

/// Where the containers come from.
#[derive(Clone, Copy)]
enum Containers<'a> {
    Api(&'a PodSpec),
    View(&'a view::Spec<'a>),
}

impl<'a> Input<'a> {
    fn of_api(meta: &'a ObjectMeta, spec: &'a PodSpec, skip_init: Option<usize>) -> Self {
        Input {
            annotations: meta.annotations.as_ref(),
            volumes: Volumes::Api(spec.volumes.as_deref().unwrap_or_default()),
            host_network: spec.host_network,
            host_pid: spec.host_pid,
            host_ipc: spec.host_ipc,
            security_context: spec.security_context.as_ref(),
            windows: spec.os.as_ref().is_some_and(|os| os.name == "windows"),
            host_users: spec.host_users,
            containers: Containers::Api(spec),
            skip_init,
        }
    }

    fn of_view(pod: &'a view::Pod<'a>, skip_init: Option<usize>) -> Self {
        let spec = &pod.spec;
        Input {
            annotations: pod.metadata.annotations.as_ref(),
            volumes: Volumes::View(spec.volumes.as_deref().unwrap_or_default()),
            host_network: spec.host_network,
            host_pid: spec.host_pid,
            host_ipc: spec.host_ipc,
            security_context: spec.security_context.as_ref(),
            windows: pod.is_windows(),
            host_users: spec.host_users,
            containers: Containers::View(spec),
            skip_init,
        }
    }

    /// Every container in visit order: init, regular, ephemeral.
    pub(crate) fn containers(&self) -> impl Iterator<Item = ContainerView<'a>> + use<'a> {
        let skip = self.skip_init;
        let (api, view) = match self.containers {
            Containers::Api(spec) => (Some(spec), None),
            Containers::View(spec) => (None, Some(spec)),
        };
        let api_init = api
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter(move |(i, _)| Some(*i) != skip)
            .map(|(_, c)| ContainerView::from(c));
        let api_rest = api
            .map(|s| s.containers.as_slice())
            .unwrap_or_default()
            .iter()
            .map(ContainerView::from)
            .chain(
                api.and_then(|s| s.ephemeral_containers.as_deref())
                    .unwrap_or_default()
                    .iter()
                    .map(ContainerView::from),
            );
        let view_init = view
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter(move |(i, _)| Some(*i) != skip)
            .map(|(_, c)| ContainerView::from(c));
        let view_rest = view
            .map(|s| s.containers.as_slice())
            .unwrap_or_default()
            .iter()
            .chain(
                view.and_then(|s| s.ephemeral_containers.as_deref())
                    .unwrap_or_default(),
            )
            .map(ContainerView::from);
        // One source is empty: init containers first, whichever it is.
        api_init.chain(view_init).chain(api_rest).chain(view_rest)
    }

    /// `spec.volumes`.
    pub(crate) fn volumes(&self) -> impl Iterator<Item = &'a Volume> + use<'a> {
        let (api, view) = match self.volumes {
            Volumes::Api(v) => (v, &[][..]),
            Volumes::View(v) => (&[][..], v),
        };
        api.iter().chain(view.iter().map(AsRef::as_ref))
    }

    /// `spec.securityContext`.
    pub(crate) fn pod_security_context(&self) -> Option<&'a PodSecurityContext> {
        self.security_context
    }

    /// `spec.os.name == "windows"`: the only OS signal upstream consults.
    pub(crate) fn is_windows(&self) -> bool {
        self.windows
    }

    /// `spec.hostUsers` explicitly `false`: the pod runs in a user namespace.
    pub(crate) fn in_user_namespace(&self) -> bool {
        self.host_users == Some(false)
    }
}

/// The fields checks read from a container, ephemeral or not.
#[derive(Clone, Copy)]
pub(crate) struct ContainerView<'a> {
    pub name: &'a str,
    pub security_context: Option<&'a SecurityContext>,
    ports: Ports<'a>,
    /// The hosts its probes and lifecycle hooks call: liveness, readiness,
    /// startup, postStart, preStop, each `httpGet` then `tcpSocket`.
    pub endpoint_hosts: [Option<&'a str>; 10],
}

/// Where a container's ports come from.
#[derive(Clone, Copy)]
enum Ports<'a> {
    Api(&'a [ContainerPort]),
    View(&'a [view::Port]),
}

impl<'a> ContainerView<'a> {
    /// The `hostPort` of each of its ports.
    pub(crate) fn host_ports(&self) -> impl Iterator<Item = Option<i32>> + use<'a> {
        let (api, view) = match self.ports {
            Ports::Api(p) => (p, &[][..]),
            Ports::View(p) => (&[][..], p),
        };
        api.iter()
            .map(|p| p.host_port)
            .chain(view.iter().map(|p| p.host_port))
    }
}

/// The hosts of an `httpGet` and a `tcpSocket` action.
fn api_hosts<'a>(
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a TCPSocketAction>,
) -> [Option<&'a str>; 2] {
    [
        http_get.and_then(|a| a.host.as_deref()),
        tcp_socket.and_then(|a| a.host.as_deref()),
    ]
}

fn api_endpoint_hosts<'a>(
    probes: [Option<&'a Probe>; 3],
    lifecycle: Option<&'a Lifecycle>,
) -> [Option<&'a str>; 10] {
    let probe = |p: Option<&'a Probe>| {
        api_hosts(
            p.and_then(|p| p.http_get.as_ref()),
            p.and_then(|p| p.tcp_socket.as_ref()),
        )
    };
    let hook = |h: Option<&'a LifecycleHandler>| {
        api_hosts(
            h.and_then(|h| h.http_get.as_ref()),
            h.and_then(|h| h.tcp_socket.as_ref()),
        )
    };
    let [l, r, s] = probes.map(probe);
    let post = hook(lifecycle.and_then(|l| l.post_start.as_ref()));
    let pre = hook(lifecycle.and_then(|l| l.pre_stop.as_ref()));
    [
        l[0], l[1], r[0], r[1], s[0], s[1], post[0], post[1], pre[0], pre[1],
    ]
}

fn view_endpoint_hosts<'a>(c: &'a view::Container<'_>) -> [Option<&'a str>; 10] {
    let hosts = |h: Option<&'a view::Handler<'_>>| {
        [
            h.and_then(|h| h.http_get.as_ref())
                .and_then(|e| e.host.as_deref()),
            h.and_then(|h| h.tcp_socket.as_ref())
                .and_then(|e| e.host.as_deref()),
        ]
    };
    let lifecycle = c.lifecycle.as_ref();
    let [l, r, s] =
        [&c.liveness_probe, &c.readiness_probe, &c.startup_probe].map(|p| hosts(p.as_ref()));
    let post = hosts(lifecycle.and_then(|l| l.post_start.as_ref()));
    let pre = hosts(lifecycle.and_then(|l| l.pre_stop.as_ref()));
    [
        l[0], l[1], r[0], r[1], s[0], s[1], post[0], post[1], pre[0], pre[1],
    ]
}

impl<'a> From<&'a Container> for ContainerView<'a> {
    fn from(c: &'a Container) -> Self {
        ContainerView {
            name: &c.name,
            security_context: c.security_context.as_ref(),
            ports: Ports::Api(c.ports.as_deref().unwrap_or_default()),
            endpoint_hosts: api_endpoint_hosts(
                [
                    c.liveness_probe.as_ref(),
                    c.readiness_probe.as_ref(),
                    c.startup_probe.as_ref(),
                ],
                c.lifecycle.as_ref(),
            ),
        }
    }
}

impl<'a> From<&'a view::Container<'a>> for ContainerView<'a> {
    fn from(c: &'a view::Container<'a>) -> Self {
        ContainerView {
            name: &c.name,
            security_context: c.security_context.as_deref(),
            ports: Ports::View(c.ports.as_deref().unwrap_or_default()),
            endpoint_hosts: view_endpoint_hosts(c),
        }
    }
}

impl<'a> From<&'a EphemeralContainer> for ContainerView<'a> {
    fn from(c: &'a EphemeralContainer) -> Self {
        ContainerView {
            name: &c.name,
            security_context: c.security_context.as_ref(),
            ports: Ports::Api(c.ports.as_deref().unwrap_or_default()),
            endpoint_hosts: api_endpoint_hosts(
                [
                    c.liveness_probe.as_ref(),
                    c.readiness_probe.as_ref(),
                    c.startup_probe.as_ref(),
                ],
                c.lifecycle.as_ref(),
            ),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_valid() {
        assert_eq!(validate_registry(), Ok(()));
        assert_eq!(max_version(), v(1, 37));
    }

    fn noop(_: &Input<'_>) -> Option<Failure> {
        None
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one table, one row per broken registry
    fn validation_rejects_broken_registries() {
        const V0: &[VersionedCheck] = &[VersionedCheck::new(v(1, 0), noop)];
        const DECREASING: &[VersionedCheck] = &[
            VersionedCheck::new(v(1, 5), noop),
            VersionedCheck::new(v(1, 5), noop),
        ];
        const LATEST: &[VersionedCheck] = &[VersionedCheck::new(Version::Latest, noop)];
        const OVERRIDES_B: &[VersionedCheck] = &[VersionedCheck {
            min: v(1, 0),
            eval: noop,
            overrides: &["b"],
        }];
        const OVERRIDES_R: &[VersionedCheck] = &[VersionedCheck {
            min: v(1, 0),
            eval: noop,
            overrides: &["r"],
        }];
        let check = |id, level, versions| Check {
            id,
            level,
            versions,
        };
        let cases: Vec<(&str, Vec<Check>, &str)> = vec![
            (
                "duplicate id",
                vec![
                    check("a", Level::Baseline, V0),
                    check("a", Level::Baseline, V0),
                ],
                "a: duplicate check ID",
            ),
            (
                "privileged level",
                vec![check("a", Level::Privileged, V0)],
                "a: level must be baseline or restricted",
            ),
            (
                "no versions",
                vec![check("a", Level::Baseline, &[])],
                "a: must have at least one version",
            ),
            (
                "versions not increasing",
                vec![check("a", Level::Baseline, DECREASING)],
                "a: versions must be strictly increasing (v1.5 after v1.5)",
            ),
            (
                "latest as minimum",
                vec![check("a", Level::Baseline, LATEST)],
                "a: minimum version must not be latest",
            ),
            (
                "baseline overriding",
                vec![
                    check("a", Level::Baseline, OVERRIDES_B),
                    check("b", Level::Baseline, V0),
                ],
                "a: only restricted checks may override checks",
            ),
            (
                "overriding a restricted check",
                vec![
                    check("a", Level::Restricted, OVERRIDES_R),
                    check("r", Level::Restricted, V0),
                ],
                "a: overrides r, which is not a baseline check",
            ),
            (
                "overriding an unknown check",
                vec![check("a", Level::Restricted, OVERRIDES_B)],
                "a: overrides unknown check b",
            ),
            (
                "restricted before baseline",
                vec![
                    check("a", Level::Restricted, V0),
                    check("b", Level::Baseline, V0),
                ],
                "b: must come before a",
            ),
            (
                "unsorted ids",
                vec![
                    check("b", Level::Baseline, V0),
                    check("a", Level::Baseline, V0),
                ],
                "a: must come before b",
            ),
        ];
        for (name, checks, want) in cases {
            let err = validate_checks(&checks).expect_err(name);
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn levels_parse_exactly() {
        for (input, want) in [
            ("privileged", Ok(Level::Privileged)),
            ("baseline", Ok(Level::Baseline)),
            ("restricted", Ok(Level::Restricted)),
            ("Restricted", Err(Error::InvalidLevel)),
            ("", Err(Error::InvalidLevel)),
            (" baseline", Err(Error::InvalidLevel)),
        ] {
            assert_eq!(input.parse::<Level>(), want, "{input:?}");
        }
        assert_eq!(
            Error::InvalidLevel.to_string(),
            "must be one of privileged, baseline, restricted"
        );
        assert!(Level::Privileged < Level::Baseline && Level::Baseline < Level::Restricted);
    }

    #[test]
    fn versions_parse_exactly() {
        for (input, want) in [
            ("latest", Ok(Version::Latest)),
            ("v1.0", Ok(v(1, 0))),
            ("v1.9", Ok(v(1, 9))),
            ("v1.25", Ok(v(1, 25))),
            ("v1.10000", Ok(v(1, 10000))),
            (
                "v1.9223372036854775807",
                Ok(Version::Minor(i64::MAX as u64)),
            ),
            ("v1.9223372036854775808", Err(Error::InvalidVersion)),
            ("v1.01", Err(Error::InvalidVersion)),
            ("1.25", Err(Error::InvalidVersion)),
            ("v2.0", Err(Error::InvalidVersion)),
            ("V1.25", Err(Error::InvalidVersion)),
            ("v1.25.0", Err(Error::InvalidVersion)),
            ("v1.25\n", Err(Error::InvalidVersion)),
            ("v1.", Err(Error::InvalidVersion)),
            ("v1.+5", Err(Error::InvalidVersion)),
            ("Latest", Err(Error::InvalidVersion)),
            ("", Err(Error::InvalidVersion)),
        ] {
            assert_eq!(input.parse::<Version>(), want, "{input:?}");
        }
        assert_eq!(
            Error::InvalidVersion.to_string(),
            "must be \"latest\" or \"v1.x\""
        );
    }

    #[test]
    fn versions_order_with_latest_last_and_print_as_given() {
        let mut versions = vec![Version::Latest, v(1, 100), v(1, 9), v(1, 10)];
        versions.sort();
        assert_eq!(
            versions,
            vec![v(1, 9), v(1, 10), v(1, 100), Version::Latest]
        );
        let lv = LevelVersion {
            level: Level::Baseline,
            version: v(1, 99),
        };
        assert_eq!(lv.to_string(), "baseline:v1.99");
    }

    #[test]
    fn levels_and_versions_serialize_as_strings() {
        assert_eq!(
            serde_json::to_string(&(Level::Restricted, v(1, 25), Version::Latest)).ok(),
            Some(r#"["restricted","v1.25","latest"]"#.to_owned())
        );
        let parsed: (Level, Version) =
            serde_json::from_str(r#"["baseline","v1.3"]"#).expect("valid");
        assert_eq!(parsed, (Level::Baseline, v(1, 3)));
        let err = serde_json::from_str::<Level>(r#""Baseline""#).expect_err("invalid");
        assert!(err.to_string().contains("must be one of"), "{err}");
    }

    #[test]
    fn equivalence_ignores_versions_only_when_privileged() {
        let lv = |level, version| LevelVersion { level, version };
        assert!(lv(Level::Privileged, v(1, 3)).equivalent(&lv(Level::Privileged, Version::Latest)));
        assert!(!lv(Level::Baseline, v(1, 37)).equivalent(&lv(Level::Baseline, Version::Latest)));
        assert!(lv(Level::Baseline, v(1, 3)).equivalent(&lv(Level::Baseline, v(1, 3))));
    }

    fn ids(level: Level, version: Version) -> Vec<&'static str> {
        profile(LevelVersion { level, version })
            .iter()
            .map(|a| a.id)
            .collect()
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one table: the checks in force at each level and version
    fn profiles_follow_activation_and_overrides() {
        assert!(ids(Level::Privileged, Version::Latest).is_empty());
        assert_eq!(
            ids(Level::Restricted, Version::Latest),
            [
                "appArmorProfile",
                "hostNamespaces",
                "hostPorts",
                "hostProbesAndHostLifecycle",
                "privileged",
                "seLinuxOptions",
                "sysctls",
                "windowsHostProcess",
                "allowPrivilegeEscalation",
                "capabilities_restricted",
                "procMount_restricted",
                "restrictedVolumes",
                "runAsNonRoot",
                "runAsUser",
                "seccompProfile_restricted",
            ]
        );
        assert_eq!(
            ids(Level::Baseline, Version::Latest),
            [
                "appArmorProfile",
                "capabilities_baseline",
                "hostNamespaces",
                "hostPathVolumes",
                "hostPorts",
                "hostProbesAndHostLifecycle",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "seccompProfile_baseline",
                "sysctls",
                "windowsHostProcess",
            ]
        );
        assert_eq!(
            ids(Level::Baseline, v(1, 33)),
            [
                "appArmorProfile",
                "capabilities_baseline",
                "hostNamespaces",
                "hostPathVolumes",
                "hostPorts",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "seccompProfile_baseline",
                "sysctls",
                "windowsHostProcess",
            ]
        );
        assert_eq!(
            ids(Level::Restricted, v(1, 0)),
            [
                "appArmorProfile",
                "capabilities_baseline",
                "hostNamespaces",
                "hostPorts",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "seccompProfile_baseline",
                "sysctls",
                "windowsHostProcess",
                "restrictedVolumes",
                "runAsNonRoot",
            ]
        );
        assert_eq!(
            ids(Level::Restricted, v(1, 21))[..],
            ids(Level::Restricted, v(1, 19))[..]
        );
        assert!(ids(Level::Restricted, v(1, 21)).contains(&"capabilities_baseline"));
        assert!(!ids(Level::Restricted, v(1, 22)).contains(&"capabilities_baseline"));
        assert!(ids(Level::Restricted, v(1, 34)).contains(&"procMount"));
        assert!(!ids(Level::Restricted, v(1, 35)).contains(&"procMount"));
        assert!(ids(Level::Restricted, v(1, 18)).contains(&"seccompProfile_baseline"));
        assert!(!ids(Level::Restricted, v(1, 19)).contains(&"seccompProfile_baseline"));
        assert!(!ids(Level::Restricted, v(1, 7)).contains(&"allowPrivilegeEscalation"));
        assert!(ids(Level::Restricted, v(1, 8)).contains(&"allowPrivilegeEscalation"));
        assert!(!ids(Level::Restricted, v(1, 22)).contains(&"runAsUser"));
        assert!(ids(Level::Restricted, v(1, 23)).contains(&"runAsUser"));
        assert_eq!(
            ids(Level::Restricted, v(1, 10_000)),
            ids(Level::Restricted, Version::Latest)
        );
    }

    fn pod(value: &serde_json::Value) -> (ObjectMeta, PodSpec) {
        let meta = serde_json::from_value(value["metadata"].clone()).expect("metadata");
        let spec = serde_json::from_value(value["spec"].clone()).expect("spec");
        (meta, spec)
    }

    #[test]
    fn bare_pod_at_restricted_latest_matches_upstream_message() {
        let (meta, spec) = pod(&serde_json::json!({
            "metadata": {},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        }));
        let lv = LevelVersion {
            level: Level::Restricted,
            version: Version::Latest,
        };
        let violations = evaluate(&meta, &spec, lv);
        assert_eq!(
            deny_message("p", lv, &violations),
            "pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": \
             allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        assert_eq!(
            reason_list(&violations),
            "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
        );
        let baseline = LevelVersion {
            level: Level::Baseline,
            version: Version::Latest,
        };
        assert!(evaluate(&meta, &spec, baseline).is_empty());
        let privileged = LevelVersion {
            level: Level::Privileged,
            version: v(1, 0),
        };
        assert!(evaluate(&meta, &spec, privileged).is_empty());
    }

    #[test]
    fn hardened_pod_is_allowed_at_every_level_and_version() {
        let (meta, spec) = pod(&serde_json::json!({
            "metadata": {"annotations": {
                "container.apparmor.security.beta.kubernetes.io/app": "runtime/default",
                "seccomp.security.alpha.kubernetes.io/pod": "runtime/default",
            }},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": 1000,
                    "seccompProfile": {"type": "RuntimeDefault"},
                    "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                },
                "initContainers": [hardened("init")],
                "containers": [hardened("app")],
                "ephemeralContainers": [hardened("debug")],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        }));
        for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
            for minor in 0..=40 {
                let lv = LevelVersion {
                    level,
                    version: v(1, minor),
                };
                assert_eq!(evaluate(&meta, &spec, lv), [], "{lv}");
            }
        }
    }

    fn hardened(name: &str) -> serde_json::Value {
        serde_json::json!({
            "name": name,
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                "procMount": "Default",
                "seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"},
                "appArmorProfile": {"type": "RuntimeDefault"},
            },
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"port": 8080}},
        })
    }

    #[test]
    fn reasons_move_between_slots_across_versions() {
        let (meta, spec) = pod(&serde_json::json!({
            "metadata": {},
            "spec": {"containers": [{
                "name": "a",
                "securityContext": {
                    "procMount": "Unmasked",
                    "capabilities": {"add": ["SYS_ADMIN"]},
                    "allowPrivilegeEscalation": false,
                    "runAsNonRoot": true,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
            }]},
        }));
        let checks = |version| -> Vec<&str> {
            evaluate(
                &meta,
                &spec,
                LevelVersion {
                    level: Level::Restricted,
                    version,
                },
            )
            .iter()
            .map(|v| v.check)
            .collect()
        };
        assert_eq!(checks(v(1, 21)), ["capabilities_baseline", "procMount"],);
        assert_eq!(checks(v(1, 34)), ["procMount", "capabilities_restricted"],);
        assert_eq!(
            checks(Version::Latest),
            ["capabilities_restricted", "procMount_restricted"],
        );
    }

    #[test]
    fn windows_pods_skip_overriding_checks() {
        // Upstream parity, not an accident: from v1.25 a Windows pod skips
        // capabilities_restricted and seccompProfile_restricted, and those
        // still replace capabilities_baseline and seccompProfile_baseline in
        // the restricted profile, so restricted allows what baseline denies.
        let (meta, spec) = pod(&serde_json::json!({
            "metadata": {},
            "spec": {
                "os": {"name": "windows"},
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "Unconfined"}},
                "containers": [{
                    "name": "a",
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["SYS_ADMIN"]}},
                }],
            },
        }));
        let checks = |level, version| -> Vec<&str> {
            evaluate(&meta, &spec, LevelVersion { level, version })
                .iter()
                .map(|v| v.check)
                .collect()
        };
        assert_eq!(
            checks(Level::Baseline, Version::Latest),
            ["capabilities_baseline", "seccompProfile_baseline"]
        );
        assert!(checks(Level::Restricted, Version::Latest).is_empty());
        assert_eq!(
            checks(Level::Restricted, v(1, 24)),
            ["capabilities_restricted", "seccompProfile_restricted"]
        );
    }

    #[test]
    fn skipped_init_container_is_not_visited() {
        let (meta, spec) = pod(&serde_json::json!({
            "metadata": {},
            "spec": {
                "initContainers": [
                    {"name": "provision", "securityContext": {"privileged": true}},
                    {"name": "other", "securityContext": {"privileged": true}},
                ],
                "containers": [{"name": "app"}],
            },
        }));
        let lv = LevelVersion {
            level: Level::Baseline,
            version: Version::Latest,
        };
        let details =
            |skip| -> String { detail_list(&evaluate_excluding_init(&meta, &spec, lv, skip)) };
        assert_eq!(
            details(None),
            "privileged (containers \"provision\", \"other\" must not set securityContext.privileged=true)"
        );
        assert_eq!(
            details(Some(0)),
            "privileged (container \"other\" must not set securityContext.privileged=true)"
        );
        assert_eq!(
            details(Some(1)),
            "privileged (container \"provision\" must not set securityContext.privileged=true)"
        );
    }

    #[test]
    fn empty_detail_prints_reason_alone() {
        let violations = [
            Violation {
                check: "a",
                reason: Cow::Borrowed("r1"),
                detail: String::new(),
            },
            Violation {
                check: "b",
                reason: Cow::Borrowed("r2"),
                detail: "d2".to_owned(),
            },
        ];
        assert_eq!(detail_list(&violations), "r1, r2 (d2)");
        assert_eq!(reason_list(&violations), "r1, r2");
        assert_eq!(detail_list(&[]), "");
    }
}
