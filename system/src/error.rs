//! The one error of this crate: a file of the system item, or a report,
//! that does not say what its format says.

use std::path::PathBuf;

/// A format could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be read.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for its type.
    #[error("{}: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A line of a line-oriented format is malformed.
    #[error("{what}: line {line}: {message}")]
    Line {
        /// The file or stream (`closure`, a report).
        what: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value cannot be written in its format.
    #[error("{what}: cannot be written: {message}")]
    Write {
        /// What was written.
        what: String,
        /// Why.
        message: String,
    },
}

/// An error and its sources, `: `-separated, on one line: how a cause is
/// shown where no `{:#}` chain printer is at hand (ledger entries, check
/// reasons, console lines). Messages never repeat their source, so each
/// part appears once.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
