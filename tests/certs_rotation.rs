//! Certificate rotation on a live server over real TLS: clients stream
//! AdmissionReviews over kept-alive and over new connections while the
//! serving certificate is rotated 20 times (and the CA several times) through
//! the code the Secret watch runs, and not one request fails.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use unroot::certs::inspect::Certificate;
use unroot::certs::issue::Names;
use unroot::certs::rotation::{self, Decision, Observed, Policy};
use unroot::certs::secret::{Contents, Loaded, Loader};
use unroot::certs::{self, Resolver};

/// What the clients trust: the caBundle as last "injected" (what the API
/// server reads from the webhook configuration).
type Trust = Arc<ArcSwap<rustls::ClientConfig>>;

/// A client like the API server's webhook client: trusts `bundle`, and
/// resumes no TLS session (Go's `tls.Config` without a
/// `ClientSessionCache`), so every connection is a full handshake.
fn trusting(bundle: &str) -> Arc<rustls::ClientConfig> {
    let mut config =
        common::client_config(bundle, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

async fn connect(addr: SocketAddr, trust: &Trust) -> Result<TlsStream<TcpStream>, String> {
    let connector = TlsConnector::from(trust.load_full());
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn open(addr: SocketAddr, trust: &Trust) -> Result<Sender, String> {
    let tls = connect(addr, trust).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

fn review(n: u64) -> Value {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p{n}")},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    common::review_for("CREATE", "default", &pod)
}

async fn admit(sender: &mut Sender, n: u64) -> Result<(), String> {
    let review = review(n);
    let request = hyper::Request::post("/mutate")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&review).unwrap())))
        .unwrap();
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let answer: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    if status != 200 || answer["response"]["uid"] != review["request"]["uid"] {
        return Err(format!("HTTP {status}: {answer}"));
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, result: Result<(), String>) {
        match result {
            Ok(()) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                self.errors.lock().unwrap().push(e);
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// One connection for the whole run: established connections outlive
/// every rotation.
async fn keep_alive(addr: SocketAddr, trust: Trust, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut sender = match open(addr, &trust).await {
        Ok(s) => s,
        Err(e) => return tally.record(Err(e)),
    };
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        tally.record(admit(&mut sender, n).await);
    }
}

/// A new connection (a new handshake) per review.
async fn new_connections(addr: SocketAddr, trust: Trust, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let result = match open(addr, &trust).await {
            Ok(mut sender) => admit(&mut sender, n).await,
            Err(e) => Err(e),
        };
        tally.record(result);
    }
}

/// The fingerprint of the certificate a fresh handshake is given.
async fn served(addr: SocketAddr, trust: &Trust) -> String {
    let tls = connect(addr, trust).await.unwrap();
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Certificate::from_der(der).unwrap().fingerprint
}

// One scenario, read top to bottom: setup, load, rotations, verdict.
#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_rotations_under_load_fail_no_request() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let policy = Policy {
        ca_lifetime: Duration::from_secs(360),
        serving_lifetime: Duration::from_secs(120),
        propagation_delay: Duration::from_secs(5),
        names: Names::local(),
    };
    // The Secret as the leader would write it, and the loader every replica
    // runs on each version of it.
    let start = SystemTime::now();
    let empty = Contents::default();
    let parsed = empty.parse(start);
    let plan = rotation::forced(&Observed::from_parsed(&parsed, &policy.names), true);
    let mut contents = rotation::execute(&empty, &parsed, &plan, &policy, start).unwrap();
    let resolver = Arc::new(Resolver::empty());
    let metrics = certs::Metrics::new(&prometheus::Registry::new());
    let ready = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ready);
    let loader = Loader::new(
        Arc::clone(&resolver),
        metrics.clone(),
        Arc::new(move |ok| flag.store(ok, Ordering::SeqCst)),
    );
    assert!(matches!(
        loader.load("test", &contents, SystemTime::now()),
        Ok(Loaded::Swapped(_))
    ));
    assert!(
        ready.load(Ordering::SeqCst),
        "ready once a certificate is loaded"
    );
    let mut bundle = contents
        .parse(SystemTime::now())
        .ca_bundle(SystemTime::now());
    let trust: Trust = Arc::new(ArcSwap::new(trusting(&bundle)));

    let server = common::start_with(common::Options {
        tls: Some(certs::server_config(Arc::clone(&resolver))),
        ..Default::default()
    })
    .await;
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let kept = Arc::new(Tally::default());
    let fresh = Arc::new(Tally::default());
    let mut workers = Vec::new();
    for _ in 0..2 {
        workers.push(tokio::spawn(keep_alive(
            addr,
            Arc::clone(&trust),
            Arc::clone(&stop),
            Arc::clone(&kept),
        )));
        workers.push(tokio::spawn(new_connections(
            addr,
            Arc::clone(&trust),
            Arc::clone(&stop),
            Arc::clone(&fresh),
        )));
    }

    // Simulated time runs ahead of the wall clock (by less than the hour
    // certificates are back-dated, so they stay valid for the clients).
    let mut now = start;
    let mut confirmed_at = Some(start);
    let (mut serving_rotations, mut ca_rotations, mut overlaps) = (0, 0, 0);
    while serving_rotations < 20 {
        now += Duration::from_secs(20);
        let parsed = contents.parse(now);
        let observed = Observed::from_parsed(&parsed, &policy.names);
        if let Decision::Write(plan) = rotation::decide(&observed, &policy, now, confirmed_at) {
            contents = rotation::execute(&contents, &parsed, &plan, &policy, now).unwrap();
            // What the Secret watch does with the new version.
            let outcome = loader.load("test", &contents, SystemTime::now()).unwrap();
            if plan.serving.is_some() {
                serving_rotations += 1;
                let Loaded::Swapped(fingerprint) = outcome else {
                    panic!("a new serving certificate was not swapped in: {outcome:?}");
                };
                assert_eq!(
                    served(addr, &trust).await,
                    fingerprint,
                    "a new handshake presents the new certificate"
                );
            }
            if plan.ca.is_some() {
                ca_rotations += 1;
            }
            // What the caBundle injection does: the API server trusts the
            // Secret's CAs from now on.
            let next = contents
                .parse(SystemTime::now())
                .ca_bundle(SystemTime::now());
            if next != bundle {
                if Certificate::parse_pem(&next).unwrap().len() > 1 {
                    overlaps += 1;
                }
                bundle = next;
                trust.store(trusting(&bundle));
                confirmed_at = Some(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    server.shutdown().await;

    let (kept_ok, kept_failed) = (
        kept.ok.load(Ordering::Relaxed),
        kept.failed.load(Ordering::Relaxed),
    );
    let (fresh_ok, fresh_failed) = (
        fresh.ok.load(Ordering::Relaxed),
        fresh.failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "{serving_rotations} serving and {ca_rotations} CA rotations ({overlaps} bundles with two CAs); \
         kept-alive: {kept_ok} ok, {kept_failed} failed; new connections: {fresh_ok} ok, {fresh_failed} failed"
    );
    let errors = [
        kept.errors.lock().unwrap().clone(),
        fresh.errors.lock().unwrap().clone(),
    ]
    .concat();
    assert!(
        errors.is_empty(),
        "failed requests: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert!(ca_rotations >= 2, "the CA rotated too: {ca_rotations}");
    assert_eq!(
        overlaps, ca_rotations,
        "every CA rotation went through a two-CA bundle"
    );
    assert!(
        kept_ok > 100 && fresh_ok > 100,
        "traffic flowed: {kept_ok} / {fresh_ok}"
    );
    assert_eq!(metrics.failures(certs::metrics::Failure::InvalidSecret), 0);
}

#[tokio::test]
async fn a_broken_secret_leaves_the_last_good_certificate_in_service() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let now = SystemTime::now();
    let policy = Policy {
        ca_lifetime: Duration::from_secs(3600),
        serving_lifetime: Duration::from_secs(600),
        propagation_delay: Duration::from_secs(5),
        names: Names::local(),
    };
    let empty = Contents::default();
    let parsed = empty.parse(now);
    let plan = rotation::forced(&Observed::from_parsed(&parsed, &policy.names), true);
    let good = rotation::execute(&empty, &parsed, &plan, &policy, now).unwrap();
    let resolver = Arc::new(Resolver::empty());
    let registry = prometheus::Registry::new();
    let metrics = certs::Metrics::new(&registry);
    let loader = Loader::new(Arc::clone(&resolver), metrics.clone(), Arc::new(|_| {}));
    let Ok(Loaded::Swapped(fingerprint)) = loader.load("test", &good, now) else {
        panic!("not loaded");
    };
    let mut server = common::start_with(common::Options {
        tls: Some(certs::server_config(Arc::clone(&resolver))),
        ..Default::default()
    })
    .await;
    server.ca_pem = good.ca_cert.clone();
    let trust: Trust = Arc::new(ArcSwap::new(trusting(&good.ca_cert)));

    // A renewed certificate whose key got mixed up with another one's.
    let parsed = good.parse(now);
    let renewed = rotation::execute(
        &good,
        &parsed,
        &rotation::forced(&Observed::from_parsed(&parsed, &policy.names), false),
        &policy,
        now,
    )
    .unwrap();
    let mixed = Contents {
        tls_key: good.tls_key.clone(),
        ..renewed
    };
    assert!(loader.load("test", &mixed, now).is_err());
    assert_eq!(
        served(server.addr, &trust).await,
        fingerprint,
        "the last good pair stays"
    );
    let response = server.admit("/mutate", &review(1)).await;
    assert_eq!(response["allowed"], true);
    assert_eq!(metrics.failures(certs::metrics::Failure::InvalidSecret), 1);
    server.shutdown().await;
}
