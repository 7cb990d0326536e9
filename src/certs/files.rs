//! cert-manager mode: the serving pair comes from `--tls-cert` and
//! `--tls-key` (a mounted Secret) and is reloaded when it changes.
//!
//! The files are polled, which follows the kubelet's `..data` symlink swap
//! (both files change at once) as well as files rewritten in place. A new
//! pair is loaded only when it is complete: both files parse, the key
//! belongs to the certificate and the certificate is valid now. A pair
//! caught half-written (a new certificate beside the old key) is not
//! loaded, and only reported when it is still broken one poll later. A
//! renewal that keeps the private key (cert-manager's
//! `rotationPolicy: Never`) changes only the certificate; it is a complete
//! pair and is loaded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};
use tracing::{Instrument as _, debug, error, info, info_span};

use super::inspect::Certificate;
use super::metrics::{Cert, Failure, Metrics};
use super::tls::{Resolver, certified_key};
use super::{Error, Result};

/// How often the files are checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// The pair in use is what the files hold.
    Unchanged,
    /// A new pair is in use (its SHA-256 fingerprint).
    Reloaded(String),
    /// The files changed but are not a valid pair (yet); the pair in use
    /// stays. `reported` is true the one time it is logged and counted.
    Refused {
        /// Why.
        why: String,
        /// Whether this poll logged and counted it.
        reported: bool,
    },
}

/// Reloads a certificate/key file pair into a resolver.
#[derive(Debug)]
pub struct Reloader {
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<Resolver>,
    metrics: Metrics,
    loaded: Option<[u8; 32]>,
    refused: Option<([u8; 32], bool)>,
}

impl Reloader {
    /// A reloader of `cert` and `key` into `resolver`.
    #[must_use]
    pub fn new(cert: PathBuf, key: PathBuf, resolver: Arc<Resolver>, metrics: Metrics) -> Self {
        Self {
            cert,
            key,
            resolver,
            metrics,
            loaded: None,
            refused: None,
        }
    }

    fn read(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| Error::Io {
                action: "read",
                path: path.clone(),
                source,
            })
        };
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    fn check(
        &self,
        cert: &[u8],
        key: &[u8],
        now: SystemTime,
    ) -> Result<(rustls::sign::CertifiedKey, Certificate)> {
        let certified = certified_key(cert, key, &self.cert)?;
        let leaf = Certificate::from_der(certified.cert[0].clone()).map_err(|why| Error::Pem {
            path: self.cert.clone(),
            message: why,
        })?;
        if !leaf.valid_at(now) {
            return Err(Error::Pem {
                path: self.cert.clone(),
                message: format!(
                    "the certificate is not valid now (valid from {} to {})",
                    humantime::format_rfc3339_seconds(leaf.not_before),
                    humantime::format_rfc3339_seconds(leaf.not_after)
                ),
            });
        }
        Ok((certified, leaf))
    }

    /// Loads the pair at start; an error when it is not a valid pair.
    pub fn load(&mut self) -> Result<String> {
        let (cert, key) = self.read()?;
        let (certified, leaf) = self.check(&cert, &key, SystemTime::now())?;
        self.swap(digest(&cert, &key), certified, &leaf);
        Ok(leaf.fingerprint)
    }

    fn swap(
        &mut self,
        digest: [u8; 32],
        certified: rustls::sign::CertifiedKey,
        leaf: &Certificate,
    ) {
        self.resolver.replace(certified);
        self.loaded = Some(digest);
        self.refused = None;
        self.metrics.set_expiry(Cert::Serving, leaf.not_after);
        // cert-manager puts the issuing CA beside the pair as ca.crt: report
        // its expiry too (the earliest, should it hold several).
        let ca = std::fs::read_to_string(self.cert.with_file_name("ca.crt"))
            .ok()
            .and_then(|pem| Certificate::parse_pem(&pem).ok())
            .and_then(|certs| certs.iter().map(|c| c.not_after).min());
        if let Some(not_after) = ca {
            self.metrics.set_expiry(Cert::Ca, not_after);
        }
    }

    /// Checks the files once, at `now`.
    pub fn poll(&mut self, now: SystemTime) -> Polled {
        let (cert, key) = match self.read() {
            Ok(pair) => pair,
            Err(e) => return self.refuse([0; 32], e.to_string()),
        };
        let digest = digest(&cert, &key);
        if self.loaded == Some(digest) {
            return Polled::Unchanged;
        }
        match self.check(&cert, &key, now) {
            Ok((certified, leaf)) => {
                self.swap(digest, certified, &leaf);
                self.metrics.rotated(Cert::Serving);
                info!(
                    cert = %self.cert.display(),
                    serving = %leaf.fingerprint,
                    names = %leaf.names(),
                    not_after = %humantime::format_rfc3339_seconds(leaf.not_after),
                    "serving certificate reloaded from the files"
                );
                Polled::Reloaded(leaf.fingerprint)
            }
            Err(e) => self.refuse(digest, e.to_string()),
        }
    }

    /// A pair seen broken once may be half-written: wait a poll. Still
    /// broken on the next poll with the same content: log and count, once.
    fn refuse(&mut self, digest: [u8; 32], why: String) -> Polled {
        let reported = match self.refused {
            Some((seen, done)) if seen == digest => {
                if !done {
                    self.metrics.failed(Failure::InvalidFiles);
                    error!(cert = %self.cert.display(), key = %self.key.display(), error = %why, "the certificate files are not a valid pair; the pair in use stays");
                    self.refused = Some((digest, true));
                }
                !done
            }
            _ => {
                debug!(cert = %self.cert.display(), error = %why, "the certificate files changed but are not a valid pair yet");
                self.refused = Some((digest, false));
                false
            }
        };
        Polled::Refused { why, reported }
    }

    /// Polls every `interval`, forever, in a task of its own.
    pub fn spawn(mut self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let span = info_span!("cert_file_watch", cert = %self.cert.display());
        tokio::spawn(
            async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let _ = self.poll(SystemTime::now());
                }
            }
            .instrument(span),
        )
    }
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(Sha256::digest(cert));
    hasher.update(Sha256::digest(key));
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::issue::{Authority, Names};

    fn pair(ca: &Authority) -> (String, String) {
        let s = ca
            .issue_serving_at(
                &Names::local(),
                SystemTime::now(),
                Duration::from_secs(3600),
            )
            .unwrap();
        (s.cert_pem, s.key_pem)
    }

    #[test]
    fn a_complete_new_pair_is_loaded_and_a_half_written_one_waits() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let ca = Authority::issue().unwrap();
        let (c1, k1) = pair(&ca);
        std::fs::write(&cert_path, &c1).unwrap();
        std::fs::write(&key_path, &k1).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        let resolver = Arc::new(Resolver::empty());
        let metrics = Metrics::new(&prometheus::Registry::new());
        let mut r = Reloader::new(
            cert_path.clone(),
            key_path.clone(),
            Arc::clone(&resolver),
            metrics.clone(),
        );
        let first = r.load().unwrap();
        let ca_expiry = ca
            .not_after()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            (metrics.expiry.with_label_values(&["ca"]).get() - ca_expiry).abs() < 1.0,
            "the expiry of ca.crt beside the pair is reported"
        );
        let now = SystemTime::now();
        assert_eq!(r.poll(now), Polled::Unchanged);

        let (c2, k2) = pair(&ca);
        std::fs::write(&cert_path, &c2).unwrap();
        assert!(
            matches!(
                r.poll(now),
                Polled::Refused {
                    reported: false,
                    ..
                }
            ),
            "half-written: wait"
        );
        assert!(
            matches!(r.poll(now), Polled::Refused { reported: true, .. }),
            "still broken: report"
        );
        assert!(
            matches!(
                r.poll(now),
                Polled::Refused {
                    reported: false,
                    ..
                }
            ),
            "reported once"
        );
        assert_eq!(metrics.failures(Failure::InvalidFiles), 1);
        let served = Certificate::from_der(resolver.current().unwrap().cert[0].clone()).unwrap();
        assert_eq!(served.fingerprint, first, "the old pair stays");

        std::fs::write(&key_path, &k2).unwrap();
        let Polled::Reloaded(second) = r.poll(now) else {
            panic!("not reloaded")
        };
        assert_ne!(second, first);
        assert_eq!(
            Certificate::from_der(resolver.current().unwrap().cert[0].clone())
                .unwrap()
                .fingerprint,
            second
        );
    }
}
