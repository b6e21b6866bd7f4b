//! The records of a stream, written and read: the one definition of the
//! bytes after the magic (`docs/store-format.md`, "Transfer stream").
//! Integers are big-endian; lengths are bounded before anything is
//! allocated.

use std::io::{self, Read, Write};

use super::MAX_PATH;
use crate::name::{DIGEST_HEX_LEN, MAX_NAME_LEN};

/// An item begins: `I`, u16 name length, name.
pub(crate) const ITEM: u8 = b'I';
/// A directory: `D`, u32 path length, path.
pub(crate) const DIR: u8 = b'D';
/// A regular file: `F`, u32 path length, path, u8 executable (0 or 1),
/// u64 size, then exactly size bytes.
pub(crate) const FILE: u8 = b'F';
/// A symbolic link: `L`, u32 path length, path, u32 target length, target.
pub(crate) const LINK: u8 = b'L';
/// The item ends: `E`.
pub(crate) const END_ITEM: u8 = b'E';
/// The stream ends: `Z`, u64 number of items.
pub(crate) const END: u8 = b'Z';
/// Bytes of the end mark.
#[cfg_attr(not(feature = "archive"), allow(dead_code))]
pub(crate) const END_LEN: u64 = 9;

/// One record's header (a file's bytes follow its header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Item(String),
    Dir(Vec<u8>),
    File {
        path: Vec<u8>,
        executable: bool,
        size: u64,
    },
    Link {
        path: Vec<u8>,
        target: Vec<u8>,
    },
    EndItem,
    End {
        items: u64,
    },
}

/// Why a record could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The input ended.
    Truncated,
    /// The input failed (a decoder's `InvalidData`, an I/O error).
    Io(io::Error),
    /// The bytes break the format.
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Truncated
        } else {
            ReadError::Io(e)
        }
    }
}

/// Writes records, counting the bytes.
pub(crate) struct FrameWriter<W> {
    w: W,
    pub(crate) bytes: u64,
}

impl<W: Write> FrameWriter<W> {
    pub(crate) fn new(w: W) -> Self {
        FrameWriter { w, bytes: 0 }
    }

    pub(crate) fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.w.write_all(b)?;
        self.bytes += b.len() as u64;
        Ok(())
    }

    fn bytes32(&mut self, b: &[u8]) -> io::Result<()> {
        let n = u32::try_from(b.len()).map_err(|_| io::Error::other("path too long"))?;
        self.raw(&n.to_be_bytes())?;
        self.raw(b)
    }

    /// Writes a record's header (for a file, its bytes must follow).
    pub(crate) fn record(&mut self, r: &Record) -> io::Result<()> {
        match r {
            Record::Item(name) => {
                self.raw(&[ITEM])?;
                let n = u16::try_from(name.len()).map_err(|_| io::Error::other("name too long"))?;
                self.raw(&n.to_be_bytes())?;
                self.raw(name.as_bytes())
            }
            Record::Dir(p) => {
                self.raw(&[DIR])?;
                self.bytes32(p)
            }
            Record::File {
                path,
                executable,
                size,
            } => {
                self.raw(&[FILE])?;
                self.bytes32(path)?;
                self.raw(&[u8::from(*executable)])?;
                self.raw(&size.to_be_bytes())
            }
            Record::Link { path, target } => {
                self.raw(&[LINK])?;
                self.bytes32(path)?;
                self.bytes32(target)
            }
            Record::EndItem => self.raw(&[END_ITEM]),
            Record::End { items } => {
                self.raw(&[END])?;
                self.raw(&items.to_be_bytes())
            }
        }
    }

    pub(crate) fn into_inner(self) -> W {
        self.w
    }
}

/// Reads records, counting the bytes.
pub(crate) struct FrameReader<R> {
    pub(crate) r: R,
}

impl<R: Read> FrameReader<R> {
    pub(crate) fn new(r: R) -> Self {
        FrameReader { r }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }

    fn bytes32(&mut self, what: &str) -> Result<Vec<u8>, ReadError> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        if n > MAX_PATH {
            return Err(ReadError::Bad(format!(
                "{what} of {n} bytes, longer than {MAX_PATH}"
            )));
        }
        let mut v = vec![0u8; n];
        self.r.read_exact(&mut v)?;
        Ok(v)
    }

    /// Reads the magic; false when the input starts with other bytes.
    pub(crate) fn magic(&mut self) -> Result<bool, ReadError> {
        Ok(&self.array::<16>()? == super::MAGIC)
    }

    /// The next record's header.
    pub(crate) fn next(&mut self) -> Result<Record, ReadError> {
        let [tag] = self.array()?;
        Ok(match tag {
            ITEM => {
                let n = u16::from_be_bytes(self.array()?) as usize;
                if n > DIGEST_HEX_LEN + 1 + MAX_NAME_LEN {
                    return Err(ReadError::Bad(format!("item name of {n} bytes")));
                }
                let mut v = vec![0u8; n];
                self.r.read_exact(&mut v)?;
                let name = String::from_utf8(v)
                    .map_err(|_| ReadError::Bad("item name is not UTF-8".into()))?;
                Record::Item(name)
            }
            DIR => Record::Dir(self.bytes32("path")?),
            FILE => {
                let path = self.bytes32("path")?;
                let executable = match self.array::<1>()? {
                    [0] => false,
                    [1] => true,
                    [b] => return Err(ReadError::Bad(format!("executable flag {b}"))),
                };
                let size = u64::from_be_bytes(self.array()?);
                Record::File {
                    path,
                    executable,
                    size,
                }
            }
            LINK => {
                let path = self.bytes32("path")?;
                let target = self.bytes32("link target")?;
                Record::Link { path, target }
            }
            END_ITEM => Record::EndItem,
            END => Record::End {
                items: u64::from_be_bytes(self.array()?),
            },
            other => return Err(ReadError::Bad(format!("unknown tag 0x{other:02x}"))),
        })
    }

    /// True when the input has no byte left.
    pub(crate) fn at_end(&mut self) -> Result<bool, ReadError> {
        loop {
            match self.r.read(&mut [0u8; 1]) {
                Ok(n) => return Ok(n == 0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
