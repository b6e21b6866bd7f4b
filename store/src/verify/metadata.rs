//! The metadata phase: one job per manifest directory. Each job lists the
//! directory, `lstat`s every expected child and compares type, mode, size
//! and link target; files whose metadata matches are queued for the
//! content phase.

use std::collections::{HashMap, HashSet};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::content::HashJob;
use super::findings::{FindingKind, Tagged, finding};
use super::options::{Depth, VerifyOptions};
use crate::escape::escape;
use crate::manifest::{Entry, EntryKind, Manifest};
use crate::pool;
use crate::root::join_rel;

/// A tree to check against a manifest.
pub(super) struct Target {
    /// The tree (an item's directory).
    pub(super) dir: PathBuf,
    /// What it should hold.
    pub(super) manifest: Manifest,
}

/// What the metadata phase found and left for the content phase.
pub(super) struct Checked {
    /// Findings, tagged with their target.
    pub(super) found: Vec<Tagged>,
    /// Files whose metadata matched, to hash (none at [`Depth::Metadata`]).
    pub(super) hash_jobs: Vec<HashJob>,
    /// Manifest entries checked.
    pub(super) entries: u64,
}

/// Checks the metadata of every entry of every target on `opts.jobs`
/// workers.
pub(super) fn check_all(targets: &[Target], opts: &VerifyOptions) -> Checked {
    let found: Mutex<Vec<Tagged>> = Mutex::new(Vec::new());
    let hash_jobs: Mutex<Vec<HashJob>> = Mutex::new(Vec::new());
    let entries = AtomicU64::new(0);

    // Children of every directory, per target. Bytewise order does not keep
    // a directory's children together ("a b" sorts between "a" and "a/b"),
    // so they are grouped here.
    let children: Vec<HashMap<&[u8], Vec<&Entry>>> = targets
        .iter()
        .map(|t| {
            let mut m: HashMap<&[u8], Vec<&Entry>> = HashMap::new();
            for e in t.manifest.entries() {
                if let Some(p) = e.parent() {
                    m.entry(p).or_default().push(e);
                }
            }
            m
        })
        .collect();

    let mut dir_jobs = Vec::new();
    for (ti, t) in targets.iter().enumerate() {
        // The item root has no parent job to check it.
        let root_entry = &t.manifest.entries()[0];
        let mut local = Vec::new();
        let ok = check_entry(
            ti,
            &t.dir,
            root_entry,
            &mut local,
            &mut Vec::new(),
            Depth::Metadata,
        );
        entries.fetch_add(1, Ordering::Relaxed);
        found
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(local);
        if ok {
            for e in t.manifest.entries() {
                if e.kind == EntryKind::Dir {
                    dir_jobs.push((ti, e));
                }
            }
        }
    }

    let _ = pool::run(
        opts.jobs,
        &dir_jobs,
        |&(ti, dir_entry): &(usize, &Entry), _buf| {
            let t = &targets[ti];
            let path = join_rel(&t.dir, &dir_entry.path);
            let mut local = Vec::new();
            let mut local_hash = Vec::new();
            // A directory that is not one on disk was reported by its parent.
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                let expected = children[ti]
                    .get(dir_entry.path.as_slice())
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                list_unexpected(ti, &path, expected, &mut local);
                for e in expected {
                    check_entry(ti, &t.dir, e, &mut local, &mut local_hash, opts.depth);
                }
                entries.fetch_add(expected.len() as u64, Ordering::Relaxed);
            }
            found
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(local);
            hash_jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(local_hash);
            Ok::<(), ()>(())
        },
    );

    Checked {
        found: found.into_inner().unwrap_or_else(PoisonError::into_inner),
        hash_jobs: hash_jobs
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
        entries: entries.into_inner(),
    }
}

/// Reports what the directory at `path` holds beyond its `expected`
/// children.
fn list_unexpected(ti: usize, path: &Path, expected: &[&Entry], out: &mut Vec<Tagged>) {
    match fs::read_dir(path) {
        Ok(rd) => {
            let want: HashSet<&[u8]> = expected.iter().map(|e| e.file_name()).collect();
            for de in rd {
                match de {
                    Ok(de) if !want.contains(de.file_name().as_bytes()) => {
                        let p = de.path();
                        let what = fs::symlink_metadata(&p)
                            .map(|m| type_of(&m).to_owned())
                            .ok();
                        out.push((ti, finding(FindingKind::Unexpected, &p, None, what)));
                    }
                    Ok(_) => {}
                    Err(e) => out.push((
                        ti,
                        finding(FindingKind::IoError, path, None, Some(e.to_string())),
                    )),
                }
            }
        }
        Err(e) => out.push((
            ti,
            finding(FindingKind::IoError, path, None, Some(e.to_string())),
        )),
    }
}

/// The word for what a file is.
pub(super) fn type_of(m: &Metadata) -> &'static str {
    let ft = m.file_type();
    if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "link"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "char-device"
    } else if ft.is_block_device() {
        "block-device"
    } else {
        "unknown"
    }
}

/// Compares one entry's metadata; queues its content for hashing when the
/// metadata matches and the depth asks for it. Returns true when the entry
/// is on disk with the right type.
fn check_entry(
    ti: usize,
    base: &Path,
    e: &Entry,
    out: &mut Vec<Tagged>,
    hash: &mut Vec<HashJob>,
    depth: Depth,
) -> bool {
    let path = join_rel(base, &e.path);
    let m = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            out.push((ti, finding(FindingKind::Missing, &path, None, None)));
            return false;
        }
        Err(err) => {
            out.push((
                ti,
                finding(FindingKind::IoError, &path, None, Some(err.to_string())),
            ));
            return false;
        }
    };
    let actual = type_of(&m);
    if actual != e.kind.type_name() {
        out.push((
            ti,
            finding(
                FindingKind::TypeChanged,
                &path,
                Some(e.kind.type_name().into()),
                Some(actual.into()),
            ),
        ));
        return false;
    }
    if let Some(mode) = e.kind.mode() {
        let have = m.mode() & 0o7777;
        if have != mode {
            out.push((
                ti,
                finding(
                    FindingKind::ModeChanged,
                    &path,
                    Some(format!("{mode:04o}")),
                    Some(format!("{have:04o}")),
                ),
            ));
        }
    }
    match &e.kind {
        EntryKind::Dir => {}
        EntryKind::File { size, sha256, .. } => {
            if m.len() != *size {
                out.push((
                    ti,
                    finding(
                        FindingKind::SizeChanged,
                        &path,
                        Some(size.to_string()),
                        Some(m.len().to_string()),
                    ),
                ));
            } else if depth == Depth::Full {
                hash.push(HashJob {
                    target: ti,
                    path,
                    size: *size,
                    sha256: *sha256,
                });
            }
        }
        EntryKind::Link { target } => match fs::read_link(&path) {
            Ok(t) if t.as_os_str().as_bytes() == target.as_slice() => {}
            Ok(t) => out.push((
                ti,
                finding(
                    FindingKind::LinkChanged,
                    &path,
                    Some(escape(target)),
                    Some(escape(t.as_os_str().as_bytes())),
                ),
            )),
            Err(err) => out.push((
                ti,
                finding(FindingKind::IoError, &path, None, Some(err.to_string())),
            )),
        },
    }
    true
}
