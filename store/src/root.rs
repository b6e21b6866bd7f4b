//! The layout of a store root (the directory a guest mounts at `/frx`) and
//! the lock that serialises writers.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{ManifestError, StoreError};
use crate::manifest::Manifest;
use crate::name::ItemName;

/// Where the items live, relative to the root.
pub const STORE_DIR: &str = "store";
/// Where the state of the store lives, relative to the root.
pub const STATE_DIR: &str = "var/db/fruix";
/// Where the canonical manifests live, relative to the root.
pub const MANIFESTS_DIR: &str = "var/db/fruix/manifests";
/// Extension of manifest files.
pub const MANIFEST_EXT: &str = ".mtree";

/// A store root: `ROOT/store/<item>` and `ROOT/var/db/fruix/manifests/<item>.mtree`.
#[derive(Clone, Debug)]
pub struct StoreRoot {
    root: PathBuf,
}

/// One item of a root, as `fruix store list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ItemInfo {
    /// The item's name.
    pub name: ItemName,
    /// The item's directory.
    pub path: PathBuf,
    /// Bytes of regular files, from the manifest.
    pub size: u64,
    /// Number of manifest entries, the root included.
    pub entries: usize,
}

impl StoreRoot {
    /// A root at `root` (nothing is created until something is written).
    pub fn new(root: impl Into<PathBuf>) -> StoreRoot {
        StoreRoot { root: root.into() }
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `ROOT/store`.
    pub fn store_dir(&self) -> PathBuf {
        self.root.join(STORE_DIR)
    }

    /// `ROOT/var/db/fruix/manifests`.
    pub fn manifests_dir(&self) -> PathBuf {
        self.root.join(MANIFESTS_DIR)
    }

    /// `ROOT/var/db/fruix/tmp`: work directories of imports under way. On the
    /// same file system as the store, so that finishing an import is a rename.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR).join("tmp")
    }

    /// The directory of an item.
    pub fn item_path(&self, name: &ItemName) -> PathBuf {
        self.store_dir().join(name.as_str())
    }

    /// The manifest file of an item.
    pub fn manifest_path(&self, name: &ItemName) -> PathBuf {
        self.manifests_dir()
            .join(format!("{}{MANIFEST_EXT}", name.as_str()))
    }

    /// Reads and parses an item's manifest (without checking its digest).
    pub fn read_manifest(&self, name: &ItemName) -> Result<Manifest, StoreError> {
        let path = self.manifest_path(name);
        let bytes = fs::read(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            action: "read",
            source,
        })?;
        Manifest::parse(&bytes)
            .map_err(|source: ManifestError| StoreError::Manifest { path, source })
    }

    /// Every entry of `ROOT/store` that is a valid item name, sorted. Other
    /// entries are left to verification to report.
    pub fn item_names(&self) -> Result<Vec<ItemName>, StoreError> {
        let dir = self.store_dir();
        let mut names = Vec::new();
        for entry in read_dir_names(&dir)? {
            if let Some(n) = entry.to_str().and_then(|s| ItemName::parse(s).ok()) {
                names.push(n);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The items of the root with their sizes, from their manifests.
    pub fn list(&self) -> Result<Vec<ItemInfo>, StoreError> {
        self.item_names()?
            .into_iter()
            .map(|name| {
                let m = self.read_manifest(&name)?;
                Ok(ItemInfo {
                    path: self.item_path(&name),
                    size: m.content_size(),
                    entries: m.entries().len(),
                    name,
                })
            })
            .collect()
    }

    /// Takes the root's writer lock, creating the layout if needed, and
    /// clears what an interrupted writer left: work directories and
    /// manifests whose item never arrived.
    pub fn lock(&self) -> Result<RootLock, StoreError> {
        let io = |path: &Path, action: &'static str| {
            let path = path.to_owned();
            move |source| StoreError::Io {
                path,
                action,
                source,
            }
        };
        for d in [self.store_dir(), self.manifests_dir(), self.tmp_dir()] {
            fs::create_dir_all(&d).map_err(io(&d, "create directory"))?;
        }
        let lock_path = self.root.join(STATE_DIR).join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path, "open"))?;
        file.lock().map_err(io(&lock_path, "lock"))?;
        let tmp = self.tmp_dir();
        for name in read_dir_names(&tmp)? {
            let p = tmp.join(name);
            remove_tree(&p).map_err(io(&p, "remove stale work directory"))?;
        }
        let mdir = self.manifests_dir();
        for name in read_dir_names(&mdir)? {
            let Some(item) = name.to_str().and_then(|s| s.strip_suffix(MANIFEST_EXT)) else {
                continue;
            };
            if ItemName::parse(item).is_ok() && !self.store_dir().join(item).exists() {
                let p = mdir.join(&name);
                fs::remove_file(&p).map_err(io(&p, "remove stale manifest"))?;
            }
        }
        Ok(RootLock { _file: file })
    }
}

/// The exclusive writer lock of a root, released on drop.
#[derive(Debug)]
pub struct RootLock {
    _file: File,
}

fn read_dir_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, StoreError> {
    let io = |source| StoreError::Io {
        path: dir.to_owned(),
        action: "read directory",
        source,
    };
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io)? {
        out.push(e.map_err(io)?.file_name());
    }
    Ok(out)
}

/// Removes a tree even where its directories are read-only, as store items
/// are: write permission is restored on the way down.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    for e in fs::read_dir(path)? {
        remove_tree(&e?.path())?;
    }
    fs::remove_dir(path)
}

/// Joins raw relative path bytes onto a base directory.
pub(crate) fn join_rel(base: &Path, rel: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    if rel.is_empty() {
        base.to_owned()
    } else {
        base.join(OsStr::from_bytes(rel))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn errors_name_the_path_and_keep_the_cause_as_a_source() {
        let t = tempfile::tempdir().unwrap();
        let root = StoreRoot::new(t.path().join("nope"));
        let e = root.list().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}/nope/store: cannot read directory", t.path().display())
        );
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("No such file or directory (os error 2)")
        );

        let root = StoreRoot::new(t.path());
        let name = ItemName::parse(&format!("{}-x", "0".repeat(64))).unwrap();
        fs::create_dir_all(root.manifests_dir()).unwrap();
        fs::write(root.manifest_path(&name), b"not a manifest\n").unwrap();
        let e = root.read_manifest(&name).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: not a canonical manifest",
                root.manifest_path(&name).display()
            )
        );
        let cause = e.source().map(ToString::to_string).unwrap_or_default();
        assert!(cause.starts_with("line 1: "), "{cause}");
    }
}
