//! Issuing certificates with rcgen: unroot's own CA and the serving
//! certificates it signs, all ECDSA P-256.
//!
//! Every certificate is back-dated by [`BACKDATE`] so a peer whose clock runs
//! a little behind still accepts it; the rotation rules count a lifetime from
//! the moment of issuance (`NotBefore + BACKDATE`), not from `NotBefore`.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _, SanType,
};

use super::inspect::Certificate;
use super::{Error, Result};

/// How far `NotBefore` lies before the moment of issuance.
pub const BACKDATE: Duration = Duration::from_secs(3600);
/// Default lifetime of unroot's CA: one year.
pub const DEFAULT_CA_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default lifetime of a serving certificate: 90 days.
pub const DEFAULT_SERVING_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// The Service the API server calls unroot through.
pub const SERVICE: &str = "unroot";

/// The subject alternative names of a serving certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// DNS names, in order; the first is also the subject's common name.
    pub dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
}

impl Names {
    /// The names the API server uses to call the Service `unroot` in
    /// `namespace`: `unroot.<ns>.svc` (what it dials) and
    /// `unroot.<ns>.svc.cluster.local`.
    #[must_use]
    pub fn for_service(namespace: &str) -> Self {
        Self {
            dns: vec![
                format!("{SERVICE}.{namespace}.svc"),
                format!("{SERVICE}.{namespace}.svc.cluster.local"),
            ],
            ips: Vec::new(),
        }
    }

    /// The names of a local run: `localhost` and `127.0.0.1`.
    #[must_use]
    pub fn local() -> Self {
        Self {
            dns: vec!["localhost".to_owned()],
            ips: vec![IpAddr::from([127, 0, 0, 1])],
        }
    }

    /// Adds `dns` names (an entry that parses as an IP address becomes an
    /// IP SAN) and `ips`, skipping duplicates.
    #[must_use]
    pub fn with(mut self, dns: &[String], ips: &[IpAddr]) -> Self {
        for name in dns {
            match name.parse::<IpAddr>() {
                Ok(ip) => self.push_ip(ip),
                Err(_) => {
                    if !self.dns.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                        self.dns.push(name.clone());
                    }
                }
            }
        }
        for ip in ips {
            self.push_ip(*ip);
        }
        self
    }

    fn push_ip(&mut self, ip: IpAddr) {
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    /// Whether both hold the same names, in any order.
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        let dns = |n: &Self| {
            let mut v: Vec<String> = n.dns.iter().map(|d| d.to_ascii_lowercase()).collect();
            v.sort();
            v.dedup();
            v
        };
        let ips = |n: &Self| {
            let mut v = n.ips.clone();
            v.sort();
            v.dedup();
            v
        };
        dns(self) == dns(other) && ips(self) == ips(other)
    }
}

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self
            .dns
            .iter()
            .cloned()
            .chain(self.ips.iter().map(ToString::to_string))
            .collect();
        f.write_str(&all.join(", "))
    }
}

/// A certificate authority unroot issued (or loaded) together with its key.
pub struct Authority {
    /// The CA certificate, PEM (what clients trust: the webhook caBundle).
    pub cert_pem: String,
    key_pem: String,
    not_after: SystemTime,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Authority")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A serving certificate and its key, PEM encoded.
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

/// `time` truncated to whole seconds (what X.509 can hold), so that what we
/// compute from a certificate equals what we put in.
fn whole_seconds(time: SystemTime) -> SystemTime {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_secs(since.as_secs())
}

fn set_validity(params: &mut CertificateParams, now: SystemTime, not_after: SystemTime) {
    let now = whole_seconds(now);
    params.not_before = (now - BACKDATE).into();
    params.not_after = whole_seconds(not_after).into();
}

impl Authority {
    /// Issues a new self-signed CA valid for [`DEFAULT_CA_LIFETIME`].
    pub fn issue() -> Result<Self> {
        Self::issue_at(SystemTime::now(), DEFAULT_CA_LIFETIME)
    }

    /// Issues a new self-signed CA at `now`, valid for `lifetime`. Its
    /// common name carries the issuance time, so two generations in one
    /// caBundle can be told apart.
    pub fn issue_at(now: SystemTime, lifetime: Duration) -> Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let stamp = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        dn.push(DnType::CommonName, format!("unroot-ca@{stamp}"));
        dn.push(DnType::OrganizationName, "unroot");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let not_after = whole_seconds(now + lifetime);
        set_validity(&mut params, now, not_after);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let issuer = Issuer::new(params, key);
        Ok(Self {
            cert_pem,
            key_pem,
            not_after,
            issuer,
        })
    }

    /// Loads a CA from its PEM certificate and PKCS#8 PEM key, checking that
    /// the key is the certificate's and that the certificate is a CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let invalid = |message: &str| Error::Invalid(format!("CA: {message}"));
        let certs = Certificate::parse_pem(cert_pem).map_err(|e| invalid(&e))?;
        let [cert] = certs.as_slice() else {
            return Err(invalid(&format!(
                "expected one certificate, found {}",
                certs.len()
            )));
        };
        if !cert.is_ca {
            return Err(invalid("the certificate is not a CA (basicConstraints)"));
        }
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| invalid(&format!("failed to parse the private key: {e}")))?;
        if key.subject_public_key_info() != cert.public_key {
            return Err(invalid(
                "the private key does not belong to the certificate",
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert.der, key)?;
        Ok(Self {
            cert_pem: cert.to_pem(),
            key_pem: key_pem.to_owned(),
            not_after: cert.not_after,
            issuer,
        })
    }

    /// The CA's private key, PKCS#8 PEM. Handle with care.
    #[must_use]
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// When the CA expires.
    #[must_use]
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues a serving certificate for `names` (entries that parse as IP
    /// addresses become IP SANs), valid for [`DEFAULT_SERVING_LIFETIME`].
    pub fn issue_serving(&self, names: &[String]) -> Result<Serving> {
        let names = Names::default().with(names, &[]);
        self.issue_serving_at(&names, SystemTime::now(), DEFAULT_SERVING_LIFETIME)
    }

    /// Issues a serving certificate for `names` at `now`, valid for
    /// `lifetime` but never beyond this CA's own expiry.
    pub fn issue_serving_at(
        &self,
        names: &Names,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<Serving> {
        if names.dns.is_empty() && names.ips.is_empty() {
            return Err(Error::Invalid(
                "a serving certificate needs at least one DNS name or IP address".to_owned(),
            ));
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let common_name = names
            .dns
            .first()
            .cloned()
            .or_else(|| names.ips.first().map(ToString::to_string))
            .unwrap_or_default();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .dns
            .iter()
            .map(|name| Ok(SanType::DnsName(name.clone().try_into()?)))
            .chain(names.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
            .collect::<Result<_, rcgen::Error>>()?;
        // ECDSA keys only sign; keyEncipherment is for RSA key transport.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let not_after = (now + lifetime).min(self.not_after);
        set_validity(&mut params, now, not_after);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Serving {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The names of a local self-issued certificate (`localhost`,
/// `127.0.0.1`) plus `extra` (IP addresses allowed).
#[must_use]
pub fn serving_names(extra: &[String]) -> Vec<String> {
    let names = Names::local().with(extra, &[]);
    names
        .dns
        .iter()
        .cloned()
        .chain(names.ips.iter().map(ToString::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn ca_is_an_ecdsa_p256_ca_backdated_one_hour() {
        let ca = Authority::issue_at(
            at(NOW) + Duration::from_millis(700),
            Duration::from_secs(600),
        )
        .unwrap();
        let cert = &Certificate::parse_pem(&ca.cert_pem).unwrap()[0];
        assert!(cert.is_ca);
        assert_eq!(
            cert.not_before,
            at(NOW - 3600),
            "back-dated by one hour, whole seconds"
        );
        assert_eq!(cert.not_after, at(NOW + 600));
        assert_eq!(ca.not_after(), at(NOW + 600));
        assert_eq!(cert.key_algorithm, "ECDSA P-256");
        assert!(
            cert.subject.contains(&format!("unroot-ca@{NOW}")),
            "{}",
            cert.subject
        );
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }

    #[test]
    fn serving_certificate_has_the_service_names_and_extra_sans() {
        let ca = Authority::issue_at(at(NOW), DEFAULT_CA_LIFETIME).unwrap();
        let names = Names::for_service("tenant-x").with(
            &["webhook.example.com".to_owned(), "10.0.0.7".to_owned()],
            &["127.0.0.1".parse().unwrap()],
        );
        let serving = ca
            .issue_serving_at(&names, at(NOW), DEFAULT_SERVING_LIFETIME)
            .unwrap();
        let leaf = &Certificate::parse_pem(&serving.cert_pem).unwrap()[0];
        assert_eq!(
            leaf.dns_names,
            [
                "unroot.tenant-x.svc",
                "unroot.tenant-x.svc.cluster.local",
                "webhook.example.com"
            ]
        );
        let ips: Vec<String> = leaf.ips.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.0.0.7", "127.0.0.1"]);
        assert!(leaf.subject.contains("unroot.tenant-x.svc"));
        assert!(!leaf.is_ca);
        assert_eq!(leaf.key_algorithm, "ECDSA P-256");
        assert!(leaf.is_signed_by(&Certificate::parse_pem(&ca.cert_pem).unwrap()[0]));
        assert!(names.same_as(&leaf.names()));
    }

    #[test]
    fn validity_windows() {
        // (case, CA lifetime, leaf lifetime, expected leaf NotAfter - now)
        let cases = [
            ("leaf within the CA", 3600 * 24, 3600, 3600),
            ("leaf capped at the CA's expiry", 600, 3600, 600),
            (
                "90-day default under a one-year CA",
                365 * 86400,
                90 * 86400,
                90 * 86400,
            ),
        ];
        for (case, ca_life, leaf_life, want) in cases {
            let ca = Authority::issue_at(at(NOW), Duration::from_secs(ca_life)).unwrap();
            let serving = ca
                .issue_serving_at(&Names::local(), at(NOW), Duration::from_secs(leaf_life))
                .unwrap();
            let leaf = &Certificate::parse_pem(&serving.cert_pem).unwrap()[0];
            assert_eq!(
                leaf.not_before,
                at(NOW - 3600),
                "{case}: NotBefore back-dated"
            );
            assert_eq!(leaf.not_after, at(NOW + want), "{case}: NotAfter");
        }
    }

    #[test]
    fn a_loaded_ca_signs_leaves_that_chain_to_it() {
        let ca = Authority::issue_at(at(NOW), DEFAULT_CA_LIFETIME).unwrap();
        let loaded = Authority::from_pem(&ca.cert_pem, ca.key_pem()).unwrap();
        assert_eq!(loaded.not_after(), ca.not_after());
        let serving = loaded
            .issue_serving_at(&Names::local(), at(NOW), Duration::from_secs(60))
            .unwrap();
        let leaf = &Certificate::parse_pem(&serving.cert_pem).unwrap()[0];
        let ca_cert = &Certificate::parse_pem(&ca.cert_pem).unwrap()[0];
        assert!(leaf.is_signed_by(ca_cert));
        let other = Authority::issue_at(at(NOW), DEFAULT_CA_LIFETIME).unwrap();
        assert!(!leaf.is_signed_by(&Certificate::parse_pem(&other.cert_pem).unwrap()[0]));
    }

    #[test]
    fn a_ca_with_a_foreign_key_is_refused() {
        let a = Authority::issue_at(at(NOW), DEFAULT_CA_LIFETIME).unwrap();
        let b = Authority::issue_at(at(NOW), DEFAULT_CA_LIFETIME).unwrap();
        let err = Authority::from_pem(&a.cert_pem, b.key_pem()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CA: the private key does not belong to the certificate"
        );
        let serving = a.issue_serving(&serving_names(&[])).unwrap();
        let err = Authority::from_pem(&serving.cert_pem, &serving.key_pem).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
    }

    #[test]
    fn local_names_take_extra_dns_names_and_ips() {
        assert_eq!(
            serving_names(&[
                "webhook.local".to_owned(),
                "10.1.2.3".to_owned(),
                "localhost".to_owned()
            ]),
            ["localhost", "webhook.local", "127.0.0.1", "10.1.2.3"]
        );
    }
}
