//! The writer of streams: items read from a store root in manifest order.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::error::SendError;
use super::frame::{FrameWriter, Record};
use crate::hash::BUF_SIZE;
use crate::manifest::EntryKind;
use crate::name::ItemName;
use crate::root::{StoreRoot, join_rel, open_nofollow};

/// Writes a stream: the magic, then items, then the end mark on
/// [`StreamWriter::finish`]. Without the end mark a reader refuses the
/// stream, so a writer that fails half-way never passes for a whole one.
pub struct StreamWriter<W: Write> {
    pub(super) w: FrameWriter<W>,
    pub(super) items: u64,
    pub(super) file_bytes: u64,
    pub(super) buf: Vec<u8>,
}

pub(super) fn out_err(source: std::io::Error) -> SendError {
    SendError::Io {
        path: PathBuf::from("stream"),
        action: "write",
        source,
    }
}

impl<W: Write> StreamWriter<W> {
    /// Starts a stream into `w` (writes the magic).
    pub fn new(w: W) -> Result<Self, SendError> {
        let mut w = FrameWriter::new(w);
        w.raw(super::MAGIC).map_err(out_err)?;
        Ok(StreamWriter {
            w,
            items: 0,
            file_bytes: 0,
            buf: vec![0u8; BUF_SIZE],
        })
    }

    /// Uncompressed bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.w.bytes
    }

    /// Bytes of regular files written so far.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// Writes one item of `root`: its entries in manifest order (the root
    /// directory is implied), each file's bytes read through a descriptor
    /// that follows no link. Returns the item's bytes of files.
    pub fn write_item(&mut self, root: &StoreRoot, name: &ItemName) -> Result<u64, SendError> {
        let manifest = root.read_manifest(name)?;
        if manifest.digest() != name.digest() {
            return Err(SendError::BadManifest(name.to_string()));
        }
        let dir = root.item_path(name);
        self.w
            .record(&Record::Item(name.to_string()))
            .map_err(out_err)?;
        let mut bytes = 0;
        for e in manifest.entries().iter().skip(1) {
            let path = e.path.clone();
            match &e.kind {
                EntryKind::Dir => self.w.record(&Record::Dir(path)).map_err(out_err)?,
                EntryKind::Link { target } => self
                    .w
                    .record(&Record::Link {
                        path,
                        target: target.clone(),
                    })
                    .map_err(out_err)?,
                EntryKind::File {
                    executable, size, ..
                } => {
                    let p = join_rel(&dir, &e.path);
                    self.file(&p, path, *executable, *size)?;
                    bytes += size;
                }
            }
        }
        self.w.record(&Record::EndItem).map_err(out_err)?;
        self.items += 1;
        self.file_bytes += bytes;
        Ok(bytes)
    }

    fn file(
        &mut self,
        p: &Path,
        path: Vec<u8>,
        executable: bool,
        size: u64,
    ) -> Result<(), SendError> {
        let io = |action| {
            move |source| SendError::Io {
                path: p.to_owned(),
                action,
                source,
            }
        };
        let mut f = open_nofollow(p).map_err(io("open"))?;
        let meta = f.metadata().map_err(io("stat"))?;
        if !meta.is_file() || meta.len() != size {
            return Err(SendError::Changed {
                path: p.to_owned(),
                what: format!("size {}, manifest says {size}", meta.len()),
            });
        }
        self.w
            .record(&Record::File {
                path,
                executable,
                size,
            })
            .map_err(out_err)?;
        let mut n = 0;
        let mut body = (&mut f).take(size);
        loop {
            let k = match body.read(&mut self.buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io("read")(e)),
            };
            self.w.raw(&self.buf[..k]).map_err(out_err)?;
            n += k as u64;
        }
        // Grown since the stat: the stream has its announced bytes, but
        // the item is not what its manifest says.
        if n != size || f.read(&mut [0u8; 1]).map_err(io("read"))? != 0 {
            return Err(SendError::Changed {
                path: p.to_owned(),
                what: "changed while it was sent".into(),
            });
        }
        Ok(())
    }

    /// Writes the end mark and hands back the output.
    pub fn finish(mut self) -> Result<W, SendError> {
        self.w
            .record(&Record::End { items: self.items })
            .map_err(out_err)?;
        Ok(self.w.into_inner())
    }
}

/// What a compressed stream took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sent {
    /// Items written.
    pub items: u64,
    /// Their bytes of regular files.
    pub file_bytes: u64,
    /// Bytes of the stream before compression.
    pub uncompressed: u64,
    /// Bytes written to the output.
    pub compressed: u64,
}
