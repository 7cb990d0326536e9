//! The audit log and the admin pages over a real server: a known mix of
//! admissions gives exactly these audit lines and these metric values.

use crate::common;
use crate::mix;

use serde_json::{Value, json};

/// The audit line without what changes from run to run (time, duration).
fn stable(record: &Value) -> Value {
    let mut record = record.clone();
    let object = record.as_object_mut().unwrap();
    let time = object.remove("time").unwrap();
    let time = time.as_str().unwrap();
    assert!(
        time.len() == "2026-11-28T12:00:00.123Z".len() && time.ends_with('Z'),
        "{time}"
    );
    let duration = object.remove("duration_seconds").unwrap();
    assert!(
        duration.as_f64().unwrap() > 0.0 && duration.as_f64().unwrap() < 5.0,
        "{duration}"
    );
    record
}

#[tokio::test]
async fn every_decision_is_one_exact_audit_line() {
    let (server, sink) = mix::start(unroot::report::task::Handle::default()).await;
    mix::drive(&server).await;
    let hash = server.state.as_ref().unwrap().policy.load().hash.clone();
    let records: Vec<Value> = sink.records().iter().map(stable).collect();
    let restricted_checks = json!([
        "privileged",
        "allowPrivilegeEscalation",
        "capabilities_restricted",
        "runAsNonRoot",
        "seccompProfile_restricted"
    ]);
    let line = |webhook: &str, uid: &str, ns: &str, name: &str, user: &str| {
        json!({"audit": "admission", "webhook": webhook, "uid": uid, "namespace": ns,
            "name": name, "kind": "Pod", "operation": "CREATE", "subresource": "",
            "user": user, "authenticated": false, "dry_run": false, "policy_hash": hash})
    };
    let with = |mut base: Value, extra: Value| {
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    };
    let want = vec![
        with(
            line("mutate", "uid-web-1", "open", "web-1", "alice"),
            json!({"outcome": "patched", "allowed": true, "mutations": ["security_context"],
                "pod_security": [], "harden": "on", "warnings": 0}),
        ),
        with(
            line("mutate", "uid-web-2", "strict", "web-2", "alice"),
            json!({"outcome": "patched", "allowed": true, "mutations": ["security_context"],
                "pod_security": [], "harden": "on", "warnings": 0}),
        ),
        with(
            line("validate", "uid-web-2", "strict", "web-2", "alice"),
            json!({"outcome": "allowed", "allowed": true, "mutations": [],
                "pod_security": [{"mode": "enforce", "level": "restricted", "version": "latest",
                    "allowed": true, "checks": []}],
                "warnings": 0}),
        ),
        with(
            line(
                "validate",
                "uid-root-shell",
                "strict",
                "root-shell",
                "mallory",
            ),
            json!({"outcome": "denied", "allowed": false, "code": 403, "mutations": [],
                "pod_security": [
                    {"mode": "enforce", "level": "restricted", "version": "latest",
                        "allowed": false, "checks": restricted_checks},
                    {"mode": "audit", "level": "restricted", "version": "latest",
                        "allowed": false, "checks": restricted_checks}],
                "warnings": 0}),
        ),
        with(
            line(
                "validate",
                &format!("uid-{}", mix::XSS_NAME),
                "warned",
                mix::XSS_NAME,
                mix::XSS_USER,
            ),
            json!({"outcome": "allowed", "allowed": true, "mutations": [],
                "pod_security": [
                    {"mode": "enforce", "level": "privileged", "version": "latest",
                        "allowed": true, "checks": []},
                    {"mode": "warn", "level": "restricted", "version": "v1.25",
                        "allowed": false, "checks": restricted_checks}],
                "warnings": 1}),
        ),
        with(
            line(
                "validate",
                "uid-static",
                "kube-system",
                "static",
                "system:node:n1",
            ),
            json!({"outcome": "allowed", "allowed": true, "mutations": [],
                "pod_security": [], "warnings": 0}),
        ),
    ];
    assert_eq!(records.len(), want.len(), "{records:#?}");
    for (got, want) in records.iter().zip(&want) {
        assert_eq!(got, want);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_mix_gives_exact_metric_values() {
    let (server, _sink) = mix::start(unroot::report::task::Handle::default()).await;
    mix::drive(&server).await;
    for (series, want) in mix::METRICS {
        assert_eq!(server.metric(series).await, Some(*want), "{series}");
    }
    // Without a cluster there is no readiness report, and no time of one:
    // a dashboard shows "no data", not a report 56 years old.
    assert_eq!(
        server
            .metric("unroot_readiness_report_last_run_timestamp_seconds")
            .await,
        None
    );
    server.shutdown().await;
}

#[tokio::test]
async fn no_object_content_reaches_the_audit_log() {
    let (server, sink) = mix::start(unroot::report::task::Handle::default()).await;
    let mut pod = mix::plain("secretive");
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "TOKEN", "value": "s3cr3t-value-in-the-body"}]);
    pod["metadata"]["annotations"] = json!({"note": "annotation-in-the-body"});
    let review = common::review_for("CREATE", "strict", &pod);
    server.admit("/mutate", &review).await;
    server.admit("/validate", &review).await;
    assert!(
        server
            .state
            .as_ref()
            .unwrap()
            .audit
            .flush(std::time::Duration::from_secs(5))
    );
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    for secret in ["s3cr3t", "annotation-in-the-body", "busybox", "TOKEN"] {
        assert!(!text.contains(secret), "{secret} in the audit log: {text}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_report_endpoints_say_why_there_is_no_report() {
    let (server, _sink) = mix::start(unroot::report::task::Handle::default()).await;
    let reply = server.dashboard_post("/report/run").await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.json()["message"],
        "no readiness report: unroot runs without a cluster"
    );
    let reply = server.dashboard_get("/report").await;
    assert_eq!(reply.status, 503);
    server.shutdown().await;
}

/// The report's routes under their old names (`/audit/run`, `/audit/report`)
/// answer as the new ones for one release, so scripts keep working.
#[tokio::test]
async fn the_old_report_routes_still_answer() {
    let (server, _sink) = mix::start(unroot::report::task::Handle::fixed(mix::report())).await;
    let new = server.dashboard_get("/report").await;
    let old = server.dashboard_get("/audit/report").await;
    assert_eq!((new.status, old.status), (200, 200));
    assert_eq!(new.json(), old.json());
    let reply = server.dashboard_post("/audit/run").await;
    assert_eq!(reply.status, 503, "no task behind a fixed report");
    assert_eq!(
        reply.json()["message"],
        "no readiness report: unroot runs without a cluster"
    );
    server.shutdown().await;
}
