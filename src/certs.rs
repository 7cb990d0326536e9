//! unroot's certificates: issued with rcgen, rotated in the cluster through
//! the Secret `unroot-tls` (or loaded from files cert-manager writes), and
//! served through a resolver that swaps without a restart.
//!
//! | module | owns |
//! |---|---|
//! | [`issue`] | issuing the CA and serving certificates (ECDSA P-256) |
//! | [`inspect`] | reading certificates: names, validity, fingerprints, signatures |
//! | [`rotation`] | when to rotate (pure, clock passed in) and carrying a rotation out |
//! | [`secret`] | the Secret format, and loading it on every replica |
//! | [`lease`] | the Lease that elects the one replica that rotates |
//! | [`manage`] | the in-cluster task: Secret watch, rotation, caBundle injection |
//! | [`keep`] | which certificate `unroot serve` serves, and what keeps it current |
//! | [`fail_closed`] | failing closed once this install has served: the serving check, `failurePolicy`, the owner reference |
//! | [`files`] | cert-manager mode: `--tls-cert`/`--tls-key` watched and reloaded |
//! | [`tls`] | the rustls resolver and server configuration (mTLS) |
//! | [`metrics`] | the certificate metrics |

pub mod fail_closed;
pub mod files;
pub mod inspect;
pub mod issue;
pub mod keep;
pub mod lease;
pub mod manage;
pub mod metrics;
pub mod rotation;
pub mod secret;
pub mod tls;

use std::path::{Path, PathBuf};

pub use self::issue::{Authority, Names, Serving, serving_names};
pub use self::keep::{Settings, keep_certificate};
pub use self::metrics::Metrics;
pub use self::tls::{Resolver, certified_key, load, server_config, server_config_with_client_ca};

/// The readiness condition that holds once a valid serving certificate is
/// loaded.
pub const READY_CONDITION: &str = "certificate";

/// Errors from issuing, loading or storing certificates.
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
    /// Certificate material that cannot be used, and why.
    #[error("{0}")]
    Invalid(String),
    /// Certificate flags that do not fit together, and what to do.
    #[error("{0}")]
    Settings(String),
    /// A call to the API server failed.
    #[error("failed to {action}: {source}")]
    Kube {
        /// What was being done, e.g. `update Secret unroot/unroot-tls`.
        action: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes `pem` to `path`, creating parent directories. Key files are
/// written readable by the owner only.
pub fn write_pem(path: &Path, pem: &str) -> Result<()> {
    let io = |source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if pem.contains("PRIVATE KEY") {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, pem.as_bytes()).map_err(io)
}
