//! Callers are who they say (issue 21, path 5), each closed path with the
//! attacker's request as the fixture:
//!
//! - with `--client-ca`, a certificate from that CA for a name
//!   `--client-ca-name` does not accept (a kubelet's, from a cluster CA)
//!   is refused at the TLS handshake, counted, and never gets HTTP;
//! - without it, a forged review reads nothing from the cluster beyond
//!   what it holds: a namespace dry run counts the violating pods without
//!   naming one, a 1.20/1.21 ephemeral-containers review reads no pod, a
//!   namespace cache miss makes no API call (and still fails closed);
//! - a flood of unauthenticated audit records drops only unauthenticated
//!   records.
//!
//! And the admin port (path 8): it serves `/metrics`, `/healthz` and
//! `/readyz` only; the dashboard, the readiness report and every POST are on
//! a loopback-only listener, and `POST /report/run` is rate-limited.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http_body_util::BodyExt as _;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::PartialObjectMeta;
use kube::runtime::watcher;
use serde_json::{Value, json};
use unroot::namespaces::Namespaces;
use unroot::server::{PodLister, PodReader};

use common::{APISERVER_CLIENT, ClientCa, review_for};

const UNAUTHENTICATED: &str = r#"unroot_tls_handshake_failures_total{reason="unauthenticated"}"#;

fn message(response: &Value) -> &str {
    response["status"]["message"].as_str().unwrap_or_default()
}

fn warnings(response: &Value) -> Vec<String> {
    common::warnings_of(response)
}

// --- names on the client CA -----------------------------------------------

/// A kubeadm cluster CA signs the API server's client certificates, every
/// kubelet's and every user's: with `--client-ca` set to it, only the name
/// given with `--client-ca-name` gets in. A kubelet's certificate from the
/// same CA is refused at the handshake, before any HTTP, and counted.
#[tokio::test]
async fn a_certificate_from_the_client_ca_for_another_name_is_refused_at_the_handshake() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (serving_ca, resolver) = common::serving_resolver();
    let cluster_ca = ClientCa::new("kubernetes");
    let server = common::start_with(common::Options {
        tls: Some(cluster_ca.required_by(resolver, &[APISERVER_CLIENT])),
        ..Default::default()
    })
    .await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    let review = review_for("CREATE", "default", &pod);
    let post = |identity: (String, String)| {
        let (addr, ca, review) = (server.addr, serving_ca.clone(), review.clone());
        async move { common::post_review_with_identity(addr, &ca, Some(&identity), &review).await }
    };

    // The attacker: a node's kubelet certificate, and a user's.
    for (what, identity) in [
        (
            "a kubelet's certificate",
            cluster_ca.client_cert("system:node:worker-1"),
        ),
        (
            "a user's certificate",
            cluster_ca.client_cert_with_dns("jane", &["jane.example.com"]),
        ),
    ] {
        let refused = post(identity).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("CertificateUnknown")),
            "{what}: refused at the TLS layer, got {refused:?}"
        );
    }
    assert_eq!(server.metric(UNAUTHENTICATED).await, Some(2.0));
    assert_eq!(
        server
            .metric(r#"unroot_admission_requests_total{kind="Pod",operation="CREATE",outcome="patched",webhook="mutate"}"#)
            .await,
        Some(0.0),
        "no refused caller got an HTTP answer"
    );

    // The API server: its name as the CN, or as a DNS SAN.
    assert_eq!(
        post(cluster_ca.client_cert(APISERVER_CLIENT)).await,
        Ok(200)
    );
    assert_eq!(
        post(cluster_ca.client_cert_with_dns("apiserver", &[APISERVER_CLIENT])).await,
        Ok(200)
    );
    assert_eq!(server.metric(UNAUTHENTICATED).await, Some(2.0));
    server.shutdown().await;
}

// --- the namespace dry run --------------------------------------------------

/// Pods a namespace holds, as the API server would list them.
#[derive(Debug)]
struct Listed(Vec<Pod>);

impl PodLister for Listed {
    fn list(
        &self,
        _namespace: &str,
        _deadline: Instant,
    ) -> BoxFuture<'_, unroot::cluster::Result<Vec<Pod>>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

fn listed_pod(name: &str, container: &str, privileged: bool) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "payroll"},
        "spec": {"containers": [{"name": container, "image": "x",
            "securityContext": {"privileged": privileged}}]}}))
    .unwrap()
}

/// The attacker's review: a namespace UPDATE raising `payroll` to
/// restricted, sent straight to the webhook port.
fn forged_namespace_update() -> Value {
    let ns = |labels: Value| {
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "payroll", "labels": labels}})
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "forged", "kind": {"group": "", "version": "v1", "kind": "Namespace"},
            "resource": {"group": "", "version": "v1", "resource": "namespaces"},
            "name": "payroll", "namespace": "payroll", "operation": "UPDATE",
            "userInfo": {"username": "mallory", "groups": ["system:authenticated"]},
            "object": ns(json!({"unroot.dev/enforce": "restricted"})),
            "oldObject": ns(json!({}))}})
}

/// Without `--client-ca`, the dry run of a raised enforce level still runs,
/// but its warnings count the violating pods and give the reasons without
/// naming a pod or a container; the API server's own (authenticated)
/// review is told which.
#[tokio::test]
async fn an_unauthenticated_namespace_dry_run_names_no_pod() {
    let pods = || {
        Some(Arc::new(Listed(vec![
            listed_pod("salaries-db-0", "postgres", true),
            listed_pod("salaries-export-7", "exporter", false),
            listed_pod("salaries-export-8", "exporter", false),
        ])) as Arc<dyn PodLister>)
    };
    let server = common::start_with(common::Options {
        pods: pods(),
        ..Default::default()
    })
    .await;
    let response = server.admit("/validate", &forged_namespace_update()).await;
    assert_eq!(response["allowed"], true);
    assert_eq!(
        warnings(&response),
        [
            "3 existing pods in namespace \"payroll\" violate the new PodSecurity enforce level \"restricted:latest\": allowPrivilegeEscalation != false, privileged, runAsNonRoot != true, seccompProfile, unrestricted capabilities (pods are named only to callers authenticated with --client-ca)"
        ]
    );
    for secret in ["salaries", "postgres", "exporter"] {
        assert!(
            !warnings(&response).iter().any(|w| w.contains(secret)),
            "{secret} in {:?}",
            warnings(&response)
        );
    }
    server.shutdown().await;

    let server = common::start_with(common::Options {
        pods: pods(),
        authenticated: true,
        ..Default::default()
    })
    .await;
    let response = server.admit("/validate", &forged_namespace_update()).await;
    assert!(
        warnings(&response)
            .iter()
            .any(|w| w.starts_with("salaries-db-0: privileged")),
        "the authenticated caller is told which: {:?}",
        warnings(&response)
    );
    server.shutdown().await;
}

// --- a fake API server -------------------------------------------------------

/// The paths a fake API server was asked for.
type Calls = Arc<Mutex<Vec<String>>>;

/// A kube client whose API server answers every GET with `body`, recording
/// the path.
fn fake_api(body: Value, calls: Calls) -> kube::Client {
    let service = tower::service_fn(move |req: hyper::Request<kube::client::Body>| {
        let (body, calls) = (body.clone(), Arc::clone(&calls));
        async move {
            calls.lock().unwrap().push(req.uri().path().to_owned());
            let _ = req.into_body().collect().await?;
            let response = hyper::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(hyper::body::Bytes::from(
                    serde_json::to_vec(&body).unwrap(),
                )))
                .unwrap();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response)
        }
    });
    kube::Client::new(service, "default")
}

// --- 1.20/1.21 ephemeral containers ------------------------------------------

/// The attacker's review: a 1.20-style ephemeral-containers UPDATE naming
/// another tenant's pod. Judging it would need the stored pod; reading it
/// for an unauthenticated caller would reveal it (a deny message lists its
/// containers).
fn forged_ephemeral_review() -> Value {
    let list = json!({"apiVersion": "v1", "kind": "EphemeralContainers", "metadata": {"name": "billing-api"},
        "ephemeralContainers": [{"name": "debug", "image": "busybox"}]});
    let mut review = review_for("UPDATE", "strict", &list);
    review["request"]["subResource"] = json!("ephemeralcontainers");
    review["request"]["resource"]["resource"] = json!("pods");
    let mut old = list;
    old["ephemeralContainers"] = json!([]);
    review["request"]["oldObject"] = old;
    review
}

#[tokio::test]
async fn an_unauthenticated_1_20_ephemeral_containers_review_reads_no_pod() {
    let stored = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "billing-api", "namespace": "strict"},
        "spec": {"containers": [{"name": "stripe-key-loader", "image": "x",
            "securityContext": {"privileged": true}}]}});
    let start = |authenticated: bool, calls: &Calls| {
        common::start_with(common::Options {
            namespaces: common::namespaces(&[("strict", &[("unroot.dev/enforce", "restricted")])]),
            kube: Some(fake_api(stored.clone(), Arc::clone(calls))),
            authenticated,
            ..Default::default()
        })
    };
    let calls = Calls::default();
    let server = start(false, &calls).await;
    let response = server.admit("/validate", &forged_ephemeral_review()).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    assert_eq!(
        message(&response),
        "unroot cannot judge ephemeral containers for pod \"billing-api\" from an unauthenticated caller: on Kubernetes 1.20 and 1.21 the review holds only the ephemeral containers, and unroot reads no pod from the API server for a caller without a client certificate, or a forged review would reveal any pod; start unroot with --client-ca and give the API server a client certificate (docs/hardening.md, \"mTLS from the API server\"), or use Kubernetes 1.22 or newer, whose review holds the whole pod"
    );
    assert!(
        calls.lock().unwrap().is_empty(),
        "no pod read: {:?}",
        calls.lock().unwrap()
    );
    server.shutdown().await;

    // The API server's own review: the pod is read and judged whole.
    let calls = Calls::default();
    let server = start(true, &calls).await;
    let response = server.admit("/validate", &forged_ephemeral_review()).await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("container \"stripe-key-loader\""),
        "{}",
        message(&response)
    );
    assert_eq!(
        *calls.lock().unwrap(),
        ["/api/v1/namespaces/strict/pods/billing-api"]
    );
    server.shutdown().await;
}

/// The stored pod as a stand-in for the API server has it (`None`: the
/// read fails as a missing pod's would), and the pods asked for.
#[derive(Debug, Default)]
struct StoredPods {
    pod: Option<Pod>,
    asked: Mutex<Vec<(String, String)>>,
}

impl PodReader for StoredPods {
    fn get(&self, namespace: &str, name: &str) -> BoxFuture<'_, unroot::cluster::Result<Pod>> {
        self.asked
            .lock()
            .unwrap()
            .push((namespace.to_owned(), name.to_owned()));
        let read = self
            .pod
            .clone()
            .ok_or_else(|| format!("pods {name:?} not found").into());
        Box::pin(async move { read })
    }
}

/// The stored pod of a 1.20/1.21 ephemeral-containers review is read
/// through the `PodReader` seam: what it returns is what is judged, and a
/// read that fails denies the review naming the pod and why.
#[tokio::test]
async fn the_stored_pod_of_a_1_20_ephemeral_containers_review_comes_from_the_pod_reader() {
    let stored: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "billing-api", "namespace": "strict"},
        "spec": {"containers": [{"name": "stripe-key-loader", "image": "x",
            "securityContext": {"privileged": true}}]}}))
    .unwrap();
    let start = |reader: &Arc<StoredPods>| {
        common::start_with(common::Options {
            namespaces: common::namespaces(&[("strict", &[("unroot.dev/enforce", "restricted")])]),
            stored_pods: Some(Arc::clone(reader) as Arc<dyn PodReader>),
            authenticated: true,
            ..Default::default()
        })
    };
    let reader = Arc::new(StoredPods {
        pod: Some(stored),
        ..StoredPods::default()
    });
    let server = start(&reader).await;
    let response = server.admit("/validate", &forged_ephemeral_review()).await;
    assert_eq!(response["allowed"], false);
    assert!(
        message(&response).contains("container \"stripe-key-loader\""),
        "{}",
        message(&response)
    );
    assert_eq!(
        *reader.asked.lock().unwrap(),
        [("strict".to_owned(), "billing-api".to_owned())]
    );
    server.shutdown().await;

    let gone = Arc::new(StoredPods::default());
    let server = start(&gone).await;
    let response = server.admit("/validate", &forged_ephemeral_review()).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 500);
    assert_eq!(
        message(&response),
        "Internal error occurred: failed to read pod \"billing-api\" to evaluate its ephemeral containers: pods \"billing-api\" not found"
    );
    server.shutdown().await;
}

// --- a namespace cache miss ---------------------------------------------------

fn cached_namespace(name: &str, labels: &Value) -> PartialObjectMeta<Namespace> {
    serde_json::from_value(
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": name, "labels": labels}}),
    )
    .unwrap()
}

/// Without `--client-ca`, a review of a namespace the cache does not hold
/// (the attacker names any namespace, or none that exists) makes no API
/// call and fails closed. A namespace created a moment before is waited
/// for on the watch, still without an API call.
#[tokio::test]
async fn an_unauthenticated_cache_miss_makes_no_api_call() {
    let privileged = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "busybox", "securityContext": {"privileged": true}}]}});
    let answer = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": "tenant", "labels": {"unroot.dev/enforce": "privileged"}}});
    let calls = Calls::default();
    let (store, mut writer) = kube::runtime::reflector::store();
    let server = common::start_with(common::Options {
        namespace_source: Some(Namespaces::cluster(
            store,
            kube::Api::all(fake_api(answer.clone(), Arc::clone(&calls))),
        )),
        ..Default::default()
    })
    .await;
    for path in ["/mutate", "/validate"] {
        let started = Instant::now();
        let response = server
            .admit(path, &review_for("CREATE", "tenant", &privileged))
            .await;
        assert_eq!(response["allowed"], false, "{path}: {response:#}");
        assert_eq!(response["status"]["code"], 500, "{path}");
        assert!(
            message(&response)
                .starts_with("Internal error occurred: failed to lookup namespace \"tenant\""),
            "{path}: {}",
            message(&response)
        );
        let why = if path == "/mutate" {
            message(&response).to_owned()
        } else {
            response["auditAnnotations"]["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            why.contains("namespace \"tenant\" is not in unroot's namespace cache, and unroot reads nothing from the API server for a caller without a client certificate (--client-ca)"),
            "{path}: {why}"
        );
        assert!(
            started.elapsed() < unroot::namespaces::WATCH_WAIT + Duration::from_millis(900),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    assert!(
        calls.lock().unwrap().is_empty(),
        "a forged review made unroot call the API server: {:?}",
        calls.lock().unwrap()
    );

    // A namespace the watch delivers while the review waits.
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer.apply_watcher_event(&watcher::Event::Apply(cached_namespace(
            "fresh",
            &json!({"unroot.dev/enforce": "privileged"}),
        )));
        writer
    });
    let response = server
        .admit("/validate", &review_for("CREATE", "fresh", &privileged))
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    assert!(calls.lock().unwrap().is_empty());
    let _writer = late.await.unwrap();
    server.shutdown().await;

    // The API server's own review reads the namespace on a miss.
    let server = common::start_with(common::Options {
        namespace_source: Some(Namespaces::cluster(
            kube::runtime::reflector::store().0,
            kube::Api::all(fake_api(answer, Arc::clone(&calls))),
        )),
        authenticated: true,
        ..Default::default()
    })
    .await;
    let response = server
        .admit("/validate", &review_for("CREATE", "tenant", &privileged))
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    assert_eq!(*calls.lock().unwrap(), ["/api/v1/namespaces/tenant"]);
    server.shutdown().await;
}

// --- the audit queue -----------------------------------------------------------

/// An audit sink that blocks until released: the writer thread is stuck, so
/// the queue fills.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>, Arc<Mutex<Vec<u8>>>);

impl Gate {
    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    fn lines(&self) -> Vec<Value> {
        String::from_utf8(self.1.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            open = self.0.1.wait(open).unwrap();
        }
        self.1.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends `review` `n` times over one keep-alive connection.
async fn flood(server: &common::Server, review: &Value, n: usize) {
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(server.connect().await))
            .await
            .unwrap();
    tokio::spawn(conn);
    let body = serde_json::to_vec(review).unwrap();
    for _ in 0..n {
        let request = hyper::Request::post("/validate")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(hyper::body::Bytes::from(
                body.clone(),
            )))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let _ = response.into_body().collect().await.unwrap();
    }
}

/// Forged reviews fill the audit queue only up to their share: the records
/// of authenticated callers that come after them all find a place, and the
/// drops are counted as the unauthenticated callers'.
#[tokio::test]
async fn a_flood_of_unauthenticated_audit_records_drops_none_of_the_authenticated_ones() {
    use unroot::audit::{QUEUE, Record};
    let gate = Gate::default();
    let server = common::start_with(common::Options {
        namespaces: common::namespaces(&[("strict", &[("unroot.dev/enforce", "restricted")])]),
        audit_sink: Some(Box::new(gate.clone())),
        ..Default::default()
    })
    .await;
    let privileged = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "forged"},
        "spec": {"containers": [{"name": "a", "image": "x", "securityContext": {"privileged": true}}]}});
    let forged = review_for("CREATE", "strict", &privileged);
    // Enough to fill the whole queue, were they let.
    flood(&server, &forged, QUEUE + 600).await;
    let dropped = |caller: &str| {
        format!(r#"unroot_audit_records_dropped_total{{caller="{caller}",reason="queue_full"}}"#)
    };
    let forged_drops = server.metric(&dropped("unauthenticated")).await.unwrap();
    // Half the queue is theirs at most; all but that, and what the writer
    // took before it blocked (at most a batch), is dropped.
    let floor = u32::try_from(QUEUE / 2 + 200).unwrap();
    assert!(forged_drops >= f64::from(floor), "{forged_drops}");

    // The API server's records: half the queue is reserved for them.
    let audit = &server.state.as_ref().unwrap().audit;
    let genuine = common::review_as(
        "CREATE",
        "strict",
        &privileged,
        "system:serviceaccount:ci:deployer",
    );
    let text = genuine["request"].to_string();
    let request: unroot::admission::Request<'_> = serde_json::from_str(&text).unwrap();
    let decision = unroot::admission::Decision::from(unroot::admission::Response::deny(
        "uid",
        403,
        "Forbidden",
        "denied",
    ));
    for _ in 0..(QUEUE / 2) {
        audit.record(&decision, || {
            Record::new("validate", &request, &decision, "h", Duration::ZERO)
                .with_authenticated(true)
        });
    }
    assert_eq!(server.metric(&dropped("authenticated")).await, Some(0.0));
    gate.open();
    assert!(audit.flush(Duration::from_secs(10)));
    let lines = gate.lines();
    assert_eq!(
        lines.iter().filter(|l| l["authenticated"] == true).count(),
        QUEUE / 2,
        "every authenticated record written"
    );
    let forged_lines = lines.iter().filter(|l| l["authenticated"] == false).count();
    // The writer takes what is queued before it first blocks (at most a
    // batch, 64 KiB, ~150 records): those no longer hold a place.
    assert!(
        forged_lines <= QUEUE / 2 + 400,
        "forged records took no more than their share: {forged_lines} written, {forged_drops} dropped"
    );
    server.shutdown().await;
}

// --- the admin port ---------------------------------------------------------------

/// The admin port is plain HTTP that Prometheus and the kubelet reach over
/// the pod network: it serves `/metrics`, `/healthz` and `/readyz`, and not
/// the dashboard (denials with user names), the readiness report
/// (namespaces) or any POST (`/report/run` lists every pod again). Those are
/// on the loopback-only dashboard listener.
#[tokio::test]
async fn the_dashboard_and_posts_are_not_served_on_the_admin_port() {
    let server = common::start().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(server.admin_get(path).await.status, 200, "{path}");
    }
    for reply in [
        server.admin_get("/dashboard").await,
        server.admin_get("/report").await,
        server.admin_post("/report/run").await,
        server.admin_get("/audit/report").await,
        server.admin_post("/audit/run").await,
        server.admin_post("/metrics").await,
    ] {
        assert!(
            reply.status == 404 || reply.status == 405,
            "{}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        let body = String::from_utf8_lossy(&reply.body);
        assert!(!body.contains("<html"), "{body}");
    }
    assert!(
        server.admin_get("/dashboard").await.json()["message"]
            .as_str()
            .unwrap()
            .contains("--dashboard-listen, default 127.0.0.1:8081")
    );
    let dashboard = server.dashboard_addr.unwrap();
    assert!(dashboard.ip().is_loopback());
    assert_eq!(server.dashboard_get("/dashboard").await.status, 200);
    assert_eq!(server.dashboard_get("/metrics").await.status, 200);
    let state = server.state.clone().unwrap();
    server.shutdown().await;

    // A dashboard address other hosts can reach is refused.
    let (_, resolver) = common::serving_resolver();
    let config = unroot::server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        dashboard_listen: "0.0.0.0:0".parse().unwrap(),
        ..unroot::server::Config::default()
    };
    let err = unroot::server::start(
        config,
        state,
        Arc::new(unroot::certs::server_config(resolver)),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("--dashboard-listen 0.0.0.0:0: the dashboard, the readiness report and POST /report/run are served on a loopback address only"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unroot"))
        .args([
            "serve",
            "--standalone",
            "--dashboard-listen",
            "0.0.0.0:8081",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0.0.0.0:8081 is not a loopback address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `POST /report/run` makes every replica list every pod of the cluster:
/// one run a minute is taken, and more get 429 with `Retry-After`.
#[tokio::test]
async fn audit_run_is_rate_limited() {
    let trigger = Arc::new(tokio::sync::Notify::new());
    let server = common::start_with(common::Options {
        report: unroot::report::task::Handle::with_trigger(Arc::clone(&trigger)),
        ..Default::default()
    })
    .await;
    assert_eq!(server.dashboard_post("/report/run").await.status, 202);
    tokio::time::timeout(Duration::from_secs(1), trigger.notified())
        .await
        .expect("the run was asked for");
    for _ in 0..3 {
        let reply = server.dashboard_post("/report/run").await;
        assert_eq!(reply.status, 429);
        let retry: u64 = reply.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((55..=60).contains(&retry), "{retry}");
        assert!(
            reply.json()["message"]
                .as_str()
                .unwrap()
                .starts_with("a readiness report was asked for less than 60 s ago"),
            "{:?}",
            reply.json()
        );
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), trigger.notified())
            .await
            .is_err(),
        "no further run was asked for"
    );
    server.shutdown().await;
}

/// `--client-ca` without `--client-ca-name` is refused at start: a CA that
/// also signs kubelets' and users' certificates would let them all in.
#[test]
fn a_client_ca_without_names_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("client-ca.crt");
    std::fs::write(&ca, ClientCa::new("kubernetes").pem).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unroot"))
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("UNROOT_CLIENT_CA_NAMES")
        .args([
            "serve",
            "--standalone",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--dashboard-listen",
            "127.0.0.1:0",
            "--ca-cert-out",
        ])
        .arg(dir.path().join("ca.crt"))
        .arg("--client-ca")
        .arg(&ca)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "give the names of the client certificates it may authenticate with --client-ca-name"
        ),
        "{err}"
    );
}
