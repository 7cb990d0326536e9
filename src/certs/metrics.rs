//! Certificate metrics, registered on the server's registry.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{GaugeVec, IntCounterVec, Registry};

use crate::metrics::{names, register};

/// Which certificate a series is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cert {
    /// unroot's CA (the caBundle).
    Ca,
    /// The serving certificate.
    Serving,
}

impl Cert {
    /// The `cert` label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ca => "ca",
            Self::Serving => "serving",
        }
    }
}

/// Why something went wrong (the bounded `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The Secret holds no valid serving pair; the last good one is kept.
    InvalidSecret,
    /// The `--tls-cert`/`--tls-key` files hold no valid pair.
    InvalidFiles,
    /// Issuing a certificate failed.
    Issue,
    /// Writing the Secret failed.
    ApplySecret,
    /// Writing a webhook configuration's caBundle failed.
    InjectCaBundle,
    /// Reading, taking or renewing the Lease failed.
    Lease,
    /// The serving check could not be sent, or failing closed (or the
    /// owner reference) could not be written to a webhook configuration.
    FailClosed,
}

impl Failure {
    /// Every reason, to initialise the series at 0.
    pub const ALL: [Self; 7] = [
        Self::InvalidSecret,
        Self::InvalidFiles,
        Self::Issue,
        Self::ApplySecret,
        Self::InjectCaBundle,
        Self::Lease,
        Self::FailClosed,
    ];

    /// The `reason` label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSecret => "invalid_secret",
            Self::InvalidFiles => "invalid_files",
            Self::Issue => "issue",
            Self::ApplySecret => "apply_secret",
            Self::InjectCaBundle => "inject_ca_bundle",
            Self::Lease => "lease",
            Self::FailClosed => "fail_closed",
        }
    }
}

/// The certificate metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `unroot_certificate_expiry_timestamp_seconds{cert}`.
    pub expiry: GaugeVec,
    /// `unroot_certificate_rotations_total{cert}`.
    pub rotations: prometheus::IntCounterVec,
    /// `unroot_certificate_errors_total{reason}`.
    pub errors: IntCounterVec,
}

impl Metrics {
    /// Registers the certificate metrics on `registry`, every bounded label
    /// value initialised so the series exist from the start.
    ///
    /// # Panics
    /// Never: constant names, registered once into the server's registry.
    #[must_use]
    #[allow(clippy::missing_panics_doc)]
    pub fn new(registry: &Registry) -> Self {
        let expiry: GaugeVec = register(
            registry,
            names::CERTIFICATE_EXPIRY,
            "When the certificate in use expires (Unix time), by certificate; absent until one is loaded.",
            &["cert"],
        );
        let rotations: IntCounterVec = register(
            registry,
            names::CERTIFICATE_ROTATIONS,
            "Certificates this replica issued (managed mode) or reloaded from files.",
            &["cert"],
        );
        let errors: IntCounterVec = register(
            registry,
            names::CERTIFICATE_ERRORS,
            "Certificate failures, by reason; the last good certificate stays in use.",
            &["reason"],
        );
        for cert in [Cert::Ca, Cert::Serving] {
            rotations.with_label_values(&[cert.as_str()]).reset();
        }
        for failure in Failure::ALL {
            errors.with_label_values(&[failure.as_str()]).reset();
        }
        Self {
            expiry,
            rotations,
            errors,
        }
    }

    /// Records when `cert` expires.
    pub fn set_expiry(&self, cert: Cert, not_after: SystemTime) {
        let secs = not_after
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.expiry.with_label_values(&[cert.as_str()]).set(secs);
    }

    /// Counts a rotation of `cert`.
    pub fn rotated(&self, cert: Cert) {
        self.rotations.with_label_values(&[cert.as_str()]).inc();
    }

    /// Counts a failure.
    pub fn failed(&self, failure: Failure) {
        self.errors.with_label_values(&[failure.as_str()]).inc();
    }

    /// The count of `failure` so far.
    #[must_use]
    pub fn failures(&self, failure: Failure) -> u64 {
        self.errors.with_label_values(&[failure.as_str()]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_exists_at_zero_and_expiry_only_once_known() {
        let registry = Registry::new();
        let m = Metrics::new(&registry);
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        // A dashboard or alert reads no expiry before there is one: no
        // series, rather than a 0 that reads as 1970.
        assert!(
            !text.contains("unroot_certificate_expiry_timestamp_seconds{"),
            "{text}"
        );
        for line in [
            r#"unroot_certificate_rotations_total{cert="ca"} 0"#,
            r#"unroot_certificate_rotations_total{cert="serving"} 0"#,
            r#"unroot_certificate_errors_total{reason="invalid_secret"} 0"#,
            r#"unroot_certificate_errors_total{reason="invalid_files"} 0"#,
            r#"unroot_certificate_errors_total{reason="issue"} 0"#,
            r#"unroot_certificate_errors_total{reason="apply_secret"} 0"#,
            r#"unroot_certificate_errors_total{reason="inject_ca_bundle"} 0"#,
            r#"unroot_certificate_errors_total{reason="lease"} 0"#,
            r#"unroot_certificate_errors_total{reason="fail_closed"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        m.set_expiry(
            Cert::Serving,
            UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        );
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                r#"unroot_certificate_expiry_timestamp_seconds{cert="serving"} 1800000000"#
            ),
            "{text}"
        );
        assert!(
            !text.contains(r#"unroot_certificate_expiry_timestamp_seconds{cert="ca"}"#),
            "{text}"
        );
    }
}
