//! A known mix of admissions, shared by the audit log test and the browser
//! test of the dashboard: what is sent, and what the metrics must then say.
#![allow(dead_code, clippy::missing_panics_doc)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{self, Options, Server, namespaces, review_as};

/// Where the audit log goes in tests: a buffer the test reads.
#[derive(Clone, Default)]
pub struct Sink(pub Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    /// The audit lines written so far, parsed.
    pub fn records(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// A pod name and a user name that try to inject markup into the dashboard.
pub const XSS_NAME: &str = r#"x"><script>document.body.dataset.pwned='1'</script>"#;
pub const XSS_USER: &str = r#"<img src=x onerror="document.body.dataset.pwned='1'">"#;

/// A server whose audit log goes to the returned sink.
pub async fn start(report: unroot::report::task::Handle) -> (Server, Sink) {
    let sink = Sink::default();
    let server = common::start_with(Options {
        namespaces: namespaces(&[
            ("open", &[]),
            ("strict", &[("unroot.dev/enforce", "restricted")]),
            (
                "warned",
                &[
                    ("unroot.dev/enforce", "privileged"),
                    ("unroot.dev/audit", "privileged"),
                    ("unroot.dev/warn", "restricted"),
                    ("unroot.dev/warn-version", "v1.25"),
                ],
            ),
            ("kube-system", &[]),
        ]),
        audit_sink: Some(Box::new(sink.clone())),
        report,
        ..Options::default()
    })
    .await;
    (server, sink)
}

fn pod(name: &str, spec: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

pub fn plain(name: &str) -> Value {
    pod(
        name,
        &json!({"containers": [{"name": "app", "image": "busybox"}]}),
    )
}

pub fn privileged(name: &str) -> Value {
    pod(
        name,
        &json!({"containers": [{"name": "app", "image": "busybox", "securityContext": {"privileged": true}}]}),
    )
}

pub fn hardened(name: &str) -> Value {
    pod(
        name,
        &json!({
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "image": "busybox", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}),
    )
}

/// One admission of the mix.
pub struct Step {
    pub webhook: &'static str,
    pub namespace: &'static str,
    pub user: &'static str,
    pub object: Value,
}

/// The mix, in order.
pub fn steps() -> Vec<Step> {
    let step = |webhook, namespace, user, object| Step {
        webhook,
        namespace,
        user,
        object,
    };
    vec![
        // Hardened by /mutate.
        step("mutate", "open", "alice", plain("web-1")),
        step("mutate", "strict", "alice", plain("web-2")),
        // Passes restricted.
        step("validate", "strict", "alice", hardened("web-2")),
        // Denied: privileged in a restricted namespace.
        step("validate", "strict", "mallory", privileged("root-shell")),
        // Admitted with a warning (warn=restricted:v1.25), with markup in
        // its name and user.
        step("validate", "warned", XSS_USER, privileged(XSS_NAME)),
        // Excluded namespace: allowed, nothing evaluated.
        step(
            "validate",
            "kube-system",
            "system:node:n1",
            privileged("static"),
        ),
    ]
}

/// Sends the mix; returns the responses.
pub async fn drive(server: &Server) -> Vec<Value> {
    let mut responses = Vec::new();
    for s in steps() {
        let review = review_as("CREATE", s.namespace, &s.object, s.user);
        responses.push(server.admit(&format!("/{}", s.webhook), &review).await);
    }
    // Every record is in the sink and the ring before anyone looks.
    let state = server.state.as_ref().unwrap();
    assert!(state.audit.flush(Duration::from_secs(5)));
    responses
}

/// The metric samples the mix must produce, exactly.
pub const METRICS: &[(&str, f64)] = &[
    (
        r#"unroot_admission_requests_total{kind="Pod",operation="CREATE",outcome="patched",webhook="mutate"}"#,
        2.0,
    ),
    (
        r#"unroot_admission_requests_total{kind="Pod",operation="CREATE",outcome="allowed",webhook="mutate"}"#,
        0.0,
    ),
    (
        r#"unroot_admission_requests_total{kind="Pod",operation="CREATE",outcome="allowed",webhook="validate"}"#,
        3.0,
    ),
    (
        r#"unroot_admission_requests_total{kind="Pod",operation="CREATE",outcome="denied",webhook="validate"}"#,
        1.0,
    ),
    (
        r#"unroot_admission_requests_total{kind="Pod",operation="CREATE",outcome="error",webhook="validate"}"#,
        0.0,
    ),
    (
        r#"unroot_admission_warnings_total{webhook="validate"}"#,
        1.0,
    ),
    (r#"unroot_admission_warnings_total{webhook="mutate"}"#, 0.0),
    (
        r#"unroot_mutations_total{mutation="security_context"}"#,
        2.0,
    ),
    (r#"unroot_mutations_total{mutation="trust_bundle"}"#, 0.0),
    (
        r#"unroot_pod_security_violations_total{check="privileged",level="restricted",mode="enforce"}"#,
        1.0,
    ),
    (
        r#"unroot_pod_security_violations_total{check="privileged",level="restricted",mode="audit"}"#,
        1.0,
    ),
    (
        r#"unroot_pod_security_violations_total{check="privileged",level="restricted",mode="warn"}"#,
        1.0,
    ),
    (
        r#"unroot_pod_security_violations_total{check="runAsNonRoot",level="restricted",mode="enforce"}"#,
        1.0,
    ),
    (
        r#"unroot_pod_security_evaluations_total{decision="allow",mode="enforce",policy_level="restricted",policy_version="latest",request_operation="create",resource="pod",subresource=""}"#,
        1.0,
    ),
    (
        r#"unroot_pod_security_evaluations_total{decision="deny",mode="enforce",policy_level="restricted",policy_version="latest",request_operation="create",resource="pod",subresource=""}"#,
        1.0,
    ),
    (
        r#"unroot_pod_security_evaluations_total{decision="deny",mode="warn",policy_level="restricted",policy_version="v1.25",request_operation="create",resource="pod",subresource=""}"#,
        1.0,
    ),
    (
        r#"unroot_audit_records_dropped_total{caller="authenticated",reason="queue_full"}"#,
        0.0,
    ),
    (
        r#"unroot_audit_records_dropped_total{caller="unauthenticated",reason="queue_full"}"#,
        0.0,
    ),
    (
        r#"unroot_audit_records_dropped_total{caller="authenticated",reason="write_failed"}"#,
        0.0,
    ),
    (
        r#"unroot_audit_records_dropped_total{caller="unauthenticated",reason="write_failed"}"#,
        0.0,
    ),
    ("unroot_admission_requests_in_flight", 0.0),
];

/// A readiness report as the task would build it: `team-a` has pods that
/// fail baseline and restricted, `team-b` is ready for restricted,
/// `kube-system` is skipped.
pub fn report() -> unroot::report::Report {
    use k8s_openapi::api::core::v1::Pod;
    let policy = unroot::policy::Snapshot::new(unroot::policy::Document::embedded());
    let labels = |pairs: &[(&str, &str)]| common::labels(pairs);
    let mut builder = unroot::report::Builder::new(
        &policy,
        [
            (
                "team-a".to_owned(),
                labels(&[("unroot.dev/warn", "restricted")]),
            ),
            ("team-b".to_owned(), labels(&[])),
            ("kube-system".to_owned(), labels(&[])),
        ],
    );
    for (namespace, object) in [
        ("team-a", plain("a1")),
        ("team-a", plain("a2")),
        ("team-a", privileged("a3")),
        ("team-b", hardened("b1")),
        ("kube-system", privileged("k1")),
    ] {
        let mut pod: Pod = serde_json::from_value(object).unwrap();
        pod.metadata.namespace = Some(namespace.to_owned());
        builder.add(&pod);
    }
    builder.finish(
        k8s_openapi::jiff::Timestamp::now(),
        Duration::from_millis(42),
    )
}

/// Registers the certificate gauge another part of unroot exports, with
/// the serving certificate expiring in `serving_days` days.
pub fn register_certificates(server: &Server, serving_days: i64) {
    let gauge = prometheus::GaugeVec::new(
        prometheus::Opts::new(
            "unroot_certificate_expiry_timestamp_seconds",
            "test double of the certificate gauge",
        ),
        &["cert"],
    )
    .unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    #[allow(clippy::cast_precision_loss)]
    {
        gauge
            .with_label_values(&["serving"])
            .set((now + serving_days * 86_400) as f64);
        gauge
            .with_label_values(&["ca"])
            .set((now + 3650 * 86_400) as f64);
    }
    server
        .state
        .as_ref()
        .unwrap()
        .metrics
        .registry()
        .register(Box::new(gauge))
        .unwrap();
}
