//! The builder's side of a deploy: the compressed stream of items, with
//! the `zstd` crate (the `archive` feature; the guest only reads).

use std::io::Write;

use super::error::SendError;
use super::frame::END_LEN;
use super::send::{Sent, StreamWriter, out_err};
use crate::name::ItemName;
use crate::root::StoreRoot;

/// Counts the bytes that reach the output.
struct Counting<W> {
    w: W,
    n: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.w.write(buf)?;
        self.n
            .fetch_add(k as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// Writes the zstd-compressed stream of `items` (in that order: the
/// system item first when the guest lacks it) from `root` into `w`, and
/// flushes it. `on_item` is told after each item, with the totals so far
/// (the compressed count lags by what the encoder still holds).
pub fn send_compressed(
    root: &StoreRoot,
    items: &[ItemName],
    w: impl Write,
    on_item: &mut dyn FnMut(&ItemName, &Sent),
) -> Result<Sent, SendError> {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counting = Counting {
        w,
        n: std::sync::Arc::clone(&n),
    };
    let z = super::compressor(counting).map_err(out_err)?;
    let mut s = StreamWriter::new(z)?;
    let sent = |s: &StreamWriter<_>, items| Sent {
        items,
        file_bytes: s.file_bytes(),
        uncompressed: s.bytes(),
        compressed: n.load(std::sync::atomic::Ordering::Relaxed),
    };
    for (i, name) in items.iter().enumerate() {
        s.write_item(root, name)?;
        on_item(name, &sent(&s, i as u64 + 1));
    }
    let mut total = sent(&s, items.len() as u64);
    let z = s.finish()?;
    let mut counting = z.finish().map_err(out_err)?;
    counting.flush().map_err(out_err)?;
    total.compressed = n.load(std::sync::atomic::Ordering::Relaxed);
    // The end mark, after the last item was counted.
    total.uncompressed += END_LEN;
    Ok(total)
}
