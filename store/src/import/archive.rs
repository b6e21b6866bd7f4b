//! Import from a tar archive, plain or compressed with gzip, xz or zstd
//! (FreeBSD distribution sets such as `base.txz` are xz tars).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use tar::EntryType;

use super::{ImportOptions, ImportOutcome, ItemBuilder};
use crate::error::{ImportError, IoContext};
use crate::escape::escape;
use crate::hash::BUF_SIZE;
use crate::root::StoreRoot;

/// Compression recognised from an archive's first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// An uncompressed tar.
    None,
    /// gzip (`.tgz`, `.tar.gz`).
    Gzip,
    /// xz (`.txz`, `.tar.xz`).
    Xz,
    /// Zstandard (`.tar.zst`).
    Zstd,
}

/// Recognises the compression from the magic bytes.
pub fn sniff(head: &[u8]) -> Option<Compression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(Compression::Xz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(Compression::None)
    } else {
        None
    }
}

/// Imports the tar archive at `src` as item `package`.
pub fn import_archive(
    root: &StoreRoot,
    package: &str,
    src: &Path,
    _opts: &ImportOptions,
) -> Result<ImportOutcome, ImportError> {
    let file = File::open(src).at(src, "open")?;
    let mut reader = BufReader::with_capacity(BUF_SIZE, file);
    let head = reader.fill_buf().at(src, "read")?.to_vec();
    let bad = |message: String| ImportError::Archive {
        path: src.to_owned(),
        message,
    };
    let decoded: Box<dyn Read> = match sniff(&head) {
        Some(Compression::None) => Box::new(reader),
        Some(Compression::Gzip) => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Some(Compression::Xz) => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(reader)),
        Some(Compression::Zstd) => Box::new(
            zstd::stream::read::Decoder::with_buffer(reader).map_err(|e| bad(e.to_string()))?,
        ),
        None if head.starts_with(b"BZh") => {
            return Err(ImportError::BadSource {
                path: src.to_owned(),
                reason: "bzip2 archives are not supported; use gzip, xz or zstd".into(),
            });
        }
        None => {
            return Err(ImportError::BadSource {
                path: src.to_owned(),
                reason: "is not a tar archive (plain, gzip, xz or zstd)".into(),
            });
        }
    };
    let mut b = ItemBuilder::new(root, package, src)?;
    let mut archive = tar::Archive::new(decoded);
    let mut buf = vec![0u8; BUF_SIZE];
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let raw = entry.path_bytes().into_owned();
        let rel = normalize(src, &raw)?;
        let mode = entry.header().mode().map_err(|e| bad(e.to_string()))?;
        let kind = entry.header().entry_type();
        if rel.is_empty() && !matches!(kind, EntryType::Directory) {
            if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
                continue;
            }
            return Err(ImportError::RootNotDirectory {
                source_path: src.to_owned(),
                entry: escape(&raw),
            });
        }
        match kind {
            EntryType::Directory => b.add_dir(&rel, mode)?,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => b
                .add_file(&rel, mode, &mut FromArchive(&mut entry), &mut buf)
                .map_err(|e| match e {
                    ImportError::Io { source, .. } if is_archive_read(&source) => {
                        bad(format!("entry '{}': {source}", escape(&raw)))
                    }
                    other => other,
                })?,
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| {
                    bad(format!(
                        "entry '{}': symbolic link without a target",
                        escape(&raw)
                    ))
                })?;
                b.add_symlink(&rel, &target)?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| {
                    bad(format!(
                        "entry '{}': hard link without a target",
                        escape(&raw)
                    ))
                })?;
                let trel = normalize(src, &target)?;
                b.add_hardlink(&rel, &trel)?;
            }
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {}
            other => {
                return Err(ImportError::UnsupportedType {
                    source_path: src.to_owned(),
                    entry: escape(&raw),
                    kind: match other {
                        EntryType::Char => "character device node",
                        EntryType::Block => "block device node",
                        EntryType::Fifo => "fifo",
                        _ => "tar entry of unknown type",
                    },
                });
            }
        }
    }
    b.finish()
}

/// Marks read errors as the archive's, so that a truncated archive is not
/// reported as a failure to write the store.
struct FromArchive<R>(R);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ArchiveRead(std::io::Error);

impl<R: Read> Read for FromArchive<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| std::io::Error::new(e.kind(), ArchiveRead(e)))
    }
}

fn is_archive_read(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<ArchiveRead>())
}

/// Turns an archive path into a relative item path: leading `./` and
/// repeated or trailing slashes go; absolute paths and `..` are refused.
fn normalize(src: &Path, raw: &[u8]) -> Result<Vec<u8>, ImportError> {
    if raw.starts_with(b"/") {
        return Err(ImportError::AbsolutePath {
            source_path: src.to_owned(),
            entry: escape(raw),
        });
    }
    let mut out = Vec::with_capacity(raw.len());
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(ImportError::DotDot {
                    source_path: src.to_owned(),
                    entry: escape(raw),
                });
            }
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_archive_paths() {
        let p = Path::new("x.tar");
        assert_eq!(normalize(p, b"./usr//bin/").unwrap(), b"usr/bin");
        assert_eq!(normalize(p, b"./").unwrap(), b"");
        assert!(matches!(
            normalize(p, b"/etc/passwd"),
            Err(ImportError::AbsolutePath { .. })
        ));
        assert!(matches!(
            normalize(p, b"a/../../b"),
            Err(ImportError::DotDot { .. })
        ));
    }

    #[test]
    fn sniffs_magic_bytes() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Some(Compression::Gzip));
        assert_eq!(sniff(b"\xfd7zXZ\0rest"), Some(Compression::Xz));
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Some(Compression::Zstd));
        assert_eq!(sniff(b"garbage"), None);
    }
}
