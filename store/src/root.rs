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
/// The prefix of an item being collected, in the tmp directory: a gc
/// renames the item there before it removes its manifest, so a manifest
/// whose item is there is a collection in progress (not an item missing),
/// and the next lock sweeps both.
pub const GC_PREFIX: &str = "gc-";

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
        // Manifests first: an item a gc renamed into tmp keeps its
        // manifest until then, and verification accepts that pair only
        // while both exist.
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
        let tmp = self.tmp_dir();
        for name in read_dir_names(&tmp)? {
            let p = tmp.join(name);
            remove_tree(&p).map_err(io(&p, "remove stale work directory"))?;
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
/// are. Never follows a symbolic link, wherever one is planted or swapped
/// in: a link is removed as a link. Write permission is restored through a
/// descriptor of each directory opened with `O_NOFOLLOW` (so a directory
/// swapped for a link after it was listed is skipped, not followed), and
/// the removal itself is `std::fs::remove_dir_all`, which works relative
/// to open directories and never follows a link.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        // unlink(2) removes a link itself, never its target.
        return fs::remove_file(path);
    }
    race_point(path);
    match open_dir_nofollow(None, path) {
        Ok(dir) => make_writable(&dir, path)?,
        // No longer a directory since the lstat: nothing to make writable,
        // and `remove_dir_all` removes a link as a link.
        Err(e) if is_not_a_directory(&e) => {}
        Err(e) => return Err(e),
    }
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Gives the owner full access to `dir` and every directory below it,
/// each reached through its parent's descriptor without following links.
fn make_writable(dir: &File, path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let mode = dir.metadata()?.permissions().mode();
    if mode & 0o700 != 0o700 {
        dir.set_permissions(fs::Permissions::from_mode(mode & 0o7777 | 0o700))?;
    }
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            rustix::fs::FileType::Directory => true,
            // Some file systems do not fill in the type.
            rustix::fs::FileType::Unknown => lstat_at(dir, name)?.kind.is_dir(),
            _ => false,
        };
        if !is_dir {
            continue;
        }
        let child = path.join(OsStr::from_bytes(name.to_bytes()));
        race_point(&child);
        match open_dir_nofollow(Some(dir), name) {
            Ok(d) => make_writable(&d, &child)?,
            Err(e) if is_not_a_directory(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Opens a directory without following a link at its last component:
/// relative to `parent` when given, else the path as it is.
pub(crate) fn open_dir_nofollow(
    parent: Option<&File>,
    name: impl rustix::path::Arg,
) -> io::Result<File> {
    use rustix::fs::{CWD, Mode, OFlags, openat};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match parent {
        Some(p) => openat(p, name, flags, Mode::empty())?,
        None => openat(CWD, name, flags, Mode::empty())?,
    };
    Ok(File::from(fd))
}

/// Opens a file for reading without following a link at its last
/// component (a link is `ELOOP`, or `EMLINK` on FreeBSD: see
/// [`is_not_a_directory`]), and without blocking should it be a fifo.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
}

/// True for the errors of opening with `O_NOFOLLOW` a link (`ELOOP` on
/// Linux, `EMLINK` on FreeBSD), or with `O_DIRECTORY` something that is not
/// (or no longer) a directory (`ENOTDIR`).
pub fn is_not_a_directory(e: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::NOTDIR, Errno::LOOP, Errno::MLINK]
        .iter()
        .any(|n| e.raw_os_error() == Some(n.raw_os_error()))
}

/// What `lstat` says of a directory entry, read relative to its directory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EntryStat {
    /// The file type.
    pub(crate) kind: rustix::fs::FileType,
    /// The mode bits, type excluded.
    pub(crate) mode: u32,
    /// Device and inode.
    pub(crate) dev_ino: (u64, u64),
    /// Size in bytes.
    pub(crate) size: u64,
    /// Number of hard links.
    pub(crate) nlink: u64,
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
// The field types of `struct stat` differ between platforms.
#[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
pub(crate) fn lstat_at(dir: &File, name: &std::ffi::CStr) -> io::Result<EntryStat> {
    let st = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(EntryStat {
        kind: rustix::fs::FileType::from_raw_mode(st.st_mode),
        mode: u32::from(st.st_mode) & 0o7777,
        dev_ino: (st.st_dev as u64, st.st_ino as u64),
        size: u64::try_from(st.st_size).unwrap_or(0),
        nlink: st.st_nlink as u64,
    })
}

/// True when the process runs with an effective user id of 0. From
/// `geteuid(2)`, which every platform has (FreeBSD has no `/proc`).
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A test's hook at [`race_point`].
#[cfg(test)]
pub(crate) type RaceHook = Box<dyn FnMut(&Path)>;

#[cfg(test)]
thread_local! {
    /// A test's hook, run at [`race_point`]: it swaps a file between a check
    /// and a use, as a racing attacker would.
    pub(crate) static RACE: std::cell::RefCell<Option<RaceHook>> =
        const { std::cell::RefCell::new(None) };
}

/// A point between looking at `path` and acting on it, where a test can
/// swap it; nothing outside tests.
pub(crate) fn race_point(_path: &Path) {
    #[cfg(test)]
    RACE.with_borrow_mut(|hook| {
        if let Some(h) = hook {
            h(_path)
        }
    });
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

    /// A directory holding one file, `keep`, and its mode.
    fn outside(t: &Path) -> PathBuf {
        let out = t.join("outside");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("keep"), "keep").unwrap();
        fs::set_permissions(&out, fs::Permissions::from_mode(0o755)).unwrap();
        out
    }

    fn assert_untouched(out: &Path) {
        assert_eq!(fs::read_to_string(out.join("keep")).unwrap(), "keep");
        assert_eq!(
            fs::symlink_metadata(out).unwrap().permissions().mode() & 0o7777,
            0o755
        );
    }

    /// A read-only tree (as store items are) with a link to `out` inside.
    fn tree(t: &Path, out: &Path) -> PathBuf {
        let tree = t.join("tree");
        fs::create_dir_all(tree.join("inner/deep")).unwrap();
        fs::write(tree.join("inner/deep/f"), "f").unwrap();
        std::os::unix::fs::symlink(out, tree.join("inner/link")).unwrap();
        for d in ["inner/deep", "inner", ""] {
            fs::set_permissions(tree.join(d), fs::Permissions::from_mode(0o555)).unwrap();
        }
        tree
    }

    #[test]
    fn removing_a_tree_removes_its_links_as_links() {
        let t = tempfile::tempdir().unwrap();
        let out = outside(t.path());
        let tree = tree(t.path(), &out);
        remove_tree(&tree).unwrap();
        assert!(fs::symlink_metadata(&tree).is_err(), "tree gone");
        assert_untouched(&out);
        // A link given as the tree itself is removed as a link.
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&out, &link).unwrap();
        remove_tree(&link).unwrap();
        assert!(fs::symlink_metadata(&link).is_err(), "link gone");
        assert_untouched(&out);
    }

    /// Swaps `at` for a link to `out` when the walk reaches it, after its
    /// lstat said it was a directory.
    fn swap_for_link_at(at: PathBuf, out: PathBuf, aside: PathBuf) {
        RACE.set(Some(Box::new(move |p: &Path| {
            if p == at {
                fs::rename(&at, &aside).unwrap();
                std::os::unix::fs::symlink(&out, &at).unwrap();
            }
        })));
    }

    #[test]
    fn a_directory_swapped_for_a_link_during_removal_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let out = outside(t.path());
        let tree = tree(t.path(), &out);
        // The parent is made writable by the walk before it reaches `inner`.
        swap_for_link_at(tree.join("inner"), out.clone(), t.path().join("aside"));
        let r = remove_tree(&tree);
        RACE.set(None);
        r.unwrap();
        assert!(fs::symlink_metadata(&tree).is_err(), "tree gone");
        assert_untouched(&out);

        // The same at the top of the tree.
        let tree = self::tree(t.path(), &out);
        swap_for_link_at(tree.clone(), out.clone(), t.path().join("aside2"));
        let r = remove_tree(&tree);
        RACE.set(None);
        r.unwrap();
        assert!(fs::symlink_metadata(&tree).is_err(), "link gone");
        assert_untouched(&out);
    }

    #[test]
    fn running_as_root_is_the_effective_user_id() {
        assert_eq!(running_as_root(), rustix::process::geteuid().as_raw() == 0);
    }
}
