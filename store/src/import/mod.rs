//! Import of a directory or an archive into a store root.
//!
//! Every import builds the item in a work directory under
//! `ROOT/var/db/fruix/tmp`, normalises modes and times, writes the canonical
//! manifest, and only then renames the manifest and the item into place
//! (manifest first: an item is never visible without its manifest). An
//! import that fails or is killed leaves no item; the work directory is
//! removed on failure, or by the next writer that takes the root's lock.

mod derive;
mod dir;
pub use derive::derive_item;
pub use dir::import_dir;

#[cfg(feature = "archive")]
mod archive;
#[cfg(feature = "archive")]
pub use archive::import_archive;

use std::collections::BTreeMap;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::digest::Digest;
use crate::error::{ImportError, IoContext};
use crate::escape::escape;
use crate::hash::copy_hashing;
use crate::manifest::{Entry, EntryKind, MODE_DIR, MODE_EXEC, MODE_FILE, Manifest};
use crate::name::{ItemName, validate_package_name};
use crate::root::{RootLock, StoreRoot, join_rel, remove_tree};

/// Seconds since the epoch of the mtime (and atime) of everything in an
/// item, so that images of the same inputs are the same bytes.
pub const ITEM_MTIME_SECS: u64 = 1;

fn item_mtime() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(ITEM_MTIME_SECS)
}

/// Options of an import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Worker threads for copying and hashing (directory sources).
    pub jobs: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// A setuid, setgid or sticky bit that the import dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DroppedBits {
    /// The entry, escaped as in manifests.
    pub entry: String,
    /// The source's full mode bits (e.g. `0o4755`).
    pub mode: u32,
}

/// What an import produced.
#[derive(Clone, Debug)]
pub struct ImportOutcome {
    /// The item's name.
    pub name: ItemName,
    /// The item's directory in the store.
    pub path: PathBuf,
    /// True when an identical item was already there and nothing was written.
    pub existed: bool,
    /// Special mode bits dropped on the way in.
    pub dropped: Vec<DroppedBits>,
    /// The item's manifest.
    pub manifest: Manifest,
}

#[derive(Clone, Debug)]
enum Node {
    Dir,
    File {
        executable: bool,
        size: u64,
        sha256: Digest,
    },
    Link(Vec<u8>),
}

/// An item under construction in its work directory.
pub(crate) struct ItemBuilder<'r> {
    root: &'r StoreRoot,
    package: String,
    source: PathBuf,
    work: PathBuf,
    item: PathBuf,
    nodes: BTreeMap<Vec<u8>, Node>,
    dropped: Vec<DroppedBits>,
    finished: bool,
    _lock: Lock<'r>,
}

/// The root's writer lock, taken by the builder or lent by a caller that
/// holds it across several items (a transfer stream).
enum Lock<'r> {
    Owned(#[allow(dead_code)] RootLock),
    Lent(#[allow(dead_code)] &'r RootLock),
}

static WORK_COUNTER: AtomicU64 = AtomicU64::new(0);

impl<'r> ItemBuilder<'r> {
    /// Locks the root and makes a fresh work directory.
    pub(crate) fn new(
        root: &'r StoreRoot,
        package: &str,
        source: &Path,
    ) -> Result<Self, ImportError> {
        validate_package_name(package)?;
        let lock = root.lock()?;
        Self::start(root, package, source, Lock::Owned(lock))
    }

    /// Makes a fresh work directory under a lock the caller holds.
    pub(crate) fn new_locked(
        root: &'r StoreRoot,
        lock: &'r RootLock,
        package: &str,
        source: &Path,
    ) -> Result<Self, ImportError> {
        Self::start(root, package, source, Lock::Lent(lock))
    }

    fn start(
        root: &'r StoreRoot,
        package: &str,
        source: &Path,
        lock: Lock<'r>,
    ) -> Result<Self, ImportError> {
        validate_package_name(package)?;
        let work = root.tmp_dir().join(format!(
            "import-{}-{}-{}",
            std::process::id(),
            WORK_COUNTER.fetch_add(1, Ordering::Relaxed),
            package
        ));
        fs::create_dir(&work).at(&work, "create directory")?;
        let item = work.join("item");
        fs::create_dir(&item).at(&item, "create directory")?;
        let mut nodes = BTreeMap::new();
        nodes.insert(Vec::new(), Node::Dir);
        Ok(ItemBuilder {
            root,
            package: package.to_owned(),
            source: source.to_owned(),
            work,
            item,
            nodes,
            dropped: Vec::new(),
            finished: false,
            _lock: lock,
        })
    }

    /// Where a relative path lands in the work directory.
    pub(crate) fn dest(&self, rel: &[u8]) -> PathBuf {
        join_rel(&self.item, rel)
    }

    /// Records special bits of `mode` for the report.
    pub(crate) fn note_mode(&mut self, rel: &[u8], mode: u32) {
        if mode & 0o7000 != 0 {
            self.dropped.push(DroppedBits {
                entry: escape(rel),
                mode: mode & 0o7777,
            });
        }
    }

    /// Makes sure every ancestor of `rel` is a directory this import made,
    /// creating missing ones, and that `rel` itself may take an entry of the
    /// given kind. Refuses to write through a symbolic link. Returns true
    /// when `rel` already is a directory and a directory is wanted.
    fn prepare(&mut self, rel: &[u8], want_dir: bool) -> Result<bool, ImportError> {
        for (i, _) in rel.iter().enumerate().filter(|&(_, &b)| b == b'/') {
            let anc = &rel[..i];
            match self.nodes.get(anc) {
                Some(Node::Dir) => {}
                Some(Node::Link(_)) => {
                    return Err(ImportError::ThroughSymlink {
                        source_path: self.source.clone(),
                        entry: escape(rel),
                        link: escape(anc),
                    });
                }
                Some(Node::File { .. }) => {
                    return Err(ImportError::NotADirectory {
                        source_path: self.source.clone(),
                        entry: escape(rel),
                        other: escape(anc),
                    });
                }
                None => {
                    let p = self.dest(anc);
                    fs::create_dir(&p).at(&p, "create directory")?;
                    self.nodes.insert(anc.to_vec(), Node::Dir);
                }
            }
        }
        match self.nodes.get(rel) {
            None => Ok(false),
            Some(Node::Dir) if want_dir => Ok(true),
            Some(Node::Dir) => Err(ImportError::NotADirectory {
                source_path: self.source.clone(),
                entry: escape(rel),
                other: escape(rel),
            }),
            Some(_) => {
                // A later archive entry of the same path replaces the earlier
                // one, as tar(1) extraction does.
                let p = self.dest(rel);
                fs::remove_file(&p).at(&p, "remove")?;
                self.nodes.remove(rel);
                Ok(false)
            }
        }
    }

    /// Adds a directory.
    pub(crate) fn add_dir(&mut self, rel: &[u8], mode: u32) -> Result<(), ImportError> {
        self.note_mode(rel, mode);
        if !self.prepare(rel, true)? {
            let p = self.dest(rel);
            fs::create_dir(&p).at(&p, "create directory")?;
            self.nodes.insert(rel.to_vec(), Node::Dir);
        }
        Ok(())
    }

    /// Adds a regular file with the content `r` yields.
    #[cfg_attr(not(feature = "archive"), allow(dead_code))]
    pub(crate) fn add_file(
        &mut self,
        rel: &[u8],
        mode: u32,
        r: &mut impl Read,
        buf: &mut [u8],
    ) -> Result<(), ImportError> {
        self.note_mode(rel, mode);
        self.prepare(rel, false)?;
        let p = self.dest(rel);
        let executable = mode & 0o111 != 0;
        let (sha256, size) = write_item_file(&p, executable, r, buf).at(&p, "write")?;
        self.set_file(rel, executable, size, sha256);
        Ok(())
    }

    /// Reserves a file slot to be filled by [`write_item_file`] from another
    /// thread; [`ItemBuilder::set_file`] records the result.
    pub(crate) fn reserve_file(&mut self, rel: &[u8], mode: u32) -> Result<PathBuf, ImportError> {
        self.note_mode(rel, mode);
        self.prepare(rel, false)?;
        Ok(self.dest(rel))
    }

    /// Records a file written after [`ItemBuilder::reserve_file`].
    pub(crate) fn set_file(&mut self, rel: &[u8], executable: bool, size: u64, sha256: Digest) {
        self.nodes.insert(
            rel.to_vec(),
            Node::File {
                executable,
                size,
                sha256,
            },
        );
    }

    /// Adds a symbolic link; the target is stored as it is.
    pub(crate) fn add_symlink(&mut self, rel: &[u8], target: &[u8]) -> Result<(), ImportError> {
        self.prepare(rel, false)?;
        let p = self.dest(rel);
        use std::os::unix::ffi::OsStrExt;
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &p)
            .at(&p, "create symbolic link")?;
        filetime::set_symlink_file_times(&p, item_mtime().into(), item_mtime().into())
            .at(&p, "set times")?;
        self.nodes.insert(rel.to_vec(), Node::Link(target.to_vec()));
        Ok(())
    }

    /// Adds a hard link to a file already in this item.
    pub(crate) fn add_hardlink(&mut self, rel: &[u8], target: &[u8]) -> Result<(), ImportError> {
        let node = match self.nodes.get(target) {
            Some(n @ Node::File { .. }) => n.clone(),
            _ => {
                return Err(ImportError::HardLinkOutside {
                    source_path: self.source.clone(),
                    entry: escape(rel),
                    target: escape(target),
                });
            }
        };
        if rel == target {
            return Ok(());
        }
        self.prepare(rel, false)?;
        let (from, to) = (self.dest(target), self.dest(rel));
        fs::hard_link(&from, &to).at(&to, "create hard link")?;
        self.nodes.insert(rel.to_vec(), node);
        Ok(())
    }

    /// Normalises directories, writes the manifest and moves the item into
    /// the store, or finds the identical item already there.
    pub(crate) fn finish(self) -> Result<ImportOutcome, ImportError> {
        self.seal()?.commit()
    }

    /// Normalises directories and computes the manifest and the name; the
    /// item stays in its work directory until [`Sealed::commit`].
    pub(crate) fn seal(self) -> Result<Sealed<'r>, ImportError> {
        // Deepest first, so that a directory is sealed after its children.
        for (rel, node) in self.nodes.iter().rev() {
            if let Node::Dir = node {
                let p = join_rel(&self.item, rel);
                fs::set_permissions(&p, fs::Permissions::from_mode(MODE_DIR))
                    .at(&p, "set permissions")?;
                let f = File::open(&p).at(&p, "open")?;
                f.set_times(
                    FileTimes::new()
                        .set_accessed(item_mtime())
                        .set_modified(item_mtime()),
                )
                .at(&p, "set times")?;
            }
        }
        let entries = self
            .nodes
            .iter()
            .map(|(rel, node)| Entry {
                path: rel.clone(),
                kind: match node {
                    Node::Dir => EntryKind::Dir,
                    Node::File {
                        executable,
                        size,
                        sha256,
                    } => EntryKind::File {
                        executable: *executable,
                        size: *size,
                        sha256: *sha256,
                    },
                    Node::Link(t) => EntryKind::Link { target: t.clone() },
                },
            })
            .collect();
        let manifest = Manifest::from_entries(entries).map_err(|e| ImportError::BadSource {
            path: self.source.clone(),
            reason: format!("internal manifest error: {e}"),
        })?;
        let bytes = manifest.to_bytes();
        let name = ItemName::new(crate::hash::sha256(&bytes), &self.package)?;
        Ok(Sealed {
            builder: self,
            name,
            manifest,
            bytes,
        })
    }
}

/// An item whole in its work directory, with its manifest and name, not
/// yet in the store; dropped uncommitted, its work directory goes.
pub(crate) struct Sealed<'r> {
    builder: ItemBuilder<'r>,
    name: ItemName,
    manifest: Manifest,
    bytes: Vec<u8>,
}

impl Sealed<'_> {
    /// The item's name, from its manifest's digest.
    pub(crate) fn name(&self) -> &ItemName {
        &self.name
    }

    /// The canonical manifest bytes.
    pub(crate) fn manifest_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The item's tree in its work directory (sealed, read-only).
    pub(crate) fn tree(&self) -> &Path {
        &self.builder.item
    }

    /// Writes the manifest and moves the item into the store (manifest
    /// first), or finds the identical item already there.
    pub(crate) fn commit(mut self) -> Result<ImportOutcome, ImportError> {
        let (name, bytes) = (self.name.clone(), std::mem::take(&mut self.bytes));
        let this = &mut self.builder;
        let final_item = this.root.item_path(&name);
        let final_manifest = this.root.manifest_path(&name);
        let existed = final_item.is_dir() && final_manifest.is_file();
        if !existed {
            let tmp_manifest = this.work.join("manifest");
            write_synced(&tmp_manifest, &bytes).at(&tmp_manifest, "write")?;
            fs::rename(&tmp_manifest, &final_manifest).at(&final_manifest, "rename into place")?;
            if final_item.exists() {
                // An item without its manifest can only be a damaged one.
                remove_tree(&final_item).at(&final_item, "remove damaged item")?;
            }
            rename_item(&this.item, &final_item).at(&final_item, "rename into place")?;
            for d in [this.root.manifests_dir(), this.root.store_dir()] {
                File::open(&d).and_then(|f| f.sync_all()).at(&d, "sync")?;
            }
        }
        this.finished = true;
        remove_tree(&this.work).at(&this.work, "remove work directory")?;
        Ok(ImportOutcome {
            name,
            path: final_item,
            existed,
            dropped: std::mem::take(&mut this.dropped),
            manifest: self.manifest,
        })
    }
}

impl Drop for ItemBuilder<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: the next writer sweeps what this leaves.
            let _ = remove_tree(&self.work);
        }
    }
}

/// Renames a sealed (mode 0555) item directory into the store. Moving a
/// directory to another parent rewrites its `..`, which needs write
/// permission on it unless the caller is root.
fn rename_item(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            fs::set_permissions(from, fs::Permissions::from_mode(0o755))?;
            fs::rename(from, to)?;
            fs::set_permissions(to, fs::Permissions::from_mode(MODE_DIR))
        }
        other => other,
    }
}

/// Creates a store file with its final mode and time, copying and hashing
/// `r` into it in one pass.
pub(crate) fn write_item_file(
    path: &Path,
    executable: bool,
    r: &mut impl Read,
    buf: &mut [u8],
) -> io::Result<(Digest, u64)> {
    let mode = if executable { MODE_EXEC } else { MODE_FILE };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    let out = copy_hashing(r, &mut f, buf)?;
    // The umask may have narrowed the mode given at creation.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.set_times(
        FileTimes::new()
            .set_accessed(item_mtime())
            .set_modified(item_mtime()),
    )?;
    Ok(out)
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
