//! The Secret `unroot-tls`, the source of truth for unroot's certificates,
//! and how a replica loads it.
//!
//! | key | content |
//! |---|---|
//! | `ca.crt` | the CA that signs serving certificates now (PEM) |
//! | `ca.key` | its private key (PKCS#8 PEM) |
//! | `tls.crt` | the serving certificate (PEM) |
//! | `tls.key` | its private key (PKCS#8 PEM) |
//! | `ca-previous.crt` | while a CA is being retired: the old CA (PEM), still in every caBundle |
//!
//! The Secret is of type `Opaque`: the shipped manifests create it empty
//! (RBAC cannot grant `create` for one name only, so unroot adopts an
//! existing Secret), and a `kubernetes.io/tls` Secret must hold `tls.crt`
//! and `tls.key` from its creation on, and its type can never change. It
//! also holds a CA key, which tools that pick up `kubernetes.io/tls`
//! Secrets as serving pairs have no business with. unroot reads and writes
//! either type.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use k8s_openapi::ByteString;
use rustls::sign::CertifiedKey;
use tracing::{error, info};

use super::inspect::Certificate;
use super::issue::Authority;
use super::metrics::{Cert, Failure, Metrics};
use super::tls::{Resolver, certified_key};

/// Key of the current CA certificate.
pub const CA_CERT: &str = "ca.crt";
/// Key of the current CA's private key.
pub const CA_KEY: &str = "ca.key";
/// Key of the serving certificate.
pub const TLS_CERT: &str = "tls.crt";
/// Key of the serving certificate's private key.
pub const TLS_KEY: &str = "tls.key";
/// Key of the CA being retired, while one is.
pub const CA_PREVIOUS: &str = "ca-previous.crt";

/// The certificate material of the Secret, as PEM text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// `ca.crt`.
    pub ca_cert: String,
    /// `ca.key`.
    pub ca_key: String,
    /// `tls.crt`.
    pub tls_cert: String,
    /// `tls.key`.
    pub tls_key: String,
    /// `ca-previous.crt` (empty when no CA is being retired).
    pub ca_previous: String,
}

impl fmt::Debug for Contents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material, not even its length.
        f.debug_struct("Contents")
            .field("ca_cert_bytes", &self.ca_cert.len())
            .field("tls_cert_bytes", &self.tls_cert.len())
            .field("ca_previous_bytes", &self.ca_previous.len())
            .finish_non_exhaustive()
    }
}

impl Contents {
    /// Reads the Secret's `data` (missing keys are empty).
    #[must_use]
    pub fn from_data(data: Option<&BTreeMap<String, ByteString>>) -> Self {
        let get = |key: &str| {
            data.and_then(|d| d.get(key))
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .unwrap_or_default()
        };
        Self {
            ca_cert: get(CA_CERT),
            ca_key: get(CA_KEY),
            tls_cert: get(TLS_CERT),
            tls_key: get(TLS_KEY),
            ca_previous: get(CA_PREVIOUS),
        }
    }

    /// The Secret's `data`; `ca-previous.crt` only while it holds something.
    #[must_use]
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        let mut data = BTreeMap::new();
        for (key, value) in [
            (CA_CERT, &self.ca_cert),
            (CA_KEY, &self.ca_key),
            (TLS_CERT, &self.tls_cert),
            (TLS_KEY, &self.tls_key),
        ] {
            data.insert(key.to_owned(), ByteString(value.as_bytes().to_vec()));
        }
        if !self.ca_previous.trim().is_empty() {
            data.insert(
                CA_PREVIOUS.to_owned(),
                ByteString(self.ca_previous.as_bytes().to_vec()),
            );
        }
        data
    }

    /// Whether nothing is in it yet (the Secret as the manifests create it).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.tls_cert,
            &self.tls_key,
            &self.ca_previous,
        ]
        .iter()
        .all(|v| v.trim().is_empty())
    }

    /// Parses and checks everything, as of `now`.
    #[must_use]
    pub fn parse(&self, now: SystemTime) -> Parsed {
        let ca_cert = if self.ca_cert.trim().is_empty() {
            Err(Problem::Missing)
        } else {
            Certificate::parse_pem(&self.ca_cert)
                .map_err(Problem::Invalid)
                .and_then(|mut certs| {
                    if certs.len() == 1 {
                        Ok(certs.remove(0))
                    } else {
                        Err(Problem::Invalid(format!(
                            "{CA_CERT}: expected one certificate, found {}",
                            certs.len()
                        )))
                    }
                })
        };
        let ca = match &ca_cert {
            Err(p) => Err(p.clone()),
            Ok(_) if self.ca_key.trim().is_empty() => Err(Problem::Missing),
            Ok(cert) => match Authority::from_pem(&self.ca_cert, &self.ca_key) {
                Err(e) => Err(Problem::Invalid(e.to_string())),
                Ok(_) if !cert.valid_at(now) => Err(Problem::Expired),
                Ok(_) => Ok(cert.clone()),
            },
        };
        let previous = Certificate::parse_pem(&self.ca_previous)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.is_ca && c.valid_at(now))
            .collect::<Vec<_>>();
        let leaf = self.parse_leaf(ca_cert.as_ref().ok(), &previous, now);
        Parsed {
            ca_cert: ca_cert.ok(),
            ca,
            previous,
            leaf,
        }
    }

    fn parse_leaf(
        &self,
        ca: Option<&Certificate>,
        previous: &[Certificate],
        now: SystemTime,
    ) -> Result<Leaf, Problem> {
        if self.tls_cert.trim().is_empty() || self.tls_key.trim().is_empty() {
            return Err(Problem::Missing);
        }
        let cert = Certificate::parse_pem(&self.tls_cert)
            .map_err(|e| Problem::Invalid(format!("{TLS_CERT}: {e}")))?
            .remove(0);
        let key = certified_key(
            self.tls_cert.as_bytes(),
            self.tls_key.as_bytes(),
            Path::new(TLS_CERT),
        )
        .map_err(|e| Problem::Invalid(e.to_string()))?;
        if !cert.valid_at(now) {
            return Err(Problem::Expired);
        }
        let issuer = if ca.is_some_and(|ca| cert.is_signed_by(ca)) {
            Issuer::Current
        } else if let Some(i) = previous.iter().position(|p| cert.is_signed_by(p)) {
            Issuer::Previous(i)
        } else {
            Issuer::Unknown
        };
        Ok(Leaf { cert, key, issuer })
    }
}

/// Why a part of the Secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not there (or empty).
    Missing,
    /// There but broken: the reason (never the content).
    Invalid(String),
    /// Outside its validity window.
    Expired,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("missing"),
            Self::Invalid(why) => f.write_str(why),
            Self::Expired => f.write_str("expired"),
        }
    }
}

/// Which CA of the Secret signed the serving certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer {
    /// `ca.crt`.
    Current,
    /// The n-th certificate of `ca-previous.crt`.
    Previous(usize),
    /// Neither: the API server could not verify it with the caBundle.
    Unknown,
}

/// A serving certificate that parses, matches its key and is valid now.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate.
    pub cert: Certificate,
    /// The rustls key (certificate chain and signing key).
    pub key: CertifiedKey,
    /// Who signed it.
    pub issuer: Issuer,
}

/// The Secret, parsed and checked.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// `ca.crt` when it parses, whatever its key.
    pub ca_cert: Option<Certificate>,
    /// The CA when it can sign: certificate and key parse and match, and it
    /// is valid now.
    pub ca: Result<Certificate, Problem>,
    /// The CAs being retired that are still valid.
    pub previous: Vec<Certificate>,
    /// The serving certificate.
    pub leaf: Result<Leaf, Problem>,
}

impl Parsed {
    /// The caBundle for the webhook configurations: the current CA, then
    /// the ones being retired (expired ones left out), as normalised PEM.
    #[must_use]
    pub fn ca_bundle(&self, now: SystemTime) -> String {
        self.ca_cert
            .iter()
            .filter(|c| c.valid_at(now))
            .chain(&self.previous)
            .map(Certificate::to_pem)
            .collect()
    }

    /// The serving pair a replica may serve: valid now, and signed by a CA
    /// of the caBundle.
    pub fn serving(&self) -> Result<&Leaf, Problem> {
        match &self.leaf {
            Ok(leaf) if leaf.issuer == Issuer::Unknown => Err(Problem::Invalid(format!(
                "{TLS_CERT} is not signed by {CA_CERT} nor by {CA_PREVIOUS}"
            ))),
            Ok(leaf) => Ok(leaf),
            Err(p) => Err(p.clone()),
        }
    }
}

/// Called with `true` once a valid certificate is served (readiness).
pub type ReadySignal = Arc<dyn Fn(bool) + Send + Sync>;

/// Loads each version of the Secret into the server, on every replica:
/// a valid serving pair is swapped in, anything else is refused and the
/// last good pair stays in use.
pub struct Loader {
    resolver: Arc<Resolver>,
    metrics: Metrics,
    ready: ReadySignal,
    bundle_out: Option<PathBuf>,
    state: Mutex<LoaderState>,
}

#[derive(Default)]
struct LoaderState {
    serving: Option<String>,
    bundle: Option<String>,
    last_good: Option<Contents>,
}

impl fmt::Debug for Loader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader").finish_non_exhaustive()
    }
}

/// What [`Loader::load`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// A new serving certificate is in use (its SHA-256 fingerprint).
    Swapped(String),
    /// The Secret's serving certificate was already in use.
    Unchanged,
    /// The Secret holds no serving certificate yet.
    Empty,
}

impl Loader {
    /// A loader swapping certificates into `resolver`.
    #[must_use]
    pub fn new(resolver: Arc<Resolver>, metrics: Metrics, ready: ReadySignal) -> Self {
        Self {
            resolver,
            metrics,
            ready,
            bundle_out: None,
            state: Mutex::new(LoaderState::default()),
        }
    }

    /// Also writes the caBundle to `path` whenever it changes (for local
    /// runs: the file a client trusts).
    #[must_use]
    pub fn with_bundle_out(mut self, path: Option<PathBuf>) -> Self {
        self.bundle_out = path;
        self
    }

    /// Loads `contents` (read from `source`, for the logs): swaps in its
    /// serving pair when valid and new; otherwise keeps the pair in use,
    /// logs why and counts it.
    pub fn load(
        &self,
        source: &str,
        contents: &Contents,
        now: SystemTime,
    ) -> Result<Loaded, Problem> {
        let parsed = contents.parse(now);
        let leaf = match parsed.serving() {
            Ok(leaf) => leaf,
            Err(Problem::Missing) if contents.is_empty() => {
                info!(source, "the Secret holds no certificate yet");
                return Ok(Loaded::Empty);
            }
            Err(problem) => {
                self.metrics.failed(Failure::InvalidSecret);
                let kept = self.current_fingerprint();
                error!(source, %problem, kept = kept.as_deref().unwrap_or("none"), "refused the Secret's serving certificate; the last good one stays in use");
                return Err(problem);
            }
        };
        let fingerprint = leaf.cert.fingerprint.clone();
        let Ok(mut state) = self.state.lock() else {
            return Err(Problem::Invalid("loader state poisoned".to_owned()));
        };
        if parsed.ca.is_ok() {
            state.last_good = Some(contents.clone());
        }
        self.metrics.set_expiry(Cert::Serving, leaf.cert.not_after);
        if let Some(ca) = &parsed.ca_cert {
            self.metrics.set_expiry(Cert::Ca, ca.not_after);
        }
        let bundle = parsed.ca_bundle(now);
        if state.bundle.as_ref() != Some(&bundle) {
            if let Some(path) = &self.bundle_out
                && let Err(e) = super::write_pem(path, &bundle)
            {
                error!(error = %e, "failed to write the caBundle file");
            }
            state.bundle = Some(bundle);
        }
        if state.serving.as_ref() == Some(&fingerprint) {
            return Ok(Loaded::Unchanged);
        }
        self.resolver.replace(leaf.key.clone());
        let previous = state.serving.replace(fingerprint.clone());
        drop(state);
        (self.ready)(true);
        info!(
            source,
            serving = %fingerprint,
            previous = previous.as_deref().unwrap_or("none"),
            names = %leaf.cert.names(),
            not_after = %humantime::format_rfc3339_seconds(leaf.cert.not_after),
            "serving certificate loaded"
        );
        Ok(Loaded::Swapped(fingerprint))
    }

    /// The fingerprint of the serving certificate in use.
    #[must_use]
    pub fn current_fingerprint(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.serving.clone())
    }

    /// The last Secret contents this replica loaded with a usable CA: what a
    /// Secret deleted or broken by hand is restored from.
    #[must_use]
    pub fn last_good(&self) -> Option<Contents> {
        self.state.lock().ok().and_then(|s| s.last_good.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::certs::issue::Names;

    fn issued(ca: &Authority, now: SystemTime) -> Contents {
        let serving = ca
            .issue_serving_at(&Names::local(), now, Duration::from_secs(3600))
            .unwrap();
        Contents {
            ca_cert: ca.cert_pem.clone(),
            ca_key: ca.key_pem().to_owned(),
            tls_cert: serving.cert_pem,
            tls_key: serving.key_pem,
            ca_previous: String::new(),
        }
    }

    fn loader() -> (Loader, Arc<Resolver>, Metrics, Arc<AtomicBool>) {
        let resolver = Arc::new(Resolver::empty());
        let metrics = Metrics::new(&prometheus::Registry::new());
        let ready = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ready);
        let loader = Loader::new(
            Arc::clone(&resolver),
            metrics.clone(),
            Arc::new(move |ok| flag.store(ok, Ordering::SeqCst)),
        );
        (loader, resolver, metrics, ready)
    }

    #[test]
    fn data_round_trips_and_debug_hides_keys() {
        let now = SystemTime::now();
        let contents = issued(&Authority::issue().unwrap(), now);
        let data = contents.to_data();
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["ca.crt", "ca.key", "tls.crt", "tls.key"]
        );
        assert_eq!(Contents::from_data(Some(&data)), contents);
        assert!(!format!("{contents:?}").contains("PRIVATE"));
        assert!(Contents::from_data(None).is_empty());
    }

    #[test]
    fn a_valid_secret_is_swapped_in_once_and_readiness_follows() {
        let now = SystemTime::now();
        let (loader, resolver, metrics, ready) = loader();
        let contents = issued(&Authority::issue().unwrap(), now);
        assert_eq!(
            loader.load("test", &Contents::default(), now),
            Ok(Loaded::Empty)
        );
        assert!(!ready.load(Ordering::SeqCst));
        let Ok(Loaded::Swapped(fp)) = loader.load("test", &contents, now) else {
            panic!("not swapped");
        };
        assert!(ready.load(Ordering::SeqCst));
        assert!(resolver.current().is_some());
        assert_eq!(loader.load("test", &contents, now), Ok(Loaded::Unchanged));
        assert_eq!(loader.current_fingerprint(), Some(fp));
        assert_eq!(metrics.failures(Failure::InvalidSecret), 0);
        assert_eq!(loader.last_good(), Some(contents));
    }

    #[test]
    fn a_broken_secret_is_refused_counted_and_the_last_good_pair_kept() {
        let now = SystemTime::now();
        let (loader, resolver, metrics, _) = loader();
        let ca = Authority::issue().unwrap();
        let good = issued(&ca, now);
        loader.load("test", &good, now).unwrap();
        let served = resolver.current().unwrap().cert[0].clone();
        let other = issued(&ca, now);
        let foreign_ca = issued(&Authority::issue().unwrap(), now);
        // (case, contents, expected problem)
        let cases = [
            (
                "key of another certificate",
                Contents {
                    tls_key: other.tls_key.clone(),
                    ..good.clone()
                },
                "key",
            ),
            (
                "unparsable certificate",
                Contents {
                    tls_cert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
                        .to_owned(),
                    ..good.clone()
                },
                "failed to parse",
            ),
            (
                "signed by a CA that is not in the bundle",
                Contents {
                    tls_cert: foreign_ca.tls_cert.clone(),
                    tls_key: foreign_ca.tls_key.clone(),
                    ..good.clone()
                },
                "is not signed by ca.crt nor by ca-previous.crt",
            ),
            (
                "serving key removed",
                Contents {
                    tls_key: String::new(),
                    ..good.clone()
                },
                "missing",
            ),
        ];
        for (i, (case, contents, want)) in cases.iter().enumerate() {
            let err = loader.load("test", contents, now).unwrap_err();
            assert!(err.to_string().contains(want), "{case}: {err}");
            assert_eq!(
                resolver.current().unwrap().cert[0],
                served,
                "{case}: last good kept"
            );
            assert_eq!(
                metrics.failures(Failure::InvalidSecret),
                i as u64 + 1,
                "{case}"
            );
        }
    }

    #[test]
    fn an_expired_serving_certificate_is_refused() {
        let ca = Authority::issue().unwrap();
        let past = SystemTime::now() - Duration::from_secs(7200);
        let contents = issued(&ca, past - Duration::from_secs(3600));
        let parsed = contents.parse(SystemTime::now());
        assert_eq!(parsed.serving().unwrap_err(), Problem::Expired);
    }

    #[test]
    fn leaf_issuer_is_found_among_current_and_previous_cas() {
        let now = SystemTime::now();
        let old = Authority::issue().unwrap();
        let new = Authority::issue().unwrap();
        let mut contents = issued(&old, now);
        contents.ca_previous = old.cert_pem.clone();
        contents.ca_cert = new.cert_pem.clone();
        contents.ca_key = new.key_pem().to_owned();
        let parsed = contents.parse(now);
        assert_eq!(parsed.leaf.as_ref().unwrap().issuer, Issuer::Previous(0));
        assert!(parsed.serving().is_ok());
        assert_eq!(
            parsed.ca_bundle(now),
            format!("{}{}", new.cert_pem, old.cert_pem)
        );
    }
}
