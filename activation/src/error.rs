//! Activation errors: lower-case, one line, naming the path.

use std::io;
use std::path::PathBuf;

/// Why activation, or one of its steps, failed.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// An I/O error on a guest path (shown as the guest sees it).
    #[error("{path}: {source}")]
    Io {
        /// The guest path.
        path: String,
        /// The underlying error.
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

/// Attaches a guest path to an I/O error.
pub(crate) trait At<T> {
    fn at(self, guest_path: &str) -> Result<T, ActivationError>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, guest_path: &str) -> Result<T, ActivationError> {
        self.map_err(|source| ActivationError::Io {
            path: guest_path.to_owned(),
            source,
        })
    }
}
