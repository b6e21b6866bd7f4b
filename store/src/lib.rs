//! The Fruix store: item names, canonical `fruix-v1` manifests, import of
//! trees and archives into a store root, and verification.
//!
//! The byte-level contract is `docs/store-format.md`. The host builder
//! writes stores with this crate and the guest agent verifies them with it,
//! so both sides share one definition of every byte.

pub mod digest;
pub mod error;
pub mod escape;
pub mod hash;
pub mod import;
pub mod manifest;
pub mod name;
mod pool;
pub mod root;
pub mod transfer;
pub mod verify;

pub use digest::Digest;
pub use error::{ImportError, ManifestError, NameError, StoreError, VerifyError};
#[cfg(feature = "archive")]
pub use import::import_archive;
pub use import::{DroppedBits, ImportOptions, ImportOutcome, derive_item, import_dir};
pub use manifest::{Entry, EntryKind, Manifest};
pub use name::ItemName;
pub use root::{GC_PREFIX, ItemInfo, StoreRoot, remove_tree};
pub use verify::{
    Depth, Finding, FindingKind, Report, VerifyOptions, verify_items, verify_root, verify_tree,
};
