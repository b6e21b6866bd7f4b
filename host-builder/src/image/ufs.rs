//! The UFS2 root of a FreeBSD image: `makefs -t ffs` writes it into a
//! work file, two fields it fills from memory or `random()` are made
//! fixed, and it is copied into the root partition, holes kept.
//!
//! Debian's makefs (20190105) clamps every time to `-T`, but still writes
//! three things that differ from one run to the next, found by comparing
//! two runs byte by byte:
//! - the in-core pointers of the superblock (`fs_contigdirs`, `fs_csp`,
//!   `fs_maxcluster`, `fs_active`: bytes 824 to 856 of each copy of the
//!   superblock, addresses of makefs' own memory), which FreeBSD treats as
//!   padding on disk and sets when it reads a superblock;
//! - each inode's generation number (`di_gen`, 4 bytes at 80 of each
//!   256-byte UFS2 inode), from `random()`. FreeBSD gives an inode whose
//!   generation is 0 a random one when it allocates it, so 0 is a valid
//!   value; it only salts NFS file handles;
//! - access times: `-T` clamps them, but makefs' own reading of the tree
//!   touches a directory's access time before it is copied, so the second
//!   in which it ran shows through. Every inode's access, change and
//!   birth times are set to its modification time, which `-T` fixed.
//!
//! No check hash covers any of them: makefs sets no `FS_METACKHASH` flag.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Where Debian's makefs puts the UFS2 superblock (where UFS1's goes;
/// FreeBSD's newfs puts it at 65536, and current FreeBSD and Linux refuse
/// a UFS2 superblock anywhere else: docs/freebsd.md, an open fault).
pub const SBLOCK: u64 = 8192;
/// `FS_UFS2_MAGIC`.
const UFS2_MAGIC: u32 = 0x1954_0119;
/// Byte range of the in-core pointers in a superblock.
const INCORE_POINTERS: std::ops::Range<usize> = 824..856;
/// Size of a UFS2 inode and the offset of its generation number.
const INODE_SIZE: usize = 256;
const DI_GEN: usize = 80;
/// `di_mtime` (8 bytes) and `di_mtimensec` (4), and the other times' places.
const DI_MTIME: usize = 40;
const DI_MTIMENSEC: usize = 64;
const DI_OTHER_TIMES: [(usize, usize); 3] = [(32, 68), (48, 72), (56, 76)];

/// The superblock fields the fix-up needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Cylinder groups.
    pub ncg: u64,
    /// Fragment size in bytes.
    pub fsize: u64,
    /// Fragments per cylinder group.
    pub fpg: u64,
    /// Inodes per cylinder group.
    pub ipg: u64,
    /// Superblock copy's offset in a group, in fragments.
    pub sblkno: u64,
    /// Inode table's offset in a group, in fragments.
    pub iblkno: u64,
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

/// Reads the geometry from a superblock; `None` when it is not UFS2's.
pub fn geometry(sb: &[u8]) -> Option<Geometry> {
    if sb.len() < 1376 || le32(sb, 1372) != u64::from(UFS2_MAGIC) {
        return None;
    }
    let g = Geometry {
        sblkno: le32(sb, 8),
        iblkno: le32(sb, 16),
        ncg: le32(sb, 44),
        fsize: le32(sb, 52),
        ipg: le32(sb, 184),
        fpg: le32(sb, 188),
    };
    (g.ncg > 0 && g.fsize >= 512 && g.fpg > 0 && g.ipg > 0).then_some(g)
}

/// Makes a makefs UFS2 image's bytes a function of its tree alone (see
/// the module's comment for what and why).
pub fn make_reproducible(path: &Path) -> io::Result<Geometry> {
    let f = File::options().read(true).write(true).open(path)?;
    let mut sb = vec![0u8; 1376];
    f.read_exact_at(&mut sb, SBLOCK)?;
    let g = geometry(&sb).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no UFS2 superblock at 8192: not a makefs -o version=2 image",
        )
    })?;
    let zero = [0u8; INCORE_POINTERS.end - INCORE_POINTERS.start];
    let cg_bytes = g.fpg * g.fsize;
    let mut copies = vec![SBLOCK];
    copies.extend((0..g.ncg).map(|cg| cg * cg_bytes + g.sblkno * g.fsize));
    let len = f.metadata()?.len();
    let mut copy = vec![0u8; 1376];
    for at in copies {
        // Only where a superblock is: the bytes are data anywhere else.
        if at + copy.len() as u64 <= len {
            f.read_exact_at(&mut copy, at)?;
            if le32(&copy, 1372) == u64::from(UFS2_MAGIC) {
                f.write_all_at(&zero, at + INCORE_POINTERS.start as u64)?;
            }
        }
    }
    let table = (g.ipg as usize) * INODE_SIZE;
    let mut buf = vec![0u8; table];
    for cg in 0..g.ncg {
        let at = cg * cg_bytes + g.iblkno * g.fsize;
        if at + table as u64 > len {
            break;
        }
        f.read_exact_at(&mut buf, at)?;
        for ino in buf.chunks_exact_mut(INODE_SIZE) {
            ino[DI_GEN..DI_GEN + 4].fill(0);
            let mut t = [0u8; 12];
            t[..8].copy_from_slice(&ino[DI_MTIME..DI_MTIME + 8]);
            t[8..].copy_from_slice(&ino[DI_MTIMENSEC..DI_MTIMENSEC + 4]);
            for (sec, nsec) in DI_OTHER_TIMES {
                ino[sec..sec + 8].copy_from_slice(&t[..8]);
                ino[nsec..nsec + 4].copy_from_slice(&t[8..]);
            }
        }
        f.write_all_at(&buf, at)?;
    }
    f.sync_data()?;
    Ok(g)
}

/// Copies `src` into `disk` at `offset`, skipping blocks of zeros so that
/// the disk stays sparse (it was made empty, so they read as zeros).
pub fn copy_sparse(src: &Path, disk: &Path, offset: u64) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let from = File::open(src)?;
    let to = File::options().write(true).open(disk)?;
    let len = from.metadata()?.len();
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < len {
        let n = CHUNK.min((len - pos) as usize);
        from.read_exact_at(&mut buf[..n], pos)?;
        // Block by block within the chunk: a 1 MiB chunk is rarely all
        // zeros, 4 KiB blocks often are.
        for (i, block) in buf[..n].chunks(4096).enumerate() {
            if block.iter().any(|&b| b != 0) {
                to.write_all_at(block, offset + pos + (i * 4096) as u64)?;
            }
        }
        pos += n as u64;
    }
    to.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_reads_a_ufs2_superblock_and_refuses_others() {
        let mut sb = vec![0u8; 1376];
        let put = |sb: &mut Vec<u8>, at: usize, v: u32| {
            sb[at..at + 4].copy_from_slice(&v.to_le_bytes());
        };
        put(&mut sb, 8, 8);
        put(&mut sb, 16, 24);
        put(&mut sb, 44, 3);
        put(&mut sb, 52, 4096);
        put(&mut sb, 184, 6912);
        put(&mut sb, 188, 81720);
        assert_eq!(geometry(&sb), None, "no magic");
        put(&mut sb, 1372, UFS2_MAGIC);
        assert_eq!(
            geometry(&sb),
            Some(Geometry {
                ncg: 3,
                fsize: 4096,
                fpg: 81720,
                ipg: 6912,
                sblkno: 8,
                iblkno: 24
            })
        );
        put(&mut sb, 1372, 0x011954);
        assert_eq!(geometry(&sb), None, "UFS1");
    }
}
