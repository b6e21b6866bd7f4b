//! Direct boot: the kernel, initrd and command line of a raw image's
//! loader entry, read from its EFI system partition with mtools, for QEMU
//! to load itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::VmError;
use crate::image::esp_paths;
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

/// The kernel, initrd and command line of the image's loader entry,
/// copied out of its ESP into `dir`.
pub(super) fn boot_files(
    image: &Path,
    dir: &Path,
    log: &Path,
) -> Result<(PathBuf, PathBuf, String), VmError> {
    let offset = esp_offset(image, log)?;
    let img = mtools_image(image, offset);
    // The loader entry first: a FreeBSD image has none (its loader reads
    // loader.conf from the root), and QEMU cannot load its kernel.
    let entry = tools::run(
        mtools("mtype").args(["-i", &img, esp_paths::ENTRY]),
        None,
        log,
    )
    .map_err(|e| match e {
        // mtype ran and found no entry; any other error (mtools missing)
        // is itself.
        ToolError::Failed { .. } => VmError::NoLoaderEntry(image.to_owned()),
        other => VmError::Tool(other),
    })?;
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.img");
    for (src, dst) in [(esp_paths::KERNEL, &kernel), (esp_paths::INITRD, &initrd)] {
        tools::run(
            mtools("mcopy").args(["-n", "-i", &img, src]).arg(dst),
            None,
            log,
        )?;
    }
    let cmdline = entry
        .lines()
        .find_map(|l| l.strip_prefix("options "))
        .ok_or_else(|| VmError::NoOptions(image.to_owned()))?
        .trim()
        .to_owned();
    Ok((kernel, initrd, cmdline))
}
