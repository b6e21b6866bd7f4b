//! The transfer stream: store items sent from the builder to a guest's
//! store, as `fruix system deploy` sends the items a guest lacks and
//! `fruix-agent store receive` takes them in. The byte-level format is in
//! `docs/store-format.md` ("Transfer stream"); [`StreamWriter`] is its one
//! writer and [`receive`] its one reader.
//!
//! The reader trusts nothing in the stream: every item is built through
//! the store's own import path in a work directory, must hash to its name
//! and (all but the system item) to the manifest copy the system item
//! holds, and only whole, checked items are renamed into the store, the
//! system item last, once the end mark has been read.

mod codec;
mod entries;
mod error;
mod frame;
mod receive;
mod send;
#[cfg(feature = "archive")]
mod send_zstd;
#[cfg(test)]
mod tests;

#[cfg(feature = "archive")]
pub use codec::compressor;
pub use codec::{Decompressor, decompressor};
pub use entries::MAX_SYSTEM_BYTES;
pub use error::{ItemFault, SendError, TransferError};
pub use receive::{ClosureOf, Received, Summary, receive, receive_compressed};
pub use send::{Sent, StreamWriter};
#[cfg(feature = "archive")]
pub use send_zstd::send_compressed;

use crate::name::ItemName;
use crate::root::StoreRoot;

/// The first bytes of every (uncompressed) stream.
pub const MAGIC: &[u8; 16] = b"fruix-stream-v1\n";

/// Longest entry path or link target a stream may carry, in bytes.
pub const MAX_PATH: usize = 4096;

/// Where a system item holds the manifest copy of each closure item:
/// `manifests/ITEM.mtree` (as the builder writes it).
pub const MANIFEST_COPIES: &str = "manifests";

/// The zstd level the builder compresses streams with: fast, and within a
/// few percent of the higher levels on binaries.
pub const ZSTD_LEVEL: i32 = 3;

/// True when the item's directory and its manifest are both in the store
/// (what an import leaves; neither is followed if a link).
pub fn is_whole(root: &StoreRoot, name: &ItemName) -> bool {
    let dir = std::fs::symlink_metadata(root.item_path(name)).is_ok_and(|m| m.is_dir());
    let manifest = std::fs::symlink_metadata(root.manifest_path(name)).is_ok_and(|m| m.is_file());
    dir && manifest
}

/// The items of `names` that are not whole in the store, in the given
/// order, each once.
pub fn missing(root: &StoreRoot, names: &[ItemName]) -> Vec<ItemName> {
    let mut seen = std::collections::BTreeSet::new();
    names
        .iter()
        .filter(|n| seen.insert(*n) && !is_whole(root, n))
        .cloned()
        .collect()
}
