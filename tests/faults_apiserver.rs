//! The API server unreachable, then back: reviews that need no API data
//! (namespaces in the cache) continue; those that need it (a namespace the
//! cache does not hold, the identity ConfigMap write) fail closed with a
//! message naming what failed; and when the API server is back, the
//! namespace watch recovers by itself, changes made meanwhile included.
//!
//! The API server is a small fake behind `kube::Client` (namespace
//! list/watch and GET, ConfigMap apply), switched off for a minute (long
//! enough for the watch's backoff to reach its 30 s ceiling) and on again.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fixture, review_as, review_for};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use unroot::namespaces::Namespaces;
use unroot::readiness::Readiness;
use unroot::server::{IdentityStore, KubeStore};

const HUB: &str = "system:serviceaccount:jupyterhub:hub";
/// How long the API server is unreachable.
const OUTAGE: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Fake {
    up: AtomicBool,
    /// Namespace name → labels, as listed and watched.
    namespaces: Mutex<BTreeMap<String, Value>>,
    version: Mutex<u64>,
}

impl Fake {
    fn meta(name: &str, labels: &Value, version: u64) -> Value {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
               "metadata": {"name": name, "labels": labels, "resourceVersion": version.to_string()}})
    }

    /// Every namespace, as of `version`.
    fn listed(&self, version: u64) -> Vec<Value> {
        self.namespaces
            .lock()
            .unwrap()
            .iter()
            .map(|(n, l)| Self::meta(n, l, version))
            .collect()
    }

    async fn answer(&self, req: hyper::Request<kube::client::Body>) -> Result<Value, String> {
        if !self.up.load(Ordering::SeqCst) {
            return Err("connection refused (the fake API server is down)".to_owned());
        }
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let method = req.method().clone();
        let body = req
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let version = *self.version.lock().unwrap();
        Ok(match (method.as_str(), parts.as_slice()) {
            ("GET", ["api", "v1", "namespaces"]) if query.contains("watch=true") => {
                // Every namespace as a MODIFIED event when anything changed
                // since the client's resourceVersion, then the watch ends soon and the client
                // watches again.
                let since = query
                    .split('&')
                    .find_map(|p| p.strip_prefix("resourceVersion="))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(200)).await;
                if since >= version {
                    return Ok(Value::Null);
                }
                let events = self.listed(version);
                return Ok(Value::Array(events));
            }
            ("GET", ["api", "v1", "namespaces"]) => {
                let items = self.listed(version);
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                       "metadata": {"resourceVersion": version.to_string()}, "items": items})
            }
            ("GET", ["api", "v1", "namespaces", name]) => Self::meta(name, &json!({}), version),
            ("PATCH", ["api", "v1", "namespaces", _, "configmaps", _]) => {
                serde_json::from_slice(&body).map_err(|e| e.to_string())?
            }
            _ => return Err(format!("unexpected {method} {path}")),
        })
    }
}

fn client(fake: &Arc<Fake>) -> kube::Client {
    let fake = Arc::clone(fake);
    let service = tower::service_fn(move |req: hyper::Request<kube::client::Body>| {
        let fake = Arc::clone(&fake);
        async move {
            let value = fake.answer(req).await?;
            // A watch's events go one per line, "type" first.
            let bytes = match value {
                Value::Null => Vec::new(),
                Value::Array(objects) => {
                    let mut lines = Vec::new();
                    for o in objects {
                        lines.extend_from_slice(br#"{"type":"MODIFIED","object":"#);
                        lines.extend_from_slice(o.to_string().as_bytes());
                        lines.extend_from_slice(b"}\n");
                    }
                    lines
                }
                value => value.to_string().into_bytes(),
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                hyper::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(hyper::body::Bytes::from(bytes)))
                    .unwrap(),
            )
        }
    });
    kube::Client::new(service, "default")
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "app", "image": "x"}]}})
}

fn message(response: &Value) -> &str {
    response["status"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one story: up, down, up again
async fn an_unreachable_api_server_fails_closed_only_where_it_must_and_recovers() {
    let fake = Arc::new(Fake::default());
    fake.up.store(true, Ordering::SeqCst);
    fake.namespaces.lock().unwrap().extend([
        ("team-a".to_owned(), json!({})),
        (
            "hub-users".to_owned(),
            json!({"unroot.dev/provisioning": "enabled"}),
        ),
    ]);
    let kube = client(&fake);
    let readiness = Arc::new(Readiness::new(&[]));
    let namespaces = Namespaces::watch(kube.clone(), &readiness);
    let server = common::start_with(common::Options {
        policy: common::provisioning_policy(),
        namespace_source: Some(namespaces),
        identity_store: Some(Arc::new(KubeStore::new(kube.clone())) as Arc<dyn IdentityStore>),
        kube: Some(kube),
        // The API server's own reviews: a cache miss reads the namespace.
        authenticated: true,
        ..Default::default()
    })
    .await;
    let synced = Instant::now();
    while readiness.unready().is_some() {
        assert!(
            synced.elapsed() < Duration::from_secs(10),
            "the cache syncs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let notebook = review_as(
        "CREATE",
        "hub-users",
        &fixture("tests/fixtures/provisioning/notebook.yaml"),
        HUB,
    );
    let admitted = |response: &Value| response["allowed"] == true && response["patch"].is_string();
    assert!(admitted(
        &server
            .admit("/mutate", &review_for("CREATE", "team-a", &pod("a0")))
            .await
    ));
    assert!(admitted(
        &server
            .admit("/mutate", &review_for("CREATE", "fresh", &pod("f0")))
            .await
    ));
    assert!(admitted(&server.admit("/mutate", &notebook).await));

    // Down. Meanwhile team-a is switched to harden=off.
    fake.up.store(false, Ordering::SeqCst);
    fake.namespaces
        .lock()
        .unwrap()
        .insert("team-a".to_owned(), json!({"unroot.dev/harden": "off"}));
    *fake.version.lock().unwrap() += 1;
    let outage = Instant::now();
    let mut cached = 0;
    while outage.elapsed() < OUTAGE {
        // Needs no API data: the cached labels decide.
        let response = server
            .admit(
                "/mutate",
                &review_for("CREATE", "team-a", &pod(&format!("a{cached}"))),
            )
            .await;
        assert!(admitted(&response), "{response:#}");
        let response = server
            .admit("/validate", &review_for("CREATE", "team-a", &pod("v")))
            .await;
        assert_eq!(response["allowed"], true, "{response:#}");
        cached += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cached >= 200, "{cached}");
    // Needs the API server: denied, saying what failed.
    for path in ["/mutate", "/validate"] {
        let response = server
            .admit(path, &review_for("CREATE", "elsewhere", &pod("e")))
            .await;
        assert_eq!(response["allowed"], false, "{path}: {response:#}");
        assert!(
            message(&response)
                .starts_with("Internal error occurred: failed to lookup namespace \"elsewhere\""),
            "{path}: {}",
            message(&response)
        );
    }
    let response = server.admit("/mutate", &notebook).await;
    assert_eq!(response["allowed"], false, "{response:#}");
    assert!(
        message(&response)
            .starts_with("failed to apply the identity ConfigMap hub-users/unroot-identity-alice"),
        "{}",
        message(&response)
    );

    // Back: the same requests pass, and the watch catches up by itself.
    fake.up.store(true, Ordering::SeqCst);
    assert!(admitted(
        &server
            .admit("/mutate", &review_for("CREATE", "elsewhere", &pod("e1")))
            .await
    ));
    assert!(admitted(&server.admit("/mutate", &notebook).await));
    let back = Instant::now();
    loop {
        let response = server
            .admit("/mutate", &review_for("CREATE", "team-a", &pod("late")))
            .await;
        if response["allowed"] == true && response["patch"].is_null() {
            eprintln!(
                "{cached} cached reviews answered during a {OUTAGE:?} outage; the watch caught up {:?} after it",
                back.elapsed()
            );
            break; // harden=off, set during the outage, is in force
        }
        // The watch retries at most 30 s apart (kube-runtime's backoff).
        assert!(
            back.elapsed() < Duration::from_secs(45),
            "the namespace watch did not recover: {response:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.shutdown().await;
}
