//! Prometheus metrics: one registry, typed handles, no global statics.
//!
//! The admission core returns [`Facts`]; [`Metrics::record`] is the one place
//! that turns them into counters. Every label set is bounded: no pod names,
//! users or raw request strings, and the children a review counts are
//! resolved once per label combination ([`slots`]), not looked up per review.

pub mod names;
mod slots;

use std::borrow::Cow;
use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use self::slots::{Names, Slots};
use crate::admission::validate::metric_version;
use crate::admission::{Applied, Decision, Mode, Operation, PssResult, Request, Target};
use crate::policy::HardenMode;
use crate::pss::{self, Level, LevelVersion, Version};
use crate::workload;

/// Latency buckets: 50 µs to 10 s (the API server's webhook timeout).
pub const DURATION_BUCKETS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Every metric unroot exports, registered in its own registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// AdmissionReviews answered, by webhook, kind, operation and outcome
    /// (`allowed`, `patched`, `denied`, `error`).
    pub admission_requests: IntCounterVec,
    /// Time from a review's arrival to its answer, by webhook.
    pub admission_duration: HistogramVec,
    /// Requests refused before they were a review, by webhook and reason
    /// (`malformed`, `too_large`, `unsupported_media_type`, `body_timeout`,
    /// `overloaded`).
    pub rejected_requests: IntCounterVec,
    /// Connections that failed before any webhook was named.
    pub connections: Connections,
    /// Warnings returned to clients, by webhook.
    pub warnings: IntCounterVec,
    /// Reviews being handled right now.
    pub in_flight: IntGauge,
    /// Mutations applied, by kind.
    pub mutations: IntCounterVec,
    /// Pod Security check failures, by mode, level and check ID.
    pub pss_violations: IntCounterVec,
    /// Pods admitted by `/mutate`, by hardening mode (`on`, `warn`, `off`).
    pub harden: IntCounterVec,
    /// Pod Security evaluations, exemptions and errors, with upstream Pod
    /// Security Admission's labels.
    pub pod_security: PodSecurityMetrics,
    /// The readiness report's gauges, registered with or without a cluster
    /// (the report runs only with one).
    pub report: crate::report::task::Metrics,
    /// The children reviews count, resolved once per label combination.
    resolved: Arc<Resolved>,
}

/// What the webhook listener counts before a request names a webhook: these
/// are connections, not reviews, so they stay out of the per-webhook error
/// ratio (a scanner's handshake is not a failed admission).
#[derive(Clone, Debug)]
pub struct Connections {
    /// `unroot_tls_handshake_failures_total{reason}`, reasons
    /// [`HANDSHAKE_FAILURES`].
    pub handshake_failures: IntCounterVec,
    /// `unroot_request_header_timeouts_total`.
    pub header_timeouts: IntCounter,
}

/// The `reason` values of `unroot_tls_handshake_failures_total`:
/// `unauthenticated` (no valid client certificate under `--client-ca`),
/// `timeout`, `shed` (connections ran short), `error` (any other).
pub const HANDSHAKE_FAILURES: [&str; 4] = ["unauthenticated", "timeout", "shed", "error"];

/// A metric family [`register`] can make from a name, a help text and
/// label names.
pub trait Family: Collector + Clone + Sized + 'static {
    /// The family `name`; a scalar type refuses label names.
    ///
    /// # Errors
    /// An invalid name or label name, or labels for a scalar type.
    fn make(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self>;
}

/// Refuses label names for a family that has none.
fn scalar(name: &str, labels: &[&str]) -> prometheus::Result<()> {
    if labels.is_empty() {
        Ok(())
    } else {
        Err(prometheus::Error::Msg(format!(
            "{name} has no labels, got {labels:?}"
        )))
    }
}

macro_rules! vector_family {
    ($($t:ty),*) => {$(
        impl Family for $t {
            fn make(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
                <$t>::new(Opts::new(name, help), labels)
            }
        }
    )*};
}
vector_family!(IntCounterVec, IntGaugeVec, GaugeVec);

macro_rules! scalar_family {
    ($($t:ty),*) => {$(
        impl Family for $t {
            fn make(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
                scalar(name, labels)?;
                <$t>::new(name, help)
            }
        }
    )*};
}
scalar_family!(IntCounter, IntGauge, Gauge);

/// Makes the family `name` and registers it on `registry`: the one way
/// unroot's modules add a metric.
///
/// # Panics
/// When the name or a label is invalid, or `name` is already registered.
/// Names are the constants of [`names`] and label sets constants, each
/// registered once into the server's fresh registry, so this is a bug that
/// the first test (every test starts a [`Metrics`]) shows.
#[must_use]
pub fn register<F: Family>(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> F {
    add(registry, F::make(name, help, labels))
}

/// Registers a family made elsewhere (a histogram with its buckets).
///
/// # Panics
/// As [`register`].
#[must_use]
pub fn add<C: Collector + Clone + 'static>(registry: &Registry, made: prometheus::Result<C>) -> C {
    // The constants make these unreachable; see `register`.
    let family = made.expect("a valid metric name and labels");
    registry
        .register(Box::new(family.clone()))
        .expect("each metric registered once");
    family
}

/// Upstream Pod Security Admission's counters (same labels, bounded
/// values), under unroot's prefix. The evaluations carry every label the
/// other Pod Security families need too (mode, level, version, decision),
/// so there is one evaluation counter, not one of ours and one upstream's.
#[derive(Clone, Debug)]
pub struct PodSecurityMetrics {
    /// `decision`, `policy_level`, `policy_version`, `mode`,
    /// `request_operation`, `resource`, `subresource`.
    pub evaluations: IntCounterVec,
    /// `request_operation`, `resource`, `subresource`.
    pub exemptions: IntCounterVec,
    /// `fatal`, `request_operation`, `resource`, `subresource`.
    pub errors: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    /// Never: names and label sets are constants, registered once into a
    /// fresh registry (a unit test covers it).
    #[must_use]
    #[allow(clippy::missing_panics_doc)]
    pub fn new() -> Self {
        let registry = Registry::new();
        let reviews = Reviews::new(&registry);
        let connections = Connections::new(&registry);
        let hardening = Hardening::new(&registry);
        let pss_violations = register(
            &registry,
            names::POD_SECURITY_VIOLATIONS,
            "Pod Security check failures, by mode, level and check.",
            &["mode", "level", "check"],
        );
        register_process(&registry);
        let pod_security = PodSecurityMetrics::new(&registry);
        let report = crate::report::task::Metrics::new(&registry);
        let metrics = Self {
            resolved: Arc::new(Resolved::new()),
            registry,
            admission_requests: reviews.requests,
            admission_duration: reviews.duration,
            rejected_requests: reviews.rejected,
            connections,
            warnings: reviews.warnings,
            in_flight: reviews.in_flight,
            mutations: hardening.mutations,
            pss_violations,
            harden: hardening.harden,
            pod_security,
            report,
        };
        metrics.start_at_zero();
        metrics
    }

    /// Makes the series that exist from the start, so rates and alerts see
    /// zeros.
    fn start_at_zero(&self) {
        for applied in Applied::ALL {
            self.mutations.with_label_values(&[applied.as_str()]);
        }
        for mode in HardenMode::ALL {
            self.harden.with_label_values(&[mode.as_str()]);
        }
        for webhook in ["mutate", "validate"] {
            for reason in REASONS {
                self.rejected_requests.with_label_values(&[webhook, reason]);
            }
            self.admission_duration.with_label_values(&[webhook]);
            self.warnings.with_label_values(&[webhook]);
            for outcome in ["allowed", "patched", "denied", "error"] {
                self.admission_requests
                    .with_label_values(&[webhook, "Pod", "CREATE", outcome]);
            }
        }
    }

    /// The registry, for modules that add metrics of their own.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts an answered review: its outcome, warnings, mutations and Pod
    /// Security results.
    pub fn record(&self, webhook: &str, request: &Request<'_>, decision: &Decision) {
        let response = &decision.response;
        let facts = &decision.facts;
        let r = &self.resolved;
        let outcome = response.outcome();
        let (target, operation) = (request.target(), request.operation);
        let hook = webhook_index(webhook);
        let index = hook.zip(outcome_index(outcome)).map(|(hook, outcome)| {
            ((hook * TARGETS + target_index(target)) * OPERATIONS + operation_index(operation))
                * OUTCOMES
                + outcome
        });
        child(&r.requests, index, || {
            self.admission_requests.with_label_values(&[
                webhook,
                target.as_str(),
                operation.as_str(),
                outcome,
            ])
        })
        .inc();
        if !response.warnings.is_empty() {
            child(&r.warnings, hook, || {
                self.warnings.with_label_values(&[webhook])
            })
            .inc_by(response.warnings.len() as u64);
        }
        for applied in &facts.mutations {
            let index = Applied::ALL.iter().position(|a| a == applied);
            child(&r.mutations, index, || {
                self.mutations.with_label_values(&[applied.as_str()])
            })
            .inc();
        }
        if let Some(mode) = facts.harden {
            let index = HardenMode::ALL.iter().position(|m| *m == mode);
            child(&r.harden, index, || {
                self.harden.with_label_values(&[mode.as_str()])
            })
            .inc();
        }
        let upstream = Upstream::of(request);
        let [op, resource, sub] = upstream.labels;
        if facts.exempt.is_some() {
            child(&r.exemptions, Some(upstream.index), || {
                self.pod_security
                    .exemptions
                    .with_label_values(&[op, resource, sub])
            })
            .inc();
        }
        if let Some(error) = facts.pss_error {
            let fatal = error.is_fatal();
            let index = usize::from(fatal) * REQUESTS + upstream.index;
            child(&r.errors, Some(index), || {
                let fatal = if fatal { "true" } else { "false" };
                self.pod_security
                    .errors
                    .with_label_values(&[fatal, op, resource, sub])
            })
            .inc();
        }
        for result in &facts.pss {
            self.record_pss(result, &upstream);
        }
    }

    /// Counts one Pod Security evaluation of a review of `upstream`.
    fn record_pss(&self, result: &PssResult, upstream: &Upstream) {
        let r = &self.resolved;
        let decision = if result.allowed { "allow" } else { "deny" };
        let level = result.policy.level.as_str();
        let mode = result.mode.as_str();
        let [op, resource, sub] = upstream.labels;
        // A version newer than this binary knows has no slot: looked up.
        let index = pss_index(result, r.versions);
        let row = r
            .upstream
            .get(upstream.index, || Slots::new(pss_slots(r.versions)));
        let none = Slots::new(0);
        child(row.unwrap_or(&none), index, || {
            let version = metric_version(result.policy);
            self.pod_security
                .evaluations
                .with_label_values(&[decision, level, &version, mode, op, resource, sub])
        })
        .inc();
        let base = mode_index(result.mode) * LEVELS + level_index(result.policy.level);
        for check in &result.checks {
            let index = r.checks.index(check).map(|c| c * MODES * LEVELS + base);
            child(&r.violations, index, || {
                self.pss_violations.with_label_values(&[mode, level, check])
            })
            .inc();
        }
    }

    /// Observes the time `webhook` took to answer a review.
    pub fn observe_duration(&self, webhook: &str, seconds: f64) {
        child(&self.resolved.duration, webhook_index(webhook), || {
            self.admission_duration.with_label_values(&[webhook])
        })
        .observe(seconds);
    }

    /// Counts a request `webhook` refused before it was a review, for
    /// `reason`.
    pub fn count_rejected(&self, webhook: &str, reason: &str) {
        let index = webhook_index(webhook)
            .zip(REASONS.iter().position(|r| *r == reason))
            .map(|(w, r)| w * REASONS.len() + r);
        child(&self.resolved.rejected, index, || {
            self.rejected_requests.with_label_values(&[webhook, reason])
        })
        .inc();
    }

    /// Every metric in the Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The families of the review path: what each webhook answered, how long
/// it took, what it refused, and what is in flight.
struct Reviews {
    requests: IntCounterVec,
    duration: HistogramVec,
    rejected: IntCounterVec,
    warnings: IntCounterVec,
    in_flight: IntGauge,
}

impl Reviews {
    /// Registers the review families on `registry`.
    fn new(registry: &Registry) -> Self {
        let requests = register(
            registry,
            names::ADMISSION_REQUESTS,
            "AdmissionReviews answered, by webhook, kind, operation and outcome.",
            &["webhook", "kind", "operation", "outcome"],
        );
        let rejected = register(
            registry,
            names::REJECTED_REQUESTS,
            "HTTP requests to a webhook refused before they were read as an AdmissionReview, by webhook and reason.",
            &["webhook", "reason"],
        );
        let warnings = register(
            registry,
            names::ADMISSION_WARNINGS,
            "Warnings returned to clients, by webhook.",
            &["webhook"],
        );
        let duration = add(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    names::ADMISSION_DURATION,
                    "Time to answer an AdmissionReview, from the full body read to the answer.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["webhook"],
            ),
        );
        let in_flight = register(
            registry,
            names::ADMISSION_REQUESTS_IN_FLIGHT,
            "AdmissionReviews being handled right now.",
            &[],
        );
        Self {
            requests,
            duration,
            rejected,
            warnings,
            in_flight,
        }
    }
}

/// The families of what `/mutate` changed.
struct Hardening {
    mutations: IntCounterVec,
    harden: IntCounterVec,
}

impl Hardening {
    /// Registers the mutation families on `registry`.
    fn new(registry: &Registry) -> Self {
        Self {
            mutations: register(
                registry,
                names::MUTATIONS,
                "Mutations applied to admitted objects, by mutation.",
                &["mutation"],
            ),
            harden: register(
                registry,
                names::HARDENING_PODS,
                "Pods /mutate considered for securityContext hardening, by their namespace's mode (unroot.dev/harden: on, warn, off).",
                &["mode"],
            ),
        }
    }
}

/// Registers what describes the process itself: the build's version, and
/// on Linux the `process_*` families.
fn register_process(registry: &Registry) {
    let build_info: IntGaugeVec = register(
        registry,
        names::BUILD_INFO,
        "The running unroot version (always 1).",
        &["version"],
    );
    build_info.with_label_values(&[crate::VERSION]).set(1);
    #[cfg(target_os = "linux")]
    {
        // Best effort: a platform without /proc simply has no process_*.
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
}

impl PodSecurityMetrics {
    /// Registers the Pod Security families on `registry`.
    fn new(registry: &Registry) -> Self {
        let request = ["request_operation", "resource", "subresource"];
        Self {
            evaluations: register(
                registry,
                names::POD_SECURITY_EVALUATIONS,
                "Pod Security policy evaluations, by decision, level, version and mode, and the request (upstream Pod Security Admission's labels).",
                &[
                    &["decision", "policy_level", "policy_version", "mode"][..],
                    &request[..],
                ]
                .concat(),
            ),
            exemptions: register(
                registry,
                names::POD_SECURITY_EXEMPTIONS,
                "Requests exempt from Pod Security.",
                &request,
            ),
            errors: register(
                registry,
                names::POD_SECURITY_ERRORS,
                "Errors met while evaluating Pod Security; fatal ones decided the request.",
                &[&["fatal"][..], &request[..]].concat(),
            ),
        }
    }
}

impl Connections {
    /// Registers the connection families on `registry`, every reason at 0.
    fn new(registry: &Registry) -> Self {
        let handshake_failures: IntCounterVec = register(
            registry,
            names::TLS_HANDSHAKE_FAILURES,
            "TLS handshakes on the webhook port that did not complete, by reason (unauthenticated: no valid client certificate; timeout; shed: connections ran short; error: any other).",
            &["reason"],
        );
        for reason in HANDSHAKE_FAILURES {
            handshake_failures.with_label_values(&[reason]);
        }
        let header_timeouts = register(
            registry,
            names::REQUEST_HEADER_TIMEOUTS,
            "Connections on the webhook port whose request headers did not arrive in time (answered 408, before any webhook was named).",
            &[],
        );
        Self {
            handshake_failures,
            header_timeouts,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The child made by `make`, from slot `index` of `slots` (made there on
/// first use); a combination without a slot is made each time.
fn child<T: Clone>(slots: &Slots<T>, index: Option<usize>, make: impl Fn() -> T) -> Cow<'_, T> {
    match index.and_then(|i| slots.get(i, &make)) {
        Some(child) => Cow::Borrowed(child),
        None => Cow::Owned(make()),
    }
}

/// The children [`Metrics::record`] and the review wrapper count, one slot
/// per combination of label values.
#[derive(Debug)]
struct Resolved {
    /// webhook × target × operation × outcome.
    requests: Slots<IntCounter>,
    /// webhook.
    duration: Slots<Histogram>,
    /// webhook.
    warnings: Slots<IntCounter>,
    /// webhook × reason.
    rejected: Slots<IntCounter>,
    /// [`Applied::ALL`].
    mutations: Slots<IntCounter>,
    /// [`HardenMode::ALL`].
    harden: Slots<IntCounter>,
    /// `unroot_pod_security_evaluations_total`: a row per upstream request
    /// combination ([`Upstream`]), made when first seen, of one
    /// [`pss_index`] each.
    upstream: Slots<Slots<IntCounter>>,
    /// Upstream request combination.
    exemptions: Slots<IntCounter>,
    /// fatal × upstream request combination.
    errors: Slots<IntCounter>,
    /// check × mode × level.
    violations: Slots<IntCounter>,
    /// The check IDs seen, numbered.
    checks: Names,
    /// Pod Security versions with slots ([`versions`]).
    versions: usize,
}

impl Resolved {
    fn new() -> Self {
        let versions = versions();
        Self {
            versions,
            requests: Slots::new(WEBHOOKS * TARGETS * OPERATIONS * OUTCOMES),
            duration: Slots::new(WEBHOOKS),
            warnings: Slots::new(WEBHOOKS),
            rejected: Slots::new(WEBHOOKS * REASONS.len()),
            mutations: Slots::new(Applied::ALL.len()),
            harden: Slots::new(HardenMode::ALL.len()),
            upstream: Slots::new(REQUESTS),
            exemptions: Slots::new(REQUESTS),
            errors: Slots::new(2 * REQUESTS),
            violations: Slots::new(slots::NAMES * MODES * LEVELS),
            checks: Names::new(),
        }
    }
}

/// `mutate`, `validate`.
const WEBHOOKS: usize = 2;

fn webhook_index(webhook: &str) -> Option<usize> {
    match webhook {
        "mutate" => Some(0),
        "validate" => Some(1),
        _ => None,
    }
}

/// The `reason` values of `unroot_rejected_requests_total`.
const REASONS: [&str; 5] = [
    "malformed",
    "too_large",
    "unsupported_media_type",
    "body_timeout",
    "overloaded",
];

const TARGETS: usize = 4 + workload::Kind::ALL.len();

fn target_index(target: Target) -> usize {
    match target {
        Target::Pod => 0,
        Target::Namespace => 1,
        Target::ConfigMap => 2,
        Target::Other => 3,
        Target::Workload(kind) => {
            4 + workload::Kind::ALL
                .iter()
                .position(|k| *k == kind)
                .unwrap_or(0)
        }
    }
}

const OPERATIONS: usize = 5;

fn operation_index(operation: Operation) -> usize {
    match operation {
        Operation::Create => 0,
        Operation::Update => 1,
        Operation::Delete => 2,
        Operation::Connect => 3,
        Operation::Other => 4,
    }
}

const OUTCOMES: usize = 4;

fn outcome_index(outcome: &str) -> Option<usize> {
    match outcome {
        "allowed" => Some(0),
        "patched" => Some(1),
        "denied" => Some(2),
        "error" => Some(3),
        _ => None,
    }
}

const MODES: usize = 3;

fn mode_index(mode: Mode) -> usize {
    match mode {
        Mode::Enforce => 0,
        Mode::Audit => 1,
        Mode::Warn => 2,
    }
}

const LEVELS: usize = 3;

fn level_index(level: Level) -> usize {
    match level {
        Level::Privileged => 0,
        Level::Baseline => 1,
        Level::Restricted => 2,
    }
}

/// Versions a slot is kept for: `latest` and `v1.0` to the newest this
/// binary knows.
fn versions() -> usize {
    match pss::max_version() {
        Version::Minor(max) => usize::try_from(max).map_or(1, |m| m + 2),
        Version::Latest => 1,
    }
}

/// Slots per Pod Security evaluation, for `versions` versions: level ×
/// version × mode × decision.
fn pss_slots(versions: usize) -> usize {
    LEVELS * versions * MODES * 2
}

/// The slot of a Pod Security evaluation, for `versions` versions: `None`
/// for a version newer than this binary knows.
fn pss_index(result: &PssResult, versions: usize) -> Option<usize> {
    let LevelVersion { level, version } = result.policy;
    let version = match version {
        Version::Latest => 0,
        Version::Minor(minor) => usize::try_from(minor).ok()? + 1,
    };
    if version >= versions {
        return None;
    }
    let lv = level_index(level) * versions + version;
    Some((lv * MODES + mode_index(result.mode)) * 2 + usize::from(result.allowed))
}

/// Upstream Pod Security Admission's request labels (§4.9), with every value
/// bounded: operation, resource (`pod`, `namespace`, `controller`) and
/// subresource (a known one, or `other`); and the combination's slot.
struct Upstream {
    labels: [&'static str; 3],
    index: usize,
}

/// The subresources upstream names, then `other` for any other.
const SUBRESOURCES: [&str; 13] = [
    "",
    "ephemeralcontainers",
    "resize",
    "status",
    "binding",
    "eviction",
    "exec",
    "attach",
    "log",
    "portforward",
    "proxy",
    "scale",
    "other",
];

/// Upstream request combinations: operation × resource × subresource.
const REQUESTS: usize = OPERATIONS * 3 * SUBRESOURCES.len();

impl Upstream {
    fn of(request: &Request<'_>) -> Self {
        let operation = match request.operation {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Connect => "connect",
            Operation::Other => "other",
        };
        let (resource, r) = match request.target() {
            Target::Pod => ("pod", 0),
            Target::Namespace => ("namespace", 1),
            _ => ("controller", 2),
        };
        let other = SUBRESOURCES.len() - 1;
        let sub = SUBRESOURCES[..other]
            .iter()
            .position(|s| *s == request.sub_resource())
            .unwrap_or(other);
        Self {
            labels: [operation, resource, SUBRESOURCES[sub]],
            index: (operation_index(request.operation) * 3 + r) * SUBRESOURCES.len() + sub,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{Facts, Mode, PssError, PssResult, Response};
    use crate::pss::{Level, LevelVersion, Version};

    /// What `record` counted before the children were resolved once: a
    /// lookup per label set, per review.
    fn record_by_lookup(m: &Metrics, webhook: &str, request: &Request<'_>, decision: &Decision) {
        let (response, facts) = (&decision.response, &decision.facts);
        m.admission_requests
            .with_label_values(&[
                webhook,
                request.target().as_str(),
                request.operation.as_str(),
                response.outcome(),
            ])
            .inc();
        if !response.warnings.is_empty() {
            m.warnings
                .with_label_values(&[webhook])
                .inc_by(response.warnings.len() as u64);
        }
        for applied in &facts.mutations {
            m.mutations.with_label_values(&[applied.as_str()]).inc();
        }
        if let Some(mode) = facts.harden {
            m.harden.with_label_values(&[mode.as_str()]).inc();
        }
        let [op, resource, sub] = Upstream::of(request).labels;
        if facts.exempt.is_some() {
            m.pod_security
                .exemptions
                .with_label_values(&[op, resource, sub])
                .inc();
        }
        if let Some(error) = facts.pss_error {
            let fatal = if error.is_fatal() { "true" } else { "false" };
            m.pod_security
                .errors
                .with_label_values(&[fatal, op, resource, sub])
                .inc();
        }
        for result in &facts.pss {
            let decision = if result.allowed { "allow" } else { "deny" };
            let (level, mode) = (result.policy.level.as_str(), result.mode.as_str());
            let version = metric_version(result.policy);
            m.pod_security
                .evaluations
                .with_label_values(&[decision, level, &version, mode, op, resource, sub])
                .inc();
            for check in &result.checks {
                m.pss_violations
                    .with_label_values(&[mode, level, check])
                    .inc();
            }
        }
    }

    /// Requests of every operation, of pods (with subresources, known and
    /// not), workloads, namespaces, ConfigMaps and anything else.
    fn every_kind_of_request() -> Vec<String> {
        [
            ("CREATE", "", "pods", ""),
            ("UPDATE", "", "pods", "ephemeralcontainers"),
            ("UPDATE", "", "pods", "nonsense"),
            ("DELETE", "", "pods", "status"),
            ("CONNECT", "", "pods", "exec"),
            ("PATCH", "", "pods", ""),
            ("CREATE", "apps", "deployments", ""),
            ("UPDATE", "batch", "cronjobs", "scale"),
            ("CREATE", "", "namespaces", ""),
            ("UPDATE", "", "configmaps", ""),
            ("CREATE", "example.com", "widgets", ""),
        ]
        .iter()
        .map(|(operation, group, resource, sub)| {
            serde_json::json!({"uid": "u", "operation": operation, "subResource": sub,
                "resource": {"group": group, "version": "v1", "resource": resource}})
            .to_string()
        })
        .collect()
    }

    /// Decisions with every kind of fact: each outcome, warnings, every
    /// mutation and harden mode, Pod Security results of every mode, level,
    /// version (one newer than the binary's too) and verdict, with failed
    /// checks, an exemption, errors.
    fn every_kind_of_decision() -> Vec<Decision> {
        let Version::Minor(max) = pss::max_version() else {
            panic!("the newest version is a number");
        };
        let mut results = Vec::new();
        for mode in [Mode::Enforce, Mode::Audit, Mode::Warn] {
            for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
                for version in [
                    Version::Latest,
                    Version::Minor(0),
                    Version::Minor(24),
                    Version::Minor(max),
                    Version::Minor(max + 1),
                ] {
                    for allowed in [true, false] {
                        let checks = if allowed {
                            vec![]
                        } else {
                            vec!["runAsNonRoot", "privileged"]
                        };
                        results.push(PssResult {
                            mode,
                            policy: LevelVersion { level, version },
                            allowed,
                            checks,
                        });
                    }
                }
            }
        }
        let mut patched = Response::allow("u");
        patched.patch = Some("W10=".to_owned());
        let mut warned = Response::allow("u");
        warned.warnings = vec!["one".to_owned(), "two".to_owned()];
        let mut decisions = vec![
            Decision::from(Response::allow("u")),
            Decision {
                response: patched,
                facts: Facts {
                    mutations: Applied::ALL.to_vec(),
                    harden: Some(HardenMode::Warn),
                    ..Facts::default()
                },
            },
            Decision {
                response: warned,
                facts: Facts {
                    pss: results,
                    harden: Some(HardenMode::On),
                    ..Facts::default()
                },
            },
            Decision {
                response: Response::deny("u", 500, "InternalError", "no"),
                facts: Facts {
                    exempt: Some("namespace"),
                    pss_error: Some(PssError::Fatal),
                    ..Facts::default()
                },
            },
        ];
        let mut denied = Decision::from(Response::deny("u", 403, "Forbidden", "no"));
        denied.facts.pss_error = Some(PssError::Recovered);
        denied.facts.harden = Some(HardenMode::Off);
        decisions.push(denied);
        decisions
    }

    /// Every combination a review can count lands in the series a lookup
    /// by its labels would: the slots' indices never mix two series up.
    #[test]
    fn resolved_children_count_what_lookups_would() {
        let texts = every_kind_of_request();
        let requests: Vec<Request<'_>> = texts
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        let decisions = every_kind_of_decision();
        let (resolved, looked_up) = (Metrics::new(), Metrics::new());
        // Twice: the second time through the slots filled the first time.
        for _ in 0..2 {
            for webhook in ["mutate", "validate", "other"] {
                for request in &requests {
                    for decision in &decisions {
                        resolved.record(webhook, request, decision);
                        record_by_lookup(&looked_up, webhook, request, decision);
                    }
                }
            }
        }
        for (webhook, reason) in [
            ("mutate", "too_large"),
            ("other", "unauthenticated"),
            ("validate", "new"),
        ] {
            resolved.count_rejected(webhook, reason);
            looked_up
                .rejected_requests
                .with_label_values(&[webhook, reason])
                .inc();
        }
        for webhook in ["mutate", "validate", "other"] {
            resolved.observe_duration(webhook, 0.002);
            looked_up
                .admission_duration
                .with_label_values(&[webhook])
                .observe(0.002);
        }
        let series = |m: &Metrics| -> Vec<String> {
            m.render()
                .lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with("process_"))
                .map(str::to_owned)
                .collect()
        };
        let (got, want) = (series(&resolved), series(&looked_up));
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w);
        }
        assert_eq!(got.len(), want.len());
        assert!(
            got.iter().any(|l| l.contains(r#"version="future""#)),
            "a version with no slot is counted too"
        );
    }

    #[test]
    fn decisions_are_counted_with_bounded_labels() {
        let m = Metrics::new();
        let text = r#"{"uid":"u","operation":"UPDATE","subResource":"nonsense",
            "resource":{"group":"","version":"v1","resource":"pods"}}"#;
        let request: Request<'_> = serde_json::from_str(text).unwrap();
        let decision = Decision {
            response: Response::deny("u", 403, "Forbidden", "no"),
            facts: Facts {
                mutations: vec![],
                pss: vec![PssResult {
                    mode: Mode::Enforce,
                    policy: LevelVersion {
                        level: Level::Restricted,
                        version: Version::Latest,
                    },
                    allowed: false,
                    checks: vec!["runAsNonRoot", "privileged"],
                }],
                exempt: None,
                pss_error: None,
                harden: None,
            },
        };
        m.record("validate", &request, &decision);
        let text = m.render();
        for line in [
            r#"unroot_admission_requests_total{kind="Pod",operation="UPDATE",outcome="denied",webhook="validate"} 1"#,
            r#"unroot_pod_security_violations_total{check="runAsNonRoot",level="restricted",mode="enforce"} 1"#,
            r#"unroot_pod_security_evaluations_total{decision="deny",mode="enforce",policy_level="restricted",policy_version="latest",request_operation="update",resource="pod",subresource="other"} 1"#,
            r#"unroot_mutations_total{mutation="security_context"} 0"#,
            r#"unroot_build_info{version=""#,
            r#"unroot_admission_duration_seconds_bucket{webhook="mutate",le="10"} 0"#,
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }
}
