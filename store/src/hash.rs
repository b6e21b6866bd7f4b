//! SHA-256 of files and readers.
//!
//! `sha2` picks the CPU's SHA extensions (SHA-NI on x86-64, the ARMv8 crypto
//! extensions) at run time where the machine has them.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
// Re-exported: other crates hex their own hashes as `hash::hex`.
pub use crate::digest::hex;

/// Size of the buffer files are read through: large enough that the
/// per-call cost vanishes next to the hashing, small enough for many workers.
pub const BUF_SIZE: usize = 256 * 1024;

/// SHA-256 of a byte slice.
pub fn sha256(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

/// Hashes everything `r` yields; returns the digest and the byte count.
pub fn hash_reader(r: &mut impl Read, buf: &mut [u8]) -> io::Result<(Digest, u64)> {
    copy_hashing(r, &mut io::sink(), buf)
}

/// Files at least this large are hashed through a read-only mapping
/// instead of `read(2)`: the kernel then does not copy them into a buffer
/// first, which was a quarter of full verification's time.
pub const MAP_THRESHOLD: u64 = 1 << 20;

/// Hashes a whole file; returns the digest and the byte count. `size_hint`
/// (the size the caller expects) picks the method; the count returned is
/// what was actually read.
pub fn hash_file(
    file: &mut std::fs::File,
    size_hint: u64,
    buf: &mut [u8],
) -> io::Result<(Digest, u64)> {
    if size_hint < MAP_THRESHOLD {
        return hash_reader(file, buf);
    }
    // SAFETY: the mapping is read-only and private, and is dropped before
    // this function returns. Store files are never written in place
    // (imports make new items, collection unlinks whole items), so the
    // mapped bytes do not change under us; if something did truncate the
    // file, the result is a SIGBUS, not a wrong verdict.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&*file)? };
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok((Digest(Sha256::digest(&map[..]).into()), map.len() as u64))
}

/// Copies `r` to `w` and hashes the bytes on the way through, in one pass.
pub fn copy_hashing(
    r: &mut impl Read,
    w: &mut impl Write,
    buf: &mut [u8],
) -> io::Result<(Digest, u64)> {
    let mut h = Sha256::new();
    let mut n = 0u64;
    loop {
        match r.read(buf) {
            Ok(0) => break,
            Ok(k) => {
                h.update(&buf[..k]);
                w.write_all(&buf[..k])?;
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((Digest(h.finalize().into()), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            sha256(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256(b"x\n").to_hex(),
            "73cb3858a687a8494ca3323053016282f3dad39d42cf62ca4e79dda2aac7d9ac"
        );
        let mut buf = [0u8; 3];
        let (d, n) = hash_reader(&mut &b"#!/bin/sh\necho hi\n"[..], &mut buf).unwrap();
        assert_eq!(n, 18);
        assert_eq!(
            d.to_hex(),
            "299001868fb8c02fd431c336c6d058f5558c5dff5b5af5e6fe04b870a6a9cbba"
        );
    }

    #[test]
    fn mapped_and_read_files_hash_alike() {
        use std::io::Write;
        let data: Vec<u8> = (0..(MAP_THRESHOLD as usize + 12_345))
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        let mut buf = [0u8; 4096];
        let want = (sha256(&data), data.len() as u64);
        assert_eq!(
            hash_file(&mut f, data.len() as u64, &mut buf).unwrap(),
            want,
            "mapped"
        );
        use std::io::Seek;
        f.rewind().unwrap();
        assert_eq!(hash_file(&mut f, 0, &mut buf).unwrap(), want, "read");
    }

    #[test]
    fn copy_hashing_copies_and_hashes() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let (d, n) = copy_hashing(&mut &data[..], &mut out, &mut buf).unwrap();
        assert_eq!(out, data);
        assert_eq!(n, data.len() as u64);
        assert_eq!(d, sha256(&data));
    }
}
