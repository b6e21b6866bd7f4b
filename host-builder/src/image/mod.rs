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

mod boot;
mod esp;
mod ext4;
pub mod freebsd;
pub mod layout;
pub mod tree;
pub mod ufs;
pub mod vhd;

pub use boot::kernel_cmdline;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use fruix_store::StoreRoot;
use fruix_system::{Role, SystemConfig};

use crate::declaration::{ImageFormat, Loaded, Os};
use crate::error::{BuildError, Cleanup, TempTree, temp_file_in};
use crate::progress::Progress;
use crate::realize::BuildOutcome;
use crate::tools;
use boot::{BootPlan, boot_plan};
use esp::write_esp;
use ext4::write_root;
use layout::{Ids, Layout};

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
        .map_err(|e| BuildError::Input(format!("system item: {}", fruix_system::chain(&e))))?;
    let by_role = |role: Role| {
        built
            .closure
            .iter()
            .find(|c| c.roles.contains(&role))
            .map(|c| (&c.item, root.item_path(&c.item)))
            .ok_or_else(|| BuildError::Internal(format!("no {role} item in the closure")))
    };
    let (kernel_item, bootloader_item) = (by_role(Role::Kernel)?, by_role(Role::Bootloader)?);
    let os = *d.os.get_ref();
    let BootPlan {
        esp,
        extra,
        root_type,
        cmdline,
    } = boot_plan(
        loaded,
        (built.system.as_str(), &cfg.agent),
        (kernel_item.0, &kernel_item.1),
        (bootloader_item.0, &bootloader_item.1),
    )?;

    let host = d.host_name.get_ref();
    let tmp = |ext: &str| temp_file_in(&opts.out, &format!(".{host}.{ext}.tmp-"));
    let raw_tmp = tmp("raw")?;
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
                let t = tmp(ext)?;
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

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}
