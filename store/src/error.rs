//! Typed errors of the store library. Messages are lower-case, one line, and
//! name the input they are about and what failed. An underlying error is a
//! `#[source]` and never part of the message: the binaries print the chain
//! (`{:#}`), so a message that embedded it would print it twice.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// An item or package name that breaks the contract.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NameError {
    /// A full `<digest>-<name>` item name is malformed.
    #[error("invalid item name '{name}': it {reason}")]
    Item {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A package name (the part after the digest) is malformed.
    #[error("invalid package name '{name}': it {reason}")]
    Package {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A manifest that is not in the canonical `fruix-v1` form.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct ManifestError {
    /// 1-based line number of the offending line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl ManifestError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        ManifestError {
            line,
            message: message.into(),
        }
    }
}

/// Why an import was refused or failed. Nothing is left in the store when an
/// import returns one of these.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The package name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A source entry has a type the store cannot hold.
    #[error("{source_path}: entry '{entry}' is a {kind}, which a store item cannot hold")]
    UnsupportedType {
        /// The archive or directory being imported.
        source_path: PathBuf,
        /// The entry, relative to the source.
        entry: String,
        /// What it is: device node, fifo, socket, ...
        kind: &'static str,
    },
    /// An archive entry names an absolute path.
    #[error("{source_path}: entry '{entry}' has an absolute path")]
    AbsolutePath {
        /// The archive.
        source_path: PathBuf,
        /// The entry as named in the archive.
        entry: String,
    },
    /// An archive entry climbs out with `..`.
    #[error("{source_path}: entry '{entry}' contains a '..' component")]
    DotDot {
        /// The archive.
        source_path: PathBuf,
        /// The entry as named in the archive.
        entry: String,
    },
    /// An entry would be written below a symbolic link.
    #[error("{source_path}: entry '{entry}' would be written through the symbolic link '{link}'")]
    ThroughSymlink {
        /// The archive or directory.
        source_path: PathBuf,
        /// The entry.
        entry: String,
        /// The symbolic link in its way.
        link: String,
    },
    /// An entry would be written below something that is not a directory, or
    /// would replace a directory with a non-directory.
    #[error("{source_path}: entry '{entry}' conflicts with '{other}', which is not a directory")]
    NotADirectory {
        /// The archive or directory.
        source_path: PathBuf,
        /// The entry.
        entry: String,
        /// The earlier entry it conflicts with.
        other: String,
    },
    /// A hard link whose target is not a file earlier in the same archive.
    #[error(
        "{source_path}: entry '{entry}' is a hard link to '{target}', which is not a file earlier in the archive"
    )]
    HardLinkOutside {
        /// The archive.
        source_path: PathBuf,
        /// The hard link entry.
        entry: String,
        /// What it points to.
        target: String,
    },
    /// An archive entry that names the item root as something else than a directory.
    #[error("{source_path}: entry '{entry}' names the item root but is not a directory")]
    RootNotDirectory {
        /// The archive.
        source_path: PathBuf,
        /// The entry.
        entry: String,
    },
    /// The source is neither a directory nor an archive this build can read.
    #[error("{path}: {reason}")]
    BadSource {
        /// The source.
        path: PathBuf,
        /// Why it cannot be imported.
        reason: String,
    },
    /// A source entry changed between the listing and the reading: swapped
    /// for a symbolic link or another file, or resized. Refused, since a
    /// build as root must read only what it listed.
    #[error("{}: changed while it was imported: {what}", path.display())]
    SourceChanged {
        /// The entry, as a path under the source.
        path: PathBuf,
        /// How it changed (`it is now a symbolic link`).
        what: &'static str,
    },
    /// Reading the archive failed (corrupt, truncated, bad compression).
    #[error("{path}: cannot read archive: {message}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// The decoder's or tar reader's message.
        message: String,
    },
    /// An I/O error on a named path.
    #[error("{}: cannot {action}", path.display())]
    Io {
        /// The path the operation was about.
        path: PathBuf,
        /// What was being done, as a verb phrase (`create directory`).
        action: &'static str,
        /// The underlying error: a source, not part of the message, since
        /// the binaries print the whole chain.
        #[source]
        source: io::Error,
    },
}

/// A failure that stops a whole verification run (as opposed to a finding,
/// which is reported and the run goes on).
#[derive(Debug, Error)]
pub enum VerifyError {
    /// The root or its store directory cannot be read at all.
    #[error("{}: cannot {action}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done, as a verb phrase (`read directory`).
        action: &'static str,
        /// The underlying error (a source, not part of the message).
        #[source]
        source: io::Error,
    },
    /// An item named on the command line is not a valid item name.
    #[error(transparent)]
    Name(#[from] NameError),
}

/// Attaches a path, and what was being done to it, to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>, action: &'static str) -> Result<T, ImportError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>, action: &'static str) -> Result<T, ImportError> {
        self.map_err(|source| ImportError::Io {
            path: path.into(),
            action,
            source,
        })
    }
}

/// An error reading or locking a store root.
#[derive(Debug, Error)]
pub enum StoreError {
    /// An I/O error on a named path.
    #[error("{}: cannot {action}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done, as a verb phrase (`read directory`).
        action: &'static str,
        /// The underlying error (a source, not part of the message).
        #[source]
        source: io::Error,
    },
    /// A manifest file that is not canonical.
    #[error("{}: not a canonical manifest", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong, with its line (a source, not part of the message).
        #[source]
        source: ManifestError,
    },
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io {
                path,
                action,
                source,
            } => ImportError::Io {
                path,
                action,
                source,
            },
            // `BadSource` carries no source, so the manifest's error goes
            // into its reason, worded as `StoreError` prints as a chain.
            StoreError::Manifest { path, source } => ImportError::BadSource {
                path,
                reason: format!("not a canonical manifest: {source}"),
            },
        }
    }
}
