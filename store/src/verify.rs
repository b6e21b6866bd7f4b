//! Verification of items against their manifests, spread over all cores.
//!
//! Two phases. The metadata phase takes one job per manifest directory: it
//! lists the directory, `lstat`s every expected child and compares type,
//! mode, size and link target. The content phase hashes the files whose
//! metadata matched, largest first, through the bounded queue of
//! [`crate::pool`]. Every difference is a [`Finding`]; nothing stops the run
//! early, and an I/O error on one file is a finding for that file.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::error::VerifyError;
use crate::escape::escape;
use crate::hash::{hash_file, hex, sha256};
use crate::manifest::{Entry, EntryKind, Manifest};
use crate::name::{Digest, ItemName};
use crate::pool;
use crate::root::{MANIFEST_EXT, StoreRoot};

/// The kinds of difference verification reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// An entry of the manifest is not on disk.
    Missing,
    /// An entry on disk is not in the manifest.
    Unexpected,
    /// An entry is of another type than the manifest says.
    TypeChanged,
    /// A file or directory has other permission bits.
    ModeChanged,
    /// A file has another size.
    SizeChanged,
    /// A file has the right size but other content.
    ContentChanged,
    /// A symbolic link points elsewhere.
    LinkChanged,
    /// An entry could not be read; the error is in `found`.
    IoError,
    /// An item has no manifest.
    ManifestMissing,
    /// A manifest is not in canonical form.
    ManifestInvalid,
    /// A manifest does not hash to the digest in its item's name.
    ManifestMismatch,
    /// An item's content differs from its manifest (one per item, after
    /// the entry findings that say how).
    ItemDiffers,
    /// Something in the store directory that is not an item.
    UnexpectedItem,
    /// An item that was asked for, or that has a manifest, is not there.
    ItemMissing,
}

impl FindingKind {
    /// The word used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Missing => "missing",
            FindingKind::Unexpected => "unexpected",
            FindingKind::TypeChanged => "type-changed",
            FindingKind::ModeChanged => "mode-changed",
            FindingKind::SizeChanged => "size-changed",
            FindingKind::ContentChanged => "content-changed",
            FindingKind::LinkChanged => "link-changed",
            FindingKind::IoError => "io-error",
            FindingKind::ManifestMissing => "manifest-missing",
            FindingKind::ManifestInvalid => "manifest-invalid",
            FindingKind::ManifestMismatch => "manifest-mismatch",
            FindingKind::ItemDiffers => "item-differs",
            FindingKind::UnexpectedItem => "unexpected-item",
            FindingKind::ItemMissing => "item-missing",
        }
    }
}

/// One difference between the store and its manifests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// The path it is about, escaped as in manifests (one line, always).
    pub path: String,
    /// What kind of difference.
    pub kind: FindingKind,
    /// What the manifest says, where that is one value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What is there instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

impl fmt::Display for Finding {
    /// `KIND PATH [expected -> found]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.path)?;
        match (&self.expected, &self.found) {
            (Some(e), Some(x)) => write!(f, " {e} -> {x}"),
            (None, Some(x)) => write!(f, " -> {x}"),
            (Some(e), None) => write!(f, " {e} ->"),
            (None, None) => Ok(()),
        }
    }
}

/// How deep to look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Metadata and content.
    Full,
    /// Types, modes, sizes and link targets; no file is read.
    Metadata,
}

/// Options of a verification run.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// How deep to look.
    pub depth: Depth,
    /// Worker threads.
    pub jobs: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            depth: Depth::Full,
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// The result of a verification run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Every finding, sorted by path then kind.
    pub findings: Vec<Finding>,
    /// Items checked against a manifest.
    pub items: usize,
    /// Manifest entries checked.
    pub entries: u64,
    /// Bytes read and hashed.
    pub bytes_hashed: u64,
}

impl Report {
    /// True when there is no finding.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// A tree to check against a manifest.
struct Target {
    dir: PathBuf,
    manifest: Manifest,
}

fn show(p: &Path) -> String {
    escape(p.as_os_str().as_bytes())
}

fn finding(
    kind: FindingKind,
    path: &Path,
    expected: Option<String>,
    found: Option<String>,
) -> Finding {
    Finding {
        path: show(path),
        kind,
        expected,
        found,
    }
}

/// Verifies every item of a root, and reports whatever else is in its store
/// and manifest directories.
pub fn verify_root(root: &StoreRoot, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let store = root.store_dir();
    let mut pre = Vec::new();
    let mut targets = Vec::new();
    let mut present = HashSet::new();
    for name in list_names(&store)? {
        let path = store.join(&name);
        match name.to_str().map(ItemName::parse) {
            Some(Ok(item)) => {
                present.insert(item.as_str().to_owned());
                load_item(root, &item, &mut pre, &mut targets);
            }
            Some(Err(e)) => pre.push(finding(
                FindingKind::UnexpectedItem,
                &path,
                None,
                Some(e.to_string()),
            )),
            None => pre.push(finding(
                FindingKind::UnexpectedItem,
                &path,
                None,
                Some("name is not UTF-8".into()),
            )),
        }
    }
    let mdir = root.manifests_dir();
    for name in list_names(&mdir).or_else(|e| match e {
        VerifyError::Io { ref source, .. } if source.kind() == io::ErrorKind::NotFound => {
            Ok(Vec::new())
        }
        e => Err(e),
    })? {
        let item = name
            .to_str()
            .and_then(|s| s.strip_suffix(MANIFEST_EXT))
            .and_then(|s| ItemName::parse(s).ok());
        match item {
            Some(item) if !present.contains(item.as_str()) => pre.push(finding(
                FindingKind::ItemMissing,
                &root.item_path(&item),
                None,
                Some("manifest without item".into()),
            )),
            Some(_) => {}
            None => pre.push(finding(
                FindingKind::Unexpected,
                &mdir.join(&name),
                None,
                Some("not an item manifest".into()),
            )),
        }
    }
    Ok(run(targets, pre, opts))
}

/// Verifies the named items of a root.
pub fn verify_items(
    root: &StoreRoot,
    items: &[ItemName],
    opts: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let mut pre = Vec::new();
    let mut targets = Vec::new();
    for item in items {
        let path = root.item_path(item);
        match fs::symlink_metadata(&path) {
            Ok(_) => load_item(root, item, &mut pre, &mut targets),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                pre.push(finding(FindingKind::ItemMissing, &path, None, None))
            }
            Err(e) => pre.push(finding(
                FindingKind::IoError,
                &path,
                None,
                Some(e.to_string()),
            )),
        }
    }
    Ok(run(targets, pre, opts))
}

/// Verifies one directory against a manifest that is already trusted (for
/// example one whose digest a parent item vouches for).
pub fn verify_tree(dir: &Path, manifest: &Manifest, opts: &VerifyOptions) -> Report {
    run(
        vec![Target {
            dir: dir.to_owned(),
            manifest: manifest.clone(),
        }],
        Vec::new(),
        opts,
    )
}

fn list_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, VerifyError> {
    let io = |source| VerifyError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(io)? {
        v.push(e.map_err(io)?.file_name());
    }
    v.sort();
    Ok(v)
}

/// Reads an item's manifest, checks it against the item's name, and queues
/// the item for checking when the manifest is readable.
fn load_item(root: &StoreRoot, item: &ItemName, pre: &mut Vec<Finding>, targets: &mut Vec<Target>) {
    let dir = root.item_path(item);
    match fs::symlink_metadata(&dir) {
        Ok(m) if !m.is_dir() => {
            pre.push(finding(
                FindingKind::UnexpectedItem,
                &dir,
                None,
                Some(format!("a {}, not a directory", type_of(&m))),
            ));
            return;
        }
        _ => {}
    }
    let mpath = root.manifest_path(item);
    let bytes = match fs::read(&mpath) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            pre.push(finding(FindingKind::ManifestMissing, &mpath, None, None));
            return;
        }
        Err(e) => {
            pre.push(finding(
                FindingKind::IoError,
                &mpath,
                None,
                Some(e.to_string()),
            ));
            return;
        }
    };
    let actual = sha256(&bytes);
    if actual != item.digest() {
        pre.push(finding(
            FindingKind::ManifestMismatch,
            &mpath,
            Some(item.digest().to_hex()),
            Some(actual.to_hex()),
        ));
    }
    match Manifest::parse(&bytes) {
        Ok(manifest) => targets.push(Target { dir, manifest }),
        Err(e) => pre.push(finding(
            FindingKind::ManifestInvalid,
            &mpath,
            None,
            Some(e.to_string()),
        )),
    }
}

/// A finding tagged with the target it belongs to.
type Tagged = (usize, Finding);

struct HashJob {
    target: usize,
    path: PathBuf,
    size: u64,
    sha256: Digest,
}

fn run(targets: Vec<Target>, mut pre: Vec<Finding>, opts: &VerifyOptions) -> Report {
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
            let path = join(&t.dir, &dir_entry.path);
            let mut local = Vec::new();
            let mut local_hash = Vec::new();
            // A directory that is not one on disk was reported by its parent.
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                let expected = children[ti]
                    .get(dir_entry.path.as_slice())
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                match fs::read_dir(&path) {
                    Ok(rd) => {
                        let want: HashSet<&[u8]> = expected.iter().map(|e| e.file_name()).collect();
                        for de in rd {
                            match de {
                                Ok(de) if !want.contains(de.file_name().as_bytes()) => {
                                    let p = de.path();
                                    let what = fs::symlink_metadata(&p)
                                        .map(|m| type_of(&m).to_owned())
                                        .ok();
                                    local.push((
                                        ti,
                                        finding(FindingKind::Unexpected, &p, None, what),
                                    ));
                                }
                                Ok(_) => {}
                                Err(e) => local.push((
                                    ti,
                                    finding(FindingKind::IoError, &path, None, Some(e.to_string())),
                                )),
                            }
                        }
                    }
                    Err(e) => local.push((
                        ti,
                        finding(FindingKind::IoError, &path, None, Some(e.to_string())),
                    )),
                }
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

    let mut hash_jobs = hash_jobs
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    // Largest first, so that the big files do not end up last on one core.
    hash_jobs.sort_by_key(|j| std::cmp::Reverse(j.size));
    let hashed = AtomicU64::new(0);
    let _ = pool::run(opts.jobs, &hash_jobs, |job: &HashJob, buf| {
        let result = File::open(&job.path).and_then(|mut f| hash_file(&mut f, job.size, buf));
        let f = match result {
            Ok((d, n)) => {
                hashed.fetch_add(n, Ordering::Relaxed);
                if n != job.size {
                    // Changed while we read it.
                    Some(finding(
                        FindingKind::SizeChanged,
                        &job.path,
                        Some(job.size.to_string()),
                        Some(n.to_string()),
                    ))
                } else if d != job.sha256 {
                    Some(finding(
                        FindingKind::ContentChanged,
                        &job.path,
                        Some(format!("sha256={}", hex(&job.sha256.0))),
                        Some(format!("sha256={}", hex(&d.0))),
                    ))
                } else {
                    None
                }
            }
            Err(e) => Some(finding(
                FindingKind::IoError,
                &job.path,
                None,
                Some(e.to_string()),
            )),
        };
        if let Some(f) = f {
            found
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((job.target, f));
        }
        Ok::<(), ()>(())
    });

    let tagged = found.into_inner().unwrap_or_else(PoisonError::into_inner);
    let mut per_target = vec![0usize; targets.len()];
    for (ti, _) in &tagged {
        per_target[*ti] += 1;
    }
    pre.extend(tagged.into_iter().map(|(_, f)| f));
    for (ti, n) in per_target.into_iter().enumerate() {
        if n > 0 {
            let s = if n == 1 { "" } else { "s" };
            pre.push(finding(
                FindingKind::ItemDiffers,
                &targets[ti].dir,
                None,
                Some(format!("{n} finding{s}")),
            ));
        }
    }
    pre.sort();
    Report {
        findings: pre,
        items: targets.len(),
        entries: entries.into_inner(),
        bytes_hashed: hashed.into_inner(),
    }
}

fn join(base: &Path, rel: &[u8]) -> PathBuf {
    crate::root::join_rel(base, rel)
}

/// The word for what a file is.
fn type_of(m: &Metadata) -> &'static str {
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
    let path = join(base, &e.path);
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
