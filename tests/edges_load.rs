//! Load shedding over real TLS: beyond the concurrent reviews or the
//! buffered bytes a replica takes on, a request gets a fast 429 with
//! Retry-After (which the API server retries), counted as
//! `reason="overloaded"`, and the capacity comes back when reviews finish.
//! 10,000 idle connections against the real binary neither exhaust its
//! descriptors or memory nor stall a review.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fixture, review_as};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use unroot::server::{IdentityStore, Limits};

const HUB: &str = "system:serviceaccount:jupyterhub:hub";
const SLOW: Duration = Duration::from_millis(1500);

/// Makes every provisioned pod's review take [`SLOW`].
#[derive(Debug)]
struct SlowStore;

impl IdentityStore for SlowStore {
    fn apply(&self, _: ConfigMap) -> BoxFuture<'_, unroot::cluster::Result<()>> {
        Box::pin(async {
            tokio::time::sleep(SLOW).await;
            Ok(())
        })
    }
}

async fn start(limits: Limits) -> common::Server {
    common::start_with(common::Options {
        limits,
        ..common::hub(Arc::new(SlowStore) as Arc<dyn IdentityStore>)
    })
    .await
}

/// The notebook's review, padded with trailing whitespace to `size` bytes.
fn review_body(size: usize) -> Vec<u8> {
    let review = review_as(
        "CREATE",
        "hub-users",
        &fixture("tests/fixtures/provisioning/notebook.yaml"),
        HUB,
    );
    let mut body = serde_json::to_vec(&review).unwrap();
    if body.len() < size {
        body.resize(size, b' ');
    }
    body
}

fn status_message(reply: &common::Reply) -> String {
    reply.json()["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn reviews_beyond_the_concurrency_cap_get_a_fast_429() {
    let server = Arc::new(start(Limits::new(Duration::from_secs(10), 4, 64 << 20)).await);
    let mut requests = Vec::new();
    for _ in 0..12 {
        let server = Arc::clone(&server);
        requests.push(tokio::spawn(async move {
            let started = Instant::now();
            let reply = server
                .post("/mutate", "application/json", review_body(0))
                .await;
            (reply, started.elapsed())
        }));
    }
    let (mut admitted, mut shed) = (0, 0);
    for request in requests {
        let (reply, took) = request.await.unwrap();
        match reply.status {
            200 => {
                assert_eq!(reply.json()["response"]["allowed"], true);
                assert!(took >= SLOW, "{took:?}");
                admitted += 1;
            }
            429 => {
                assert!(took < Duration::from_millis(500), "shed fast: {took:?}");
                assert_eq!(reply.headers["retry-after"], "1");
                assert_eq!(reply.json()["reason"], "TooManyRequests");
                assert_eq!(
                    status_message(&reply),
                    "unroot is overloaded: 4 reviews are being decided already; retry in 1 s"
                );
                shed += 1;
            }
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    assert_eq!((admitted, shed), (4, 8));
    assert_eq!(
        server
            .metric(r#"unroot_rejected_requests_total{reason="overloaded",webhook="mutate"}"#)
            .await,
        Some(8.0)
    );
    // The places come back: the next review is decided.
    let reply = server
        .post("/mutate", "application/json", review_body(0))
        .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn bodies_beyond_the_buffered_bytes_get_a_fast_429() {
    let server = Arc::new(start(Limits::new(Duration::from_secs(10), 256, 100_000)).await);
    let first = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            server
                .post("/mutate", "application/json", review_body(60_000))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 60 kB are held by the review in progress; 60 kB more do not fit.
    let started = Instant::now();
    let reply = server
        .post("/mutate", "application/json", review_body(60_000))
        .await;
    assert_eq!(reply.status, 429, "{reply:?}");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(
        status_message(&reply),
        "unroot is overloaded: too many request bytes are being handled at once; retry in 1 s"
    );
    // Small ones still fit beside it.
    let small = server
        .post("/mutate", "application/json", review_body(30_000))
        .await;
    assert_eq!(small.status, 200);
    assert_eq!(first.await.unwrap().status, 200);
    // Its bytes are given back with its answer.
    let again = server
        .post("/mutate", "application/json", review_body(60_000))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        server
            .metric(r#"unroot_rejected_requests_total{reason="overloaded",webhook="mutate"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn one_large_review_is_decided_at_a_time() {
    let server = Arc::new(start(Limits::default()).await);
    let large = 1024 * 1024 + 1;
    let first = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            server
                .post("/mutate", "application/json", review_body(large))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = server
        .post("/mutate", "application/json", review_body(large))
        .await;
    assert_eq!(reply.status, 429, "{reply:?}");
    assert_eq!(
        status_message(&reply),
        "unroot is overloaded: another review over 1 MiB is being decided, and one is decided at a time; retry in 1 s"
    );
    // Small reviews are not held up by it.
    let small = server
        .post("/mutate", "application/json", review_body(0))
        .await;
    assert_eq!(small.status, 200);
    assert_eq!(first.await.unwrap().status, 200);
    let again = server
        .post("/mutate", "application/json", review_body(large))
        .await;
    assert_eq!(again.status, 200);
}

/// Reviews over 64 KiB are decided a few at a time off the async workers;
/// one that finds every place taken waits for one within its deadline
/// (decided late, not shed), and is shed with a 429 only when its
/// deadline comes first.
#[tokio::test]
async fn reviews_over_64_kib_wait_for_a_place_within_their_deadline() {
    let server = Arc::new(start(Limits::default().with_max_offloaded(1)).await);
    let medium = 70 * 1024;
    let first = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            server
                .post("/mutate", "application/json", review_body(medium))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The place is taken for SLOW: this one waits for it.
    let second = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = server
                .post("/mutate", "application/json", review_body(medium))
                .await;
            (reply, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A deadline shorter than the wait: shed when it comes (the API server's
    // 1 s, minus a tenth).
    let started = Instant::now();
    let short = server
        .post(
            "/mutate?timeout=1s",
            "application/json",
            review_body(medium),
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(short.status, 429, "{short:?}");
    assert!(
        waited >= Duration::from_millis(800) && waited < SLOW,
        "shed at its deadline: {waited:?}"
    );
    assert_eq!(
        status_message(&short),
        "unroot is overloaded: every place for reviews over 64 KiB (1) was taken until this review's deadline; retry in 1 s"
    );
    assert_eq!(first.await.unwrap().status, 200);
    let (reply, took) = second.await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["response"]["allowed"], true);
    assert!(took >= SLOW + SLOW / 2, "it waited for the first: {took:?}");
}

/// Its descriptor count and `/proc` status fields.
trait Observed {
    fn status_kib(&self, field: &str) -> u64;
    fn open_descriptors(&self) -> usize;
}

impl Observed for common::Process {
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap()
    }

    fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.0.id())).map_or(0, Iterator::count)
    }
}

/// 10,000 connections that send nothing, against the real binary: it holds
/// at most --max-connections (1,024) of them, each gives way within a
/// second once connections run short, its memory stays flat, and a review
/// sent while all 10,000 are open is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_neither_exhaust_nor_stall_a_replica() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (child, server) = common::Process::standalone(dir.path(), &[]);
    let rss_before = child.status_kib("VmRSS:");

    let started = Instant::now();
    let mut idle = Vec::with_capacity(10_000);
    let mut most_descriptors = 0;
    for _ in 0..20 {
        let batch: Vec<_> = (0..500)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(40),
                    tokio::net::TcpStream::connect(server.addr),
                ))
            })
            .collect();
        for connected in futures::future::join_all(batch).await {
            if let Ok(Ok(Ok(tcp))) = connected {
                idle.push(tcp);
            }
        }
        most_descriptors = most_descriptors.max(child.open_descriptors());
    }
    let connected = idle.len();
    let flood = started.elapsed();
    assert!(connected >= 9_000, "only {connected} of 10,000 connected");
    // The replica lets go of the silent ones at about a thousand a second
    // (a slice each once connections run short); at its 10 s handshake
    // timeout the same flood took 70 s.
    assert!(
        flood < Duration::from_secs(45),
        "10,000 connections took {flood:?}"
    );

    // All of them still open on this side: a review gets through.
    let review = review_as(
        "CREATE",
        "team-a",
        &serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "x"}]}}),
        "alice",
    );
    let asked = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(20), server.admit("/mutate", &review))
        .await
        .expect("a review is answered while 10,000 idle connections are open");
    assert_eq!(answer["allowed"], true, "{answer:#}");
    let waited = asked.elapsed();
    most_descriptors = most_descriptors.max(child.open_descriptors());
    let peak_kib = child.status_kib("VmHWM:");
    eprintln!(
        "{connected} idle connections in {flood:?}; review answered after {waited:?}; \
         at most {most_descriptors} descriptors; RSS {rss_before} KiB before, peak {peak_kib} KiB"
    );
    assert!(
        most_descriptors <= 1024 + 64,
        "{most_descriptors} descriptors open in the replica"
    );
    assert!(
        peak_kib < 128 * 1024,
        "peak RSS {peak_kib} KiB with 10,000 idle connections"
    );
    drop(idle);
}
