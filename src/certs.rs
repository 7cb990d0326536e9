//! Serving certificates: self-issued with rcgen, or loaded from files, and
//! served through a resolver that can be swapped without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Errors from issuing or loading certificates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rcgen refused to issue a certificate.
    #[error("failed to issue certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key does not suit rustls (unsupported algorithm, or not the
    /// certificate's key).
    #[error("failed to use the serving key: {0}")]
    Key(#[from] rustls::Error),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a self-issued serving certificate is valid.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long the self-issued CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// A certificate authority unroot issued for itself.
pub struct Authority {
    /// The CA certificate, PEM (what clients trust: the webhook caBundle).
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// A serving certificate chain and its key, PEM encoded.
pub struct Serving {
    /// Leaf certificate, PEM.
    pub cert_pem: String,
    /// Private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl fmt::Debug for Serving {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serving").finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = std::time::SystemTime::now();
    // Back-date a little so clients with a slightly slow clock accept it.
    params.not_before = (now - Duration::from_secs(300)).into();
    params.not_after = (now + valid_for).into();
}

impl Authority {
    /// Issues a new self-signed CA.
    pub fn issue() -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "unroot webhook CA");
        dn.push(DnType::OrganizationName, "unroot");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, CA_VALIDITY);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        let issuer = Issuer::new(params, key);
        Ok(Self { cert_pem, issuer })
    }

    /// Issues a serving certificate for `dns_names` (entries that parse as IP
    /// addresses become IP SANs).
    pub fn issue_serving(&self, dns_names: &[String]) -> Result<Serving> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            dns_names.first().map_or("unroot", String::as_str),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = dns_names
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(name.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, SERVING_VALIDITY);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Serving {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The names every self-issued serving certificate covers, plus `extra`.
#[must_use]
pub fn serving_names(extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// Writes `pem` to `path`, creating parent directories.
pub fn write_pem(path: &Path, pem: &str) -> Result<()> {
    let io = |source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, pem).map_err(io)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

/// Builds a rustls key from a PEM certificate chain and PEM private key.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8], origin: &Path) -> Result<CertifiedKey> {
    let pem_err = |message: String| Error::Pem {
        path: origin.to_owned(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(format!("failed to parse certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(pem_err("no CERTIFICATE block found".to_owned()));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| pem_err(format!("failed to parse private key PEM: {e}")))?
        .ok_or_else(|| pem_err("no PRIVATE KEY block found".to_owned()))?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let certified = CertifiedKey::from_der(chain, key, &provider)?;
    Ok(certified)
}

/// Loads a serving certificate and key from PEM files.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    certified_key(&read(cert)?, &read(key)?, cert)
}

/// A rustls certificate resolver whose certificate can be replaced at any
/// time; handshakes in flight keep the one they started with.
#[derive(Debug)]
pub struct Resolver {
    current: ArcSwap<CertifiedKey>,
}

impl Resolver {
    /// A resolver serving `key`.
    #[must_use]
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(key),
        }
    }

    /// Serves `key` from the next handshake on.
    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

/// The webhook listener's TLS configuration: TLS 1.3 and 1.2, HTTP/2 and
/// HTTP/1.1, certificates from `resolver`.
#[must_use]
pub fn server_config(resolver: Arc<Resolver>) -> rustls::ServerConfig {
    let mut tls = rustls::ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tls
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_serving_certificate_loads_into_rustls() {
        let ca = Authority::issue().unwrap();
        let serving = ca
            .issue_serving(&serving_names(&["unroot.unroot.svc".to_owned()]))
            .unwrap();
        assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let key = certified_key(
            serving.cert_pem.as_bytes(),
            serving.key_pem.as_bytes(),
            Path::new("mem"),
        )
        .unwrap();
        assert_eq!(key.cert.len(), 1);
        assert!(!format!("{ca:?}{serving:?}").contains("PRIVATE"));
    }

    #[test]
    fn bad_pem_names_the_file() {
        let err = certified_key(b"nothing", b"nothing", Path::new("tls.crt")).unwrap_err();
        assert_eq!(err.to_string(), "tls.crt: no CERTIFICATE block found");
    }
}
