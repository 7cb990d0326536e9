//! The policy in force: a validated document with its content hash and
//! parsed namespace defaults, shared read-only by every request and swapped
//! whole on reload.

use std::fmt::Write as _;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::Document;
use crate::pss::namespace_policy::Policy as NamespacePolicy;

impl Document {
    /// A short, stable hash of the document's content (hex SHA-256, 12 digits).
    #[must_use]
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&json);
        digest.iter().take(6).fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
    }
}

/// A loaded policy with its content hash, shared read-only by every request
/// and swapped whole on reload.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The document.
    pub document: Document,
    /// [`Document::hash`], computed once.
    pub hash: String,
    /// The namespace defaults, parsed once.
    pub pod_security_defaults: NamespacePolicy,
}

impl Snapshot {
    /// Wraps a validated document.
    #[must_use]
    pub fn new(document: Document) -> Self {
        Self {
            hash: document.hash(),
            pod_security_defaults: document.pod_security_defaults(),
            document,
        }
    }
}

impl std::ops::Deref for Snapshot {
    type Target = Document;

    fn deref(&self) -> &Document {
        &self.document
    }
}

/// The policy in force, shared read-only by every request.
pub type Shared = Arc<Snapshot>;
