//! `--client-ca`: the webhook listener requires a client certificate from
//! the client CA; anyone else is refused at the TLS layer, before HTTP.

mod common;

use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use unroot::certs::{self, Authority, Resolver};

/// A CA for API server client certificates, and a way to sign them.
struct ClientCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn client_ca(name: &str) -> ClientCa {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    ClientCa {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A client certificate (`clientAuth`) signed by `ca`, as PEM chain and key.
fn client_cert(ca: &ClientCa, name: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn post(
    addr: std::net::SocketAddr,
    serving_ca: &str,
    identity: Option<&(String, String)>,
) -> Result<u16, String> {
    let builder = rustls::ClientConfig::builder().with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(serving_ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        roots
    });
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
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    let body = serde_json::to_vec(&common::review_for("CREATE", "default", &pod)).unwrap();
    let request = hyper::Request::post("/mutate")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    // TLS 1.3 finishes the client's side of the handshake before the server
    // has judged the client certificate; the refusal shows up here.
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e:?}"))?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
}

#[tokio::test]
async fn only_clients_with_a_certificate_from_the_client_ca_get_in() {
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
    let trusted = client_ca("apiserver-client-ca");
    let dir = tempfile::tempdir().unwrap();
    let client_ca_file = dir.path().join("client-ca.crt");
    std::fs::write(&client_ca_file, &trusted.pem).unwrap();
    let tls = certs::server_config_with_client_ca(resolver, &client_ca_file).unwrap();
    let server = common::start_with(common::Options {
        tls: Some(tls),
        ..Default::default()
    })
    .await;

    let apiserver = client_cert(&trusted, "kube-apiserver");
    assert_eq!(
        post(server.addr, &serving_ca.cert_pem, Some(&apiserver)).await,
        Ok(200),
        "the API server's client certificate is accepted"
    );
    let refused = post(server.addr, &serving_ca.cert_pem, None).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("AlertReceived(CertificateRequired)")),
        "no client certificate: refused at the TLS layer, got {refused:?}"
    );
    let stranger = client_cert(&client_ca("another-ca"), "kube-apiserver");
    let refused = post(server.addr, &serving_ca.cert_pem, Some(&stranger)).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("UnknownCA")
            || e.contains("BadCertificate")
            || e.contains("handshake")),
        "a certificate from another CA: refused, got {refused:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn without_a_client_ca_no_certificate_is_asked_for() {
    let server = common::start().await;
    assert_eq!(post(server.addr, &server.ca_pem, None).await, Ok(200));
    server.shutdown().await;
}
