//! The serving certificate files replaced with mismatched or broken pairs
//! while clients handshake continuously: zero failed handshakes. A
//! mismatched pair is refused and the last good one kept; a good new pair
//! is then served.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use unroot::certs::{self, Authority, Resolver};

#[tokio::test]
#[allow(clippy::too_many_lines)] // one story: load, bad pairs, a good pair
async fn mismatched_pairs_mid_load_never_fail_a_handshake() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = Authority::issue().unwrap();
    let first = ca.issue_serving(&certs::serving_names(&[])).unwrap();
    let second = ca.issue_serving(&certs::serving_names(&[])).unwrap();
    let other_ca = Authority::issue().unwrap();
    let stranger = other_ca.issue_serving(&certs::serving_names(&[])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let resolver = Arc::new(Resolver::empty());
    let registry = prometheus::Registry::new();
    let mut reloader = certs::files::Reloader::new(
        cert.clone(),
        key.clone(),
        Arc::clone(&resolver),
        certs::Metrics::new(&registry),
    );
    reloader.load().unwrap();
    reloader.spawn(Duration::from_millis(20));
    let server = Arc::new(
        common::start_with(common::Options {
            tls: Some(certs::server_config(Arc::clone(&resolver))),
            ..Default::default()
        })
        .await,
    );
    let ca_pem = ca.cert_pem.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (server, stop, ca_pem) = (Arc::clone(&server), Arc::clone(&stop), ca_pem.clone());
        clients.push(tokio::spawn(async move {
            let mut config =
                common::client_config(&ca_pem, &[&rustls::version::TLS13, &rustls::version::TLS12]);
            config.resumption = rustls::client::Resumption::disabled();
            let connector = TlsConnector::from(Arc::new(config));
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let tcp = TcpStream::connect(server.addr).await.unwrap();
                match connector
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await
                {
                    Ok(mut tls) => {
                        // A whole exchange, not just the handshake.
                        tls.write_all(
                            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
                        )
                        .await
                        .unwrap();
                        let mut reply = String::new();
                        let _ = tls.read_to_string(&mut reply).await;
                        if reply.starts_with("HTTP/1.1 404") {
                            ok += 1;
                        } else {
                            failed.push(reply);
                        }
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    // Mismatched, truncated, half-written and foreign pairs, every 100 ms.
    let bad: [(&str, &str); 4] = [
        (&first.cert_pem, &second.key_pem),
        (&second.cert_pem, &first.key_pem),
        (&first.cert_pem[..first.cert_pem.len() / 2], &first.key_pem),
        (&stranger.cert_pem, &first.key_pem),
    ];
    for round in 0..20 {
        let (c, k) = bad[round % bad.len()];
        std::fs::write(&cert, c).unwrap();
        std::fs::write(&key, k).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept = served_fingerprint(&server, &ca_pem).await;
    assert_eq!(kept, der_of(&first.cert_pem), "the last good pair is kept");
    // A good new pair is taken.
    std::fs::write(&key, &second.key_pem).unwrap();
    std::fs::write(&cert, &second.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let (ok, failed) = client.await.unwrap();
        assert!(failed.is_empty(), "failed exchanges: {failed:?}");
        total += ok;
    }
    assert!(total >= 40, "{total} handshakes");
    assert_eq!(
        served_fingerprint(&server, &ca_pem).await,
        der_of(&second.cert_pem)
    );
    let errors: f64 = registry
        .gather()
        .iter()
        .find(|f| f.name() == "unroot_certificate_errors_total")
        .map(|f| {
            f.get_metric()
                .iter()
                .map(|m| m.get_counter().get_value())
                .sum()
        })
        .unwrap();
    assert!(errors >= 1.0, "refused pairs are counted: {errors}");
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

async fn served_fingerprint(server: &common::Server, ca_pem: &str) -> Vec<u8> {
    let mut config = common::client_config(ca_pem, &[&rustls::version::TLS13]);
    config.resumption = rustls::client::Resumption::disabled();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}
