//! An item's entries read from a stream into its builder, checked
//! against the manifest copy as they come.

use std::io::{self, Read};

use super::error::{ItemFault, TransferError};
use super::frame::{FrameReader, ReadError, Record};
use crate::escape::escape;
use crate::import::{ItemBuilder, write_item_file};
use crate::manifest::{Entry, EntryKind, Manifest, check_path};

/// The most bytes of files the system item may bring: it holds
/// configuration and manifests, and nothing bounds its files otherwise.
pub const MAX_SYSTEM_BYTES: u64 = 1 << 30;

/// The item and the system, for messages.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    pub(super) item: &'a str,
    pub(super) system: &'a str,
}

/// True when a stream record is the manifest entry `e`, size included.
fn same(e: &Entry, r: &Record) -> bool {
    match (r, &e.kind) {
        (Record::Dir(p), EntryKind::Dir) => *p == e.path,
        (
            Record::File {
                path,
                executable,
                size,
            },
            EntryKind::File {
                executable: x,
                size: n,
                ..
            },
        ) => *path == e.path && executable == x && size == n,
        (Record::Link { path, target }, EntryKind::Link { target: t }) => {
            *path == e.path && target == t
        }
        _ => false,
    }
}

/// Reads an item's entries into the builder, up to its end mark.
/// Returns its number of files and bytes of files.
pub(super) fn entries<R: Read>(
    fr: &mut FrameReader<R>,
    b: &mut ItemBuilder<'_>,
    ctx: Ctx<'_>,
    copy: Option<&Copy>,
    buf: &mut [u8],
) -> Result<(u64, u64), TransferError> {
    let item = ctx.item;
    let mut expected = copy.map(|c| c.manifest.entries().iter().skip(1));
    let mut prev: Vec<u8> = Vec::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    loop {
        let rec = fr.next().map_err(|e| inside(e, item))?;
        let path = match &rec {
            Record::EndItem => {
                if let Some(e) = expected.as_mut().and_then(Iterator::next) {
                    return Err(fault(
                        item,
                        ItemFault::MissingEntry {
                            entry: escape(&e.path),
                            system: ctx.system.to_owned(),
                        },
                    ));
                }
                return Ok((files, bytes));
            }
            Record::Dir(p) | Record::File { path: p, .. } | Record::Link { path: p, .. } => p,
            Record::Item(_) | Record::End { .. } => {
                return Err(fault(
                    item,
                    ItemFault::Bad("the item has no end mark".into()),
                ));
            }
        };
        let bad_path = |why: String| {
            fault(
                item,
                ItemFault::BadPath {
                    entry: escape(path),
                    why,
                },
            )
        };
        check_path(path).map_err(bad_path)?;
        if *path <= prev {
            return Err(bad_path("not in manifest order".into()));
        }
        prev.clone_from(path);
        let want = match expected.as_mut() {
            None => None,
            Some(it) => match it.next() {
                Some(e) if same(e, &rec) => Some(e),
                _ => {
                    return Err(fault(
                        item,
                        ItemFault::EntryDiffers {
                            entry: escape(path),
                            system: ctx.system.to_owned(),
                        },
                    ));
                }
            },
        };
        match rec {
            Record::Dir(p) => b.add_dir(&p, 0o555)?,
            Record::Link { path, target } => b.add_symlink(&path, &target)?,
            Record::File {
                path,
                executable,
                size,
            } => {
                if copy.is_none() && bytes.saturating_add(size) > MAX_SYSTEM_BYTES {
                    return Err(fault(item, ItemFault::TooLarge(MAX_SYSTEM_BYTES)));
                }
                let dest = b.reserve_file(&path, if executable { 0o555 } else { 0o444 })?;
                let mut src = Stash {
                    r: &mut fr.r,
                    err: None,
                };
                let res = write_item_file(&dest, executable, &mut (&mut src).take(size), buf);
                if let Some(e) = src.err {
                    return Err(inside(e.into(), item));
                }
                let (sha, n) = res.map_err(|source| crate::ImportError::Io {
                    path: dest.clone(),
                    action: "write",
                    source,
                })?;
                if n != size {
                    return Err(fault(item, ItemFault::Truncated));
                }
                if let Some(Entry {
                    kind: EntryKind::File { sha256: want, .. },
                    ..
                }) = want
                    && *want != sha
                {
                    return Err(fault(
                        item,
                        ItemFault::ContentDiffers {
                            entry: escape(&path),
                            system: ctx.system.to_owned(),
                        },
                    ));
                }
                b.set_file(&path, executable, size, sha);
                files += 1;
                bytes += size;
            }
            Record::EndItem | Record::Item(_) | Record::End { .. } => {
                unreachable!("handled above")
            }
        }
    }
}

/// Reads and drops an item already whole in the store.
pub(super) fn discard<R: Read>(
    fr: &mut FrameReader<R>,
    item: &str,
) -> Result<(u64, u64), TransferError> {
    let (mut files, mut bytes) = (0u64, 0u64);
    loop {
        match fr.next().map_err(|e| inside(e, item))? {
            Record::EndItem => return Ok((files, bytes)),
            Record::Dir(_) | Record::Link { .. } => {}
            Record::File { size, .. } => {
                let n = io::copy(&mut (&mut fr.r).take(size), &mut io::sink())
                    .map_err(|e| inside(e.into(), item))?;
                if n != size {
                    return Err(fault(item, ItemFault::Truncated));
                }
                files += 1;
                bytes += size;
            }
            Record::Item(_) | Record::End { .. } => {
                return Err(fault(
                    item,
                    ItemFault::Bad("the item has no end mark".into()),
                ));
            }
        }
    }
}

/// A reader that keeps its error, so that a failed copy can tell the
/// stream's fault from the store's.
struct Stash<'a, R> {
    r: &'a mut R,
    err: Option<io::Error>,
}

impl<R: Read> Read for Stash<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.r.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let kind = e.kind();
                    self.err = Some(e);
                    return Err(io::Error::new(kind, "stream"));
                }
                ok => return ok,
            }
        }
    }
}

/// A closure item's manifest as the system item has it.
pub(super) struct Copy {
    pub(super) manifest: Manifest,
    pub(super) bytes: Vec<u8>,
}

/// An item's fault as the stream's error.
pub(super) fn fault(item: &str, fault: ItemFault) -> TransferError {
    TransferError::Item {
        item: item.to_owned(),
        fault,
    }
}

pub(super) fn inside(e: ReadError, item: &str) -> TransferError {
    fault(
        item,
        match e {
            ReadError::Truncated => ItemFault::Truncated,
            ReadError::Io(e) => ItemFault::Unreadable(e.to_string()),
            ReadError::Bad(m) => ItemFault::Bad(m),
        },
    )
}
