//! Authenticated callers: with `--client-ca`, a caller without a valid
//! client certificate is refused at the TLS handshake, counted as
//! `reason="unauthenticated"`, and its forged review never reaches the
//! side-effecting handler (no identity ConfigMap is written).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{RecordingStore, fixture, labels, review_as};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use unroot::certs::{self, Authority, Resolver};
use unroot::policy::Document;
use unroot::server::IdentityStore;

/// The spawner the provisioning policy trusts: a forged review names it.
const HUB: &str = "system:serviceaccount:jupyterhub:hub";
const UNAUTHENTICATED: &str =
    r#"unroot_rejected_requests_total{reason="unauthenticated",webhook="none"}"#;

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

fn client_cert(issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    (
        params.signed_by(&key, issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

/// POSTs a forged provisioning review; the HTTP status, or the error.
async fn forge(
    server: &common::Server,
    serving_ca: &str,
    identity: Option<&(String, String)>,
) -> Result<u16, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(serving_ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let review = review_as(
        "CREATE",
        "hub-users",
        &fixture("tests/fixtures/provisioning/notebook.yaml"),
        HUB,
    );
    let request = hyper::Request::post("/mutate")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&review).unwrap())))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e:?}"))?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
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
    let serving_ca = Authority::issue().unwrap();
    let serving = serving_ca
        .issue_serving(&certs::serving_names(&[]))
        .unwrap();
    let resolver = Arc::new(Resolver::new(
        certs::certified_key(
            serving.cert_pem.as_bytes(),
            serving.key_pem.as_bytes(),
            std::path::Path::new("test"),
        )
        .unwrap(),
    ));
    let (trusted_pem, trusted) = ca("apiserver-client-ca");
    let dir = tempfile::tempdir().unwrap();
    let client_ca_file = dir.path().join("client-ca.crt");
    std::fs::write(&client_ca_file, &trusted_pem).unwrap();
    let store = Arc::new(RecordingStore::default());
    let server = common::start_with(common::Options {
        tls: Some(certs::server_config_with_client_ca(resolver, &client_ca_file).unwrap()),
        policy: Document::from_file(std::path::Path::new(
            "tests/fixtures/provisioning/policy.yaml",
        ))
        .unwrap(),
        namespace_labels: BTreeMap::from([(
            "hub-users".to_owned(),
            labels(&[("unroot.dev/provisioning", "enabled")]),
        )]),
        identity_store: Some(Arc::clone(&store) as Arc<dyn IdentityStore>),
        ..Default::default()
    })
    .await;
    assert_eq!(server.metric(UNAUTHENTICATED).await, Some(0.0));

    // No certificate, and one from another CA: refused before any HTTP.
    let (_, stranger) = ca("another-ca");
    let strangers = client_cert(&stranger);
    for identity in [None, Some(&strangers)] {
        let refused = forge(&server, &serving_ca.cert_pem, identity).await;
        assert!(refused.is_err(), "{refused:?}");
    }
    assert!(store.applied().is_empty(), "no forged identity written");
    assert_eq!(
        metric_reaches(&server, UNAUTHENTICATED, 2.0).await,
        Some(2.0)
    );

    // The API server's certificate: the same review is acted on.
    let apiserver = client_cert(&trusted);
    assert_eq!(
        forge(&server, &serving_ca.cert_pem, Some(&apiserver)).await,
        Ok(200)
    );
    assert_eq!(store.applied().len(), 1);
    assert_eq!(server.metric(UNAUTHENTICATED).await, Some(2.0));
    server.shutdown().await;
}
