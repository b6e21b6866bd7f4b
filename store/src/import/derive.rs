//! Items derived from another item: a subset of its entries, chosen by the
//! caller, written as hard links to the parent's files.
//!
//! Store files never change once written, so two items may share an inode:
//! a derivation copies no byte and reads no file. The hashes come from the
//! parent's manifest, which its name vouches for.

use super::{ImportOutcome, ItemBuilder};
use crate::error::{ImportError, IoContext};
use crate::manifest::{EntryKind, Manifest};
use crate::root::{StoreRoot, join_rel};

/// Makes item `package` from the entries of `parent` (an item of `root`)
/// for which `select` returns true, plus the directories above them.
pub fn derive_item(
    root: &StoreRoot,
    package: &str,
    parent: &crate::ItemName,
    select: impl Fn(&[u8]) -> bool,
) -> Result<ImportOutcome, ImportError> {
    let manifest: Manifest = root.read_manifest(parent)?;
    let parent_dir = root.item_path(parent);
    let mut b = ItemBuilder::new(root, package, &parent_dir)?;
    for e in manifest.entries().iter().skip(1) {
        if !select(&e.path) {
            continue;
        }
        // Parent directories are made as needed, so a selected entry whose
        // directory was not selected still lands in place.
        match &e.kind {
            EntryKind::Dir => b.add_dir(&e.path, 0o555)?,
            EntryKind::Link { target } => b.add_symlink(&e.path, target)?,
            EntryKind::File {
                executable,
                size,
                sha256,
            } => {
                let dst = b.reserve_file(&e.path, 0o444)?;
                let src = join_rel(&parent_dir, &e.path);
                std::fs::hard_link(&src, &dst).at(&dst, "create hard link")?;
                b.set_file(&e.path, *executable, *size, *sha256);
            }
        }
    }
    b.finish()
}
