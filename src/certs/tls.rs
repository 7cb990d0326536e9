//! The rustls side: a certificate resolver that can be swapped at any time,
//! loading PEM pairs into rustls keys, and the listener's `ServerConfig`
//! (optionally requiring a client certificate from a CA, for one of the
//! names it accepts).

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::{Error, Result};

/// A rustls certificate resolver whose certificate can be replaced at any
/// time: established connections keep the certificate they were made
/// with, the next handshake gets the new one. Until a certificate is
/// loaded, handshakes fail.
#[derive(Debug, Default)]
pub struct Resolver {
    current: ArcSwapOption<CertifiedKey>,
}

impl Resolver {
    /// A resolver serving `key`.
    #[must_use]
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: ArcSwapOption::from_pointee(key),
        }
    }

    /// A resolver with no certificate yet.
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    /// Serves `key` from the next handshake on.
    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Some(Arc::new(key)));
    }

    /// The certificate served now.
    #[must_use]
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Builds a rustls key from a PEM certificate chain and a PEM private key,
/// checking that the key belongs to the first certificate. `origin` names
/// where they came from in errors (never their content).
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8], origin: &Path) -> Result<CertifiedKey> {
    let pem_err = |message: String| Error::Pem {
        path: origin.to_owned(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(format!("failed to parse certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(pem_err("no CERTIFICATE block found".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            pem_err("no PRIVATE KEY block found".to_owned())
        }
        other => pem_err(format!("failed to parse private key PEM: {other}")),
    })?;
    Ok(CertifiedKey::from_der(chain, key, &provider())?)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

/// Loads a serving certificate and key from PEM files.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    certified_key(&read(cert)?, &read(key)?, cert)
}

/// The webhook listener's TLS configuration: TLS 1.3 and 1.2, HTTP/2 and
/// HTTP/1.1, certificates from `resolver`, no client certificate asked for.
#[must_use]
pub fn server_config(resolver: Arc<Resolver>) -> rustls::ServerConfig {
    build(resolver, None)
}

/// As [`server_config`], but every client must present a certificate that
/// chains to one of the CAs in the PEM file `client_ca` and names one of
/// `names` (its Subject CN or a DNS SAN): a client without one is refused
/// during the handshake (mTLS from the API server). `names` must not be
/// empty: a CA that also signs other certificates (a kubeadm cluster CA
/// signs every kubelet's and user's) would otherwise let all of them in.
pub fn server_config_with_client_ca(
    resolver: Arc<Resolver>,
    client_ca: &Path,
    names: &[String],
) -> Result<rustls::ServerConfig> {
    let pem_err = |message: String| Error::Pem {
        path: client_ca.to_owned(),
        message,
    };
    let names: Vec<String> = names
        .iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no client certificate name to accept: a client CA authenticates only the names given with it (--client-ca-name)",
            client_ca.display()
        )));
    }
    let pem = read(client_ca)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| pem_err(format!("failed to parse certificate PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| pem_err(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(pem_err("no CERTIFICATE block found".to_owned()));
    }
    let chain = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| {
            pem_err(format!(
                "failed to build the client certificate verifier: {e}"
            ))
        })?;
    Ok(build(
        resolver,
        Some(Arc::new(NamedClients { chain, names })),
    ))
}

/// A client certificate verifier that accepts only certificates that chain
/// to the client CA (the WebPki verifier decides that) and name one of
/// `names`.
#[derive(Debug)]
struct NamedClients {
    chain: Arc<dyn ClientCertVerifier>,
    names: Vec<String>,
}

/// A client certificate from the client CA, for a name not accepted.
#[derive(Debug)]
struct NameNotAccepted {
    presented: Presented,
}

/// The names a client certificate presents.
#[derive(Debug, Default)]
struct Presented {
    /// Its Subject CNs.
    common_names: Vec<String>,
    /// Its DNS SANs.
    dns_names: Vec<String>,
}

impl std::fmt::Display for NameNotAccepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "client certificate for CN {:?} and DNS names {:?}, none of which --client-ca-name accepts",
            self.presented.common_names, self.presented.dns_names
        )
    }
}

impl std::error::Error for NameNotAccepted {}

/// The Subject CNs and DNS SANs of a DER certificate.
fn certificate_names(der: &[u8]) -> Result<Presented, rustls::Error> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let common_names = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                dns_names.push((*dns).to_owned());
            }
        }
    }
    Ok(Presented {
        common_names,
        dns_names,
    })
}

impl NamedClients {
    /// Whether `presented` names an accepted name: a CN exactly, a DNS name
    /// ignoring ASCII case (DNS names are case-insensitive).
    fn accepts(&self, presented: &Presented) -> bool {
        self.names.iter().any(|n| {
            presented.common_names.iter().any(|cn| cn == n)
                || presented
                    .dns_names
                    .iter()
                    .any(|dns| dns.eq_ignore_ascii_case(n))
        })
    }
}

impl ClientCertVerifier for NamedClients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The chain first: names of a certificate nobody vouched for mean
        // nothing.
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        let presented = certificate_names(end_entity)?;
        if self.accepts(&presented) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(NameNotAccepted { presented })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

fn build(
    resolver: Arc<Resolver>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> rustls::ServerConfig {
    // Both versions are supported by every provider rustls ships.
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap_or_else(|_| {
            rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        });
    let builder = match client_verifier {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::issue::{Authority, serving_names};

    #[test]
    fn issued_serving_certificate_loads_into_rustls() {
        let ca = Authority::issue().unwrap();
        let serving = ca.issue_serving(&serving_names(&[])).unwrap();
        let key = certified_key(
            serving.cert_pem.as_bytes(),
            serving.key_pem.as_bytes(),
            Path::new("mem"),
        )
        .unwrap();
        assert_eq!(key.cert.len(), 1);
        assert!(!format!("{serving:?}").contains("PRIVATE"));
    }

    #[test]
    fn bad_pem_names_the_file_and_a_foreign_key_is_refused() {
        let err = certified_key(b"nothing", b"nothing", Path::new("tls.crt")).unwrap_err();
        assert_eq!(err.to_string(), "tls.crt: no CERTIFICATE block found");
        let ca = Authority::issue().unwrap();
        let a = ca.issue_serving(&serving_names(&[])).unwrap();
        let b = ca.issue_serving(&serving_names(&[])).unwrap();
        let err = certified_key(a.cert_pem.as_bytes(), b"x", Path::new("tls.crt")).unwrap_err();
        assert_eq!(err.to_string(), "tls.crt: no PRIVATE KEY block found");
        let err = certified_key(
            a.cert_pem.as_bytes(),
            b.key_pem.as_bytes(),
            Path::new("tls.crt"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("key"), "{err}");
    }

    #[test]
    fn resolver_starts_empty_and_swaps() {
        let resolver = Resolver::empty();
        assert!(resolver.current().is_none());
        let ca = Authority::issue().unwrap();
        let serving = ca.issue_serving(&serving_names(&[])).unwrap();
        let key = certified_key(
            serving.cert_pem.as_bytes(),
            serving.key_pem.as_bytes(),
            Path::new("mem"),
        )
        .unwrap();
        let der = key.cert[0].clone();
        resolver.replace(key);
        assert_eq!(resolver.current().unwrap().cert[0], der);
    }

    #[test]
    fn client_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client-ca.crt");
        std::fs::write(&path, "nothing").unwrap();
        let names = ["kube-apiserver".to_owned()];
        let err =
            server_config_with_client_ca(Arc::new(Resolver::empty()), &path, &names).unwrap_err();
        assert!(
            err.to_string().ends_with("no CERTIFICATE block found"),
            "{err}"
        );
        let ca = Authority::issue().unwrap();
        std::fs::write(&path, &ca.cert_pem).unwrap();
        assert!(server_config_with_client_ca(Arc::new(Resolver::empty()), &path, &names).is_ok());
    }

    #[test]
    fn names_match_a_cn_exactly_and_a_dns_name_in_any_case() {
        let verifier = NamedClients {
            chain: WebPkiClientVerifier::builder_with_provider(
                Arc::new({
                    let mut roots = rustls::RootCertStore::empty();
                    let ca = Authority::issue().unwrap();
                    roots
                        .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
                        .unwrap();
                    roots
                }),
                provider(),
            )
            .build()
            .unwrap(),
            names: vec!["kube-apiserver-webhook-client".to_owned()],
        };
        let owned = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        let accepts = |cns: &[&str], dns: &[&str]| {
            verifier.accepts(&Presented {
                common_names: owned(cns),
                dns_names: owned(dns),
            })
        };
        assert!(accepts(&["kube-apiserver-webhook-client"], &[]));
        assert!(accepts(&["jane"], &["Kube-APIServer-Webhook-Client"]));
        assert!(!accepts(&["Kube-APIServer-Webhook-Client"], &[]));
        assert!(!accepts(&["kube-apiserver-webhook-client.evil"], &[]));
        assert!(!accepts(&["system:node:worker-1"], &["worker-1"]));
        assert!(!accepts(&[], &[]));
    }

    #[test]
    fn a_client_ca_without_names_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client-ca.crt");
        let ca = Authority::issue().unwrap();
        std::fs::write(&path, &ca.cert_pem).unwrap();
        for names in [&[][..], &[" ".to_owned()][..]] {
            let err = server_config_with_client_ca(Arc::new(Resolver::empty()), &path, names)
                .unwrap_err();
            assert!(
                err.to_string()
                    .ends_with("no client certificate name to accept: a client CA authenticates only the names given with it (--client-ca-name)"),
                "{err}"
            );
        }
    }
}
