//! The reader of streams: each item built through the store's import
//! path, checked, and renamed into place only when the whole stream has
//! been read and checked.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::codec::decompressor;
use super::entries::{Copy, Ctx, discard, entries, fault};
use super::error::{ItemFault, TransferError};
use super::frame::{FrameReader, ReadError, Record};
use super::{MANIFEST_COPIES, is_whole};
use crate::hash::{BUF_SIZE, sha256};
use crate::import::{ItemBuilder, Sealed};
use crate::manifest::Manifest;
use crate::name::ItemName;
use crate::root::StoreRoot;

/// Reads the closure of a system item from its directory (the store's
/// item, or the one just received in its work directory): the store knows
/// nothing of the closure file's format, the caller does.
pub type ClosureOf<'a> = &'a dyn Fn(&Path) -> Result<Vec<ItemName>, String>;

/// One item of a stream.
#[derive(Clone, Debug, Serialize)]
pub struct Received {
    /// The item.
    pub name: ItemName,
    /// Its regular files.
    pub files: u64,
    /// Its bytes of regular files.
    pub file_bytes: u64,
    /// True when it was already whole in the store and its bytes were
    /// read and discarded.
    pub skipped: bool,
}

/// What a stream brought.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The items, in stream order.
    pub items: Vec<Received>,
    /// Bytes of regular files of the items received (not skipped).
    pub file_bytes: u64,
}

/// The system item's closure, and where its manifest copies are.
struct Expect {
    dir: PathBuf,
    closure: BTreeSet<ItemName>,
}

/// Reads a zstd-compressed stream into `root` (see [`receive`]); bytes
/// after the zstd frame are refused as well.
pub fn receive_compressed(
    root: &StoreRoot,
    system: &ItemName,
    closure_of: ClosureOf<'_>,
    r: impl Read,
    on_item: &mut dyn FnMut(&Received),
) -> Result<Summary, TransferError> {
    receive_with(
        root,
        system,
        closure_of,
        decompressor(r),
        |d| Ok(d.read(&mut [0u8; 1])? == 0 && d.at_end()?),
        on_item,
    )
}

/// Reads an uncompressed stream into `root`, for the system item
/// `system`: the system item first unless it is already whole in the
/// store, then items of its closure. Each item is built through the
/// store's import path under the root's lock, must hash to its name and,
/// but for the system item, match entry by entry (sizes checked before a
/// byte is written) the manifest copy in the system item. `on_item` is
/// told of each item once it is checked; nothing is renamed into the
/// store before the end mark has been read and every closure item is
/// either in the store or in the stream; then the closure items go in
/// first and the system item last. On any error nothing is left.
pub fn receive(
    root: &StoreRoot,
    system: &ItemName,
    closure_of: ClosureOf<'_>,
    r: impl Read,
    on_item: &mut dyn FnMut(&Received),
) -> Result<Summary, TransferError> {
    let mut r = r;
    receive_with(
        root,
        system,
        closure_of,
        &mut r,
        |r| {
            let mut fr = FrameReader::new(r);
            fr.at_end().map_err(|e| match e {
                ReadError::Io(e) => e,
                _ => io::Error::other("unreadable"),
            })
        },
        on_item,
    )
}

fn outside(e: ReadError, last: &Option<String>) -> TransferError {
    match e {
        ReadError::Truncated => match last {
            Some(n) => TransferError::TruncatedAfter(n.clone()),
            None => TransferError::TruncatedAtStart,
        },
        ReadError::Io(e) => TransferError::Unreadable(e.to_string()),
        ReadError::Bad(m) => TransferError::Bad(m),
    }
}

fn expect(
    system: &ItemName,
    dir: &Path,
    closure_of: ClosureOf<'_>,
) -> Result<Expect, TransferError> {
    let closure = closure_of(dir).map_err(|reason| TransferError::Closure {
        system: system.to_string(),
        reason,
    })?;
    Ok(Expect {
        dir: dir.to_owned(),
        closure: closure.into_iter().collect(),
    })
}

fn load_copy(e: &Expect, system: &ItemName, name: &ItemName) -> Result<Copy, TransferError> {
    let s = name.as_str();
    let p = e.dir.join(MANIFEST_COPIES).join(format!("{s}.mtree"));
    if !fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
        return Err(fault(s, ItemFault::NoCopy(system.to_string())));
    }
    let bad = |why: String| {
        fault(
            s,
            ItemFault::BadCopy {
                system: system.to_string(),
                why,
            },
        )
    };
    let bytes = fs::read(&p).map_err(|e| bad(format!("cannot be read: {e}")))?;
    if sha256(&bytes) != name.digest() {
        return Err(bad("does not hash to the item's name".into()));
    }
    let manifest = Manifest::parse(&bytes).map_err(|e| bad(format!("is not canonical: {e}")))?;
    Ok(Copy { manifest, bytes })
}

fn receive_with<R: Read>(
    root: &StoreRoot,
    system: &ItemName,
    closure_of: ClosureOf<'_>,
    r: R,
    at_end: impl FnOnce(&mut R) -> io::Result<bool>,
    on_item: &mut dyn FnMut(&Received),
) -> Result<Summary, TransferError> {
    let lock = root.lock()?;
    let mut fr = FrameReader::new(r);
    match fr.magic() {
        Ok(true) => {}
        Ok(false) | Err(ReadError::Bad(_)) => return Err(TransferError::NotAStream),
        Err(e) => return Err(outside(e, &None)),
    }
    let mut expected = if is_whole(root, system) {
        Some(expect(system, &root.item_path(system), closure_of)?)
    } else {
        None
    };
    let mut sealed: Vec<Sealed<'_>> = Vec::new();
    let mut seen: BTreeSet<ItemName> = BTreeSet::new();
    let mut items = Vec::new();
    let mut last: Option<String> = None;
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let s = match fr.next().map_err(|e| outside(e, &last))? {
            Record::Item(s) => s,
            Record::End { items: n } => {
                if n != seen.len() as u64 {
                    return Err(TransferError::Bad(format!(
                        "the end mark counts {n} items, the stream has {}",
                        seen.len()
                    )));
                }
                break;
            }
            _ => {
                return Err(TransferError::Bad("an entry outside any item".to_owned()));
            }
        };
        let name = ItemName::parse(&s).map_err(|e| TransferError::Bad(e.to_string()))?;
        if !seen.insert(name.clone()) {
            return Err(fault(&s, ItemFault::SentTwice));
        }
        let is_system = name == *system;
        match &expected {
            None if !is_system => {
                return Err(fault(&s, ItemFault::SystemFirst(system.to_string())));
            }
            Some(e) if !is_system && !e.closure.contains(&name) => {
                return Err(fault(&s, ItemFault::NotInClosure(system.to_string())));
            }
            _ => {}
        }
        let received = if is_whole(root, &name) {
            let (files, file_bytes) = discard(&mut fr, &s)?;
            Received {
                name,
                files,
                file_bytes,
                skipped: true,
            }
        } else {
            let copy = match &expected {
                Some(e) if !is_system => Some(load_copy(e, system, &name)?),
                _ => None,
            };
            let mut b = ItemBuilder::new_locked(
                root,
                &lock,
                name.package(),
                Path::new(&format!("item {s}")),
            )?;
            let ctx = Ctx {
                item: &s,
                system: system.as_str(),
            };
            let (files, file_bytes) = entries(&mut fr, &mut b, ctx, copy.as_ref(), &mut buf)?;
            let seal = b.seal()?;
            if seal.name() != &name {
                return Err(fault(
                    &s,
                    ItemFault::DigestMismatch(seal.name().digest().to_hex()),
                ));
            }
            if copy.is_some_and(|c| c.bytes != seal.manifest_bytes()) {
                return Err(fault(&s, ItemFault::ManifestDiffers(system.to_string())));
            }
            if is_system {
                expected = Some(expect(system, seal.tree(), closure_of)?);
            }
            sealed.push(seal);
            Received {
                name,
                files,
                file_bytes,
                skipped: false,
            }
        };
        on_item(&received);
        items.push(received);
        last = Some(s);
    }
    if !at_end(&mut fr.r).map_err(|e| outside(e.into(), &last))? {
        return Err(TransferError::Bad("bytes after the end mark".to_owned()));
    }
    let Some(expected) = expected else {
        return Err(TransferError::NoSystem(system.to_string()));
    };
    if let Some(n) = expected
        .closure
        .iter()
        .find(|n| !seen.contains(*n) && !is_whole(root, n))
    {
        return Err(fault(n.as_str(), ItemFault::Missing(system.to_string())));
    }
    // The system item last: a system in the store always has its closure.
    sealed.sort_by_key(|s| s.name() == system);
    for s in sealed {
        s.commit()?;
    }
    let file_bytes = items
        .iter()
        .filter(|i| !i.skipped)
        .map(|i| i.file_bytes)
        .sum();
    Ok(Summary { items, file_bytes })
}
