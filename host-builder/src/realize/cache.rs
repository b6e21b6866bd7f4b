//! Realization records: which item a package's inputs produced last time.
//!
//! A record is `STATE/realized/<key>`, holding one item name, where `key`
//! is the SHA-256 of the package's description: its source and that
//! source's fingerprint, or the item it derives from and its globs, and the
//! revisions of the code that makes it. A record counts only while its
//! item is still in the store. Records live beside the root, never in it,
//! so that nothing about the build host reaches the guest.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use fruix_store::{ItemName, StoreRoot};
use sha2::{Digest as _, Sha256};

/// The records of one output directory.
#[derive(Clone, Debug)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// Records under `state_dir/realized`.
    pub fn new(state_dir: &Path) -> Records {
        Records {
            dir: state_dir.join("realized"),
        }
    }

    /// The directory of the records.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of a description.
    pub fn key(description: &str) -> String {
        fruix_store::hash::hex(&Sha256::digest(description.as_bytes()))
    }

    /// The item recorded for `key`, if it is still in `root`.
    pub fn get(&self, root: &StoreRoot, key: &str) -> Option<ItemName> {
        let text = fs::read_to_string(self.dir.join(key)).ok()?;
        let name = ItemName::parse(text.trim()).ok()?;
        (root.item_path(&name).is_dir() && root.manifest_path(&name).is_file()).then_some(name)
    }

    /// Records `name` for `key` (written to a temporary name, then renamed).
    pub fn put(&self, key: &str, name: &ItemName) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{key}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        writeln!(f, "{name}")?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(key))
    }
}
