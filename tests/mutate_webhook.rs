//! `/mutate` over real TLS: the patch each pod shape gets, applied with
//! json-patch, and what the resulting pod looks like.

use crate::common;

use common::{apply, hardening_gaps, patch_of, review_for};
use serde_json::{Value, json};

#[allow(clippy::needless_pass_by_value)] // reads better at the call sites
fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn app() -> Value {
    json!({"name": "app", "image": "busybox"})
}

struct Case {
    name: &'static str,
    pod: Value,
    /// Every gap the mutated pod must still have (the explicit choices left).
    gaps: &'static [&'static str],
    /// Substrings, one per expected warning, in order.
    warnings: &'static [&'static str],
    /// Pointer → value pairs the mutated pod must hold.
    holds: Vec<(&'static str, Value)>,
}

#[allow(clippy::too_many_lines)] // one table, one row per pod shape
fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "bare pod gets every field",
            pod: pod("bare", json!({"containers": [app()]})),
            gaps: &[],
            warnings: &[],
            holds: vec![
                ("/spec/securityContext/runAsUser", json!(65532)),
                ("/spec/securityContext/runAsGroup", json!(65532)),
                ("/spec/securityContext/fsGroup", json!(65532)),
                (
                    "/spec/securityContext/fsGroupChangePolicy",
                    json!("OnRootMismatch"),
                ),
                (
                    "/spec/securityContext/seccompProfile",
                    json!({"type": "RuntimeDefault"}),
                ),
                ("/metadata/annotations/unroot.dev~1mutated", json!("true")),
            ],
        },
        Case {
            name: "partial pod securityContext keeps the user's values",
            pod: pod(
                "partial-pod",
                json!({
                "securityContext": {"runAsUser": 1000, "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}},
                "containers": [app()]}),
            ),
            gaps: &[],
            warnings: &[],
            holds: vec![
                ("/spec/securityContext/runAsUser", json!(1000)),
                ("/spec/securityContext/runAsGroup", json!(65532)),
                (
                    "/spec/securityContext/seccompProfile/type",
                    json!("Localhost"),
                ),
            ],
        },
        Case {
            name: "container's own user and profile are kept",
            pod: pod(
                "partial-container",
                json!({"containers": [{
                "name": "app", "image": "busybox",
                "securityContext": {"runAsUser": 4242, "seccompProfile": {"type": "RuntimeDefault"}, "allowPrivilegeEscalation": false}}]}),
            ),
            gaps: &[],
            warnings: &[],
            holds: vec![
                ("/spec/containers/0/securityContext/runAsUser", json!(4242)),
                ("/spec/securityContext/runAsUser", json!(65532)),
            ],
        },
        Case {
            name: "init and ephemeral containers are hardened too",
            pod: pod(
                "all-kinds",
                json!({
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [app(), {"name": "side", "image": "busybox"}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox"}]}),
            ),
            gaps: &[],
            warnings: &[],
            holds: vec![
                (
                    "/spec/initContainers/0/securityContext/capabilities/drop",
                    json!(["ALL"]),
                ),
                (
                    "/spec/containers/1/securityContext/allowPrivilegeEscalation",
                    json!(false),
                ),
                (
                    "/spec/ephemeralContainers/0/securityContext/capabilities/drop",
                    json!(["ALL"]),
                ),
            ],
        },
        Case {
            name: "existing drop list is merged, not replaced",
            pod: pod(
                "drops",
                json!({"containers": [
                {"name": "a", "image": "x", "securityContext": {"capabilities": {"drop": ["NET_RAW"], "add": ["NET_BIND_SERVICE"]}}},
                {"name": "b", "image": "x", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]}),
            ),
            gaps: &[],
            warnings: &[],
            holds: vec![
                (
                    "/spec/containers/0/securityContext/capabilities/drop",
                    json!(["NET_RAW", "ALL"]),
                ),
                (
                    "/spec/containers/0/securityContext/capabilities/add",
                    json!(["NET_BIND_SERVICE"]),
                ),
                (
                    "/spec/containers/1/securityContext/capabilities/drop",
                    json!(["ALL"]),
                ),
            ],
        },
        Case {
            name: "explicit runAsUser 0 at pod level is left, with no runAsNonRoot the kubelet would refuse",
            pod: pod(
                "root-pod",
                json!({"securityContext": {"runAsUser": 0}, "containers": [app()]}),
            ),
            gaps: &[
                "pod runAsNonRoot is not true",
                "containers/\"app\": effective runAsUser is unset or 0",
            ],
            warnings: &[
                "spec.securityContext.runAsUser=0 is left as set",
                "spec.securityContext.runAsNonRoot is not set because spec.securityContext.runAsUser explicitly runs as root",
            ],
            holds: vec![("/spec/securityContext/runAsUser", json!(0))],
        },
        Case {
            name: "explicit container runAsUser 0 is left and named",
            pod: pod(
                "root-container",
                json!({"containers": [{"name": "app", "image": "x", "securityContext": {"runAsUser": 0}}]}),
            ),
            gaps: &[
                "pod runAsNonRoot is not true",
                "containers/\"app\": effective runAsUser is unset or 0",
            ],
            warnings: &[
                "spec.containers[0].securityContext.runAsUser (container \"app\")=0 is left as set",
                "runAsNonRoot is not set because spec.containers[0].securityContext.runAsUser explicitly runs as root",
            ],
            holds: vec![("/spec/containers/0/securityContext/runAsUser", json!(0))],
        },
        Case {
            name: "privileged and added capabilities are left, with warnings",
            pod: pod(
                "privileged",
                json!({"containers": [{"name": "app", "image": "x",
                "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN", "NET_BIND_SERVICE"]}}}]}),
            ),
            gaps: &["containers/\"app\": allowPrivilegeEscalation is not false"],
            warnings: &[
                "securityContext.privileged (container \"app\")=true is left as set",
                "securityContext.capabilities.add[0] (container \"app\")=\"SYS_ADMIN\" is left as set",
            ],
            holds: vec![
                ("/spec/containers/0/securityContext/privileged", json!(true)),
                (
                    "/spec/containers/0/securityContext/capabilities/drop",
                    json!(["ALL"]),
                ),
            ],
        },
        Case {
            name: "allowPrivilegeEscalation true and Unconfined seccomp are left, with warnings",
            pod: pod(
                "escalating",
                json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
                "containers": [{"name": "app", "image": "x", "securityContext": {"allowPrivilegeEscalation": true}}]}),
            ),
            gaps: &["containers/\"app\": allowPrivilegeEscalation is not false"],
            warnings: &[
                "allowPrivilegeEscalation (container \"app\")=true is left as set",
                "spec.securityContext.seccompProfile.type=\"Unconfined\" is left as set",
            ],
            holds: vec![(
                "/spec/securityContext/seccompProfile/type",
                json!("Unconfined"),
            )],
        },
        Case {
            name: "annotation keys needing ~0 and ~1 escaping stay intact",
            pod: json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "escape", "annotations": {"a~b/c": "1", "x/y~": "2"}},
                "spec": {"containers": [app()]}}),
            gaps: &[],
            warnings: &[],
            holds: vec![
                ("/metadata/annotations/a~0b~1c", json!("1")),
                ("/metadata/annotations/x~1y~0", json!("2")),
                ("/metadata/annotations/unroot.dev~1mutated", json!("true")),
            ],
        },
    ]
}

fn pointer_of_patch(response: &Value) -> Vec<String> {
    patch_of(response)
        .0
        .iter()
        .map(|op| op.path().to_string())
        .collect()
}

#[tokio::test]
async fn every_pod_shape_is_hardened_and_remutation_is_empty() {
    let server = common::start().await;
    for case in cases() {
        let response = server
            .admit("/mutate", &review_for("CREATE", "team-a", &case.pod))
            .await;
        assert_eq!(response["allowed"], true, "{}", case.name);
        let mutated = apply(&case.pod, &response);
        let gaps = hardening_gaps(&mutated);
        assert_eq!(gaps, case.gaps, "{}: {mutated:#}", case.name);
        let warnings: Vec<String> = response["warnings"]
            .as_array()
            .map(|w| w.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        assert_eq!(
            warnings.len(),
            case.warnings.len(),
            "{}: {warnings:#?}",
            case.name
        );
        for (got, want) in warnings.iter().zip(case.warnings) {
            assert!(
                got.contains(want),
                "{}: warning {got:?} lacks {want:?}",
                case.name
            );
        }
        for (pointer, value) in &case.holds {
            assert_eq!(
                mutated.pointer(pointer),
                Some(value),
                "{}: {pointer} in {mutated:#}",
                case.name
            );
        }
        // Every added parent is created by the operation that fills it.
        let paths = pointer_of_patch(&response);
        for p in &paths {
            assert!(
                !paths
                    .iter()
                    .any(|q| q != p && p.starts_with(&format!("{q}/"))),
                "{}: nested ops {paths:?}",
                case.name
            );
        }
        let again = server
            .admit("/mutate", &review_for("CREATE", "team-a", &mutated))
            .await;
        assert!(
            again.get("patch").is_none(),
            "{}: second mutation patched: {again:#}",
            case.name
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn windows_pods_get_no_linux_only_fields() {
    let server = common::start().await;
    let pod = pod(
        "win",
        json!({"os": {"name": "windows"}, "containers": [app()]}),
    );
    let response = server
        .admit("/mutate", &review_for("CREATE", "team-a", &pod))
        .await;
    let mutated = apply(&pod, &response);
    assert_eq!(
        mutated["spec"]["securityContext"],
        json!({"runAsNonRoot": true})
    );
    assert!(
        mutated["spec"]["containers"][0]
            .get("securityContext")
            .is_none(),
        "{mutated:#}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn mirror_pods_other_kinds_updates_and_excluded_namespaces_are_untouched() {
    let server = common::start().await;
    let mirror = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "static", "annotations": {"kubernetes.io/config.mirror": "abc"}},
        "spec": {"containers": [app()]}});
    let plain = pod("plain", json!({"containers": [app()]}));
    let service =
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}, "spec": {}});
    for (what, review) in [
        ("mirror pod", review_for("CREATE", "team-a", &mirror)),
        ("pod UPDATE", review_for("UPDATE", "team-a", &plain)),
        ("pod DELETE", review_for("DELETE", "team-a", &plain)),
        ("Service CREATE", review_for("CREATE", "team-a", &service)),
        (
            "pod in kube-system",
            review_for("CREATE", "kube-system", &plain),
        ),
    ] {
        let response = server.admit("/mutate", &review).await;
        assert_eq!(response["allowed"], true, "{what}");
        assert!(response.get("patch").is_none(), "{what}: {response:#}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn ephemeral_container_subresource_hardens_only_the_added_container() {
    let server = common::start().await;
    // Kubernetes 1.20/1.21 send an EphemeralContainers object, and forbid any
    // securityContext on ephemeral containers: nothing is patched...
    let old = json!({"apiVersion": "v1", "kind": "EphemeralContainers", "metadata": {"name": "p"},
        "ephemeralContainers": [{"name": "old", "image": "x"}]});
    let new = json!({"apiVersion": "v1", "kind": "EphemeralContainers", "metadata": {"name": "p"},
        "ephemeralContainers": [{"name": "old", "image": "x"}, {"name": "debug", "image": "x"}]});
    let mut review = review_for("UPDATE", "team-a", &new);
    review["request"]["subResource"] = json!("ephemeralcontainers");
    review["request"]["resource"]["resource"] = json!("pods");
    review["request"]["oldObject"] = old;
    let response = server.admit("/mutate", &review).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response:#}");
    // ...and 1.22+ the whole Pod.
    let old_pod = pod("p", json!({"containers": [app()]}));
    let new_pod = pod(
        "p",
        json!({"containers": [app()], "ephemeralContainers": [{"name": "debug", "image": "x"}]}),
    );
    let mut review = review_for("UPDATE", "team-a", &new_pod);
    review["request"]["subResource"] = json!("ephemeralcontainers");
    review["request"]["oldObject"] = old_pod;
    let response = server.admit("/mutate", &review).await;
    let mutated = apply(&new_pod, &response);
    assert!(
        mutated["spec"]["containers"][0]
            .get("securityContext")
            .is_none(),
        "pod spec is immutable here"
    );
    assert_eq!(
        mutated["spec"]["ephemeralContainers"][0]["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    server.shutdown().await;
}

#[tokio::test]
async fn override_policy_rewrites_insecure_values_and_says_so() {
    let mut policy = unroot::policy::Document::embedded();
    policy.security_context.r#override = true;
    let server = common::start_with(common::Options {
        policy,
        ..Default::default()
    })
    .await;
    let pod = pod(
        "root",
        json!({"securityContext": {"runAsUser": 0, "runAsNonRoot": false},
        "containers": [{"name": "app", "image": "x", "securityContext": {"allowPrivilegeEscalation": true,
            "capabilities": {"add": ["SYS_ADMIN", "NET_BIND_SERVICE", "NET_RAW"]}}}]}),
    );
    let response = server
        .admit("/mutate", &review_for("CREATE", "team-a", &pod))
        .await;
    let mutated = apply(&pod, &response);
    assert_eq!(
        hardening_gaps(&mutated),
        Vec::<String>::new(),
        "{mutated:#}"
    );
    assert_eq!(
        mutated["spec"]["containers"][0]["securityContext"]["capabilities"]["add"],
        json!(["NET_BIND_SERVICE"])
    );
    let warnings = response["warnings"].to_string();
    for want in [
        "runAsUser=0 is overridden to 65532",
        "runAsNonRoot=false is overridden to true",
        "allowPrivilegeEscalation (container \\\"app\\\")=true is overridden to false",
        "\\\"SYS_ADMIN\\\" is removed by policy",
        "\\\"NET_RAW\\\" is removed by policy",
    ] {
        assert!(warnings.contains(want), "{want} not in {warnings}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_count_reviews_by_outcome() {
    let server = common::start().await;
    let plain = pod("m", json!({"containers": [app()]}));
    server
        .admit("/mutate", &review_for("CREATE", "team-a", &plain))
        .await;
    server
        .admit("/mutate", &review_for("UPDATE", "team-a", &plain))
        .await;
    let patched = r#"unroot_admission_requests_total{kind="Pod",operation="CREATE",outcome="patched",webhook="mutate"}"#;
    let allowed = r#"unroot_admission_requests_total{kind="Pod",operation="UPDATE",outcome="allowed",webhook="mutate"}"#;
    assert_eq!(server.metric(patched).await, Some(1.0));
    assert_eq!(server.metric(allowed).await, Some(1.0));
    assert_eq!(
        server
            .metric(r#"unroot_mutations_total{mutation="security_context"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        server
            .metric(r#"unroot_mutations_total{mutation="trust_bundle"}"#)
            .await,
        Some(0.0)
    );
    assert_eq!(
        server
            .metric(r#"unroot_admission_duration_seconds_count{webhook="mutate"}"#)
            .await,
        Some(2.0)
    );
    assert_eq!(server.admin_get("/healthz").await.status, 200);
    assert_eq!(server.admin_get("/readyz").await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn tls12_and_tls13_clients_are_served() {
    let server = common::start().await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let tls = server.connect_with(&[version]).await;
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
    }
    server.shutdown().await;
}
