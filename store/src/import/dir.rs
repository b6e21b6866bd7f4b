//! Import from a directory tree.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::FileType;

use super::{ImportOptions, ImportOutcome, ItemBuilder, write_item_file};
use crate::digest::Digest;
use crate::error::{ImportError, IoContext};
use crate::escape::escape;
use crate::pool;
use crate::root::{
    StoreRoot, is_not_a_directory, lstat_at, open_dir_nofollow, open_nofollow, race_point,
};

/// A copied file: its path, whether executable, size and digest.
type Copied = (Vec<u8>, bool, u64, Digest);

struct CopyJob {
    src: PathBuf,
    dst: PathBuf,
    rel: Vec<u8>,
    executable: bool,
    size: u64,
    /// Device and inode the listing saw: the file opened must be this one.
    dev_ino: (u64, u64),
}

/// Imports the tree at `src` as item `package`. Regular files are copied
/// and hashed in parallel, largest first; hard links inside the tree stay
/// hard links; a symbolic link at `src` itself is followed, links inside
/// are not.
///
/// Nothing is read that was not listed: each directory is listed through a
/// descriptor opened with `O_NOFOLLOW` and checked (device, inode) against
/// what its parent's listing said, its entries are read relative to that
/// descriptor, and each file is opened with `O_NOFOLLOW` and checked
/// (type, device, inode, size) against its listing. An entry swapped for a
/// link or another file meanwhile is refused with
/// [`ImportError::SourceChanged`], and nothing is left in the store.
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
    let mut stack: Vec<(PathBuf, Vec<u8>, (u64, u64))> =
        vec![(src.to_owned(), Vec::new(), (top.dev(), top.ino()))];
    while let Some((dir_path, rel, dev_ino)) = stack.pop() {
        let dir = open_listed_dir(&dir_path, rel.is_empty(), dev_ino)?;
        let mut children = Vec::new();
        let entries = rustix::fs::Dir::read_from(&dir).map_err(std::io::Error::from);
        for e in entries.at(&dir_path, "read directory")? {
            let e = e.map_err(std::io::Error::from);
            let name = e.at(&dir_path, "read directory")?.file_name().to_owned();
            if name.as_bytes() != b"." && name.as_bytes() != b".." {
                children.push(name);
            }
        }
        // Sorted, so that the first of a set of hard links is always the same.
        children.sort();
        for name in children {
            let path = dir_path.join(OsStr::from_bytes(name.as_bytes()));
            let mut crel = rel.clone();
            if !crel.is_empty() {
                crel.push(b'/');
            }
            crel.extend_from_slice(name.as_bytes());
            let m = lstat_at(&dir, &name).at(&path, "read metadata")?;
            match m.kind {
                FileType::Directory => {
                    b.add_dir(&crel, m.mode)?;
                    stack.push((path, crel, m.dev_ino));
                }
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(&dir, &name, Vec::new())
                        .map_err(std::io::Error::from)
                        .at(&path, "read link")?;
                    b.add_symlink(&crel, target.as_bytes())?;
                }
                FileType::RegularFile => {
                    if m.nlink > 1 {
                        if let Some(first) = seen.get(&m.dev_ino) {
                            links.push((crel, first.clone()));
                            continue;
                        }
                        seen.insert(m.dev_ino, crel.clone());
                    }
                    let dst = b.reserve_file(&crel, m.mode)?;
                    jobs.push(CopyJob {
                        src: path,
                        dst,
                        rel: crel,
                        executable: m.mode & 0o111 != 0,
                        size: m.size,
                        dev_ino: m.dev_ino,
                    });
                }
                kind => {
                    return Err(ImportError::UnsupportedType {
                        source_path: src.to_owned(),
                        entry: escape(&crel),
                        kind: special_kind(kind),
                    });
                }
            }
        }
    }
    // Largest first: the big files start early and the small ones fill in,
    // so no core idles at the end.
    jobs.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.rel.cmp(&b.rel)));
    let done: Mutex<Vec<Copied>> = Mutex::new(Vec::with_capacity(jobs.len()));
    pool::run(opts.jobs, &jobs, |job, buf| {
        let mut f = open_listed_file(job)?;
        let (d, n) =
            write_item_file(&job.dst, job.executable, &mut f, buf).at(&job.dst, "write")?;
        if n != job.size {
            return Err(changed(&job.src, "its size changed"));
        }
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

fn changed(path: &Path, what: &'static str) -> ImportError {
    ImportError::SourceChanged {
        path: path.to_owned(),
        what,
    }
}

/// Opens a directory the listing saw as `dev_ino`: without following a
/// link, except at the top (`src` itself may be one).
fn open_listed_dir(path: &Path, top: bool, dev_ino: (u64, u64)) -> Result<File, ImportError> {
    race_point(path);
    let dir = if top {
        File::open(path).at(path, "open")?
    } else {
        match open_dir_nofollow(None, path) {
            Ok(d) => d,
            Err(e) if is_not_a_directory(&e) => {
                return Err(changed(path, "it is no longer a directory"));
            }
            Err(e) => return Err(e).at(path, "open"),
        }
    };
    let m = dir.metadata().at(path, "read metadata")?;
    if !m.is_dir() {
        return Err(changed(path, "it is no longer a directory"));
    }
    if (m.dev(), m.ino()) != dev_ino {
        return Err(changed(path, "it is now another directory"));
    }
    Ok(dir)
}

/// Opens the file of a copy job without following a link (and without
/// blocking, should a fifo have been swapped in), and checks that it is
/// the regular file the listing saw.
fn open_listed_file(job: &CopyJob) -> Result<File, ImportError> {
    race_point(&job.src);
    let f = match open_nofollow(&job.src) {
        Ok(f) => f,
        Err(e) if is_not_a_directory(&e) => {
            return Err(changed(&job.src, "it is now a symbolic link"));
        }
        Err(e) => return Err(e).at(&job.src, "open"),
    };
    let m = f.metadata().at(&job.src, "read metadata")?;
    if !m.is_file() {
        return Err(changed(&job.src, "it is no longer a regular file"));
    }
    if (m.dev(), m.ino()) != job.dev_ino {
        return Err(changed(&job.src, "it is now another file"));
    }
    if m.len() != job.size {
        return Err(changed(&job.src, "its size changed"));
    }
    Ok(f)
}

/// Name of a file type the store refuses.
pub(crate) fn special_kind(ft: FileType) -> &'static str {
    match ft {
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device node",
        FileType::BlockDevice => "block device node",
        _ => "file of unknown type",
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::root::RACE;

    /// A source `src` with `a` (a file) and `sub/b`, and a secret outside it.
    fn scratch() -> (tempfile::TempDir, StoreRoot, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("a"), "aaaa").unwrap();
        fs::write(src.join("sub/b"), "bbbb").unwrap();
        fs::create_dir(t.path().join("secret")).unwrap();
        fs::write(t.path().join("secret/key"), "SECR").unwrap();
        let root = StoreRoot::new(t.path().join("root"));
        (t, root, src)
    }

    /// Imports `src` (on this thread, where the hook is) with `swap` run
    /// when the import reaches `at`, and returns the error.
    fn import_with_swap(
        root: &StoreRoot,
        src: &Path,
        at: PathBuf,
        swap: impl Fn(&Path) + 'static,
    ) -> ImportError {
        RACE.set(Some(Box::new(move |p: &Path| {
            if p == at {
                swap(p)
            }
        })));
        let r = import_dir(root, "x", src, &ImportOptions { jobs: 1 });
        RACE.set(None);
        r.unwrap_err()
    }

    fn names(dir: PathBuf) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn assert_nothing_left(root: &StoreRoot) {
        assert_eq!(names(root.store_dir()), Vec::<String>::new());
        assert_eq!(names(root.manifests_dir()), Vec::<String>::new());
        assert_eq!(names(root.tmp_dir()), Vec::<String>::new());
    }

    #[test]
    fn a_file_swapped_for_a_link_after_the_listing_is_refused() {
        let (t, root, src) = scratch();
        let secret = t.path().join("secret/key");
        let e = import_with_swap(&root, &src, src.join("a"), move |p| {
            fs::remove_file(p).unwrap();
            symlink(&secret, p).unwrap();
        });
        assert_eq!(
            e.to_string(),
            format!(
                "{}/a: changed while it was imported: it is now a symbolic link",
                src.display()
            )
        );
        assert!(matches!(e, ImportError::SourceChanged { .. }));
        assert_nothing_left(&root);
    }

    #[test]
    fn a_file_swapped_for_another_file_after_the_listing_is_refused() {
        let (t, root, src) = scratch();
        let secret = t.path().join("secret/key");
        let e = import_with_swap(&root, &src, src.join("a"), move |p| {
            fs::remove_file(p).unwrap();
            fs::hard_link(&secret, p).unwrap();
        });
        assert_eq!(
            e.to_string(),
            format!(
                "{}/a: changed while it was imported: it is now another file",
                src.display()
            )
        );
        assert_nothing_left(&root);
    }

    #[test]
    fn a_directory_swapped_for_a_link_after_the_listing_is_refused() {
        let (t, root, src) = scratch();
        let secret = t.path().join("secret");
        let aside = t.path().join("aside");
        let e = import_with_swap(&root, &src, src.join("sub"), move |p| {
            fs::rename(p, &aside).unwrap();
            symlink(&secret, p).unwrap();
        });
        assert_eq!(
            e.to_string(),
            format!(
                "{}/sub: changed while it was imported: it is no longer a directory",
                src.display()
            )
        );
        assert_nothing_left(&root);
    }

    #[test]
    fn a_directory_swapped_for_another_after_the_listing_is_refused() {
        let (t, root, src) = scratch();
        let secret = t.path().join("secret");
        let e = import_with_swap(&root, &src, src.join("sub"), move |p| {
            fs::rename(p, secret.with_file_name("aside")).unwrap();
            fs::rename(&secret, p).unwrap();
        });
        assert_eq!(
            e.to_string(),
            format!(
                "{}/sub: changed while it was imported: it is now another directory",
                src.display()
            )
        );
        assert_nothing_left(&root);
    }
}
