//! cert-manager mode over real TLS: a Secret volume's `..data` symlink swap
//! reloads the serving pair, and a half-written pair is never served.

use crate::common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use unroot::certs::inspect::Certificate;
use unroot::certs::issue::{Authority, Names};
use unroot::certs::{self, Resolver};

/// A serving pair signed by `ca`: (certificate PEM, key PEM, fingerprint).
fn pair(ca: &Authority) -> (String, String, String) {
    let s = ca
        .issue_serving_at(
            &Names::local(),
            SystemTime::now(),
            Duration::from_secs(3600),
        )
        .unwrap();
    let fingerprint = Certificate::parse_pem(&s.cert_pem).unwrap()[0]
        .fingerprint
        .clone();
    (s.cert_pem, s.key_pem, fingerprint)
}

/// Writes a version directory and points `..data` at it, the way the
/// kubelet's AtomicWriter updates a Secret volume: the new directory, a
/// temporary symlink to it, then a rename over `..data`.
fn publish(dir: &Path, version: &str, cert: &str, key: &str) {
    let versioned = dir.join(version);
    std::fs::create_dir(&versioned).unwrap();
    std::fs::write(versioned.join("tls.crt"), cert).unwrap();
    std::fs::write(versioned.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            symlink(format!("..data/{name}"), link).unwrap();
        }
    }
}

async fn served(addr: std::net::SocketAddr, ca_pem: &str) -> String {
    let mut config = common::client_config(ca_pem, &[&rustls::version::TLS13]);
    config.resumption = rustls::client::Resumption::disabled();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Certificate::from_der(der).unwrap().fingerprint
}

async fn wait_for(addr: std::net::SocketAddr, ca_pem: &str, want: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if served(addr, ca_pem).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_symlink_swap_reloads_and_a_half_written_pair_is_not_served() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = Authority::issue().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (c1, k1, f1) = pair(&ca);
    publish(dir.path(), "..2026_11_29_01_00_00.1", &c1, &k1);

    let resolver = Arc::new(Resolver::empty());
    let metrics = certs::Metrics::new(&prometheus::Registry::new());
    let mut reloader = certs::files::Reloader::new(
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        Arc::clone(&resolver),
        metrics.clone(),
    );
    assert_eq!(reloader.load().unwrap(), f1);
    reloader.spawn(Duration::from_millis(50));
    let mut server = common::start_with(common::Options {
        tls: Some(certs::server_config(resolver)),
        ..Default::default()
    })
    .await;
    server.ca_pem = ca.cert_pem.clone();
    assert_eq!(served(server.addr, &ca.cert_pem).await, f1);

    // The kubelet swaps ..data: the next handshakes get the new pair.
    let (c2, k2, f2) = pair(&ca);
    publish(dir.path(), "..2026_11_29_02_00_00.2", &c2, &k2);
    assert!(
        wait_for(server.addr, &ca.cert_pem, &f2).await,
        "the ..data swap was not picked up"
    );

    // Files rewritten in place, certificate first: the pair is not served
    // until the key matches.
    let (c3, k3, f3) = pair(&ca);
    let current = dir.path().join("..data");
    std::fs::write(current.join("tls.crt"), &c3).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        served(server.addr, &ca.cert_pem).await,
        f2,
        "a certificate without its key is not served"
    );
    std::fs::write(current.join("tls.key"), &k3).unwrap();
    assert!(
        wait_for(server.addr, &ca.cert_pem, &f3).await,
        "the completed pair was not picked up"
    );
    let admitted = server
        .admit(
            "/mutate",
            &common::review_for(
                "CREATE",
                "default",
                &serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                    "spec": {"containers": [{"name": "app", "image": "busybox"}]}}),
            ),
        )
        .await;
    assert_eq!(admitted["allowed"], true);
    assert_eq!(metrics.rotations.with_label_values(&["serving"]).get(), 2);
    server.shutdown().await;
}
