//! User provisioning over real TLS: the spawner's pod gets the identity, the
//! init container and the mounts, the identity ConfigMap is applied (not on
//! dry-run), and forged identities are denied with the rule they break.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{RecordingStore, apply, fixture, golden, labels, patch_of, review_as};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use unroot::mutate::{Input, Requester, provenance_index};
use unroot::policy::{Document, DocumentFile as _};
use unroot::server::IdentityStore;

const POLICY: &str = "tests/fixtures/provisioning/policy.yaml";
const NOTEBOOK: &str = "tests/fixtures/provisioning/notebook.yaml";
const HUB: &str = "system:serviceaccount:jupyterhub:hub";

fn policy() -> Document {
    Document::from_file(std::path::Path::new(POLICY)).unwrap()
}

/// The provisioning policy, `hub-users` selected for provisioning and
/// `team-a` not, and identity ConfigMaps going to `store`.
fn hub(store: Option<Arc<dyn IdentityStore>>) -> common::Options {
    let mut options = common::Options {
        identity_store: store,
        ..common::hub(Arc::new(RecordingStore::default()))
    };
    options
        .namespace_labels
        .insert("team-a".to_owned(), labels(&[]));
    options
}

async fn start(store: Option<Arc<RecordingStore>>) -> common::Server {
    common::start_with(hub(store.map(|s| s as Arc<dyn IdentityStore>))).await
}

fn message(response: &Value) -> (u64, &str) {
    (
        response["status"]["code"].as_u64().unwrap(),
        response["status"]["message"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn the_spawners_pod_is_provisioned_and_its_configmap_applied() {
    let store = Arc::new(RecordingStore::default());
    let server = start(Some(Arc::clone(&store))).await;
    let object = fixture(NOTEBOOK);
    let response = server
        .admit("/mutate", &review_as("CREATE", "hub-users", &object, HUB))
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    golden(
        "tests/fixtures/provisioning/notebook.patch.json",
        &serde_json::to_value(patch_of(&response)).unwrap(),
    );
    let mutated = apply(&object, &response);
    assert_eq!(
        mutated["spec"]["initContainers"][0]["name"],
        "unroot-provision"
    );
    assert_eq!(mutated["spec"]["securityContext"]["runAsUser"], 1001);
    assert_eq!(mutated["spec"]["securityContext"]["runAsNonRoot"], true);
    assert!(response.get("warnings").is_none(), "{response:#}");

    let applied = store.applied();
    assert_eq!(applied.len(), 1);
    let cm = &applied[0];
    assert_eq!(cm.metadata.name.as_deref(), Some("unroot-identity-alice"));
    assert_eq!(cm.metadata.namespace.as_deref(), Some("hub-users"));
    let written = &cm.metadata.annotations.as_ref().unwrap()[unroot::identities::APPLIED_AT];
    assert!(
        written.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
        "{written}"
    );
    let data = cm.data.as_ref().unwrap();
    assert!(data["passwd"].ends_with("alice:x:1001:1001::/home/alice:/bin/sh\n"));
    assert!(data["group"].ends_with("research:x:2001:alice\nstaff:x:2002:alice\n"));

    // The validating webhook will find the injected container by provenance.
    let typed: Pod = serde_json::from_value(mutated.clone()).unwrap();
    let (policy, ns) = (policy(), labels(&[("unroot.dev/provisioning", "enabled")]));
    let input = Input {
        policy: &policy,
        namespace_labels: &ns,
        requester: HUB,
    };
    assert_eq!(
        provenance_index(&typed, &input, Requester::MustBeTrusted),
        Some(0)
    );

    // Reinvocation: no new patch; the ConfigMap is applied again (SSA is
    // idempotent).
    let again = server
        .admit("/mutate", &review_as("CREATE", "hub-users", &mutated, HUB))
        .await;
    assert!(again.get("patch").is_none(), "{again:#}");
    assert_eq!(store.applied().len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn dry_run_patches_but_writes_no_configmap() {
    let store = Arc::new(RecordingStore::default());
    let server = start(Some(Arc::clone(&store))).await;
    let mut review = review_as("CREATE", "hub-users", &fixture(NOTEBOOK), HUB);
    review["request"]["dryRun"] = json!(true);
    let response = server.admit("/mutate", &review).await;
    assert_eq!(response["allowed"], true);
    assert!(response["patch"].is_string());
    assert!(store.applied().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn forged_identities_are_denied_naming_the_rule() {
    let store = Arc::new(RecordingStore::default());
    let server = start(Some(Arc::clone(&store))).await;
    let notebook = fixture(NOTEBOOK);
    let mut root = notebook.clone();
    root["metadata"]["annotations"]["unroot.dev/uid"] = json!("0");
    let mut outside = notebook.clone();
    outside["metadata"]["annotations"]["unroot.dev/gid"] = json!("65534");
    let mut dotted = notebook.clone();
    dotted["metadata"]["annotations"]["unroot.dev/user"] = json!("Alice.Smith");
    let cases = [
        (
            "tenant claiming alice",
            review_as("CREATE", "hub-users", &notebook, "bob"),
            "identity claim denied: requester \"bob\" is not in provisioning.trustedRequesters: only the platform's spawner may set unroot.dev/user, unroot.dev/uid, unroot.dev/gid, unroot.dev/groups",
        ),
        (
            "namespace not selected",
            review_as("CREATE", "team-a", &notebook, HUB),
            "identity claim denied: the pod sets unroot.dev/user, unroot.dev/uid, unroot.dev/gid, unroot.dev/groups, but its namespace is not selected by provisioning.namespaceSelector",
        ),
        (
            "uid 0",
            review_as("CREATE", "hub-users", &root, HUB),
            "identity claim denied: unroot.dev/uid: 0 is root and can never be claimed",
        ),
        (
            "gid outside the range",
            review_as("CREATE", "hub-users", &outside, HUB),
            "identity claim denied: unroot.dev/gid: 65534 is outside provisioning.gidRange (1000-60000)",
        ),
        (
            "non-portable name",
            review_as("CREATE", "hub-users", &dotted, HUB),
            "identity claim denied: unroot.dev/user: \"Alice.Smith\" is not a portable user name ([a-z_][a-z0-9_-]*[$]?, at most 32 characters)",
        ),
    ];
    for (what, review, want) in cases {
        let response = server.admit("/mutate", &review).await;
        assert_eq!(response["allowed"], false, "{what}");
        assert_eq!(message(&response), (403, want), "{what}");
        assert_eq!(response["status"]["reason"], "Forbidden", "{what}");
        assert!(response.get("patch").is_none(), "{what}");
    }
    assert!(store.applied().is_empty());
    let denied = r#"unroot_admission_requests_total{kind="Pod",operation="CREATE",outcome="denied",webhook="mutate"}"#;
    assert_eq!(server.metric(denied).await, Some(5.0));
    server.shutdown().await;
}

#[tokio::test]
async fn without_a_store_or_when_the_apply_fails_the_pod_is_refused() {
    let review = review_as("CREATE", "hub-users", &fixture(NOTEBOOK), HUB);

    let server = start(None).await;
    let response = server.admit("/mutate", &review).await;
    assert_eq!(
        message(&response),
        (
            500,
            "unroot cannot provision this pod: writing the identity ConfigMap hub-users/unroot-identity-alice needs a Kubernetes client, and this unroot runs without one (run it in the cluster, or remove the unroot.dev/ identity annotations)"
        )
    );
    server.shutdown().await;

    let failing = Arc::new(RecordingStore {
        fail: Some("configmaps \"unroot-identity-alice\" is forbidden".to_owned()),
        ..Default::default()
    });
    let server = start(Some(failing)).await;
    let response = server.admit("/mutate", &review).await;
    assert_eq!(
        message(&response),
        (
            500,
            "failed to apply the identity ConfigMap hub-users/unroot-identity-alice: configmaps \"unroot-identity-alice\" is forbidden"
        )
    );
    assert!(response.get("patch").is_none());
    server.shutdown().await;
}

/// Without `--client-ca` (and without `--unauthenticated-provisioning`)
/// anyone who reaches the port could forge the spawner's review: the side
/// effect is refused, and nothing is written.
#[tokio::test]
async fn unauthenticated_callers_cause_no_identity_configmap_write() {
    let store = Arc::new(RecordingStore::default());
    let server = common::start_with(common::Options {
        side_effects: unroot::server::SideEffects::Refused,
        ..hub(Some(Arc::clone(&store) as Arc<dyn IdentityStore>))
    })
    .await;
    let review = review_as("CREATE", "hub-users", &fixture(NOTEBOOK), HUB);
    let response = server.admit("/mutate", &review).await;
    assert_eq!(response["allowed"], false, "{response:#}");
    let (code, text) = message(&response);
    assert_eq!(code, 403);
    assert!(
        text.starts_with(
            "unroot does not provision pods for unauthenticated callers: writing the identity ConfigMap hub-users/unroot-identity-alice is a side effect, and this unroot runs without --client-ca"
        ),
        "{text}"
    );
    assert!(text.contains("--unauthenticated-provisioning"), "{text}");
    assert!(store.applied().is_empty());
    // A pod that needs no identity ConfigMap is served as ever.
    let plain = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "a", "image": "x"}]}});
    let response = server
        .admit("/mutate", &review_as("CREATE", "hub-users", &plain, HUB))
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    server.shutdown().await;
}

#[tokio::test]
async fn pods_without_identity_need_no_store() {
    let server = start(None).await;
    let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "a", "image": "x"}]}});
    let response = server
        .admit("/mutate", &review_as("CREATE", "hub-users", &object, "bob"))
        .await;
    assert_eq!(response["allowed"], true);
    assert_eq!(
        apply(&object, &response)["spec"]["securityContext"]["runAsUser"],
        65532
    );
    server.shutdown().await;
}

/// A store that reloads the policy while the review is being decided.
#[derive(Debug, Default)]
struct ReloadingStore {
    policy: std::sync::OnceLock<Arc<arc_swap::ArcSwap<unroot::policy::Snapshot>>>,
}

impl IdentityStore for ReloadingStore {
    fn apply(
        &self,
        _config_map: k8s_openapi::api::core::v1::ConfigMap,
    ) -> futures::future::BoxFuture<'_, unroot::cluster::Result<()>> {
        Box::pin(async move {
            let mut reloaded = policy();
            reloaded.security_context.run_as_user = 4242;
            if let Some(current) = self.policy.get() {
                current.store(Arc::new(unroot::policy::Snapshot::new(reloaded)));
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn the_policy_hash_names_the_policy_that_decided_even_across_a_reload() {
    let store = Arc::new(ReloadingStore::default());
    let server = common::start_with(hub(Some(Arc::clone(&store) as Arc<dyn IdentityStore>))).await;
    let state = server.state.clone().unwrap();
    store.policy.set(Arc::clone(&state.policy)).unwrap();
    let deciding = state.policy.load().hash.clone();
    let response = server
        .admit(
            "/mutate",
            &review_as("CREATE", "hub-users", &fixture(NOTEBOOK), HUB),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    assert_ne!(state.policy.load().hash, deciding, "the store reloaded");
    assert_eq!(
        response["auditAnnotations"]["policy-hash"],
        deciding.as_str()
    );
    server.shutdown().await;
}

/// A server whose `hub-users` namespace enforces restricted (homes on a
/// PersistentVolumeClaim: restricted does not allow nfs volumes).
async fn start_restricted() -> common::Server {
    let mut policy = policy();
    policy.provisioning.home_volume.as_mut().unwrap().source =
        serde_json::from_value(json!({"persistentVolumeClaim": {"claimName": "homes"}})).unwrap();
    common::start_with(common::Options {
        policy,
        namespace_labels: BTreeMap::from([(
            "hub-users".to_owned(),
            labels(&[
                ("unroot.dev/provisioning", "enabled"),
                ("unroot.dev/enforce", "restricted"),
            ]),
        )]),
        identity_store: Some(Arc::new(RecordingStore::default()) as Arc<dyn IdentityStore>),
        ..Default::default()
    })
    .await
}

/// The notebook as the spawner's CREATE stores it.
async fn stored_notebook(server: &common::Server) -> Value {
    let object = fixture(NOTEBOOK);
    let response = server
        .admit("/mutate", &review_as("CREATE", "hub-users", &object, HUB))
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    let stored = apply(&object, &response);
    let created = server
        .admit("/validate", &review_as("CREATE", "hub-users", &stored, HUB))
        .await;
    assert_eq!(
        created["allowed"], true,
        "the spawner's pod is admitted: {created:#}"
    );
    stored
}

fn update_as(old: &Value, new: &Value, sub_resource: Option<&str>, user: &str) -> Value {
    let mut review = review_as("UPDATE", "hub-users", new, user);
    review["request"]["oldObject"] = old.clone();
    if let Some(sub) = sub_resource {
        review["request"]["subResource"] = json!(sub);
    }
    review
}

#[tokio::test]
async fn anyone_may_debug_a_provisioned_pod_under_restricted() {
    let server = start_restricted().await;
    let stored = stored_notebook(&server).await;
    let mut debugged = stored.clone();
    debugged["spec"]["ephemeralContainers"] = json!([{
        "name": "debugger", "image": "busybox",
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
    }]);
    // `kubectl debug` by an operator who is not the spawner: the stored pod
    // vouches for its provisioning container, so only the new container is
    // judged, and it complies.
    let response = server
        .admit(
            "/validate",
            &update_as(&stored, &debugged, Some("ephemeralcontainers"), "operator"),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    // A root debug container is still denied, naming only that container.
    debugged["spec"]["ephemeralContainers"][0]["securityContext"] = json!({"runAsUser": 0});
    let response = server
        .admit(
            "/validate",
            &update_as(&stored, &debugged, Some("ephemeralcontainers"), "operator"),
        )
        .await;
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("container \"debugger\""), "{message}");
    assert!(!message.contains("unroot-provision"), "{message}");
    server.shutdown().await;
}

#[tokio::test]
async fn identity_annotations_cannot_be_added_or_changed_after_creation() {
    let server = start_restricted().await;
    let stored = stored_notebook(&server).await;
    // The spawner itself cannot rewrite an identity in place...
    let mut changed = stored.clone();
    changed["metadata"]["annotations"]["unroot.dev/uid"] = json!("1002");
    let response = server
        .admit("/validate", &update_as(&stored, &changed, None, HUB))
        .await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    assert_eq!(
        response["status"]["message"],
        "pods \"jupyter-alice\" is forbidden: unroot.dev/uid cannot change after the pod is created: they name the identity unroot provisioned for it (delete and recreate the pod to change them)"
    );
    // ... and a tenant cannot make a look-alike pod claim one after the fact.
    let mut plain = fixture(NOTEBOOK);
    plain["metadata"]["annotations"] = json!({});
    plain["spec"]["initContainers"] = stored["spec"]["initContainers"].clone();
    let mut claimed = plain.clone();
    claimed["metadata"]["annotations"] = stored["metadata"]["annotations"].clone();
    let response = server
        .admit("/validate", &update_as(&plain, &claimed, None, "tenant"))
        .await;
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "unroot.dev/user, unroot.dev/uid, unroot.dev/gid, unroot.dev/groups cannot change"
        ),
        "{message}"
    );
    // Other annotation changes stay free.
    let mut labelled = stored.clone();
    labelled["metadata"]["annotations"]["note"] = json!("x");
    let response = server
        .admit("/validate", &update_as(&stored, &labelled, None, "tenant"))
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    server.shutdown().await;
}
