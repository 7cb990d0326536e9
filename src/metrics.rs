//! Prometheus metrics: one registry, typed handles, no global statics.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Every metric unroot exports, registered in its own registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// AdmissionReviews answered, by webhook, operation and outcome
    /// (`allowed`, `patched`, `denied`, `error`).
    pub admission_requests: IntCounterVec,
    /// Time from a review's arrival to its answer, by webhook.
    pub admission_duration: HistogramVec,
    /// Requests refused before they were a review (`malformed`, `too_large`,
    /// `unsupported_media_type`, `body_timeout`), by webhook.
    pub rejected_requests: IntCounterVec,
    /// Warnings returned to clients about insecure explicit choices, by webhook.
    pub warnings: IntCounterVec,
    /// Reviews being handled right now.
    pub in_flight: IntGauge,
    /// Pod Security Admission's own counters.
    pub pod_security: PodSecurityMetrics,
}

/// The counters of upstream Pod Security Admission (same labels), under
/// unroot's prefix so both can run side by side.
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
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let admission_requests = counter(
            "unroot_admission_requests_total",
            "AdmissionReviews answered, by webhook, operation and outcome.",
            &["webhook", "operation", "outcome"],
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
        let admission_duration = HistogramVec::new(
            HistogramOpts::new(
                "unroot_admission_duration_seconds",
                "Time to answer an AdmissionReview, from the full body read to the answer.",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0,
            ]),
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
        let request = ["request_operation", "resource", "subresource"];
        let pod_security = PodSecurityMetrics {
            evaluations: counter(
                "unroot_pod_security_evaluations_total",
                "Pod Security policy evaluations, by decision, level, version and mode.",
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
        Self {
            registry,
            admission_requests,
            admission_duration,
            rejected_requests,
            warnings,
            in_flight,
            pod_security,
        }
    }

    /// The registry, for modules that add metrics of their own.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_register_and_render() {
        let m = Metrics::new();
        m.admission_requests
            .with_label_values(&["mutate", "CREATE", "patched"])
            .inc();
        let text = m.render();
        assert!(text.contains(r#"unroot_admission_requests_total{operation="CREATE",outcome="patched",webhook="mutate"} 1"#), "{text}");
    }
}
