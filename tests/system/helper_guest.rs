//! A Linux helper guest that reads disks with Linux's own drivers: Debian's
//! generic kernel (the cloud kernel the examples boot has no `ufs`), the
//! modules that see a virtio disk and mount UFS, a static busybox, the
//! Linux `fruix-agent` with its shared libraries, and an `/init` script,
//! in an initramfs of a few megabytes. One boot under TCG, no root file
//! system, its findings printed on the serial console, then off.
//!
//! The kernel and busybox come as `.deb`s through the host's apt
//! (`apt-get download`), are taken apart once and kept in
//! `$FRUIX_CACHE_DIR/linux-helper` (else `target/system-tests/cache/`):
//! a second run fetches nothing. No host tool beyond apt and dpkg is
//! needed: the module closure is read from each module's `.modinfo`, and
//! the newc archive is written here.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::out;

/// What the helper loads, besides what they depend on: a virtio disk on
/// PCI and the UFS file system.
const WANTED: [&str; 3] = ["virtio_pci", "virtio_blk", "ufs"];

/// Where the taken-apart packages are kept between runs.
fn cache() -> PathBuf {
    std::env::var_os("FRUIX_CACHE_DIR")
        .map_or_else(|| out().join("cache"), PathBuf::from)
        .join("linux-helper")
}

/// Runs a command; its stdout, or None when it failed.
fn run(c: &mut Command) -> Option<String> {
    let o = c.stderr(Stdio::inherit()).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The package the metapackage `linux-image-amd64` stands for (Debian's
/// generic kernel of the host's release), from the host's apt lists.
fn kernel_package() -> Option<String> {
    let deps = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .map(str::to_owned)
}

/// The `.deb` in `dir` whose name starts with `prefix`.
fn deb(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(prefix) && n.ends_with(".deb")
        })
        .collect();
    found.sort();
    found.pop()
}

/// The kernel's and busybox's `.deb`s, downloaded unless cached. A fresh
/// machine may have no apt lists yet (or stale ones naming a kernel the
/// mirror dropped): then `apt-get update` once, and again.
fn debs() -> (PathBuf, PathBuf) {
    let dir = cache().join("debs");
    fs::create_dir_all(&dir).unwrap();
    let cached = || Some((deb(&dir, "linux-image-")?, deb(&dir, "busybox-static_")?));
    if let Some(d) = cached() {
        return d;
    }
    for attempt in 0..2 {
        if attempt == 1 {
            let updated = run(Command::new("apt-get").args(["update", "-qq"]));
            assert!(updated.is_some(), "apt-get update failed");
        }
        let Some(kernel) = kernel_package() else {
            continue;
        };
        let got = run(Command::new("apt-get")
            // Root downloads into a directory the _apt user may not
            // enter; say so, rather than have apt warn that it does.
            .args(["-o", "APT::Sandbox::User=root", "download", "-qq"])
            .args([&kernel, "busybox-static"])
            .current_dir(&dir));
        if let (Some(_), Some(d)) = (got, cached()) {
            return d;
        }
    }
    panic!(
        "could not download linux-image-amd64's kernel and busybox-static with apt-get into {}",
        dir.display()
    );
}

/// Unpacks a `.deb` into `into`.
fn unpack(deb: &Path, into: &Path) {
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(into)
        .status()
        .unwrap();
    assert!(st.success(), "dpkg-deb -x {} failed", deb.display());
}

/// The first of `paths` (relative to `root`) that exists.
fn first(root: &Path, paths: &[&str]) -> PathBuf {
    paths
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("none of {paths:?} in {}", root.display()))
}

/// One section of an ELF64 little-endian file, by name.
fn elf_section<'a>(elf: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let u16at = |at: usize| usize::from(u16::from_le_bytes([elf[at], elf[at + 1]]));
    let u64at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    if elf.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let (shoff, shentsize, shnum, shstrndx) = (u64at(0x28), u16at(0x3a), u16at(0x3c), u16at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let names = u64at(header(shstrndx) + 0x18);
    (0..shnum).find_map(|i| {
        let h = header(i);
        let n = names + u32::from_le_bytes(elf[h..h + 4].try_into().unwrap()) as usize;
        let end = n + elf[n..].iter().position(|b| *b == 0)?;
        (&elf[n..end] == name.as_bytes()).then(|| {
            let (off, size) = (u64at(h + 0x18), u64at(h + 0x20));
            &elf[off..off + size]
        })
    })
}

/// A module's bytes, decompressed as busybox's `insmod` needs them.
fn module_bytes(p: &Path) -> Vec<u8> {
    let n = p.to_string_lossy();
    let tool = if n.ends_with(".ko.xz") {
        "xz"
    } else if n.ends_with(".ko.zst") {
        "zstd"
    } else {
        return fs::read(p).unwrap();
    };
    let o = Command::new(tool).arg("-dc").arg(p).output().unwrap();
    assert!(o.status.success(), "{tool} -dc {n} failed");
    o.stdout
}

/// The modules `depends=` a module names in its `.modinfo`.
fn depends(ko: &[u8], what: &str) -> Vec<String> {
    let info = elf_section(ko, ".modinfo").unwrap_or_else(|| panic!("{what}: no .modinfo"));
    info.split(|b| *b == 0)
        .find_map(|f| f.strip_prefix(b"depends="))
        .map(|d| {
            String::from_utf8_lossy(d)
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A module's name as the kernel knows it: its file name without `.ko*`,
/// dashes as underscores.
fn module_name(p: &Path) -> Option<String> {
    let n = p.file_name()?.to_str()?;
    let stem = n
        .split_once(".ko")
        .filter(|(_, ext)| ext.is_empty() || ext.starts_with('.'))?;
    Some(stem.0.replace('-', "_"))
}

/// Every module file under `dir`, by name.
fn modules_by_name(dir: &Path, into: &mut BTreeMap<String, PathBuf>) {
    for e in fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            modules_by_name(&p, into);
        } else if let Some(n) = module_name(&p) {
            into.insert(n, p);
        }
    }
}

/// Adds `name` and what it depends on to `order`, dependencies first.
fn close(
    name: &str,
    all: &BTreeMap<String, PathBuf>,
    builtin: &str,
    order: &mut Vec<(String, Vec<u8>)>,
) {
    if order.iter().any(|(n, _)| n == name) {
        return;
    }
    let Some(p) = all.get(name) else {
        let built_in = builtin
            .lines()
            .filter_map(|l| module_name(Path::new(l)))
            .any(|n| n == name);
        assert!(built_in, "module {name}: neither a module nor built in");
        return;
    };
    let ko = module_bytes(p);
    for d in depends(&ko, &p.display().to_string()) {
        close(&d, all, builtin, order);
    }
    order.push((name.to_owned(), ko));
}

/// The kernel, its modules in load order and busybox, taken once from
/// Debian's packages: `DIR/vmlinuz`, `DIR/modules/NN-NAME.ko`,
/// `DIR/busybox`, `DIR/package` (the kernel package's file name).
pub fn pieces() -> PathBuf {
    let dir = cache().join("pieces");
    if dir.join("package").is_file() {
        return dir;
    }
    let (kernel, busybox) = debs();
    let work = tempfile::tempdir_in(cache()).unwrap();
    let x = work.path().join("x");
    unpack(&kernel, &x);
    unpack(&busybox, &x);
    let made = work.path().join("pieces");
    fs::create_dir_all(made.join("modules")).unwrap();
    let boot: Vec<PathBuf> = fs::read_dir(x.join("boot"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .collect();
    assert_eq!(boot.len(), 1, "{}: {boot:?}", kernel.display());
    fs::copy(&boot[0], made.join("vmlinuz")).unwrap();
    let version = boot[0].file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_owned();
    let mods = first(
        &x,
        &[
            &format!("lib/modules/{version}"),
            &format!("usr/lib/modules/{version}"),
        ],
    );
    let mut all = BTreeMap::new();
    modules_by_name(&mods.join("kernel"), &mut all);
    let builtin = fs::read_to_string(mods.join("modules.builtin")).unwrap();
    let mut order = Vec::new();
    for m in WANTED {
        close(m, &all, &builtin, &mut order);
    }
    for (i, (name, ko)) in order.iter().enumerate() {
        fs::write(made.join(format!("modules/{i:02}-{name}.ko")), ko).unwrap();
    }
    fs::copy(
        first(&x, &["bin/busybox", "usr/bin/busybox"]),
        made.join("busybox"),
    )
    .unwrap();
    fs::write(
        made.join("package"),
        kernel.file_name().unwrap().to_string_lossy().as_bytes(),
    )
    .unwrap();
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&made, &dir).unwrap();
    dir
}

/// A newc archive (what the kernel unpacks as its initramfs), written in
/// order: parents before children.
#[derive(Default)]
pub struct Cpio {
    bytes: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    /// A directory (and its missing parents are the caller's to add).
    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), b"");
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, (0, 0), data);
    }

    /// A character device.
    pub fn chardev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, (major, minor), b"");
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), b"");
        self.bytes
    }
}

/// The shared objects `ldd` names for `binary`, the dynamic loader
/// included: the paths the binary will look them up at.
fn shared_libraries(binary: &Path) -> Vec<String> {
    let o = run(Command::new("ldd").arg(binary)).expect("ldd failed");
    o.lines()
        .filter_map(|l| {
            let l = l.split_once("=>").map_or(l, |(_, r)| r).trim();
            l.split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
                .map(str::to_owned)
        })
        .collect()
}

/// An initramfs with busybox, the modules of [`pieces`], the Linux agent
/// and its libraries, and `init` as `/init`; written to `to`.
pub fn initramfs(pieces: &Path, agent: &Path, init: &str, to: &Path) {
    let mut c = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "tmp", "m", "modules"] {
        c.dir(d);
    }
    c.chardev("dev/console", 5, 1);
    c.file(
        "bin/busybox",
        0o755,
        &fs::read(pieces.join("busybox")).unwrap(),
    );
    let mut mods: Vec<PathBuf> = fs::read_dir(pieces.join("modules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    mods.sort();
    for m in mods {
        let n = m.file_name().unwrap().to_string_lossy().into_owned();
        c.file(&format!("modules/{n}"), 0o644, &fs::read(&m).unwrap());
    }
    c.file("bin/fruix-agent", 0o755, &fs::read(agent).unwrap());
    let mut dirs: Vec<String> = vec!["bin".into()];
    for lib in shared_libraries(agent) {
        let rel = lib.trim_start_matches('/');
        let mut parent = String::new();
        for part in Path::new(rel).parent().unwrap().iter() {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(&part.to_string_lossy());
            if !dirs.contains(&parent) {
                c.dir(&parent);
                dirs.push(parent.clone());
            }
        }
        // Through the host's links: the file the name resolves to.
        c.file(rel, 0o755, &fs::read(&lib).unwrap());
    }
    c.file("init", 0o755, init.as_bytes());
    fs::write(to, c.finish()).unwrap();
}

/// One boot of the helper guest: its console lines (kernel messages
/// taken out of the lines they cut) and how long it ran.
pub struct Boot {
    /// The console, line by line.
    pub lines: Vec<String>,
    /// From QEMU's start to its end.
    pub seconds: f64,
    /// Whether QEMU ended before the time limit.
    pub ended: bool,
}

/// Boots the kernel of [`pieces`] with `initrd` and `disks` (each a raw
/// image, attached read-only as a virtio disk whose serial is the name
/// given); the console goes to `log`. Killed after `limit`.
pub fn boot(
    pieces: &Path,
    initrd: &Path,
    disks: &[(&str, &Path)],
    log: &Path,
    limit: Duration,
) -> Boot {
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-accel", "tcg", "-cpu", "qemu64,-cx16", "-m", "512"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(pieces.join("vmlinuz"))
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"]);
    for (i, (serial, image)) in disks.iter().enumerate() {
        c.arg("-drive")
            .arg(format!(
                "file={},format=raw,if=none,id=d{i},readonly=on",
                image.display()
            ))
            .arg("-device")
            .arg(format!("virtio-blk-pci,drive=d{i},serial={serial}"));
    }
    let start = Instant::now();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let ended = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let seconds = start.elapsed().as_secs_f64();
    let mut joiner = fruix_system::console::LineJoiner::default();
    let lines = BufReader::new(fs::File::open(log).unwrap())
        .split(b'\n')
        .map(|l| {
            String::from_utf8_lossy(&l.unwrap())
                .trim_end_matches('\r')
                .to_owned()
        })
        .flat_map(|l| joiner.push(&l))
        .collect();
    Boot {
        lines,
        seconds,
        ended,
    }
}
