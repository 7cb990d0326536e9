//! Bypass attempts over real TLS (issue 17): each test fails if the bypass
//! works. Covered elsewhere, and not repeated here (see SECURITY.md):
//! - privileged ephemeral containers under restricted, non-significant pod
//!   updates, and the namespace lookup failing closed on /validate:
//!   tests/validate_webhook.rs;
//! - a root debug container next to a provisioned init container:
//!   tests/provisioning.rs `anyone_may_debug_a_provisioned_pod_under_restricted`;
//! - forged identity annotations on CREATE and on UPDATE:
//!   tests/provisioning.rs `forged_identities_are_denied_naming_the_rule`,
//!   `identity_annotations_cannot_be_added_or_changed_after_creation`;
//! - callers without a client certificate: tests/certs_mtls.rs.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{RecordingStore, apply, labels, review_as, review_for};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use unroot::namespaces::Namespaces;
use unroot::server::IdentityStore;

const HUB: &str = "system:serviceaccount:jupyterhub:hub";

async fn server() -> common::Server {
    common::start_with(common::Options {
        policy: common::provisioning_policy_on_pvc(),
        namespace_labels: BTreeMap::from([
            (
                "strict".to_owned(),
                labels(&[
                    ("unroot.dev/enforce", "restricted"),
                    ("unroot.dev/provisioning", "enabled"),
                ]),
            ),
            (
                "base".to_owned(),
                labels(&[("unroot.dev/enforce", "baseline")]),
            ),
        ]),
        identity_store: Some(Arc::new(RecordingStore::default()) as Arc<dyn IdentityStore>),
        ..Default::default()
    })
    .await
}

fn message(response: &Value) -> &str {
    response["status"]["message"].as_str().unwrap_or_default()
}

/// Compliant with restricted.
fn hardened_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [{"name": "init", "image": "busybox:1", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
        "containers": [{"name": "app", "image": "busybox:1", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}})
}

fn update(namespace: &str, old: &Value, new: &Value, sub_resource: &str, user: &str) -> Value {
    let mut review = review_as("UPDATE", namespace, new, user);
    review["request"]["oldObject"] = old.clone();
    if !sub_resource.is_empty() {
        review["request"]["subResource"] = json!(sub_resource);
    }
    review
}

#[tokio::test]
async fn ephemeral_containers_cannot_smuggle_privilege() {
    let server = server().await;
    let old = hardened_pod("dbg");
    for (namespace, level) in [("base", "baseline"), ("strict", "restricted")] {
        for (sub, what) in [
            ("ephemeralcontainers", "the subresource"),
            ("", "a plain pod UPDATE"),
        ] {
            let mut new = old.clone();
            new["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox",
                "securityContext": {"privileged": true}}]);
            let response = server
                .admit("/validate", &update(namespace, &old, &new, sub, "mallory"))
                .await;
            assert_eq!(response["allowed"], false, "{level} via {what}");
            assert!(
                message(&response).starts_with(&format!(
                    r#"pods "dbg" is forbidden: violates PodSecurity "{level}:latest": "#
                )) && message(&response).contains(
                    r#"privileged (container "debug" must not set securityContext.privileged=true)"#
                ),
                "{level} via {what}: {}",
                message(&response)
            );
        }
    }

    // A root debug container: /mutate leaves the explicit root alone (the
    // policy does not override), /validate denies it under restricted.
    let mut new = old.clone();
    new["spec"]["ephemeralContainers"] =
        json!([{"name": "debug", "image": "busybox", "securityContext": {"runAsUser": 0}}]);
    let review = update("strict", &old, &new, "ephemeralcontainers", "mallory");
    let mutated = server.admit("/mutate", &review).await;
    assert_eq!(mutated["allowed"], true);
    let after = apply(&new, &mutated);
    assert_eq!(
        after["spec"]["ephemeralContainers"][0]["securityContext"]["runAsUser"],
        0
    );
    let response = server
        .admit(
            "/validate",
            &update("strict", &old, &after, "ephemeralcontainers", "mallory"),
        )
        .await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains(r#"runAsUser=0 (container "debug" must not set runAsUser=0)"#),
        "{}",
        message(&response)
    );

    // A debug container with no securityContext is hardened by /mutate and
    // then admitted.
    new["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
    let review = update("strict", &old, &new, "ephemeralcontainers", "mallory");
    let after = apply(&new, &server.admit("/mutate", &review).await);
    let response = server
        .admit(
            "/validate",
            &update("strict", &old, &after, "ephemeralcontainers", "mallory"),
        )
        .await;
    assert_eq!(response["allowed"], true, "{}", message(&response));
    server.shutdown().await;
}

/// A change made to a pod by an UPDATE, named for the assertion messages.
type Change = (&'static str, fn(&mut Value));

/// A pod created before its namespace enforced restricted: it runs as root.
fn violating_pod() -> Value {
    let mut old = hardened_pod("up");
    old["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 0});
    old
}

/// pss-spec §4.5: an UPDATE is evaluated when a container or init
/// container is added or removed, an image changes (by index), or an
/// ephemeral container is new or changes image.
#[tokio::test]
async fn pod_updates_reevaluate_exactly_upstreams_significant_changes() {
    let server = server().await;
    let old = violating_pod();
    let significant: [Change; 5] = [
        ("a container image", |p| {
            p["spec"]["containers"][0]["image"] = json!("busybox:2");
        }),
        ("an init container image", |p| {
            p["spec"]["initContainers"][0]["image"] = json!("busybox:2");
        }),
        ("a container added", |p| {
            let containers = p["spec"]["containers"].as_array_mut().unwrap();
            containers.push(json!({"name": "b", "image": "busybox:1"}));
        }),
        ("the init containers removed", |p| {
            p["spec"]["initContainers"] = json!([]);
        }),
        ("an ephemeral container added", |p| {
            p["spec"]["ephemeralContainers"] = json!([{"name": "e", "image": "busybox:1"}]);
        }),
    ];
    for (what, change) in significant {
        let mut new = old.clone();
        change(&mut new);
        let response = server
            .admit("/validate", &update("strict", &old, &new, "", "mallory"))
            .await;
        assert_eq!(response["allowed"], false, "{what} is re-evaluated");
        assert!(
            message(&response).contains("runAsUser=0"),
            "{what}: {}",
            message(&response)
        );
    }
    // An ephemeral container whose image changes under the same name.
    let mut with_debug = old.clone();
    with_debug["spec"]["ephemeralContainers"] = json!([{"name": "e", "image": "busybox:1"}]);
    let mut new = with_debug.clone();
    new["spec"]["ephemeralContainers"][0]["image"] = json!("busybox:2");
    let response = server
        .admit(
            "/validate",
            &update("strict", &with_debug, &new, "", "mallory"),
        )
        .await;
    assert_eq!(
        response["allowed"], false,
        "an ephemeral image change is re-evaluated"
    );
    server.shutdown().await;
}

/// Anything else is allowed unevaluated, as upstream (the API server refuses
/// other spec changes of a pod before validating webhooks run); and no
/// UPDATE is a way around enforcement: one whose old object cannot be read
/// is denied, not waved through as insignificant.
#[tokio::test]
async fn other_pod_updates_pass_and_none_gets_around_enforcement() {
    let server = server().await;
    let old = violating_pod();
    let insignificant: [Change; 4] = [
        ("labels", |p| p["metadata"]["labels"] = json!({"a": "b"})),
        ("a seccomp annotation", |p| {
            p["metadata"]["annotations"] =
                json!({"seccomp.security.alpha.kubernetes.io/pod": "unconfined"});
        }),
        ("tolerations", |p| {
            p["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        }),
        ("activeDeadlineSeconds", |p| {
            p["spec"]["activeDeadlineSeconds"] = json!(5);
        }),
    ];
    for (what, change) in insignificant {
        let mut new = old.clone();
        change(&mut new);
        let response = server
            .admit("/validate", &update("strict", &old, &new, "", "mallory"))
            .await;
        assert_eq!(
            response["allowed"], true,
            "{what} is not re-evaluated, as upstream"
        );
    }

    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("busybox:2");
    for (what, old_object) in [
        ("no old object", Value::Null),
        (
            "an old object that is no pod",
            json!({"spec": {"containers": 7}}),
        ),
    ] {
        let mut review = update("strict", &old, &new, "", "mallory");
        review["request"]["oldObject"] = old_object;
        let response = server.admit("/validate", &review).await;
        assert_eq!(response["allowed"], false, "{what}");
        assert_eq!(response["status"]["code"], 400, "{what}");
        assert_eq!(message(&response), "failed to decode old object", "{what}");
    }
    // An unknown operation is evaluated like a CREATE.
    let mut review = review_for("PATCH", "strict", &old);
    review["request"]["oldObject"] = old.clone();
    let response = server.admit("/validate", &review).await;
    assert_eq!(
        response["allowed"], false,
        "an unknown operation is evaluated"
    );
    server.shutdown().await;
}

/// A fake API server answering namespace GETs with `status` (and `labels`
/// on 200), counting the calls.
fn fake_cluster(status: u16, labels: Value, calls: Arc<Mutex<Vec<String>>>) -> Namespaces {
    let service = tower::service_fn(move |req: hyper::Request<kube::client::Body>| {
        let (labels, calls) = (labels.clone(), Arc::clone(&calls));
        async move {
            calls.lock().unwrap().push(req.uri().path().to_owned());
            let _ = req.into_body().collect().await?;
            let body = if status == 200 {
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                    "metadata": {"name": "tenant", "labels": labels}})
            } else {
                json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": status,
                    "reason": if status == 404 { "NotFound" } else { "InternalError" },
                    "message": format!("fake API server says {status}")})
            };
            let response = hyper::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(hyper::body::Bytes::from(
                    serde_json::to_vec(&body).unwrap(),
                )))
                .unwrap();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response)
        }
    });
    let client = kube::Client::new(service, "default");
    Namespaces::Cluster {
        store: kube::runtime::reflector::store().0,
        api: kube::Api::all(client),
    }
}

/// A namespace the cache does not hold is read from the API server; when
/// that read fails (an error, or no such namespace) pods are denied on
/// both webhooks, never admitted by default (the CVE-2025-46342 class).
#[tokio::test]
async fn a_cache_miss_with_a_failing_api_server_fails_closed() {
    let privileged = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "busybox", "securityContext": {"privileged": true}}]}});
    for (status, want) in [
        (500, "fake API server says 500"),
        (404, r#"namespaces "tenant" not found"#),
    ] {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let server = common::start_with(common::Options {
            namespace_source: Some(fake_cluster(status, json!({}), Arc::clone(&calls))),
            ..Default::default()
        })
        .await;
        for (path, object) in [
            ("/validate", &privileged),
            ("/validate", &hardened_pod("p")),
            ("/mutate", &hardened_pod("p")),
        ] {
            let response = server
                .admit(path, &review_for("CREATE", "tenant", object))
                .await;
            assert_eq!(response["allowed"], false, "{status} {path}: {response:#}");
            assert_eq!(response["status"]["code"], 500, "{status} {path}");
            assert!(
                message(&response)
                    .starts_with(r#"Internal error occurred: failed to lookup namespace "tenant""#),
                "{status} {path}: {}",
                message(&response)
            );
            if path == "/validate" {
                assert!(
                    response["auditAnnotations"]["error"]
                        .as_str()
                        .unwrap()
                        .contains(want),
                    "{status}: {response:#}"
                );
            } else {
                assert!(
                    message(&response).contains(want),
                    "{status}: {}",
                    message(&response)
                );
            }
        }
        assert_eq!(
            calls.lock().unwrap().len(),
            3,
            "each miss asks the API server"
        );
        assert!(calls.lock().unwrap()[0].ends_with("/api/v1/namespaces/tenant"));
        server.shutdown().await;
    }

    // And when the API server answers, its labels decide.
    let calls = Arc::new(Mutex::new(Vec::new()));
    let server = common::start_with(common::Options {
        namespace_source: Some(fake_cluster(
            200,
            json!({"unroot.dev/enforce": "privileged"}),
            calls,
        )),
        ..Default::default()
    })
    .await;
    let response = server
        .admit("/validate", &review_for("CREATE", "tenant", &privileged))
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    server.shutdown().await;
}

/// The provisioning init container is exempt only when it is exactly the
/// one the policy injects, for a pod a trusted requester created: a user's
/// copy of it is judged like any container.
#[tokio::test]
async fn a_user_copy_of_the_provisioning_init_container_is_not_trusted() {
    let server = server().await;
    let notebook = common::fixture("tests/fixtures/provisioning/notebook.yaml");
    let genuine = server
        .admit("/mutate", &review_as("CREATE", "strict", &notebook, HUB))
        .await;
    let provisioned = apply(&notebook, &genuine);
    let response = server
        .admit(
            "/validate",
            &review_as("CREATE", "strict", &provisioned, HUB),
        )
        .await;
    assert_eq!(
        response["allowed"],
        true,
        "the genuine pod: {}",
        message(&response)
    );
    let init = provisioned["spec"]["initContainers"][0].clone();
    assert_eq!(init["name"], "unroot-provision");

    // The same pod, byte for byte, created by someone who may not claim an
    // identity: /mutate refuses the claim, and /validate does not exempt
    // the copied init container.
    let response = server
        .admit(
            "/validate",
            &review_as("CREATE", "strict", &provisioned, "mallory"),
        )
        .await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("\"unroot-provision\""),
        "{}",
        message(&response)
    );
    let response = server
        .admit(
            "/mutate",
            &review_as("CREATE", "strict", &provisioned, "mallory"),
        )
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);

    // A copy without identity annotations, and copies that differ from the
    // injected container in one provenance field, sent by the spawner.
    let mut anonymous = provisioned.clone();
    anonymous["metadata"]["annotations"] = json!({});
    let mut command = provisioned.clone();
    command["spec"]["initContainers"][0]["command"] = json!(["/bin/sh", "-c", "id; /provision.sh"]);
    let mut image = provisioned.clone();
    image["spec"]["initContainers"][0]["image"] =
        json!("registry.example.com/unroot/provisioner:latest");
    let mut second = provisioned.clone();
    second["spec"]["initContainers"]
        .as_array_mut()
        .unwrap()
        .push(init.clone());
    second["spec"]["initContainers"][1]["name"] = json!("unroot-provision-2");
    for (what, pod, user) in [
        ("no identity annotations", &anonymous, "mallory"),
        ("another command", &command, HUB),
        ("an image by tag", &image, HUB),
        ("a second copy", &second, HUB),
    ] {
        let response = server
            .admit("/validate", &review_as("CREATE", "strict", pod, user))
            .await;
        assert_eq!(response["allowed"], false, "{what}");
        assert!(
            message(&response).contains("unroot-provision"),
            "{what}: {}",
            message(&response)
        );
    }
    server.shutdown().await;
}

/// Another mutating webhook that runs after unroot and makes the pod
/// privileged is caught by /validate, which sees the pod after every
/// mutation; with `reinvocationPolicy: IfNeeded` unroot also hardens what
/// the other webhook added.
#[tokio::test]
async fn a_privileged_container_added_after_unroot_is_denied_by_validate() {
    let mutating: Value =
        serde_saphyr::from_str(&std::fs::read_to_string("webhook-config/mutating.yaml").unwrap())
            .unwrap();
    assert_eq!(mutating["webhooks"][0]["reinvocationPolicy"], "IfNeeded");
    let validating: Vec<Value> = serde_saphyr::from_str::<Value>(
        &std::fs::read_to_string("webhook-config/validating.yaml").unwrap(),
    )
    .unwrap()["webhooks"]
        .as_array()
        .unwrap()
        .clone();
    let pods = validating
        .iter()
        .find(|w| w["name"] == "validate.pods.unroot.dev")
        .unwrap();
    assert_eq!(pods["failurePolicy"], "Fail");
    assert_eq!(
        pods["rules"][0]["resources"],
        json!(["pods", "pods/ephemeralcontainers"])
    );

    let server = server().await;
    let original = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    let hardened = apply(
        &original,
        &server
            .admit("/mutate", &review_for("CREATE", "base", &original))
            .await,
    );
    assert_eq!(
        server
            .admit("/validate", &review_for("CREATE", "base", &hardened))
            .await["allowed"],
        true
    );

    // The other webhook's changes: a privileged sidecar, or privilege on
    // unroot's hardened container.
    let mut sidecar = hardened.clone();
    sidecar["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "mesh", "image": "proxy",
        "securityContext": {"privileged": true}}));
    let mut flipped = hardened.clone();
    flipped["spec"]["containers"][0]["securityContext"]["privileged"] = json!(true);
    let mut host = hardened.clone();
    host["spec"]["hostPID"] = json!(true);
    for (what, pod) in [
        ("a privileged sidecar", &sidecar),
        ("privileged set on the hardened container", &flipped),
        ("hostPID", &host),
    ] {
        let response = server
            .admit("/validate", &review_for("CREATE", "base", pod))
            .await;
        assert_eq!(response["allowed"], false, "{what}");
        assert_eq!(response["status"]["code"], 403, "{what}");
    }

    // On reinvocation unroot hardens the sidecar without undoing its own
    // work or the privileged flag it must not "fix".
    let mut plain_sidecar = hardened.clone();
    plain_sidecar["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "mesh", "image": "proxy"}));
    let reinvoked = server
        .admit("/mutate", &review_for("CREATE", "strict", &plain_sidecar))
        .await;
    let after = apply(&plain_sidecar, &reinvoked);
    assert_eq!(common::hardening_gaps(&after), Vec::<String>::new());
    for op in &common::patch_of(&reinvoked).0 {
        let path = serde_json::to_value(op).unwrap()["path"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            path.starts_with("/spec/containers/1"),
            "reinvocation touched {path}"
        );
    }
    let reinvoked = server
        .admit("/mutate", &review_for("CREATE", "base", &sidecar))
        .await;
    let after = apply(&sidecar, &reinvoked);
    assert_eq!(
        after["spec"]["containers"][1]["securityContext"]["privileged"],
        true
    );
    assert_eq!(
        server
            .admit("/validate", &review_for("CREATE", "base", &after))
            .await["allowed"],
        false
    );
    server.shutdown().await;
}
