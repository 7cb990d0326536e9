//! Reading certificates: PEM blocks into owned facts (subject, SANs,
//! validity, fingerprint, public key), and whether one certificate signed
//! another. Used by the rotation decisions and by `unroot certs inspect`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use sha2::{Digest as _, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::issue::Names;

/// One X.509 certificate and the facts unroot reads from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// The DER encoding.
    pub der: CertificateDer<'static>,
    /// Subject distinguished name, RFC 4514 style.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ips: Vec<IpAddr>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Whether basicConstraints says CA.
    pub is_ca: bool,
    /// SHA-256 of the DER, colon-separated upper-case hex (as
    /// `openssl x509 -fingerprint -sha256` prints it).
    pub fingerprint: String,
    /// The SubjectPublicKeyInfo, DER.
    pub public_key: Vec<u8>,
    /// `ECDSA P-256`, `RSA`, ... (for display).
    pub key_algorithm: String,
}

fn to_system_time(timestamp: i64) -> SystemTime {
    match u64::try_from(timestamp) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH - Duration::from_secs(timestamp.unsigned_abs()),
    }
}

fn parsed(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(format!("failed to parse certificate: {e}")),
    }
}

fn key_algorithm(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == oid_registry::OID_EC_P256 => "ECDSA P-256".to_owned(),
            Some(c) if c == oid_registry::OID_NIST_EC_P384 => "ECDSA P-384".to_owned(),
            _ => "ECDSA".to_owned(),
        };
    }
    if *algorithm == oid_registry::OID_PKCS1_RSAENCRYPTION {
        return "RSA".to_owned();
    }
    if *algorithm == oid_registry::OID_SIG_ED25519 {
        return "Ed25519".to_owned();
    }
    algorithm.to_id_string()
}

impl Certificate {
    /// Reads the facts of one DER certificate.
    pub fn from_der(der: CertificateDer<'static>) -> Result<Self, String> {
        let cert = parsed(&der)?;
        let mut dns_names = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            ips.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            ips.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        let fingerprint = Sha256::digest(&der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let facts = Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            dns_names,
            ips,
            not_before: to_system_time(cert.validity().not_before.timestamp()),
            not_after: to_system_time(cert.validity().not_after.timestamp()),
            is_ca: cert.is_ca(),
            fingerprint,
            public_key: cert.public_key().raw.to_vec(),
            key_algorithm: key_algorithm(&cert),
            der: CertificateDer::from(Vec::new()),
        };
        Ok(Self { der, ..facts })
    }

    /// Every CERTIFICATE block of `pem`, in order; an error when there is
    /// none or one does not parse.
    pub fn parse_pem(pem: &str) -> Result<Vec<Self>, String> {
        let ders = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("failed to parse certificate PEM: {e}"))?;
        if ders.is_empty() {
            return Err("no CERTIFICATE block found".to_owned());
        }
        ders.into_iter().map(Self::from_der).collect()
    }

    /// The certificate as one PEM block.
    #[must_use]
    pub fn to_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    /// Whether `ca` issued this certificate: its subject is this issuer and
    /// its key verifies this signature.
    #[must_use]
    pub fn is_signed_by(&self, ca: &Self) -> bool {
        let (Ok(cert), Ok(issuer)) = (parsed(&self.der), parsed(&ca.der)) else {
            return false;
        };
        cert.issuer() == issuer.subject()
            && cert.verify_signature(Some(issuer.public_key())).is_ok()
    }

    /// Whether `now` lies within the validity window.
    #[must_use]
    pub fn valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// The subject alternative names.
    #[must_use]
    pub fn names(&self) -> Names {
        Names {
            dns: self.dns_names.clone(),
            ips: self.ips.clone(),
        }
    }

    /// A human-readable summary, one fact per line, indented by `indent`.
    #[must_use]
    pub fn describe(&self, now: SystemTime, indent: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{indent}subject:     {}", self.subject);
        let _ = writeln!(out, "{indent}issuer:      {}", self.issuer);
        let _ = writeln!(out, "{indent}serial:      {}", self.serial);
        let _ = writeln!(
            out,
            "{indent}kind:        {}, {}",
            if self.is_ca { "CA" } else { "end entity" },
            self.key_algorithm
        );
        if !self.dns_names.is_empty() || !self.ips.is_empty() {
            let _ = writeln!(out, "{indent}names:       {}", self.names());
        }
        let _ = writeln!(
            out,
            "{indent}not before:  {}",
            humantime::format_rfc3339_seconds(self.not_before)
        );
        let _ = writeln!(
            out,
            "{indent}not after:   {} ({})",
            humantime::format_rfc3339_seconds(self.not_after),
            remaining(self.not_after, now)
        );
        let _ = writeln!(out, "{indent}sha256:      {}", self.fingerprint);
        out
    }
}

/// "expires in 89d 23h", "expires in 1h 59m", "expired 2m 5s ago".
fn remaining(not_after: SystemTime, now: SystemTime) -> String {
    match not_after.duration_since(now) {
        Ok(left) => format!("expires in {}", approximate(left)),
        Err(e) => format!("expired {} ago", approximate(e.duration())),
    }
}

/// The two largest units of `d`: days and hours, hours and minutes, or
/// minutes and seconds.
fn approximate(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, minutes) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else {
        format!("{minutes}m {}s", secs % 60)
    }
}

/// PEM-encodes `der` under `label`, 64 columns, trailing newline.
#[must_use]
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::issue::Authority;

    #[test]
    fn facts_round_trip_through_pem() {
        let ca = Authority::issue().unwrap();
        let cert = &Certificate::parse_pem(&ca.cert_pem).unwrap()[0];
        assert_eq!(cert.to_pem(), ca.cert_pem.replace("\r\n", "\n"));
        assert_eq!(cert.fingerprint.len(), 32 * 3 - 1);
        assert!(cert.is_signed_by(cert), "a self-signed CA signs itself");
        let text = cert.describe(SystemTime::now(), "  ");
        assert!(text.contains("kind:        CA, ECDSA P-256"), "{text}");
        assert!(text.contains("(expires in 364d 23h)"), "{text}");
        assert_eq!(approximate(Duration::from_secs(3599)), "59m 59s");
        assert_eq!(approximate(Duration::from_secs(7260)), "2h 1m");
    }

    #[test]
    fn every_block_of_a_bundle_is_read_and_garbage_is_refused() {
        let a = Authority::issue().unwrap();
        let b = Authority::issue().unwrap();
        let bundle = format!("{}{}", a.cert_pem, b.cert_pem);
        assert_eq!(Certificate::parse_pem(&bundle).unwrap().len(), 2);
        assert_eq!(
            Certificate::parse_pem("nothing").unwrap_err(),
            "no CERTIFICATE block found"
        );
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(
            Certificate::parse_pem(broken)
                .unwrap_err()
                .starts_with("failed to parse certificate"),
        );
    }
}
