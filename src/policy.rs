//! The policy as the shell holds it: the document, its validation, hash and
//! snapshot are the core's (`unroot_core::policy`, re-exported here); this
//! module reads policy files and watches the file or ConfigMap ([`watch`]).

pub mod watch;

use std::path::Path;

pub use unroot_core::policy::*;

/// Reading a policy document from a file.
pub trait DocumentFile: Sized {
    /// Reads, parses and validates a policy file; errors name the file.
    fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_with_text(path).map(|(document, _)| document)
    }

    /// As [`DocumentFile::from_file`], with the text read: the file watcher
    /// compares its next reads with it (read twice, a change in between
    /// would never be applied).
    fn from_file_with_text(path: &Path) -> Result<(Self, String)>;
}

impl DocumentFile for Document {
    fn from_file_with_text(path: &Path) -> Result<(Self, String)> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        Ok((Self::from_named_yaml(&shown, &text)?, text))
    }
}
