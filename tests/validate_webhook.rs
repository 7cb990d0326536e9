//! `/validate` over real TLS: Pod Security Admission semantics per namespace.

use crate::common;

use common::{Options, namespaces, review_for};
use serde_json::{Value, json};

#[allow(clippy::needless_pass_by_value)] // reads better at the call sites
fn pod(name: &str, containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": containers}})
}

fn privileged_pod(name: &str) -> Value {
    pod(
        name,
        json!([{"name": "app", "image": "busybox", "securityContext": {"privileged": true}}]),
    )
}

/// Compliant with restricted (what /mutate produces).
fn hardened_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "app", "image": "busybox", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}})
}

async fn server() -> common::Server {
    common::start_with(Options {
        namespaces: namespaces(&[
            ("defaults", &[]),
            ("strict", &[("unroot.dev/enforce", "restricted")]),
            (
                "warn-only",
                &[
                    ("unroot.dev/enforce", "privileged"),
                    ("unroot.dev/warn", "restricted"),
                    ("unroot.dev/audit", "restricted"),
                ],
            ),
            (
                "open",
                &[
                    ("unroot.dev/enforce", "privileged"),
                    ("unroot.dev/warn", "privileged"),
                    ("unroot.dev/audit", "privileged"),
                    ("unroot.dev/enforce-version", "v1.20"),
                ],
            ),
            (
                "pinned",
                &[
                    ("unroot.dev/enforce", "restricted"),
                    ("unroot.dev/enforce-version", "v1.21"),
                    // Its test pod runs as uid 0, which restricted:v1.21
                    // does not check; unroot itself refuses root elsewhere.
                    ("unroot.dev/allow-root", "true"),
                ],
            ),
            (
                "broken",
                &[
                    ("unroot.dev/enforce", "Restricted"),
                    ("unroot.dev/warn-version", "1.25"),
                ],
            ),
            ("exempt-ns", &[("unroot.dev/enforce", "restricted")]),
        ]),
        policy: {
            let mut p = unroot::policy::Document::embedded();
            p.pod_security.exemptions.namespaces = vec!["exempt-ns".to_owned()];
            p.pod_security.exemptions.usernames =
                vec!["system:serviceaccount:ci:builder".to_owned()];
            p.pod_security.exemptions.runtime_class_names = vec!["gvisor".to_owned()];
            p
        },
        ..Options::default()
    })
    .await
}

fn annotations(response: &Value) -> Value {
    let mut a = response["auditAnnotations"].clone();
    if let Some(map) = a.as_object_mut() {
        assert!(
            map.remove("policy-hash")
                .is_some_and(|h| h.as_str().unwrap().len() == 12),
            "every answer carries the policy hash"
        );
    }
    a
}

#[tokio::test]
async fn enforce_denies_with_the_upstream_message() {
    let server = server().await;
    let p = pod("p", json!([{"name": "app", "image": "busybox"}]));
    let response = server
        .admit("/validate", &review_for("CREATE", "strict", &p))
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    assert_eq!(response["status"]["reason"], "Forbidden");
    assert_eq!(
        response["status"]["details"],
        json!({"name": "p", "kind": "pods"})
    );
    assert_eq!(
        response["status"]["message"],
        "pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
    );
    assert!(
        response.get("warnings").is_none(),
        "denied responses carry no warnings"
    );
    assert_eq!(
        annotations(&response)["enforce-policy"],
        "restricted:latest"
    );
    assert!(
        annotations(&response)["audit-violations"]
            .as_str()
            .unwrap()
            .starts_with(
                "would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false"
            )
    );

    let ok = server
        .admit(
            "/validate",
            &review_for("CREATE", "strict", &hardened_pod("h")),
        )
        .await;
    assert_eq!(ok["allowed"], true);
    assert_eq!(
        annotations(&ok),
        json!({"enforce-policy": "restricted:latest"})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn defaults_enforce_baseline_and_warn_restricted() {
    let server = server().await;
    let response = server
        .admit(
            "/validate",
            &review_for("CREATE", "defaults", &privileged_pod("priv")),
        )
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(
        response["status"]["message"],
        "pods \"priv\" is forbidden: violates PodSecurity \"baseline:latest\": privileged (container \"app\" must not set securityContext.privileged=true)"
    );

    let bare = pod("bare", json!([{"name": "app", "image": "busybox"}]));
    let response = server
        .admit("/validate", &review_for("CREATE", "defaults", &bare))
        .await;
    assert_eq!(response["allowed"], true);
    let warnings = response["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].as_str().unwrap().starts_with(
        "would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false"
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn warn_and_audit_without_enforce() {
    let server = server().await;
    let response = server
        .admit(
            "/validate",
            &review_for("CREATE", "warn-only", &privileged_pod("w")),
        )
        .await;
    assert_eq!(response["allowed"], true);
    let warning = response["warnings"][0].as_str().unwrap();
    assert!(warning.starts_with("would violate PodSecurity \"restricted:latest\": privileged (container \"app\" must not set securityContext.privileged=true), allowPrivilegeEscalation != false"), "{warning}");
    let a = annotations(&response);
    assert_eq!(a["enforce-policy"], "privileged:latest");
    assert_eq!(a["audit-violations"].as_str(), Some(warning));
    server.shutdown().await;
}

#[tokio::test]
async fn fully_privileged_namespace_is_short_cut() {
    let server = server().await;
    let response = server
        .admit(
            "/validate",
            &review_for("CREATE", "open", &privileged_pod("o")),
        )
        .await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("warnings").is_none());
    assert_eq!(
        annotations(&response),
        json!({"enforce-policy": "privileged:latest"}),
        "always latest, whatever the version label"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pinned_versions_evaluate_old_rules_and_print_the_label() {
    let server = server().await;
    // v1.21: capabilities_baseline, not capabilities_restricted; no runAsUser check.
    let p = pod(
        "old",
        json!([{"name": "app", "image": "busybox", "securityContext": {
        "allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 0,
        "seccompProfile": {"type": "RuntimeDefault"}, "capabilities": {"add": ["CHOWN"]}}}]),
    );
    let response = server
        .admit("/validate", &review_for("CREATE", "pinned", &p))
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    assert_eq!(annotations(&response)["enforce-policy"], "restricted:v1.21");
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_labels_fail_closed_and_are_reported() {
    let server = server().await;
    let response = server
        .admit(
            "/validate",
            &review_for("CREATE", "broken", &hardened_pod("b")),
        )
        .await;
    assert_eq!(
        response["allowed"], true,
        "a hardened pod passes the restricted fallback"
    );
    let a = annotations(&response);
    assert_eq!(a["enforce-policy"], "restricted:latest");
    assert_eq!(
        a["error"],
        "Failed to parse policy: [metadata.labels[unroot.dev/enforce]: Invalid value: \"Restricted\": must be one of privileged, baseline, restricted, metadata.labels[unroot.dev/warn-version]: Invalid value: \"1.25\": must be \"latest\" or \"v1.x\"]"
    );
    let response = server
        .admit(
            "/validate",
            &review_for("CREATE", "broken", &privileged_pod("b2")),
        )
        .await;
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .contains("violates PodSecurity \"restricted:latest\"")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn exemptions_allow_and_are_audited() {
    let server = server().await;
    let response = server
        .admit(
            "/validate",
            &review_for("CREATE", "exempt-ns", &privileged_pod("e")),
        )
        .await;
    assert_eq!(response["allowed"], true);
    assert_eq!(annotations(&response), json!({"exempt": "namespace"}));

    let mut review = review_for("CREATE", "strict", &privileged_pod("u"));
    review["request"]["userInfo"]["username"] = json!("system:serviceaccount:ci:builder");
    let response = server.admit("/validate", &review).await;
    assert_eq!(response["allowed"], true);
    assert_eq!(annotations(&response), json!({"exempt": "user"}));

    let mut p = privileged_pod("rc");
    p["spec"]["runtimeClassName"] = json!("gvisor");
    let response = server
        .admit("/validate", &review_for("CREATE", "strict", &p))
        .await;
    assert_eq!(response["allowed"], true);
    assert_eq!(annotations(&response), json!({"exempt": "runtimeClass"}));

    let series = r#"unroot_pod_security_exemptions_total{request_operation="create",resource="pod",subresource=""}"#;
    assert_eq!(server.metric(series).await, Some(3.0));
    server.shutdown().await;
}

#[tokio::test]
async fn pod_updates_are_evaluated_only_when_significant() {
    let server = server().await;
    let old = privileged_pod("up");
    let mut relabelled = old.clone();
    relabelled["metadata"]["labels"] = json!({"a": "b"});
    let mut review = review_for("UPDATE", "strict", &relabelled);
    review["request"]["oldObject"] = old.clone();
    let response = server.admit("/validate", &review).await;
    assert_eq!(
        response["allowed"], true,
        "metadata-only update of a violating pod is allowed"
    );
    assert_eq!(annotations(&response), json!({}));

    let mut new_image = old.clone();
    new_image["spec"]["containers"][0]["image"] = json!("busybox:2");
    let mut review = review_for("UPDATE", "strict", &new_image);
    review["request"]["oldObject"] = old;
    let response = server.admit("/validate", &review).await;
    assert_eq!(
        response["allowed"], false,
        "an image change is re-evaluated"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ephemeral_container_subresource_evaluates_the_whole_pod() {
    let server = server().await;
    let old = hardened_pod("dbg");
    let mut new = old.clone();
    new["spec"]["ephemeralContainers"] =
        json!([{"name": "debug", "image": "busybox", "securityContext": {"privileged": true}}]);
    let mut review = review_for("UPDATE", "strict", &new);
    review["request"]["subResource"] = json!("ephemeralcontainers");
    review["request"]["oldObject"] = old;
    let response = server.admit("/validate", &review).await;
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"].as_str().unwrap().contains(
            "privileged (container \"debug\" must not set securityContext.privileged=true)"
        ),
        "{response:#}"
    );

    // Other subresources that cannot change what runs are not evaluated.
    let mut review = review_for("UPDATE", "strict", &privileged_pod("s"));
    review["request"]["subResource"] = json!("status");
    assert_eq!(server.admit("/validate", &review).await["allowed"], true);

    // 1.20/1.21 send an EphemeralContainers list: the stored pod is read
    // only for an authenticated caller (tests/callers.rs), and without
    // cluster access it cannot be read: the request fails closed, saying
    // why.
    server.shutdown().await;
    let server = common::start_with(common::Options {
        namespaces: namespaces(&[("strict", &[("unroot.dev/enforce", "restricted")])]),
        authenticated: true,
        ..Default::default()
    })
    .await;
    let list = json!({"apiVersion": "v1", "kind": "EphemeralContainers", "metadata": {"name": "dbg"},
        "ephemeralContainers": [{"name": "debug", "image": "busybox"}]});
    let mut review = review_for("UPDATE", "strict", &list);
    review["request"]["subResource"] = json!("ephemeralcontainers");
    review["request"]["resource"]["resource"] = json!("pods");
    let response = server.admit("/validate", &review).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(
        response["status"]["message"],
        "Internal error occurred: failed to read pod \"dbg\" to evaluate its ephemeral containers: no cluster access"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn workload_templates_warn_and_audit_but_never_deny() {
    let server = server().await;
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {}, "template": {"metadata": {}, "spec": privileged_pod("x")["spec"]}}});
    let mut review = review_for("CREATE", "strict", &deployment);
    review["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    review["request"]["resource"] =
        json!({"group": "apps", "version": "v1", "resource": "deployments"});
    let response = server.admit("/validate", &review).await;
    assert_eq!(response["allowed"], true);
    assert!(
        response["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("would violate PodSecurity \"restricted:latest\": privileged")
    );
    let a = annotations(&response);
    assert!(
        a.get("enforce-policy").is_none(),
        "workloads are not enforced"
    );
    assert!(
        a["audit-violations"]
            .as_str()
            .unwrap()
            .contains("privileged")
    );
    let series = r#"unroot_pod_security_evaluations_total{decision="deny",mode="warn",policy_level="restricted",policy_version="latest",request_operation="create",resource="controller",subresource=""}"#;
    assert_eq!(server.metric(series).await, Some(1.0));
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_namespace_fails_closed_for_pods_only() {
    let server = server().await;
    let response = server
        .admit(
            "/validate",
            &review_for("CREATE", "nowhere", &hardened_pod("n")),
        )
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 500);
    assert_eq!(
        response["status"]["message"],
        "Internal error occurred: failed to lookup namespace \"nowhere\""
    );
    assert_eq!(
        annotations(&response)["error"],
        "failed to lookup namespace \"nowhere\": namespaces \"nowhere\" not found"
    );

    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {"spec": privileged_pod("x")["spec"]}}});
    let mut review = review_for("CREATE", "nowhere", &job);
    review["request"]["kind"] = json!({"group": "batch", "version": "v1", "kind": "Job"});
    review["request"]["resource"] = json!({"group": "batch", "version": "v1", "resource": "jobs"});
    let response = server.admit("/validate", &review).await;
    assert_eq!(response["allowed"], true);
    assert!(
        annotations(&response)["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to lookup namespace")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn with_no_cluster_the_policy_defaults_apply() {
    let server = common::start().await;
    let response = server
        .admit(
            "/validate",
            &review_for("CREATE", "anything", &privileged_pod("d")),
        )
        .await;
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .contains("violates PodSecurity \"baseline:latest\"")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn undecodable_pods_are_denied_with_upstream_messages() {
    let server = server().await;
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": {"containers": 3}});
    let response = server
        .admit("/validate", &review_for("CREATE", "strict", &bad))
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);
    assert_eq!(response["status"]["message"], "failed to decode object");
    assert!(
        annotations(&response)["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to decode object: invalid type: integer `3`")
    );
    server.shutdown().await;
}
