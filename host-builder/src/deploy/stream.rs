//! The item stream of a deploy: the items a guest lacks, from the host's
//! store, compressed, to any writer (the SSH session's stdin of
//! `fruix-agent store receive --system SYSTEM`). The format and its one
//! writer and reader are the store crate's (`fruix_store::transfer`).

use std::io::Write;

use fruix_store::transfer::{self, SendError, Sent};
use fruix_store::{ItemName, StoreError, StoreRoot};

use crate::progress::Progress;

/// The items to send, in stream order: the system item first (when the
/// guest lacks it), then the rest of `missing` in the order given, each
/// once. `missing` is what `fruix-agent store missing` answered.
pub fn order(system: &ItemName, missing: &[ItemName]) -> Vec<ItemName> {
    let mut v: Vec<ItemName> = missing.iter().filter(|n| *n == system).cloned().collect();
    v.truncate(1);
    for n in missing {
        if n != system && !v.contains(n) {
            v.push(n.clone());
        }
    }
    v
}

/// What sending `items` will take before compression: the number of
/// items and their bytes of regular files, from their manifests (for
/// `--dry-run`).
pub fn plan(root: &StoreRoot, items: &[ItemName]) -> Result<(usize, u64), StoreError> {
    let mut bytes = 0;
    for n in items {
        bytes += root.read_manifest(n)?.content_size();
    }
    Ok((items.len(), bytes))
}

/// Writes the compressed stream of `items` (see [`order`]) from `root`
/// into `w`, showing each item as it goes; returns the bytes written,
/// compressed and not.
pub fn write_stream(
    root: &StoreRoot,
    items: &[ItemName],
    w: impl Write,
    progress: &Progress,
) -> Result<Sent, SendError> {
    let total = items.len();
    let step = progress.step(&format!("sending {total} items"));
    let sent = transfer::send_compressed(root, items, w, &mut |name, s| {
        step.message(&format!(
            "sending {}/{total} items, {} file bytes: {name}",
            s.items, s.file_bytes
        ))
    })?;
    step.finish(&format!(
        "sent {} items, {} file bytes, {} bytes compressed",
        sent.items, sent.file_bytes, sent.compressed
    ));
    Ok(sent)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_system_item_goes_first_and_each_item_once() {
        let n = |p: &str| ItemName::parse(&format!("{}-{p}", "0".repeat(64))).unwrap();
        let (s, a, b) = (n("system"), n("a"), n("b"));
        assert_eq!(
            order(&s, &[a.clone(), s.clone(), b.clone(), a.clone()]),
            [s.clone(), a.clone(), b.clone()]
        );
        assert_eq!(order(&s, &[b.clone(), a.clone()]), [b, a]);
    }
}
