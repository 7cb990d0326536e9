//! Every metric name unroot exports, in one place: the registrations, the
//! `/dashboard` page and the tests use these constants, and
//! `manifests/monitoring/` (dashboard and alerts) is checked against the
//! running server's `/metrics` by `make monitoring`. What each one means:
//! `docs/metrics.md`.

/// AdmissionReviews answered, by webhook, kind, operation and outcome.
pub const ADMISSION_REQUESTS: &str = "unroot_admission_requests_total";
/// Time to answer an AdmissionReview (histogram), by webhook.
pub const ADMISSION_DURATION: &str = "unroot_admission_duration_seconds";
/// AdmissionReviews being handled right now.
pub const ADMISSION_REQUESTS_IN_FLIGHT: &str = "unroot_admission_requests_in_flight";
/// Warnings returned to clients, by webhook.
pub const ADMISSION_WARNINGS: &str = "unroot_admission_warnings_total";
/// Requests to a webhook refused before they were a review, by webhook and
/// reason.
pub const REJECTED_REQUESTS: &str = "unroot_rejected_requests_total";
/// TLS handshakes on the webhook port that did not complete, by reason.
pub const TLS_HANDSHAKE_FAILURES: &str = "unroot_tls_handshake_failures_total";
/// Connections whose request headers did not arrive in time (408), before
/// any webhook was named.
pub const REQUEST_HEADER_TIMEOUTS: &str = "unroot_request_header_timeouts_total";
/// Mutations applied, by mutation.
pub const MUTATIONS: &str = "unroot_mutations_total";
/// Pods `/mutate` considered for hardening, by their namespace's mode.
pub const HARDENING_PODS: &str = "unroot_hardening_pods_total";
/// Pod Security evaluations, with upstream Pod Security Admission's labels.
pub const POD_SECURITY_EVALUATIONS: &str = "unroot_pod_security_evaluations_total";
/// Requests exempt from Pod Security.
pub const POD_SECURITY_EXEMPTIONS: &str = "unroot_pod_security_exemptions_total";
/// Errors met while evaluating Pod Security.
pub const POD_SECURITY_ERRORS: &str = "unroot_pod_security_errors_total";
/// Pod Security check failures, by mode, level and check.
pub const POD_SECURITY_VIOLATIONS: &str = "unroot_pod_security_violations_total";
/// The running version (always 1).
pub const BUILD_INFO: &str = "unroot_build_info";
/// Policy changes refused.
pub const POLICY_RELOAD_ERRORS: &str = "unroot_policy_reload_errors_total";
/// The policy in force, by hash (always 1).
pub const POLICY_INFO: &str = "unroot_policy_info";
/// Audit records lost, by reason and caller.
pub const AUDIT_RECORDS_DROPPED: &str = "unroot_audit_records_dropped_total";
/// When a certificate in use expires (unix seconds), by certificate.
pub const CERTIFICATE_EXPIRY: &str = "unroot_certificate_expiry_timestamp_seconds";
/// Certificates issued or reloaded, by certificate.
pub const CERTIFICATE_ROTATIONS: &str = "unroot_certificate_rotations_total";
/// Certificate failures, by reason.
pub const CERTIFICATE_ERRORS: &str = "unroot_certificate_errors_total";
/// Identity ConfigMaps the sweep deleted.
pub const IDENTITY_CONFIGMAPS_COLLECTED: &str = "unroot_identity_configmaps_collected_total";
/// Failures of the identity sweep, by step.
pub const IDENTITY_SWEEP_ERRORS: &str = "unroot_identity_sweep_errors_total";
/// Pods in the last readiness report, by namespace.
pub const NAMESPACE_PODS: &str = "unroot_namespace_pods";
/// Pods the last readiness report found violating a level, by namespace and
/// level.
pub const NAMESPACE_PODS_VIOLATING: &str = "unroot_namespace_pods_violating";
/// When the last readiness report finished (unix seconds).
pub const REPORT_LAST_RUN: &str = "unroot_readiness_report_last_run_timestamp_seconds";
/// How long the last readiness report took.
pub const REPORT_DURATION: &str = "unroot_readiness_report_duration_seconds";
/// Readiness reports that failed.
pub const REPORT_ERRORS: &str = "unroot_readiness_report_errors_total";
