//! Errors of the transfer stream: each one line, naming the item (or the
//! stream, outside any item).

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::error::{ImportError, StoreError};

/// Why a stream was refused. Nothing of it is left in the store: no item,
/// no manifest, no work directory.
#[derive(Debug, Error)]
pub enum TransferError {
    /// The input does not start with the stream's magic.
    #[error("stream: not a fruix transfer stream")]
    NotAStream,
    /// The input ended before the first item began.
    #[error("stream truncated before the first item")]
    TruncatedAtStart,
    /// The input ended between two items, before the end mark.
    #[error("stream truncated after item {0}")]
    TruncatedAfter(String),
    /// The compressed input is not zstd, or is damaged outside any item.
    #[error("stream unreadable: {0}")]
    Unreadable(String),
    /// A record outside any item that breaks the format.
    #[error("stream: {0}")]
    Bad(String),
    /// The system item is neither in the store nor the stream's first item.
    #[error("the system item {0} is neither in the store nor in the stream")]
    NoSystem(String),
    /// The system item's closure cannot be read.
    #[error("system {system}: {reason}")]
    Closure {
        /// The system item.
        system: String,
        /// Why (the closure file's own error).
        reason: String,
    },
    /// Something wrong with one item of the stream.
    #[error("item {item}: {fault}")]
    Item {
        /// The item, as the stream names it.
        item: String,
        /// What is wrong.
        fault: ItemFault,
    },
    /// The import path refused or failed to write an item; its message
    /// names the item (`item NAME: entry ...`) or the file.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The store root cannot be locked or read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What is wrong with one item of a stream.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ItemFault {
    /// The input ended inside the item.
    #[error("stream truncated")]
    Truncated,
    /// The compressed input is damaged inside the item.
    #[error("stream unreadable: {0}")]
    Unreadable(String),
    /// A record that breaks the format.
    #[error("bad record: {0}")]
    Bad(String),
    /// The item's computed digest is not its name's.
    #[error("digest mismatch (stream has sha256 {0})")]
    DigestMismatch(String),
    /// Neither the system item nor in its closure.
    #[error("not in the closure of {0}")]
    NotInClosure(String),
    /// The item came twice.
    #[error("sent twice")]
    SentTwice,
    /// The system item is absent from the store, and another item came
    /// before it.
    #[error("the system item {0} must come first")]
    SystemFirst(String),
    /// The system item has no manifest copy of the item.
    #[error("no manifest copy in {0}")]
    NoCopy(String),
    /// The system item's manifest copy is not the item's manifest.
    #[error("the manifest copy in {system} {why}")]
    BadCopy {
        /// The system item.
        system: String,
        /// What is wrong with it.
        why: String,
    },
    /// An entry that is not the manifest copy's next one.
    #[error("entry '{entry}' differs from the manifest copy in {system}")]
    EntryDiffers {
        /// The entry, escaped as in manifests.
        entry: String,
        /// The system item.
        system: String,
    },
    /// A file whose content does not hash to the manifest copy's digest.
    #[error("file '{entry}' differs from the manifest copy in {system}")]
    ContentDiffers {
        /// The entry, escaped as in manifests.
        entry: String,
        /// The system item.
        system: String,
    },
    /// The item ended before an entry of its manifest copy.
    #[error("entry '{entry}' of the manifest copy in {system} is not in the stream")]
    MissingEntry {
        /// The entry, escaped as in manifests.
        entry: String,
        /// The system item.
        system: String,
    },
    /// The built manifest is not the system's copy (a check after the
    /// entry-by-entry one, which should have caught it).
    #[error("manifest differs from the copy in {0}")]
    ManifestDiffers(String),
    /// The system item's files are larger than the bound.
    #[error("its files are larger than {0} bytes, the most a system item may hold")]
    TooLarge(u64),
    /// In the closure, but neither in the store nor in the stream.
    #[error("in the closure of {0} but neither in the store nor in the stream")]
    Missing(String),
    /// An entry path the store cannot take.
    #[error("entry '{entry}': {why}")]
    BadPath {
        /// The entry, escaped as in manifests.
        entry: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Why the builder could not write a stream.
#[derive(Debug, Error)]
pub enum SendError {
    /// An item's manifest cannot be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An item's manifest does not hash to its name.
    #[error("item {0}: its manifest does not hash to its name")]
    BadManifest(String),
    /// A file of an item is not what its manifest says.
    #[error("{}: {what}", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// How it differs (`size 3, manifest says 5`).
        what: String,
    },
    /// An I/O error reading an item or writing the stream.
    #[error("{}: cannot {action}", path.display())]
    Io {
        /// The file, or `stream` for the output.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
}
