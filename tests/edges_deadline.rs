//! The review deadline over real TLS: every wait on the API server (the
//! namespace lookup on a cache miss, the pod read, the identity ConfigMap
//! write, the existing-pods list) ends at min(`?timeout=`, the maximum)
//! minus a margin; the pod is then denied naming the step, and nothing is
//! written after the deadline.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fixture, review_as, review_for};
use futures::future::BoxFuture;
use http_body_util::BodyExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde_json::{Value, json};
use unroot::namespaces::Namespaces;
use unroot::readiness::Readiness;
use unroot::server::{IdentityStore, Limits, PodLister};

const HUB: &str = "system:serviceaccount:jupyterhub:hub";

/// An identity store that takes `delay` to write; a write abandoned before
/// then is never recorded (as a request cancelled before it was sent).
#[derive(Debug)]
struct SlowStore {
    delay: Duration,
    started: AtomicUsize,
    applied: Mutex<Vec<ConfigMap>>,
}

impl SlowStore {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            delay,
            started: AtomicUsize::new(0),
            applied: Mutex::new(Vec::new()),
        })
    }
}

impl IdentityStore for SlowStore {
    fn apply(&self, config_map: ConfigMap) -> BoxFuture<'_, unroot::cluster::Result<()>> {
        self.started.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.applied.lock().unwrap().push(config_map);
            Ok(())
        })
    }
}

/// A pod lister that ignores its deadline and never answers in time.
#[derive(Debug)]
struct HangingPods;

impl PodLister for HangingPods {
    fn list(&self, _: &str, _: Instant) -> BoxFuture<'_, unroot::cluster::Result<Vec<Pod>>> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Vec::new())
        })
    }
}

/// A fake API server: the namespace list/watch never answers (so every
/// lookup misses the cache), a namespace GET takes `namespace_delay`, a pod
/// GET `pod_delay`.
fn fake_api(namespace_delay: Duration, pod_delay: Duration) -> kube::Client {
    let service = tower::service_fn(move |req: hyper::Request<kube::client::Body>| async move {
        let path = req.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let body = match parts.as_slice() {
            ["api", "v1", "namespaces", name] => {
                tokio::time::sleep(namespace_delay).await;
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                       "metadata": {"name": name, "labels": {}}})
            }
            ["api", "v1", "namespaces", ns, "pods", name] => {
                tokio::time::sleep(pod_delay).await;
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                       "spec": {"containers": [{"name": "app", "image": "x"}]}})
            }
            _ => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                json!({})
            }
        };
        let _ = req.into_body().collect().await;
        Ok::<_, std::convert::Infallible>(
            hyper::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(hyper::body::Bytes::from(
                    body.to_string(),
                )))
                .unwrap(),
        )
    });
    kube::Client::new(service, "default")
}

async fn timed_admit(server: &common::Server, path: &str, review: &Value) -> (Value, Duration) {
    let started = Instant::now();
    let response = server.admit(path, review).await;
    (response, started.elapsed())
}

fn message(response: &Value) -> &str {
    response["status"]["message"].as_str().unwrap_or_default()
}

fn plain_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "app", "image": "x"}]}})
}

#[tokio::test]
async fn a_namespace_lookup_that_outlives_the_deadline_denies_the_pod_naming_it() {
    let client = fake_api(Duration::from_secs(30), Duration::ZERO);
    let server = common::start_with(common::Options {
        namespace_source: Some(Namespaces::watch(
            client.clone(),
            &Arc::new(Readiness::new(&[])),
        )),
        kube: Some(client),
        // Reads on a cache miss and the pod read are an authenticated
        // caller's.
        authenticated: true,
        ..Default::default()
    })
    .await;
    for path in ["/mutate?timeout=1s", "/validate?timeout=1s"] {
        let (response, took) = timed_admit(
            &server,
            path,
            &review_for("CREATE", "slow", &plain_pod("p")),
        )
        .await;
        assert_eq!(response["allowed"], false, "{path}: {response:#}");
        assert_eq!(response["status"]["code"], 504, "{path}");
        assert!(
            message(&response).starts_with(
                "unroot ran out of time while reading the labels of namespace \"slow\" (the review's deadline is 0.9 s"
            ),
            "{path}: {}",
            message(&response)
        );
        // 1 s minus a tenth, plus the way there and back.
        assert!(
            took >= Duration::from_millis(850) && took < Duration::from_millis(1500),
            "{path}: {took:?}"
        );
    }
    // Without ?timeout=, the configured maximum bounds it.
    let server = common::start_with(common::Options {
        namespace_source: Some(Namespaces::watch(
            fake_api(Duration::from_secs(30), Duration::ZERO),
            &Arc::new(Readiness::new(&[])),
        )),
        limits: Limits::new(
            Duration::from_millis(600),
            unroot::server::limits::DEFAULT_MAX_CONCURRENT_REVIEWS,
            unroot::server::limits::DEFAULT_MAX_BUFFERED_BYTES,
        ),
        ..Default::default()
    })
    .await;
    let (response, took) = timed_admit(
        &server,
        "/mutate",
        &review_for("CREATE", "slow", &plain_pod("q")),
    )
    .await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("(the review's deadline is 0.54 s"),
        "{response:#}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test]
async fn the_pod_read_for_ephemeral_containers_is_bounded_too() {
    let client = fake_api(Duration::ZERO, Duration::from_secs(30));
    let server = common::start_with(common::Options {
        namespace_source: Some(Namespaces::watch(
            client.clone(),
            &Arc::new(Readiness::new(&[])),
        )),
        kube: Some(client),
        // Reads on a cache miss and the pod read are an authenticated
        // caller's.
        authenticated: true,
        ..Default::default()
    })
    .await;
    let list = json!({"apiVersion": "v1", "kind": "EphemeralContainers", "metadata": {"name": "dbg"},
        "ephemeralContainers": [{"name": "debug", "image": "busybox"}]});
    let mut review = review_for("UPDATE", "team-a", &list);
    review["request"]["subResource"] = json!("ephemeralcontainers");
    review["request"]["resource"]["resource"] = json!("pods");
    let (response, took) = timed_admit(&server, "/validate?timeout=1s", &review).await;
    assert_eq!(response["allowed"], false, "{response:#}");
    assert!(
        message(&response).starts_with(
            "unroot ran out of time while reading pod \"dbg\" for its ephemeral containers"
        ),
        "{}",
        message(&response)
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

async fn provisioning(store: &Arc<SlowStore>) -> common::Server {
    common::start_with(common::hub(Arc::clone(store) as Arc<dyn IdentityStore>)).await
}

/// Sends the notebook's review to `path` and checks it is denied for running
/// out of time at the identity ConfigMap write; returns the review and how
/// long the answer took.
async fn identity_write_out_of_time(server: &common::Server, path: &str) -> (Value, Duration) {
    let notebook = fixture("tests/fixtures/provisioning/notebook.yaml");
    let review = review_as("CREATE", "hub-users", &notebook, HUB);
    let (response, took) = timed_admit(server, path, &review).await;
    assert_eq!(response["allowed"], false, "{response:#}");
    assert!(
        message(&response).starts_with(
            "unroot ran out of time while writing the identity ConfigMap hub-users/unroot-identity-alice"
        ),
        "{}",
        message(&response)
    );
    (review, took)
}

#[tokio::test]
async fn an_identity_write_is_abandoned_at_the_deadline_and_never_lands_late() {
    let store = SlowStore::new(Duration::from_secs(2));
    let server = provisioning(&store).await;
    let (review, took) = identity_write_out_of_time(&server, "/mutate?timeout=1s").await;
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(store.started.load(Ordering::SeqCst), 1);
    // Long after the store would have finished: the abandoned write never
    // happened.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(store.applied.lock().unwrap().is_empty());

    // In time, the same review is provisioned.
    let (response, _) = timed_admit(&server, "/mutate?timeout=10s", &review).await;
    assert_eq!(response["allowed"], true, "{response:#}");
    assert_eq!(store.applied.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn no_write_starts_once_the_deadline_has_passed() {
    let store = SlowStore::new(Duration::ZERO);
    let server = provisioning(&store).await;
    // A zero timeout: the deadline has passed when the mutation is ready.
    identity_write_out_of_time(&server, "/mutate?timeout=0").await;
    assert_eq!(
        store.started.load(Ordering::SeqCst),
        0,
        "the write never started"
    );
}

#[tokio::test]
async fn a_pod_list_that_ignores_its_deadline_is_cut_off_at_the_reviews() {
    let server = common::start_with(common::Options {
        pods: Some(Arc::new(HangingPods) as Arc<dyn PodLister>),
        ..Default::default()
    })
    .await;
    let new = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"unroot.dev/enforce": "restricted"}}});
    let old = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}});
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "uid-ns",
            "kind": {"group": "", "version": "v1", "kind": "Namespace"},
            "resource": {"group": "", "version": "v1", "resource": "namespaces"},
            "name": "team-a", "namespace": "team-a", "operation": "UPDATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": new, "oldObject": old,
        }
    });
    let (response, took) = timed_admit(&server, "/validate?timeout=1s", &review).await;
    // Upstream's answer to a list that failed: allowed, with a warning.
    assert_eq!(response["allowed"], true, "{response:#}");
    assert_eq!(
        common::warnings_of(&response),
        ["failed to list pods while checking new PodSecurity enforce level"]
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");
}
