//! A read-only UFS2 reader for the tests: enough to check what
//! `makefs -t ffs` wrote into a FreeBSD image's root (paths, file bytes,
//! link targets, modes). No tool on these machines reads UFS: Debian has
//! no `ufsutils` any more, and mounting needs a kernel module.
//!
//! On-disk layout as FreeBSD's `sys/ufs/ffs/fs.h` and `sys/ufs/ufs/dinode.h`
//! define it: superblock at 8192, inodes of 256 bytes, block pointers in
//! fragments, short link targets stored in the inode.
#![allow(dead_code)]

const SBLOCK: usize = 8192;
const UFS2_MAGIC: u32 = 0x1954_0119;
const ROOT_INO: u64 = 2;
const NDADDR: usize = 12;
/// `fs_maxsymlinklen` of UFS2: targets shorter than this live in the inode.
const MAXSYMLINKLEN: u64 = 120;

/// File types, from `di_mode`.
pub const S_IFMT: u32 = 0o170000;
/// A directory.
pub const S_IFDIR: u32 = 0o040000;
/// A regular file.
pub const S_IFREG: u32 = 0o100000;
/// A symbolic link.
pub const S_IFLNK: u32 = 0o120000;

/// A UFS2 file system in memory.
pub struct Ufs<'a> {
    b: &'a [u8],
    fsize: u64,
    bsize: u64,
    fpg: u64,
    ipg: u64,
    iblkno: u64,
}

fn u16le(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}
fn u32le(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()))
}
fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl<'a> Ufs<'a> {
    /// Opens the file system in `b` (a partition's bytes).
    pub fn new(b: &'a [u8]) -> Result<Ufs<'a>, String> {
        let sb = &b[SBLOCK..SBLOCK + 1376];
        if u32le(sb, 1372) != u64::from(UFS2_MAGIC) {
            return Err("no UFS2 superblock at 8192".into());
        }
        if u64le(sb, 1000) != SBLOCK as u64 {
            return Err(format!("fs_sblockloc is {}, not 8192", u64le(sb, 1000)));
        }
        Ok(Ufs {
            b,
            iblkno: u32le(sb, 16),
            bsize: u32le(sb, 48),
            fsize: u32le(sb, 52),
            ipg: u32le(sb, 184),
            fpg: u32le(sb, 188),
        })
    }

    fn inode(&self, ino: u64) -> &[u8] {
        let (cg, i) = (ino / self.ipg, ino % self.ipg);
        let at = ((cg * self.fpg + self.iblkno) * self.fsize + i * 256) as usize;
        &self.b[at..at + 256]
    }

    /// The inode's mode (type and permissions).
    pub fn mode(&self, ino: u64) -> u32 {
        u16le(self.inode(ino), 0) as u32
    }

    /// The inode's owner and group.
    pub fn owner(&self, ino: u64) -> (u64, u64) {
        let i = self.inode(ino);
        (u32le(i, 4), u32le(i, 8))
    }

    /// The inode's modification time.
    pub fn mtime(&self, ino: u64) -> u64 {
        u64le(self.inode(ino), 40)
    }

    /// Access, modification, change and birth times (seconds).
    pub fn times(&self, ino: u64) -> [u64; 4] {
        let i = self.inode(ino);
        [u64le(i, 32), u64le(i, 40), u64le(i, 48), u64le(i, 56)]
    }

    fn block(&self, frag: u64) -> &[u8] {
        let at = (frag * self.fsize) as usize;
        &self.b[at..at + self.bsize as usize]
    }

    /// The fragment address of every logical block, holes as 0.
    fn block_addrs(&self, ino: u64) -> Vec<u64> {
        let i = self.inode(ino);
        let size = u64le(i, 16);
        let nblocks = size.div_ceil(self.bsize) as usize;
        let mut out: Vec<u64> = (0..NDADDR).map(|k| u64le(i, 112 + 8 * k)).collect();
        for level in 0..3 {
            if out.len() >= nblocks {
                break;
            }
            self.indirect(u64le(i, 208 + 8 * level), level, &mut out);
        }
        out.truncate(nblocks);
        out
    }

    fn indirect(&self, frag: u64, level: usize, out: &mut Vec<u64>) {
        let per = (self.bsize / 8) as usize;
        if frag == 0 {
            out.extend(std::iter::repeat_n(0, per.pow(level as u32 + 1)));
            return;
        }
        let blk = self.block(frag);
        for k in 0..per {
            let p = u64le(blk, 8 * k);
            if level == 0 {
                out.push(p);
            } else {
                self.indirect(p, level - 1, out);
            }
        }
    }

    /// A file's bytes.
    pub fn read(&self, ino: u64) -> Vec<u8> {
        let size = u64le(self.inode(ino), 16) as usize;
        let mut out = Vec::with_capacity(size);
        for a in self.block_addrs(ino) {
            let n = (size - out.len()).min(self.bsize as usize);
            if a == 0 {
                out.extend(std::iter::repeat_n(0, n));
            } else {
                let at = (a * self.fsize) as usize;
                out.extend_from_slice(&self.b[at..at + n]);
            }
        }
        out
    }

    /// Where byte `at` of a file lies, in bytes from the start of the
    /// file system; None past its end or in a hole. For tests that change
    /// a file's bytes inside an image.
    pub fn offset_of(&self, ino: u64, at: u64) -> Option<u64> {
        if at >= u64le(self.inode(ino), 16) {
            return None;
        }
        let frag = *self.block_addrs(ino).get((at / self.bsize) as usize)?;
        (frag != 0).then(|| frag * self.fsize + at % self.bsize)
    }

    /// A symbolic link's target.
    pub fn readlink(&self, ino: u64) -> String {
        let i = self.inode(ino);
        let size = u64le(i, 16);
        let bytes = if size < MAXSYMLINKLEN {
            i[112..112 + size as usize].to_vec()
        } else {
            self.read(ino)
        };
        String::from_utf8(bytes).unwrap()
    }

    /// A directory's entries: name and inode, `.` and `..` left out.
    pub fn list(&self, ino: u64) -> Vec<(String, u64)> {
        let data = self.read(ino);
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= data.len() {
            let d_ino = u32le(&data, at);
            let reclen = u16le(&data, at + 4) as usize;
            let namlen = data[at + 7] as usize;
            if reclen == 0 {
                break;
            }
            if d_ino != 0 {
                let name = String::from_utf8_lossy(&data[at + 8..at + 8 + namlen]).into_owned();
                if name != "." && name != ".." {
                    out.push((name, d_ino));
                }
            }
            at += reclen;
        }
        out
    }

    /// The inode of an absolute path, following no link.
    pub fn lookup(&self, path: &str) -> Option<u64> {
        let mut ino = ROOT_INO;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if self.mode(ino) & S_IFMT != S_IFDIR {
                return None;
            }
            ino = self.list(ino).into_iter().find(|(n, _)| n == part)?.1;
        }
        Some(ino)
    }
}
