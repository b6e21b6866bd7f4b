//! The agent library's errors: each names its input once and carries its
//! cause as a source; the binary prints the chain (`{:#}`) and maps to exit
//! statuses, and check reasons print it with [`chain`].

use std::path::PathBuf;

use fruix_system::FormatError;

/// Why the agent could not read what it checks.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A system path that is not under `/frx/store`.
    #[error("{0}: not under /frx/store")]
    NotInStore(String),
    /// A system path whose last component is not an item name.
    #[error("{path}")]
    SystemName {
        /// The guest path.
        path: String,
        /// Why the name is not one.
        #[source]
        source: fruix_store::NameError,
    },
    /// A file of the system item (its configuration, its closure), named
    /// by the format's own error.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// An I/O error on a path.
    #[error("{}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

pub use fruix_system::chain;
