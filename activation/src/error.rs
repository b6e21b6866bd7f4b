//! Activation errors: lower-case, one line, naming the path and what
//! failed. An underlying error is a `#[source]` and never part of the
//! message: the binaries print the chain (`{:#}`), so a message that
//! embedded it would print it twice. The ledger, which has room for one
//! string, records the chain with `chain`.

use std::io;
use std::path::PathBuf;

/// Why activation, or one of its steps, failed.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// An I/O error on a guest path (shown as the guest sees it).
    #[error("{path}: cannot {action}")]
    Io {
        /// The guest path.
        path: String,
        /// What was being done, as a verb phrase (`create directory`).
        action: &'static str,
        /// The underlying error (a source, not part of the message).
        #[source]
        source: io::Error,
    },
    /// The system item is not one activation can use.
    #[error("{path}: {message}")]
    System {
        /// The file of the system item at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A declared setuid program whose source is not what its item's
    /// manifest says: refused, and nothing installed for it.
    #[error("setuid program {program} of {item}: {reason}")]
    SetuidRefused {
        /// The program as declared (`/usr/bin/passwd`).
        program: String,
        /// The runtime item it comes from.
        item: String,
        /// Why it was refused.
        reason: SetuidRefusal,
    },
    /// A tool activation runs failed.
    #[error("{tool} failed: {message}")]
    Tool {
        /// The tool.
        tool: String,
        /// Its exit status and last output.
        message: String,
    },
}

/// Why a declared setuid program was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetuidRefusal {
    /// The item's manifest has no regular file at that path.
    #[error("not a regular file in the item's manifest")]
    NotInManifest,
    /// The source is a symbolic link.
    #[error("the source is a symbolic link")]
    Link,
    /// The source is not a regular file.
    #[error("the source is not a regular file")]
    NotAFile,
    /// The source's bytes do not hash to the manifest's digest.
    #[error("the source differs from the item's manifest")]
    Differs,
}

/// Attaches a guest path, and what was being done to it, to an I/O error.
pub(crate) trait At<T> {
    fn at(self, guest_path: &str, action: &'static str) -> Result<T, ActivationError>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, guest_path: &str, action: &'static str) -> Result<T, ActivationError> {
        self.map_err(|source| ActivationError::Io {
            path: guest_path.to_owned(),
            action,
            source,
        })
    }
}

pub(crate) use fruix_system::chain;
