//! The stream's compression: zstd, written by the builder with the `zstd`
//! crate (C, the `archive` feature) and read on the guest with `ruzstd`
//! (pure Rust, so that the agent cross-links for FreeBSD without a C
//! toolchain).

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A zstd encoder at [`super::ZSTD_LEVEL`] writing into `w`; call
/// `finish()` on it to end the frame.
#[cfg(feature = "archive")]
pub fn compressor<W: io::Write>(w: W) -> io::Result<zstd::Encoder<'static, W>> {
    zstd::Encoder::new(w, super::ZSTD_LEVEL)
}

/// Reads the source and notes when it has run dry, so that a decoder
/// error can be told apart: truncation or corruption.
struct EofTracking<R> {
    inner: R,
    eof: Arc<AtomicBool>,
}

impl<R: Read> Read for EofTracking<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof.store(true, Ordering::Relaxed);
        }
        Ok(n)
    }
}

type Decoder<R> =
    ruzstd::decoding::StreamingDecoder<EofTracking<R>, ruzstd::decoding::FrameDecoder>;

/// The decompressed stream. Its errors are `UnexpectedEof` when the
/// compressed input ended early, `InvalidData` when it is not zstd.
pub struct Decompressor<R: Read> {
    state: State<R>,
    eof: Arc<AtomicBool>,
}

enum State<R: Read> {
    /// The frame header is read on the first read, so that an empty input
    /// is a truncation found by the reader, not by the constructor.
    Pending(R),
    Active(Box<Decoder<R>>),
    Failed,
}

/// The decompressed view of a zstd stream (one frame).
pub fn decompressor<R: Read>(r: R) -> Decompressor<R> {
    Decompressor {
        state: State::Pending(r),
        eof: Arc::new(AtomicBool::new(false)),
    }
}

impl<R: Read> Decompressor<R> {
    fn error(&self, message: String) -> io::Error {
        if self.eof.load(Ordering::Relaxed) {
            io::Error::new(io::ErrorKind::UnexpectedEof, "compressed stream truncated")
        } else {
            io::Error::new(io::ErrorKind::InvalidData, message)
        }
    }

    /// True when nothing follows the zstd frame in the input.
    pub fn at_end(&mut self) -> io::Result<bool> {
        match &mut self.state {
            State::Active(d) => Ok(d.get_mut().read(&mut [0u8; 1])? == 0),
            _ => Ok(false),
        }
    }
}

impl<R: Read> Read for Decompressor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let State::Pending(_) = self.state {
            let State::Pending(r) = std::mem::replace(&mut self.state, State::Failed) else {
                unreachable!("matched above")
            };
            let src = EofTracking {
                inner: r,
                eof: Arc::clone(&self.eof),
            };
            match Decoder::new(src) {
                Ok(d) => self.state = State::Active(Box::new(d)),
                Err(e) => return Err(self.error(format!("not zstd: {e}"))),
            }
        }
        let State::Active(d) = &mut self.state else {
            return Err(self.error("zstd header unreadable".into()));
        };
        match d.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => Err(self.error(e.to_string())),
        }
    }
}
