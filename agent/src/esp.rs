//! The EFI system partition, read and written in place on its disk with
//! the `fatfs` crate: the guest's kernel has no FAT module (the runtime
//! prunes its modules), and nothing is mounted. The partition is found in
//! the disk's GPT by its type; the disk is the one holding the root
//! (`platform::root_disk`).
//!
//! Writes that must not be seen half done go to a temporary name first
//! (`.fruix-tmp-NAME.part`: never `*.conf`, so that no reader of the
//! entries takes a half-written one for an entry)
//! and are renamed into place; `sweep` removes what a killed write left.
//! `fatfs` renames by freeing the old directory entry before writing the
//! new one, so a kill between the two loses the name, never shares a
//! cluster between two names: the next reconcile writes the entry again.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The ESP's GPT partition type, as its bytes are on disk.
const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];

/// The prefix of temporary names on the ESP.
pub const TMP_PREFIX: &str = ".fruix-tmp-";

/// The temporary name `name` is written under: it does not end in
/// `.conf`, so systemd-boot never reads it as an entry.
pub fn tmp_name(name: &str) -> String {
    format!("{TMP_PREFIX}{name}.part")
}

/// What went wrong with the ESP.
#[derive(Debug, Error)]
pub enum EspError {
    /// Reading or writing the disk or a file on it.
    #[error("{what}")]
    Io {
        /// The disk, or the file on the ESP.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The disk has no GPT with an EFI system partition.
    #[error("{0}: no EFI system partition in its GPT")]
    NoEsp(PathBuf),
    /// Not enough room.
    #[error("the ESP is full: {path} needs {need} bytes, {free} are free (delete old generations)")]
    Full {
        /// The file that does not fit.
        path: String,
        /// Its size.
        need: u64,
        /// Free bytes.
        free: u64,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> EspError {
    let what = what.into();
    move |source| EspError::Io { what, source }
}

/// A partition of a disk as a stream: offsets from its start, bounded by
/// its end.
pub struct Slice {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let got = self.file.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for Slice {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "past the partition's end",
            ));
        }
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let put = self.file.write(&buf[..n])?;
        self.pos += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Slice {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// The byte range of the EFI system partition in `disk`'s GPT (512- or
/// 4096-byte sectors).
pub fn find_partition(disk: &mut File, name: &Path) -> Result<(u64, u64), EspError> {
    for sector in [512u64, 4096] {
        let mut hdr = [0u8; 92];
        disk.seek(SeekFrom::Start(sector))
            .and_then(|_| disk.read_exact(&mut hdr))
            .map_err(io_err(name.display().to_string()))?;
        if &hdr[..8] != b"EFI PART" {
            continue;
        }
        let u64_at =
            |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let u32_at =
            |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
        let (table, count, size) = (u64_at(&hdr, 72), u32_at(&hdr, 80), u32_at(&hdr, 84));
        if !(128..=4096).contains(&size) || count > 1024 {
            return Err(EspError::NoEsp(name.to_owned()));
        }
        let mut entries = vec![0u8; count as usize * size as usize];
        disk.seek(SeekFrom::Start(table * sector))
            .and_then(|_| disk.read_exact(&mut entries))
            .map_err(io_err(name.display().to_string()))?;
        for e in entries.chunks(size as usize) {
            if e[..16] == ESP_TYPE {
                let (first, last) = (u64_at(e, 32), u64_at(e, 40));
                if last >= first {
                    return Ok((first * sector, (last - first + 1) * sector));
                }
            }
        }
        break;
    }
    Err(EspError::NoEsp(name.to_owned()))
}

/// The time every entry we write carries: 1980-01-01 00:00, FAT's first
/// valid date (the image builder's mtools writes the same). fatfs's
/// default without a clock is date 0, month 0 and day 0, which UEFI's FAT
/// driver refuses to rename (systemd-boot's try counter failed with
/// `Invalid parameter`).
#[derive(Debug)]
struct FatEpoch;

impl fatfs::TimeProvider for FatEpoch {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FAT_EPOCH: FatEpoch = FatEpoch;

/// The ESP, open for reading and writing.
pub struct Esp {
    fs: fatfs::FileSystem<Slice>,
    /// The disk again, for the fsync after fatfs lets go of it and for
    /// the volume's state byte.
    disk: File,
    name: String,
    /// Where the boot sector's state byte is on the disk (bit 0: dirty).
    state_at: u64,
    /// The volume was dirty when opened: a write was cut short before,
    /// and the bit is left for fsck to clear.
    dirty_at_open: bool,
}

impl Esp {
    /// Opens the ESP of `disk` (a whole disk with a GPT).
    pub fn open(disk: &Path) -> Result<Esp, EspError> {
        let what = disk.display().to_string();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags_nofollow()
            .open(disk)
            .map_err(io_err(what.clone()))?;
        let (start, len) = find_partition(&mut file, disk)?;
        let again = file.try_clone().map_err(io_err(what.clone()))?;
        let slice = Slice {
            file,
            start,
            len,
            pos: 0,
        };
        let fs = fatfs::FileSystem::new(slice, fatfs::FsOptions::new().time_provider(&FAT_EPOCH))
            .map_err(io_err(format!("{what}: the ESP's FAT")))?;
        let dirty_at_open = fs
            .read_status_flags()
            .map_err(io_err(format!("{what}: the ESP's FAT")))?
            .dirty();
        // The reserved byte of the extended boot record (FAT32 at 0x41,
        // FAT12/16 at 0x25), where fatfs and fsck.fat keep the state.
        let state_at = start
            + match fs.fat_type() {
                fatfs::FatType::Fat32 => 0x41,
                _ => 0x25,
            };
        Ok(Esp {
            fs,
            disk: again,
            name: what,
            state_at,
            dirty_at_open,
        })
    }

    /// The names in directory `dir` (from the ESP's root); none when it
    /// does not exist.
    pub fn list(&self, dir: &str) -> Result<Vec<String>, EspError> {
        let d = match self.fs.root_dir().open_dir(dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(dir.to_owned())(e)),
        };
        let mut names = Vec::new();
        for e in d.iter() {
            let e = e.map_err(io_err(dir.to_owned()))?;
            let n = e.file_name();
            if n != "." && n != ".." {
                names.push(n);
            }
        }
        names.sort();
        Ok(names)
    }

    /// A file's bytes.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, EspError> {
        let mut f = self
            .fs
            .root_dir()
            .open_file(path)
            .map_err(io_err(path.to_owned()))?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).map_err(io_err(path.to_owned()))?;
        Ok(v)
    }

    /// Whether `path` exists.
    pub fn exists(&self, path: &str) -> bool {
        let root = self.fs.root_dir();
        root.open_file(path).is_ok() || root.open_dir(path).is_ok()
    }

    /// Free bytes.
    pub fn free(&self) -> Result<u64, EspError> {
        let s = self.fs.stats().map_err(io_err("the ESP's FAT"))?;
        Ok(s.free_clusters() as u64 * s.cluster_size() as u64)
    }

    /// Writes `bytes` as `dir/name`: under a temporary name in `dir`
    /// first, then renamed. Refused with [`EspError::Full`] when it does
    /// not fit. `dir` must exist: the image builder makes every directory
    /// the agent writes in (fatfs 0.3 writes a long-name slot before a
    /// new directory's `.` entry, which fsck.fat refuses).
    pub fn write_new(&self, dir: &str, name: &str, bytes: &[u8]) -> Result<(), EspError> {
        let path = format!("{dir}/{name}");
        // A cluster of slack for the directory entries.
        let free = self.free()?;
        let need = bytes.len() as u64 + 64 * 1024;
        if need > free {
            return Err(EspError::Full { path, need, free });
        }
        let tmp = format!("{dir}/{}", tmp_name(name));
        let root = self.fs.root_dir();
        self.step(|| {
            let _ = root.remove(&tmp);
            let mut f = root.create_file(&tmp).map_err(io_err(tmp.clone()))?;
            f.truncate().map_err(io_err(tmp.clone()))?;
            f.write_all(bytes).map_err(io_err(tmp.clone()))?;
            f.flush().map_err(io_err(tmp.clone()))
        })?;
        // The temporary is whole, synced and the volume clean here.
        crate::hold::point("esp-rename", || {});
        self.step(|| {
            if root.open_file(&path).is_ok() {
                root.remove(&path).map_err(io_err(path.clone()))?;
            }
            root.rename(&tmp, &root, &path)
                .map_err(io_err(path.clone()))
        })
    }

    /// Renames `from` to `to` (both from the ESP's root).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), EspError> {
        let root = self.fs.root_dir();
        self.step(|| {
            root.rename(from, &root, to)
                .map_err(io_err(format!("{from} -> {to}")))
        })
    }

    /// Removes a file, or a directory and everything in it.
    pub fn remove_all(&self, path: &str) -> Result<(), EspError> {
        self.step(|| self.remove_tree(path))
    }

    fn remove_tree(&self, path: &str) -> Result<(), EspError> {
        let root = self.fs.root_dir();
        if root.open_dir(path).is_ok() {
            for n in self.list(path)? {
                self.remove_tree(&format!("{path}/{n}"))?;
            }
        }
        match root.remove(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(path.to_owned())(e)),
        }
    }

    /// Runs one step of writes with the volume marked dirty on the disk,
    /// and marks it clean again once they are synced: a power cut
    /// between steps leaves a volume `fsck.fat -n` finds clean, one cut
    /// in a step leaves it dirty, as it should. (fatfs marks the volume
    /// dirty at its first write and clean only when it unmounts.)
    fn step<T>(&self, f: impl FnOnce() -> Result<T, EspError>) -> Result<T, EspError> {
        self.mark(true)?;
        let out = f()?;
        self.mark(false)?;
        Ok(out)
    }

    /// Sets or clears the dirty bit on the disk; clean only after the
    /// writes before it are synced. A volume dirty when opened stays so.
    fn mark(&self, dirty: bool) -> Result<(), EspError> {
        use std::os::unix::fs::FileExt;
        if self.dirty_at_open {
            return Ok(());
        }
        let io = io_err(format!("{}: the ESP's state byte", self.name));
        (|| {
            if !dirty {
                self.disk.sync_all()?;
            }
            let mut b = [0u8; 1];
            self.disk.read_exact_at(&mut b, self.state_at)?;
            let want = if dirty { b[0] | 1 } else { b[0] & !1 };
            if want != b[0] {
                self.disk.write_all_at(&[want], self.state_at)?;
                self.disk.sync_all()?;
            }
            Ok(())
        })()
        .map_err(io)
    }

    /// Removes what a killed write left in `dir` (its temporary names);
    /// returns them.
    pub fn sweep(&self, dir: &str) -> Result<Vec<String>, EspError> {
        let mut swept = Vec::new();
        for n in self.list(dir)? {
            if n.starts_with(TMP_PREFIX) {
                let p = format!("{dir}/{n}");
                self.remove_all(&p)?;
                swept.push(p);
            }
        }
        Ok(swept)
    }

    /// Writes everything back and syncs the disk: what a power cut must
    /// not lose.
    pub fn close(self) -> Result<(), EspError> {
        self.fs.unmount().map_err(io_err("the ESP's FAT"))?;
        self.disk.sync_all().map_err(io_err(self.name))
    }
}

/// Opening a disk without following a link the caller did not expect.
trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
    }
}
