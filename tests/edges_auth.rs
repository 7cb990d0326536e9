//! Authenticated callers: with `--client-ca`, a caller without a valid
//! client certificate is refused at the TLS handshake, counted as
//! `reason="unauthenticated"`, and its forged review never reaches the
//! side-effecting handler (no identity ConfigMap is written).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{ClientCa, RecordingStore, fixture, review_as};
use unroot::server::IdentityStore;

/// The spawner the provisioning policy trusts: a forged review names it.
const HUB: &str = "system:serviceaccount:jupyterhub:hub";
const UNAUTHENTICATED: &str = r#"unroot_tls_handshake_failures_total{reason="unauthenticated"}"#;

/// POSTs a forged provisioning review; the HTTP status, or the error.
async fn forge(
    server: &common::Server,
    serving_ca: &str,
    identity: Option<&(String, String)>,
) -> Result<u16, String> {
    let review = review_as(
        "CREATE",
        "hub-users",
        &fixture("tests/fixtures/provisioning/notebook.yaml"),
        HUB,
    );
    common::post_review_with_identity(server.addr, serving_ca, identity, &review).await
}

async fn metric_reaches(server: &common::Server, series: &str, want: f64) -> Option<f64> {
    let mut got = None;
    for _ in 0..50 {
        got = server.metric(series).await;
        if got == Some(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got
}

#[tokio::test]
async fn unauthenticated_callers_never_reach_the_identity_write_and_are_counted() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (serving_ca, resolver) = common::serving_resolver();
    let trusted = ClientCa::new("apiserver-client-ca");
    let store = Arc::new(RecordingStore::default());
    let server = common::start_with(common::Options {
        tls: Some(trusted.required_by(resolver, &["kube-apiserver"])),
        ..common::hub(Arc::clone(&store) as Arc<dyn IdentityStore>)
    })
    .await;
    assert_eq!(server.metric(UNAUTHENTICATED).await, Some(0.0));

    // No certificate, and one from another CA: refused before any HTTP.
    let strangers = ClientCa::new("another-ca").client_cert("kube-apiserver");
    for identity in [None, Some(&strangers)] {
        let refused = forge(&server, &serving_ca, identity).await;
        assert!(refused.is_err(), "{refused:?}");
    }
    assert!(store.applied().is_empty(), "no forged identity written");
    assert_eq!(
        metric_reaches(&server, UNAUTHENTICATED, 2.0).await,
        Some(2.0)
    );

    // The API server's certificate: the same review is acted on.
    let apiserver = trusted.client_cert("kube-apiserver");
    assert_eq!(forge(&server, &serving_ca, Some(&apiserver)).await, Ok(200));
    assert_eq!(store.applied().len(), 1);
    assert_eq!(server.metric(UNAUTHENTICATED).await, Some(2.0));
    // Refused handshakes are connections, not requests to a webhook: no
    // webhook's rejected (and error-ratio) series counts them.
    let text = String::from_utf8(server.admin_get("/metrics").await.body).unwrap();
    let rejected: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("unroot_rejected_requests_total{"))
        .collect();
    assert!(!rejected.is_empty());
    for line in rejected {
        assert!(line.ends_with(" 0"), "{line}");
        assert!(!line.contains(r#"webhook="none""#), "{line}");
    }
    server.shutdown().await;
}
