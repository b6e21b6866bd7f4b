//! `fruix system image`: a bootable GPT disk from a built system, made
//! without mounting anything and without a hand-written file system:
//!
//! 1. a sparse file of the declared capacity, partitioned by `sfdisk`
//!    (an EFI system partition, then the root);
//! 2. the ESP made by `mkfs.vfat` and filled by `mtools`: systemd-boot as
//!    the fallback loader, the kernel, the initrd and a loader entry whose
//!    command line names the system item and its digest;
//! 3. the root staged as a tree of hard links to the store (`tree.rs`) and
//!    written by `mke2fs -d` into the partition, then `debugfs` gives every
//!    inode the same times (mke2fs 1.47.0 copies the tree's change times);
//! 4. qcow2 and VHD converted from the raw disk by `qemu-img`.
//!
//! A FreeBSD declaration gets `loader.efi` on the ESP and a UFS2 root made
//! by `makefs`, with a `/boot/loader.conf` naming the system
//! (`freebsd.rs`, `ufs.rs`).
//!
//! Everything that would differ between two builds comes from the system
//! digest (GUIDs, the file-system UUID and hash seed, the FAT volume id)
//! or is a fixed time, so two builds give byte-identical images. Images
//! are written under temporary names and renamed when all are done.

pub mod freebsd;
pub mod layout;
pub mod tools;
pub mod tree;
pub mod ufs;
pub mod vhd;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use fruix_activation::config::SystemConfig;
use fruix_store::{ItemName, StoreRoot};

use crate::build::progress::Progress;
use crate::build::target::{GenFile, ROOT_LABEL};
use crate::build::{BuildError, BuildOutcome, TempTree};
use crate::declaration::{ImageFormat, InitMode, Loaded, Os};
use layout::{ESP_SIZE, Ids, Layout};

/// The time ESP entries carry (FAT cannot tell times before 1980).
const FAT_EPOCH: &str = "315532800";

/// What to write.
#[derive(Clone, Debug)]
pub struct ImageOptions {
    /// The output directory (the same as the build's): images go to
    /// `OUT/HOST.raw`, `OUT/HOST.qcow2`, `OUT/HOST.vhd`.
    pub out: PathBuf,
    /// Formats, at least one.
    pub formats: Vec<ImageFormat>,
    /// A fixed-size VHD rather than a dynamic one.
    pub vhd_fixed: bool,
}

/// One image written.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageFile {
    /// Its format.
    pub format: &'static str,
    /// Where it is.
    pub path: PathBuf,
}

/// What `fruix system image` made.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageOutcome {
    /// The system item booted.
    pub system: String,
    /// The images.
    pub images: Vec<ImageFile>,
    /// The boot line: the loader entry's kernel command line (Linux), or
    /// loader.conf's variables as `kenv` shows them (FreeBSD).
    pub cmdline: String,
    /// Disk size in bytes.
    pub disk_size: u64,
}

/// The extension of a format's file.
pub fn extension(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Raw => "raw",
        ImageFormat::Qcow2 => "qcow2",
        ImageFormat::Vhd => "vhd",
    }
}

/// The kernel command line: the root by label, the serial console, and
/// the system item with its digest; in shepherd-pid1 mode the agent is
/// `init`.
pub fn kernel_cmdline(system: &str, digest: &str, init: InitMode, agent: &str) -> String {
    let mut s = format!(
        "root=LABEL={ROOT_LABEL} rw console=ttyS0 net.ifnames=0 panic=-1 fruix.system=/frx/store/{system} fruix.digest={digest}"
    );
    if init == InitMode::ShepherdPid1 {
        s.push_str(&format!(" init=/frx/store/{agent}/bin/fruix-agent"));
    }
    s
}

/// Where the ESP keeps the kernel, the initrd and the loader entry.
pub mod esp_paths {
    /// The kernel.
    pub const KERNEL: &str = "::/EFI/fruix/vmlinuz";
    /// The initrd.
    pub const INITRD: &str = "::/EFI/fruix/initrd.img";
    /// The loader entry (systemd-boot's format).
    pub const ENTRY: &str = "::/loader/entries/fruix.conf";
}

/// The kernel and initrd of a kernel item: the newest `boot/vmlinuz-*`
/// and its `boot/initrd.img-*`.
fn kernel_files(item: &Path) -> Result<(PathBuf, PathBuf), BuildError> {
    let boot = item.join("boot");
    let names: BTreeSet<String> = fs::read_dir(&boot)
        .map_err(|e| BuildError::Io(boot.clone(), e))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let version = names
        .iter()
        .rev()
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .find(|v| names.contains(&format!("initrd.img-{v}")))
        .ok_or_else(|| {
            BuildError::Input(format!(
                "{}: the kernel item has no boot/vmlinuz-VERSION with a boot/initrd.img-VERSION",
                item.display()
            ))
        })?;
    Ok((
        boot.join(format!("vmlinuz-{version}")),
        boot.join(format!("initrd.img-{version}")),
    ))
}

/// Writes the images of a built system.
pub fn build_image(
    loaded: &Loaded,
    built: &BuildOutcome,
    opts: &ImageOptions,
    progress: &Progress,
) -> Result<ImageOutcome, BuildError> {
    let d = &loaded.decl;
    let root = StoreRoot::new(opts.out.join("frx"));
    let state = opts.out.join(".fruix-build");
    let log = state.join("logs/image.log");
    let _ = fs::remove_file(&log);
    let layout = Layout::new(loaded.capacity, loaded.root_size).ok_or_else(|| {
        BuildError::Internal("the root partition does not fit in the capacity".into())
    })?;
    let digest = built.system.digest().to_hex();
    let ids = Ids::new(&digest);
    let cfg = SystemConfig::load(&built.system_path)
        .map_err(|e| BuildError::Input(format!("system item: {e}")))?;
    let by_role = |role: &str| {
        built
            .closure
            .iter()
            .find(|c| c.roles.contains(&role))
            .map(|c| (&c.item, root.item_path(&c.item)))
            .ok_or_else(|| BuildError::Internal(format!("no {role} item in the closure")))
    };
    let (kernel_item, bootloader_item) = (by_role("kernel")?, by_role("bootloader")?);
    let os = *d.os.get_ref();
    let BootPlan {
        esp,
        extra,
        root_type,
        cmdline,
    } = boot_plan(
        loaded,
        (built.system.as_str(), &digest, &cfg.agent),
        (kernel_item.0, &kernel_item.1),
        (bootloader_item.0, &bootloader_item.1),
    )?;

    let host = d.host_name.get_ref();
    let tmp = |ext: &str| {
        opts.out
            .join(format!(".{host}.{ext}.tmp-{}", std::process::id()))
    };
    let raw_tmp = tmp("raw");
    // Whatever happens, no temporary is left behind.
    let mut cleanup = Cleanup(vec![raw_tmp.clone()]);

    progress.line(&format!(
        "image: {} GPT disk, {} MiB root",
        human(layout.disk_size),
        layout.root_size >> 20
    ));
    {
        let f = fs::File::create(&raw_tmp).map_err(|e| BuildError::Io(raw_tmp.clone(), e))?;
        f.set_len(layout.disk_size)
            .map_err(|e| BuildError::Io(raw_tmp.clone(), e))?;
    }
    tools::run(
        Command::new("sfdisk")
            .args(["--quiet", "--no-reread", "--no-tell-kernel"])
            .arg(&raw_tmp),
        Some(&layout.sfdisk_script(&ids, root_type)),
        &log,
    )?;

    progress.line(&format!(
        "image: EFI system partition (mkfs.vfat, mtools) and root file system ({})",
        match os {
            Os::Linux => "mke2fs -d",
            Os::Freebsd => "makefs -t ffs",
        }
    ));
    let work = state.join("work");
    let esp_log = state.join("logs/image-esp.log");
    let _ = fs::remove_file(&esp_log);
    let mut items: Vec<_> = built.closure.iter().map(|c| c.item.clone()).collect();
    items.push(built.system.clone());
    // The two partitions are disjoint byte ranges of the disk: made at the
    // same time.
    std::thread::scope(|s| {
        let esp = s.spawn(|| write_esp(&raw_tmp, &layout, &ids, &esp, &state, &esp_log));
        let root_fs = (|| {
            let tree = staged_tree(
                &state,
                &work,
                &tree::StageInput {
                    root: &root,
                    items: &items,
                    system: &built.system,
                    runtime: &cfg.runtime,
                    init: d.init,
                    os,
                    extra: &extra,
                },
            )?;
            match os {
                Os::Linux => write_root(&raw_tmp, &layout, &ids, &tree, &log),
                Os::Freebsd => {
                    freebsd::write_root(&loaded.file, &raw_tmp, &layout, &tree, &work, &log)
                }
            }
        })();
        let esp = esp
            .join()
            .unwrap_or_else(|_| Err(BuildError::Internal("ESP thread panicked".into())));
        esp.and(root_fs)
    })?;

    let mut done: Vec<(PathBuf, PathBuf, ImageFormat)> = Vec::new();
    for &format in &opts.formats {
        let ext = extension(format);
        let dest = opts.out.join(format!("{host}.{ext}"));
        match format {
            ImageFormat::Raw => done.push((raw_tmp.clone(), dest, format)),
            ImageFormat::Qcow2 | ImageFormat::Vhd => {
                progress.line(&format!("image: converting to {ext} (qemu-img)"));
                let t = tmp(ext);
                cleanup.0.push(t.clone());
                let mut cmd = Command::new("qemu-img");
                cmd.args(["convert", "-f", "raw"]);
                if format == ImageFormat::Qcow2 {
                    cmd.args(["-O", "qcow2"]);
                } else {
                    let sub = if opts.vhd_fixed { "fixed" } else { "dynamic" };
                    cmd.args(["-O", "vpc", "-o"])
                        .arg(format!("subformat={sub},force_size=on"));
                }
                tools::run(cmd.arg(&raw_tmp).arg(&t), None, &log)?;
                if format == ImageFormat::Vhd {
                    vhd::make_reproducible(&t, &ids.vhd)
                        .map_err(|e| BuildError::Io(t.clone(), e))?;
                }
                done.push((t, dest, format));
            }
        }
    }
    let mut images = Vec::new();
    for (from, to, format) in done {
        fs::rename(&from, &to).map_err(|e| BuildError::Io(to.clone(), e))?;
        images.push(ImageFile {
            format: extension(format),
            path: to,
        });
    }
    // The raw temporary was renamed if raw was asked for; else it goes.
    drop(cleanup);
    for i in &images {
        progress.line(&format!("image: {}", i.path.display()));
    }
    Ok(ImageOutcome {
        system: built.system.to_string(),
        images,
        cmdline,
        disk_size: layout.disk_size,
    })
}

/// What a system boots from: the ESP's content, the root's extra files,
/// the root partition's type, and the boot line the image reports.
struct BootPlan {
    esp: EspContent,
    extra: Vec<GenFile>,
    root_type: &'static str,
    cmdline: String,
}

/// The boot plan of the declared system: systemd-boot with a loader
/// entry for Linux, FreeBSD's loader and `/boot` for FreeBSD.
fn boot_plan(
    loaded: &Loaded,
    (system, digest, agent): (&str, &str, &str),
    kernel: (&ItemName, &Path),
    bootloader: (&ItemName, &Path),
) -> Result<BootPlan, BuildError> {
    let d = &loaded.decl;
    match *d.os.get_ref() {
        Os::Linux => {
            let cmdline = kernel_cmdline(system, digest, d.init, agent);
            let (kernel, initrd) = kernel_files(kernel.1)?;
            let efi = bootloader
                .1
                .join("usr/lib/systemd/boot/efi/systemd-bootx64.efi");
            if !efi.is_file() {
                return Err(BuildError::Input(format!(
                    "{}: the boot-loader item has no systemd-boot (install systemd-boot-efi in its source)",
                    efi.display()
                )));
            }
            let entry = format!(
                "title Fruix ({})\nlinux /EFI/fruix/vmlinuz\ninitrd /EFI/fruix/initrd.img\noptions {cmdline}\n",
                d.host_name.get_ref()
            );
            Ok(BootPlan {
                esp: EspContent {
                    dirs: &[
                        "::/EFI",
                        "::/EFI/BOOT",
                        "::/EFI/fruix",
                        "::/loader",
                        "::/loader/entries",
                    ],
                    files: vec![
                        (efi, "::/EFI/BOOT/BOOTX64.EFI"),
                        (kernel, esp_paths::KERNEL),
                        (initrd, esp_paths::INITRD),
                    ],
                    texts: vec![
                        (
                            "::/loader/loader.conf",
                            "default fruix.conf\ntimeout 0\n".into(),
                        ),
                        (esp_paths::ENTRY, entry),
                    ],
                },
                extra: Vec::new(),
                root_type: "linux",
                cmdline,
            })
        }
        Os::Freebsd => {
            let conf = freebsd::loader_conf(system, digest, d.init, agent);
            let cmdline = freebsd::boot_words(&conf);
            let boot = freebsd::boot(kernel, bootloader, conf)?;
            Ok(BootPlan {
                esp: EspContent {
                    dirs: &["::/EFI", "::/EFI/BOOT"],
                    files: vec![(boot.loader_efi, "::/EFI/BOOT/BOOTX64.EFI")],
                    texts: Vec::new(),
                },
                extra: boot.extra,
                root_type: freebsd::UFS_PARTITION_TYPE,
                cmdline,
            })
        }
    }
}

/// The staged root tree of a system, kept in `OUT/.fruix-build/image-root/`
/// under the system's name, boot mode and the staging code's version: it
/// is a function of those alone, so the next image of the same system (another format, a
/// rebuild) skips staging. Staged in a work directory and renamed into
/// place when complete; the tree of any other system is removed then, so
/// that one is kept at most.
fn staged_tree(
    state: &Path,
    work: &Path,
    input: &tree::StageInput<'_>,
) -> Result<PathBuf, BuildError> {
    let dir = state.join("image-root");
    let kept = dir.join(format!(
        "{}-{}-v{}",
        input.system,
        input.init.as_str(),
        tree::STAGE_VERSION
    ));
    if kept.is_dir() {
        return Ok(kept);
    }
    let staged = TempTree::new(work, "image-root")?;
    tree::stage(staged.path(), input)?;
    if dir.is_dir() {
        for e in fs::read_dir(&dir).map_err(|e| BuildError::Io(dir.clone(), e))? {
            let p = e.map_err(|e| BuildError::Io(dir.clone(), e))?.path();
            fruix_store::root::remove_tree(&p).map_err(|e| BuildError::Io(p.clone(), e))?;
        }
    }
    fs::create_dir_all(&dir).map_err(|e| BuildError::Io(dir.clone(), e))?;
    fs::rename(staged.path(), &kept).map_err(|e| BuildError::Io(kept.clone(), e))?;
    Ok(kept)
}

/// Removes the temporaries it holds when dropped.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// `FILE@@OFFSET`, mtools' way of naming a partition inside a disk image.
pub fn mtools_image(disk: &Path, offset: u64) -> String {
    format!("{}@@{offset}", disk.display())
}

/// An mtools program (`mcopy`, `mtype`, ...) that accepts a FAT of any
/// geometry, as one inside a disk image has.
pub fn mtools(prog: &str) -> Command {
    let mut c = Command::new(prog);
    c.env("MTOOLS_SKIP_CHECK", "1");
    c
}

/// What the EFI system partition holds.
struct EspContent {
    /// Directories to make, parents first.
    dirs: &'static [&'static str],
    /// Files copied from the store, with their ESP paths.
    files: Vec<(PathBuf, &'static str)>,
    /// Generated files: ESP path and text.
    texts: Vec<(&'static str, String)>,
}

fn write_esp(
    disk: &Path,
    layout: &Layout,
    ids: &Ids,
    content: &EspContent,
    state: &Path,
    log: &Path,
) -> Result<(), BuildError> {
    let fat = |prog: &str| {
        let mut c = mtools(prog);
        c.env("SOURCE_DATE_EPOCH", FAT_EPOCH);
        c
    };
    // No volume label: mkfs.vfat stamps its directory entry with the
    // current time whatever SOURCE_DATE_EPOCH says. FAT16, which UEFI
    // firmware reads: mkfs.vfat would size the FAT by the whole disk.
    tools::run(
        fat("mkfs.vfat")
            .args(["-F", "16"])
            .arg(format!("--offset={}", layout.esp_offset / 512))
            .args(["-i", &ids.fat_volume])
            .arg(disk)
            .arg((ESP_SIZE / 1024).to_string()),
        None,
        log,
    )?;
    let img = mtools_image(disk, layout.esp_offset);
    tools::run(fat("mmd").args(["-i", &img]).args(content.dirs), None, log)?;
    let generated = TempTree::new(&state.join("work"), "esp")?;
    let mut copies: Vec<(PathBuf, &str)> = content.files.clone();
    for (i, (dst, text)) in content.texts.iter().enumerate() {
        let p = generated.path().join(i.to_string());
        fs::write(&p, text).map_err(|e| BuildError::Io(p.clone(), e))?;
        copies.push((p, dst));
    }
    for (src, dst) in copies {
        tools::run(
            fat("mcopy").args(["-o", "-i", &img]).arg(src).arg(dst),
            None,
            log,
        )?;
    }
    Ok(())
}

/// Fixed time for e2fsprogs (it takes 0 as "unset").
const E2FS_TIME: &str = "1";

fn write_root(
    disk: &Path,
    layout: &Layout,
    ids: &Ids,
    tree: &Path,
    log: &Path,
) -> Result<(), BuildError> {
    tools::run(
        Command::new("mke2fs")
            .env("E2FSPROGS_FAKE_TIME", E2FS_TIME)
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-b",
                "4096",
                "-L",
                ROOT_LABEL,
                "-U",
                &ids.root_fs,
            ])
            .arg("-E")
            .arg(format!(
                "offset={},hash_seed={},root_owner=0:0,lazy_itable_init=1,nodiscard",
                layout.root_offset, ids.hash_seed
            ))
            .arg("-d")
            .arg(tree)
            .arg(disk)
            .arg(format!("{}k", layout.root_size / 1024)),
        None,
        log,
    )?;
    // mke2fs copies each file's change and access times from the tree;
    // neither can be set on the host, so debugfs sets them in the image.
    let fs_arg = format!("{}?offset={}", disk.display(), layout.root_offset);
    let dump = tools::run(Command::new("dumpe2fs").arg(&fs_arg), None, log)?;
    let used = used_inodes(&dump)
        .ok_or_else(|| BuildError::Internal("cannot read dumpe2fs's inode counts".into()))?;
    let mut cmds = String::new();
    for i in used {
        cmds.push_str(&format!(
            "sif <{i}> ctime {E2FS_TIME}\nsif <{i}> atime {E2FS_TIME}\n"
        ));
    }
    // A file, not stdin: debugfs echoes every command, and a pipe of
    // those would fill while we were still writing.
    let cmd_file = log.with_file_name("debugfs-times.cmd");
    fs::write(&cmd_file, cmds).map_err(|e| BuildError::Io(cmd_file.clone(), e))?;
    tools::run(
        Command::new("debugfs")
            .env("E2FSPROGS_FAKE_TIME", E2FS_TIME)
            .arg("-w")
            .arg("-f")
            .arg(&cmd_file)
            .arg(&fs_arg),
        None,
        log,
    )?;
    let _ = fs::remove_file(&cmd_file);
    Ok(())
}

/// The inode numbers in use, from `dumpe2fs`'s inode count and each
/// group's `Free inodes:` ranges.
fn used_inodes(dump: &str) -> Option<Vec<u64>> {
    let count: u64 = dump
        .lines()
        .find_map(|l| l.strip_prefix("Inode count:"))?
        .trim()
        .parse()
        .ok()?;
    let mut free = vec![false; count as usize + 1];
    for l in dump.lines() {
        let Some(ranges) = l.trim().strip_prefix("Free inodes: ") else {
            continue;
        };
        for r in ranges.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            for i in a..=b.min(count) {
                free[i as usize] = true;
            }
        }
    }
    Some((1..=count).filter(|i| !free[*i as usize]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_inodes_are_those_not_listed_free() {
        let dump = "Inode count:              24\n\
                    Group 0: (Blocks 0-32767)\n  Free inodes: 5-8, 10\n\
                    Group 1: (Blocks 32768-65535)\n  Free inodes: \n\
                    Group 2: (Blocks 65536-98303)\n  Free inodes: 17-24\n";
        assert_eq!(
            used_inodes(dump).unwrap(),
            vec![1, 2, 3, 4, 9, 11, 12, 13, 14, 15, 16]
        );
        assert!(used_inodes("nothing").is_none());
    }

    #[test]
    fn cmdline_names_the_system_and_init_only_in_pid1_mode() {
        let pid1 = kernel_cmdline(
            "abc-system-x",
            "abc",
            InitMode::ShepherdPid1,
            "def-fruix-agent-0.1.0",
        );
        assert!(pid1.contains("fruix.system=/frx/store/abc-system-x fruix.digest=abc"));
        assert!(pid1.ends_with("init=/frx/store/def-fruix-agent-0.1.0/bin/fruix-agent"));
        let rc = kernel_cmdline("abc-system-x", "abc", InitMode::RcShepherd, "def");
        assert!(!rc.contains("init="));
        assert!(rc.contains("root=LABEL=fruix-root"));
    }
}
