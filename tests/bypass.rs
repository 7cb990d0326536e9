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

/// pod-security-admission `isSignificantPodUpdate`: an UPDATE is evaluated
/// when a container or init container is added or removed, an image changes
/// (by index), a container's legacy seccomp annotation changes (issue 21,
/// path 9), or an ephemeral container is new or changes image.
#[tokio::test]
async fn pod_updates_reevaluate_exactly_upstreams_significant_changes() {
    let server = server().await;
    let old = violating_pod();
    let significant: [Change; 7] = [
        ("a container's seccomp annotation", |p| {
            p["metadata"]["annotations"] =
                json!({"container.seccomp.security.alpha.kubernetes.io/app": "unconfined"});
        }),
        ("an init container's seccomp annotation", |p| {
            p["metadata"]["annotations"] =
                json!({"container.seccomp.security.alpha.kubernetes.io/init": "runtime/default"});
        }),
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
    Namespaces::cluster(kube::runtime::reflector::store().0, kube::Api::all(client))
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
        // An authenticated caller's review reads the API server on a miss;
        // an unauthenticated one's does not (tests/callers.rs).
        let server = common::start_with(common::Options {
            namespace_source: Some(fake_cluster(status, json!({}), Arc::clone(&calls))),
            authenticated: true,
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
        authenticated: true,
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
    let configuration: Value =
        serde_saphyr::from_str(&std::fs::read_to_string("webhook-config/validating.yaml").unwrap())
            .unwrap();
    let pods = configuration["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "validate.pods.unroot.dev")
        .unwrap();
    // Failing closed once this install has served (tests/manifests.rs).
    let fail_closed = configuration["metadata"]["annotations"]["unroot.dev/fail-closed"]
        .as_str()
        .unwrap();
    assert!(
        fail_closed
            .split(',')
            .any(|w| w == "validate.pods.unroot.dev")
    );
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

/// The pod the spawner's CREATE stores in `strict`: unroot's patch, then
/// what the API server adds to the injected init container (its defaults,
/// and the ServiceAccount admission plugin's token mount of the pod's
/// projected token volume).
async fn stored_provisioned_pod(server: &common::Server) -> Value {
    let notebook = common::fixture("tests/fixtures/provisioning/notebook.yaml");
    let genuine = server
        .admit("/mutate", &review_as("CREATE", "strict", &notebook, HUB))
        .await;
    let mut pod = apply(&notebook, &genuine);
    let volumes = pod["spec"]["volumes"].as_array_mut().unwrap();
    volumes.push(json!({"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}));
    let init = &mut pod["spec"]["initContainers"][0];
    init["terminationMessagePath"] = json!("/dev/termination-log");
    init["terminationMessagePolicy"] = json!("File");
    init["imagePullPolicy"] = json!("IfNotPresent");
    init["resources"] = json!({});
    init["volumeMounts"].as_array_mut().unwrap().push(json!({
        "name": "kube-api-access-x7k2p", "readOnly": true,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}));
    pod
}

/// Issue 21, path 6: the provisioning init container (uid 0, with
/// DAC_OVERRIDE) is exempt from Pod Security only when it is exactly what
/// unroot injects, every field: whatever a later webhook or the spawner
/// adds to it makes it a container like any other, and the pod is judged.
#[tokio::test]
async fn the_init_containers_exemption_covers_exactly_what_unroot_injected() {
    let server = server().await;
    let stored = stored_provisioned_pod(&server).await;
    let response = server
        .admit("/validate", &review_as("CREATE", "strict", &stored, HUB))
        .await;
    assert_eq!(
        response["allowed"],
        true,
        "as stored: {}",
        message(&response)
    );
    let tampered: [Change; 12] = [
        ("a host port", |p| {
            p["spec"]["initContainers"][0]["ports"] = json!([{"containerPort": 22}]);
        }),
        ("a postStart hook", |p| {
            p["spec"]["initContainers"][0]["lifecycle"] =
                json!({"postStart": {"exec": {"command": ["/bin/sh", "-c", "id"]}}});
        }),
        ("a probe", |p| {
            p["spec"]["initContainers"][0]["startupProbe"] =
                json!({"exec": {"command": ["/bin/true"]}});
        }),
        ("envFrom (LD_PRELOAD)", |p| {
            p["spec"]["initContainers"][0]["envFrom"] =
                json!([{"configMapRef": {"name": "preload"}}]);
        }),
        ("another env entry", |p| {
            p["spec"]["initContainers"][0]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "LD_PRELOAD", "value": "/home/evil.so"}));
        }),
        ("restartPolicy: Always (a sidecar)", |p| {
            p["spec"]["initContainers"][0]["restartPolicy"] = json!("Always");
        }),
        ("a mount over the token path", |p| {
            p["spec"]["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "evil", "emptyDir": {}}));
            let mounts = p["spec"]["initContainers"][0]["volumeMounts"]
                .as_array_mut()
                .unwrap();
            mounts.pop();
            mounts.push(json!({"name": "evil", "readOnly": true,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}));
        }),
        ("a writable token mount", |p| {
            let mounts = p["spec"]["initContainers"][0]["volumeMounts"]
                .as_array_mut()
                .unwrap();
            mounts.last_mut().unwrap()["readOnly"] = json!(false);
        }),
        ("another working directory", |p| {
            p["spec"]["initContainers"][0]["workingDir"] = json!("/home");
        }),
        ("another termination message path", |p| {
            p["spec"]["initContainers"][0]["terminationMessagePath"] = json!("/home/alice/x");
        }),
        ("a device plugin's resource", |p| {
            p["spec"]["initContainers"][0]["resources"] =
                json!({"limits": {"example.com/device": "1"}});
        }),
        ("a tty", |p| {
            p["spec"]["initContainers"][0]["tty"] = json!(true);
        }),
    ];
    for (what, change) in tampered {
        let mut pod = stored.clone();
        change(&mut pod);
        let response = server
            .admit("/validate", &review_as("CREATE", "strict", &pod, HUB))
            .await;
        assert_eq!(response["allowed"], false, "{what}");
        assert!(
            message(&response).contains("\"unroot-provision\""),
            "{what}: {}",
            message(&response)
        );
    }
    // What a LimitRange does to it is no privilege.
    let mut limited = stored.clone();
    limited["spec"]["initContainers"][0]["resources"] =
        json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}});
    let response = server
        .admit("/validate", &review_as("CREATE", "strict", &limited, HUB))
        .await;
    assert_eq!(response["allowed"], true, "{}", message(&response));
    server.shutdown().await;
}

/// A server with the shipped policy over namespaces at each hardening
/// stage and allowance.
async fn root_server() -> common::Server {
    let mut policy = unroot::policy::Document::embedded();
    policy.security_context.namespace_overrides = vec![
        serde_json::from_value(json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "legacy"}},
        "allowRoot": true}))
        .unwrap(),
    ];
    common::start_with(common::Options {
        policy,
        namespace_labels: BTreeMap::from([
            ("team".to_owned(), labels(&[])),
            (
                "open".to_owned(),
                labels(&[("unroot.dev/enforce", "privileged")]),
            ),
            (
                "root-ok".to_owned(),
                labels(&[("unroot.dev/allow-root", "true")]),
            ),
            (
                "legacy".to_owned(),
                labels(&[("kubernetes.io/metadata.name", "legacy")]),
            ),
            (
                "staged".to_owned(),
                labels(&[("unroot.dev/harden", "warn")]),
            ),
            ("off".to_owned(), labels(&[("unroot.dev/harden", "off")])),
        ]),
        ..Default::default()
    })
    .await
}

/// Issue 21, path 3: with the shipped policy (override false, enforce
/// baseline) a pod that asks for root used to run as root with a warning.
/// Root is refused, in every container kind, in every namespace a
/// namespaceLabelAdmin did not allow it in.
#[tokio::test]
async fn root_is_refused_unless_an_admin_allowed_it() {
    let server = root_server().await;
    let asks: [(&str, Value, &str); 4] = [
        (
            "pod",
            json!({"securityContext": {"runAsUser": 0, "runAsNonRoot": false},
                "containers": [{"name": "app", "image": "busybox"}]}),
            "pod sets securityContext.runAsUser=0, pod sets securityContext.runAsNonRoot=false",
        ),
        (
            "container",
            json!({"containers": [{"name": "app", "image": "busybox", "securityContext": {"runAsUser": 0}}]}),
            r#"container "app" sets securityContext.runAsUser=0"#,
        ),
        (
            "init container",
            json!({"containers": [{"name": "app", "image": "busybox"}],
                "initContainers": [{"name": "setup", "image": "busybox", "securityContext": {"runAsNonRoot": false}}]}),
            r#"init container "setup" sets securityContext.runAsNonRoot=false"#,
        ),
        (
            "ephemeral container",
            json!({"containers": [{"name": "app", "image": "busybox"}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox", "securityContext": {"runAsUser": 0}}]}),
            r#"ephemeral container "debug" sets securityContext.runAsUser=0"#,
        ),
    ];
    for (what, spec, found) in &asks {
        let pod =
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root"}, "spec": spec});
        for namespace in ["team", "open"] {
            // The whole path: /mutate leaves the explicit choice (and warns),
            // /validate refuses it, whatever the Pod Security level.
            let mutated = server
                .admit("/mutate", &review_for("CREATE", namespace, &pod))
                .await;
            let after = apply(&pod, &mutated);
            let response = server
                .admit("/validate", &review_for("CREATE", namespace, &after))
                .await;
            assert_eq!(response["allowed"], false, "{what} in {namespace}");
            assert_eq!(response["status"]["code"], 403, "{what} in {namespace}");
            assert_eq!(
                message(&response),
                format!(
                    "pods \"root\" is forbidden: unroot refuses root in namespace \"{namespace}\": {found} (a namespaceLabelAdmin may allow it there with the namespace label unroot.dev/allow-root=true, or a securityContext.namespaceOverrides entry with allowRoot: true)"
                ),
                "{what} in {namespace}"
            );
        }
        for namespace in ["root-ok", "legacy", "off"] {
            let response = server
                .admit("/validate", &review_for("CREATE", namespace, &pod))
                .await;
            assert_eq!(
                response["allowed"],
                true,
                "{what} in {namespace}: {}",
                message(&response)
            );
        }
        let response = server
            .admit("/validate", &review_for("CREATE", "staged", &pod))
            .await;
        assert_eq!(response["allowed"], true, "{what} in staged");
        assert!(
            common::warnings_of(&response).contains(&format!(
                "unroot would refuse root in namespace \"staged\" once it is hardened (unroot.dev/harden=on): {found}"
            )),
            "{what}: {response:#}"
        );
    }
    // A Deployment whose pods would be refused is warned about, not denied.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {}, "template": {"metadata": {}, "spec": asks[1].1}}});
    let mut review = review_for("CREATE", "team", &deployment);
    review["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    review["request"]["resource"] =
        json!({"group": "apps", "version": "v1", "resource": "deployments"});
    let response = server.admit("/validate", &review).await;
    assert_eq!(response["allowed"], true);
    assert!(
        common::warnings_of(&response)
            .iter()
            .any(|w| w.starts_with("pods of this Deployment would be refused: unroot refuses root")),
        "{response:#}"
    );
    // Not asking for root is what every other pod does.
    let plain = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "app", "image": "busybox", "securityContext": {"runAsUser": 1000}}]}});
    let response = server
        .admit("/validate", &review_for("CREATE", "team", &plain))
        .await;
    assert_eq!(response["allowed"], true, "{}", message(&response));
    server.shutdown().await;
}

/// Issue 21, path 2: the ids in provisioning.uidRange and gidRange belong to
/// their vouched identity. Any other pod that runs as, or joins, one of them
/// is refused, in every namespace unroot covers, naming the field and the
/// range; ids outside the ranges are anyone's.
#[tokio::test]
async fn provisioned_ids_belong_to_their_identity() {
    let server = ids_server().await;
    let pod = |sc: Value, container: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
            "securityContext": sc, "containers": [{"name": "app", "image": "busybox", "securityContext": container}]}})
    };
    ids_are_refused_to_others(&server, &pod).await;
    // uid 1000, the first user of most images, is outside the ranges.
    let ordinary = pod(
        json!({"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}),
        json!({}),
    );
    let response = server
        .admit(
            "/validate",
            &review_as("CREATE", "other", &ordinary, "mallory"),
        )
        .await;
    assert_eq!(response["allowed"], true, "{}", message(&response));
    // The identity's own pod may use its uid, gid and groups.
    let mut own = pod(json!({"supplementalGroups": [20001]}), json!({}));
    own["metadata"]["annotations"] = json!({"unroot.dev/user": "alice", "unroot.dev/uid": "10001",
        "unroot.dev/gid": "10001", "unroot.dev/groups": "research:20001"});
    let mutated = server
        .admit("/mutate", &review_as("CREATE", "hub", &own, HUB))
        .await;
    assert_eq!(mutated["allowed"], true, "{}", message(&mutated));
    let stored = apply(&own, &mutated);
    assert_eq!(stored["spec"]["securityContext"]["runAsUser"], 10001);
    let response = server
        .admit("/validate", &review_as("CREATE", "hub", &stored, HUB))
        .await;
    assert_eq!(response["allowed"], true, "{}", message(&response));
    // The same pod from a requester who may not claim the identity.
    let response = server
        .admit("/validate", &review_as("CREATE", "hub", &stored, "mallory"))
        .await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("securityContext.runAsUser=10001"),
        "{}",
        message(&response)
    );
    server.shutdown().await;
}

/// Provisioning on, with ranges that leave uid 1000 to images.
async fn ids_server() -> common::Server {
    let mut policy = common::provisioning_policy_on_pvc();
    policy.provisioning.uid_range =
        serde_json::from_value(json!({"min": 10000, "max": 60000})).unwrap();
    policy.provisioning.gid_range = policy.provisioning.uid_range;
    common::start_with(common::Options {
        policy,
        namespace_labels: BTreeMap::from([
            (
                "hub".to_owned(),
                labels(&[("unroot.dev/provisioning", "enabled")]),
            ),
            (
                "other".to_owned(),
                labels(&[("unroot.dev/enforce", "privileged")]),
            ),
        ]),
        identity_store: Some(Arc::new(RecordingStore::default()) as Arc<dyn IdentityStore>),
        ..Default::default()
    })
    .await
}

/// Each id in a range, at pod and container level, in a namespace
/// selected for provisioning and in one that is not, is refused.
async fn ids_are_refused_to_others(server: &common::Server, pod: &dyn Fn(Value, Value) -> Value) {
    let taken = [
        (
            "runAsUser",
            pod(json!({"runAsUser": 10001}), json!({})),
            "pod sets securityContext.runAsUser=10001, inside provisioning.uidRange (10000-60000)",
        ),
        (
            "runAsGroup",
            pod(json!({"runAsGroup": 10001}), json!({})),
            "pod sets securityContext.runAsGroup=10001, inside provisioning.gidRange (10000-60000)",
        ),
        (
            "fsGroup",
            pod(json!({"fsGroup": 20001}), json!({})),
            "pod sets securityContext.fsGroup=20001, inside provisioning.gidRange (10000-60000)",
        ),
        (
            "supplementalGroups",
            pod(json!({"supplementalGroups": [100, 20001]}), json!({})),
            "pod sets securityContext.supplementalGroups[1]=20001, inside provisioning.gidRange (10000-60000)",
        ),
        (
            "a container's runAsUser",
            pod(json!({}), json!({"runAsUser": 10001})),
            r#"container "app" sets securityContext.runAsUser=10001, inside provisioning.uidRange (10000-60000)"#,
        ),
        (
            "a container's runAsGroup",
            pod(json!({}), json!({"runAsGroup": 10001})),
            r#"container "app" sets securityContext.runAsGroup=10001, inside provisioning.gidRange (10000-60000)"#,
        ),
    ];
    for (what, p, found) in &taken {
        for namespace in ["hub", "other"] {
            let response = server
                .admit("/validate", &review_as("CREATE", namespace, p, "mallory"))
                .await;
            assert_eq!(response["allowed"], false, "{what} in {namespace}");
            assert_eq!(
                message(&response),
                format!(
                    "pods \"p\" is forbidden: ids in provisioning.uidRange and provisioning.gidRange belong to provisioned identities, and the pod holds none of these: {found}"
                ),
                "{what} in {namespace}"
            );
        }
    }
}
