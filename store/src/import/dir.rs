//! Import from a directory tree.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{ImportOptions, ImportOutcome, ItemBuilder, write_item_file};
use crate::digest::Digest;
use crate::error::{ImportError, IoContext};
use crate::escape::escape;
use crate::pool;
use crate::root::StoreRoot;

/// A copied file: its path, whether executable, size and digest.
type Copied = (Vec<u8>, bool, u64, Digest);

struct CopyJob {
    src: PathBuf,
    dst: PathBuf,
    rel: Vec<u8>,
    executable: bool,
    size: u64,
}

/// Imports the tree at `src` as item `package`. Regular files are copied
/// and hashed in parallel, largest first; hard links inside the tree stay
/// hard links; a symbolic link at `src` itself is followed, links inside
/// are not.
pub fn import_dir(
    root: &StoreRoot,
    package: &str,
    src: &Path,
    opts: &ImportOptions,
) -> Result<ImportOutcome, ImportError> {
    let top = fs::metadata(src).at(src, "read metadata")?;
    if !top.is_dir() {
        return Err(ImportError::BadSource {
            path: src.to_owned(),
            reason: "is not a directory".into(),
        });
    }
    let mut b = ItemBuilder::new(root, package, src)?;
    b.note_mode(b"", top.mode());
    let mut jobs = Vec::new();
    let mut links: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut seen: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(src.to_owned(), Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut children = Vec::new();
        for e in fs::read_dir(&dir).at(&dir, "read directory")? {
            children.push(e.at(&dir, "read directory")?.file_name());
        }
        // Sorted, so that the first of a set of hard links is always the same.
        children.sort();
        for name in children {
            let path = dir.join(&name);
            let mut crel = rel.clone();
            if !crel.is_empty() {
                crel.push(b'/');
            }
            crel.extend_from_slice(name.as_bytes());
            let m = fs::symlink_metadata(&path).at(&path, "read metadata")?;
            let ft = m.file_type();
            if ft.is_dir() {
                b.add_dir(&crel, m.mode())?;
                stack.push((path, crel));
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).at(&path, "read link")?;
                b.add_symlink(&crel, target.as_os_str().as_bytes())?;
            } else if ft.is_file() {
                if m.nlink() > 1 {
                    if let Some(first) = seen.get(&(m.dev(), m.ino())) {
                        links.push((crel, first.clone()));
                        continue;
                    }
                    seen.insert((m.dev(), m.ino()), crel.clone());
                }
                let dst = b.reserve_file(&crel, m.mode())?;
                jobs.push(CopyJob {
                    src: path,
                    dst,
                    rel: crel,
                    executable: m.mode() & 0o111 != 0,
                    size: m.len(),
                });
            } else {
                return Err(ImportError::UnsupportedType {
                    source_path: src.to_owned(),
                    entry: escape(&crel),
                    kind: special_kind(ft),
                });
            }
        }
    }
    // Largest first: the big files start early and the small ones fill in,
    // so no core idles at the end.
    jobs.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.rel.cmp(&b.rel)));
    let done: Mutex<Vec<Copied>> = Mutex::new(Vec::with_capacity(jobs.len()));
    pool::run(opts.jobs, &jobs, |job, buf| {
        let mut f = File::open(&job.src).at(&job.src, "open")?;
        let (d, n) =
            write_item_file(&job.dst, job.executable, &mut f, buf).at(&job.dst, "write")?;
        done.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((job.rel.clone(), job.executable, n, d));
        Ok::<(), ImportError>(())
    })?;
    for (rel, executable, size, sha) in done
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        b.set_file(&rel, executable, size, sha);
    }
    for (rel, target) in links {
        b.add_hardlink(&rel, &target)?;
    }
    b.finish()
}

/// Name of a file type the store refuses.
pub(crate) fn special_kind(ft: fs::FileType) -> &'static str {
    if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device node"
    } else if ft.is_block_device() {
        "block device node"
    } else {
        "file of unknown type"
    }
}
