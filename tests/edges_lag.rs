//! A replica whose CPUs do not keep up sheds reviews with a fast 429 and
//! Retry-After (`--max-lag`), like excess reviews or bytes, instead of
//! queueing them behind the work it cannot finish; once it keeps up again,
//! it decides them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use unroot::server::Limits;

use crate::common::{self, review_for};

/// A root pod's review.
fn review() -> Value {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}});
    review_for("CREATE", "team-a", &pod)
}

/// The server runs on this test's runtime (one thread): blocking that
/// thread is a replica whose CPU is taken for that long.
#[tokio::test(flavor = "current_thread")]
async fn a_replica_behind_its_cpu_sheds_reviews_until_it_catches_up() {
    let server = common::start_with(common::Options {
        limits: Limits::default().with_max_lag(Duration::from_millis(200)),
        ..common::Options::default()
    })
    .await;
    let review = review();
    assert_eq!(server.review("/mutate", &review).await.status, 200);

    std::thread::sleep(Duration::from_millis(700));
    let asked = Instant::now();
    let reply = server.review("/mutate", &review).await;
    assert_eq!(reply.status, 429, "{reply:?}");
    assert!(asked.elapsed() < Duration::from_millis(500), "shed fast");
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(reply.json()["reason"], "TooManyRequests");
    let message = reply.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("unroot is overloaded: its CPU is ")
            && message.ends_with(" ms behind (--max-lag is 200 ms); retry in 1 s"),
        "{message}"
    );
    assert_eq!(
        server
            .metric(r#"unroot_rejected_requests_total{reason="overloaded",webhook="mutate"}"#)
            .await,
        Some(1.0)
    );

    // Caught up (a busy test machine may take a few probes): decided again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reply = server.review("/mutate", &review).await;
        if reply.status == 200 {
            assert_eq!(reply.json()["response"]["allowed"], true);
            break;
        }
        assert!(Instant::now() < deadline, "still shed: {reply:?}");
    }
}

/// Without `--max-lag` (zero), a blocked runtime delays reviews but never
/// sheds them.
#[tokio::test(flavor = "current_thread")]
async fn without_a_max_lag_a_late_review_is_still_decided() {
    let server = common::start_with(common::Options {
        limits: Limits::default().with_max_lag(Duration::ZERO),
        ..common::Options::default()
    })
    .await;
    let review = review();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(server.review("/mutate", &review).await.status, 200);
}
