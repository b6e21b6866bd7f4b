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
    /// A tool activation runs failed.
    #[error("{tool} failed: {message}")]
    Tool {
        /// The tool.
        tool: String,
        /// Its exit status and last output.
        message: String,
    },
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
