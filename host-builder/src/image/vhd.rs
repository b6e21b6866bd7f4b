//! VHD footers made reproducible. `qemu-img` stamps each VHD with the time
//! it was written and a random unique id; both are replaced here with a
//! fixed time and an id derived from the system digest, and the footer's
//! checksum is recomputed. A dynamic VHD has the footer twice, at the
//! start and at the end; a fixed one only at the end.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

const FOOTER: usize = 512;
const COOKIE: &[u8; 8] = b"conectix";
const TIMESTAMP: usize = 24;
const CHECKSUM: usize = 64;
const UNIQUE_ID: usize = 68;

/// The footer checksum: the ones' complement of the sum of its bytes, the
/// checksum field counted as zero.
fn checksum(footer: &[u8]) -> u32 {
    let sum = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(CHECKSUM..CHECKSUM + 4).contains(i))
        .fold(0u32, |s, (_, b)| s.wrapping_add(u32::from(*b)));
    !sum
}

/// Rewrites one footer in place; false when `footer` is not one.
fn fix_footer(footer: &mut [u8], id: &[u8; 16]) -> bool {
    if footer.len() != FOOTER || &footer[..8] != COOKIE {
        return false;
    }
    footer[TIMESTAMP..TIMESTAMP + 4].copy_from_slice(&0u32.to_be_bytes());
    footer[UNIQUE_ID..UNIQUE_ID + 16].copy_from_slice(id);
    let c = checksum(footer);
    footer[CHECKSUM..CHECKSUM + 4].copy_from_slice(&c.to_be_bytes());
    true
}

/// Fixes the footers of the VHD at `path`.
pub fn make_reproducible(path: &Path, id: &[u8; 16]) -> io::Result<()> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    if len < FOOTER as u64 {
        return Err(io::Error::other("too short to be a VHD"));
    }
    let mut fixed = 0;
    for at in [0, len - FOOTER as u64] {
        let mut buf = [0u8; FOOTER];
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut buf)?;
        if fix_footer(&mut buf, id) {
            f.seek(SeekFrom::Start(at))?;
            f.write_all(&buf)?;
            fixed += 1;
        }
    }
    if fixed == 0 {
        return Err(io::Error::other("no VHD footer found"));
    }
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_gets_fixed_fields_and_a_valid_checksum() {
        let mut f = [0u8; FOOTER];
        f[..8].copy_from_slice(COOKIE);
        f[TIMESTAMP..TIMESTAMP + 4].copy_from_slice(&0x2b3c_4d5eu32.to_be_bytes());
        f[UNIQUE_ID] = 0xff;
        assert!(fix_footer(&mut f, &[7; 16]));
        assert_eq!(&f[TIMESTAMP..TIMESTAMP + 4], &[0, 0, 0, 0]);
        assert_eq!(&f[UNIQUE_ID..UNIQUE_ID + 16], &[7; 16]);
        let stored = u32::from_be_bytes(f[CHECKSUM..CHECKSUM + 4].try_into().unwrap());
        let sum: u32 = f.iter().map(|b| u32::from(*b)).sum::<u32>()
            - f[CHECKSUM..CHECKSUM + 4]
                .iter()
                .map(|b| u32::from(*b))
                .sum::<u32>();
        assert_eq!(stored, !sum);
        let mut not = [0u8; FOOTER];
        assert!(!fix_footer(&mut not, &[7; 16]));
    }
}
