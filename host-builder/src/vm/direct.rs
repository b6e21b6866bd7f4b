//! Direct boot: the kernel, initrd and command line of a raw image's
//! loader entry, read from its EFI system partition with mtools, for QEMU
//! to load itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::VmError;
use fruix_system::bootentry::{ENTRIES_DIR, Entry, EntryName, default_entry};

use crate::tools;
use crate::tools::ToolError;
use crate::tools::{mtools, mtools_image};

/// The ESP's byte offset in a raw GPT disk, from `sfdisk --json`.
fn esp_offset(image: &Path, log: &Path) -> Result<u64, VmError> {
    let out = tools::run(Command::new("sfdisk").arg("--json").arg(image), None, log)?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| VmError::Sfdisk(image.to_owned(), e))?;
    let parts = v["partitiontable"]["partitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sector = v["partitiontable"]["sectorsize"].as_u64().unwrap_or(512);
    parts
        .iter()
        .find(|p| {
            p["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"))
        })
        .and_then(|p| p["start"].as_u64())
        .map(|s| s * sector)
        .ok_or_else(|| VmError::NoEsp(image.to_owned()))
}

/// The kernel, initrd and command line of the image's default loader
/// entry (the one systemd-boot would boot: the newest generation with
/// tries left, `fruix_system::bootentry::default_entry`), copied out of
/// its ESP into `dir`, and the entry's file name. Direct boot does not
/// count tries: the entry is not renamed.
pub(super) fn boot_files(
    image: &Path,
    dir: &Path,
    log: &Path,
) -> Result<(PathBuf, PathBuf, String, String), VmError> {
    let offset = esp_offset(image, log)?;
    let img = mtools_image(image, offset);
    // The loader entries first: a FreeBSD image has none (its loader reads
    // loader.conf from the root), and QEMU cannot load its kernel.
    let listing = tools::run(
        mtools("mdir").args(["-b", "-i", &img, &format!("::/{ENTRIES_DIR}")]),
        None,
        log,
    )
    .map_err(|e| match e {
        // mdir ran and found no directory; any other error (mtools
        // missing) is itself.
        ToolError::Failed { .. } => VmError::NoLoaderEntry(image.to_owned()),
        other => VmError::Tool(other),
    })?;
    let names: Vec<EntryName> = listing
        .lines()
        .filter_map(|l| l.trim().rsplit('/').next())
        .filter_map(EntryName::parse)
        .collect();
    let name = default_entry(&names).ok_or_else(|| VmError::NoLoaderEntry(image.to_owned()))?;
    let text = tools::run(
        mtools("mtype").args(["-i", &img, &format!("::/{}", name.path())]),
        None,
        log,
    )?;
    let entry = Entry::parse(&text).ok_or_else(|| VmError::NoOptions(image.to_owned()))?;
    if entry.options.is_empty() {
        return Err(VmError::NoOptions(image.to_owned()));
    }
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.img");
    for (src, dst) in [(&entry.linux, &kernel), (&entry.initrd, &initrd)] {
        tools::run(
            mtools("mcopy")
                .args(["-n", "-i", &img, &format!("::{src}")])
                .arg(dst),
            None,
            log,
        )?;
    }
    Ok((kernel, initrd, entry.options, name.to_string()))
}
