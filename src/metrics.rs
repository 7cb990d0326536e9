//! Prometheus metrics: one registry, typed handles, no global statics.
//!
//! The admission core returns [`Facts`]; [`Metrics::record`] is the one place
//! that turns them into counters. Every label set is bounded: no pod names,
//! users or raw request strings.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::admission::validate::metric_version;
use crate::admission::{Applied, Decision, Operation, Request, Target};
use crate::policy::HardenMode;

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
    /// `overloaded`), and connections refused before any webhook was named
    /// (`webhook="none"`: `unauthenticated`, `header_timeout`).
    pub rejected_requests: IntCounterVec,
    /// Warnings returned to clients, by webhook.
    pub warnings: IntCounterVec,
    /// Reviews being handled right now.
    pub in_flight: IntGauge,
    /// Mutations applied, by kind.
    pub mutations: IntCounterVec,
    /// Pod Security evaluations, by mode, level, version and decision.
    pub pss_evaluations: IntCounterVec,
    /// Pod Security check failures, by mode, level and check ID.
    pub pss_violations: IntCounterVec,
    /// Pods admitted by `/mutate`, by hardening mode (`on`, `warn`, `off`).
    pub harden: IntCounterVec,
    /// Pod Security Admission's own counters.
    pub pod_security: PodSecurityMetrics,
    /// The readiness report's gauges, registered with or without a cluster
    /// (the report runs only with one).
    pub report: crate::report::task::Metrics,
}

/// The counters of upstream Pod Security Admission (same labels, bounded
/// values), under unroot's prefix so both can run side by side.
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
    #[allow(clippy::missing_panics_doc, clippy::too_many_lines)]
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let admission_requests = counter(
            "unroot_admission_requests_total",
            "AdmissionReviews answered, by webhook, kind, operation and outcome.",
            &["webhook", "kind", "operation", "outcome"],
        );
        let rejected_requests = counter(
            "unroot_rejected_requests_total",
            "HTTP requests refused before they were read as an AdmissionReview, by reason.",
            &["webhook", "reason"],
        );
        let warnings = counter(
            "unroot_admission_warnings_total",
            "Warnings returned to clients, by webhook.",
            &["webhook"],
        );
        let mutations = counter(
            "unroot_mutations_total",
            "Mutations applied to admitted objects, by mutation.",
            &["mutation"],
        );
        let pss_evaluations = counter(
            "unroot_pss_evaluations_total",
            "Pod Security evaluations that counted towards a decision, by mode, level, version and decision.",
            &["mode", "level", "version", "decision"],
        );
        let pss_violations = counter(
            "unroot_pss_violations_total",
            "Pod Security check failures, by mode, level and check.",
            &["mode", "level", "check"],
        );
        let harden = counter(
            "unroot_harden_total",
            "Pods considered for securityContext hardening, by their namespace's mode (unroot.dev/harden: on, warn, off).",
            &["mode"],
        );
        let admission_duration = HistogramVec::new(
            HistogramOpts::new(
                "unroot_admission_duration_seconds",
                "Time to answer an AdmissionReview, from the full body read to the answer.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["webhook"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(admission_duration.clone()))
            .expect("unique metric");
        let in_flight = IntGauge::new(
            "unroot_admission_in_flight",
            "AdmissionReviews being handled right now.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(in_flight.clone()))
            .expect("unique metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "unroot_build_info",
                "The running unroot version (always 1).",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info.with_label_values(&[crate::VERSION]).set(1);
        registry
            .register(Box::new(build_info))
            .expect("unique metric");
        #[cfg(target_os = "linux")]
        {
            // Best effort: a platform without /proc simply has no process_*.
            let _ = registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        let request = ["request_operation", "resource", "subresource"];
        let pod_security = PodSecurityMetrics {
            evaluations: counter(
                "unroot_pod_security_evaluations_total",
                "Pod Security policy evaluations, by decision, level, version and mode (upstream's labels).",
                &[
                    &["decision", "policy_level", "policy_version", "mode"][..],
                    &request[..],
                ]
                .concat(),
            ),
            exemptions: counter(
                "unroot_pod_security_exemptions_total",
                "Requests exempt from Pod Security.",
                &request,
            ),
            errors: counter(
                "unroot_pod_security_errors_total",
                "Errors met while evaluating Pod Security; fatal ones decided the request.",
                &[&["fatal"][..], &request[..]].concat(),
            ),
        };
        // Series that exist from the start, so rates and alerts see zeros.
        for applied in Applied::ALL {
            mutations.with_label_values(&[applied.as_str()]);
        }
        for mode in HardenMode::ALL {
            harden.with_label_values(&[mode.as_str()]);
        }
        for reason in ["unauthenticated", "header_timeout"] {
            rejected_requests.with_label_values(&["none", reason]);
        }
        for webhook in ["mutate", "validate"] {
            for reason in [
                "malformed",
                "too_large",
                "unsupported_media_type",
                "body_timeout",
                "overloaded",
            ] {
                rejected_requests.with_label_values(&[webhook, reason]);
            }
            admission_duration.with_label_values(&[webhook]);
            warnings.with_label_values(&[webhook]);
            for outcome in ["allowed", "patched", "denied", "error"] {
                admission_requests.with_label_values(&[webhook, "Pod", "CREATE", outcome]);
            }
        }
        let report = crate::report::task::Metrics::new(&registry);
        Self {
            registry,
            admission_requests,
            admission_duration,
            rejected_requests,
            warnings,
            in_flight,
            mutations,
            pss_evaluations,
            pss_violations,
            harden,
            pod_security,
            report,
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
        self.admission_requests
            .with_label_values(&[
                webhook,
                request.target().as_str(),
                request.operation.as_str(),
                response.outcome(),
            ])
            .inc();
        if !response.warnings.is_empty() {
            self.warnings
                .with_label_values(&[webhook])
                .inc_by(response.warnings.len() as u64);
        }
        for applied in &facts.mutations {
            self.mutations.with_label_values(&[applied.as_str()]).inc();
        }
        if let Some(mode) = facts.harden {
            self.harden.with_label_values(&[mode.as_str()]).inc();
        }
        let upstream = upstream_labels(request);
        let [op, resource, sub] = &upstream;
        if facts.exempt.is_some() {
            self.pod_security
                .exemptions
                .with_label_values(&[op, resource, sub])
                .inc();
        }
        if let Some(fatal) = facts.pss_error {
            self.pod_security
                .errors
                .with_label_values(&[if fatal { "true" } else { "false" }, op, resource, sub])
                .inc();
        }
        for result in &facts.pss {
            let decision = if result.allowed { "allow" } else { "deny" };
            let level = result.policy.level.as_str();
            let version = metric_version(result.policy);
            let mode = result.mode.as_str();
            self.pss_evaluations
                .with_label_values(&[mode, level, &version, decision])
                .inc();
            self.pod_security
                .evaluations
                .with_label_values(&[decision, level, &version, mode, op, resource, sub])
                .inc();
            for check in &result.checks {
                self.pss_violations
                    .with_label_values(&[mode, level, check])
                    .inc();
            }
        }
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Upstream Pod Security Admission's request labels (§4.9), with every value
/// bounded: operation, resource (`pod`, `namespace`, `controller`) and
/// subresource (a known one, or `other`).
fn upstream_labels(request: &Request<'_>) -> [&'static str; 3] {
    let operation = match request.operation {
        Operation::Create => "create",
        Operation::Update => "update",
        Operation::Delete => "delete",
        Operation::Connect => "connect",
        Operation::Other => "other",
    };
    let resource = match request.target() {
        Target::Pod => "pod",
        Target::Namespace => "namespace",
        _ => "controller",
    };
    let sub = match request.sub_resource() {
        "" => "",
        "ephemeralcontainers" => "ephemeralcontainers",
        "resize" => "resize",
        "status" => "status",
        "binding" => "binding",
        "eviction" => "eviction",
        "exec" => "exec",
        "attach" => "attach",
        "log" => "log",
        "portforward" => "portforward",
        "proxy" => "proxy",
        "scale" => "scale",
        _ => "other",
    };
    [operation, resource, sub]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{Facts, Mode, PssResult, Response};
    use crate::pss::{Level, LevelVersion, Version};

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
            r#"unroot_pss_evaluations_total{decision="deny",level="restricted",mode="enforce",version="latest"} 1"#,
            r#"unroot_pss_violations_total{check="runAsNonRoot",level="restricted",mode="enforce"} 1"#,
            r#"unroot_pod_security_evaluations_total{decision="deny",mode="enforce",policy_level="restricted",policy_version="latest",request_operation="update",resource="pod",subresource="other"} 1"#,
            r#"unroot_mutations_total{mutation="security_context"} 0"#,
            r#"unroot_build_info{version=""#,
            r#"unroot_admission_duration_seconds_bucket{webhook="mutate",le="10"} 0"#,
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }
}
