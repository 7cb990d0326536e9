//! `--client-ca`: the webhook listener requires a client certificate from
//! the client CA; anyone else is refused at the TLS layer, before HTTP.

use crate::common;

use common::ClientCa;
use serde_json::json;

async fn post(
    addr: std::net::SocketAddr,
    serving_ca: &str,
    identity: Option<&(String, String)>,
) -> Result<u16, String> {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    let review = common::review_for("CREATE", "default", &pod);
    common::post_review_with_identity(addr, serving_ca, identity, &review).await
}

#[tokio::test]
async fn only_clients_with_a_certificate_from_the_client_ca_get_in() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (serving_ca, resolver) = common::serving_resolver();
    let trusted = ClientCa::new("apiserver-client-ca");
    let server = common::start_with(common::Options {
        tls: Some(trusted.required_by(resolver, &["kube-apiserver"])),
        ..Default::default()
    })
    .await;

    let apiserver = trusted.client_cert("kube-apiserver");
    assert_eq!(
        post(server.addr, &serving_ca, Some(&apiserver)).await,
        Ok(200),
        "the API server's client certificate is accepted"
    );
    let refused = post(server.addr, &serving_ca, None).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("AlertReceived(CertificateRequired)")),
        "no client certificate: refused at the TLS layer, got {refused:?}"
    );
    let stranger = ClientCa::new("another-ca").client_cert("kube-apiserver");
    let refused = post(server.addr, &serving_ca, Some(&stranger)).await;
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
