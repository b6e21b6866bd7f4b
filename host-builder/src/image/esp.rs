//! The EFI system partition: made by `mkfs.vfat` and filled by `mtools`,
//! nothing mounted, every entry at a fixed time.

use std::fs;
use std::path::{Path, PathBuf};

use super::layout::{ESP_SIZE, Ids, Layout};
use crate::error::{BuildError, TempTree};
use crate::tools::{self, mtools, mtools_image};

/// The time ESP entries carry (FAT cannot tell times before 1980).
const FAT_EPOCH: &str = "315532800";

/// What the EFI system partition holds.
pub(super) struct EspContent {
    /// Directories to make, parents first.
    pub(super) dirs: Vec<String>,
    /// Files copied from the store, with their ESP paths.
    pub(super) files: Vec<(PathBuf, String)>,
    /// Generated files: ESP path and text.
    pub(super) texts: Vec<(String, String)>,
}

/// Makes the FAT of the ESP inside `disk` and copies `content` in.
pub(super) fn write_esp(
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
    tools::run(fat("mmd").args(["-i", &img]).args(&content.dirs), None, log)?;
    let generated = TempTree::new(&state.join("work"), "esp")?;
    let mut copies: Vec<(PathBuf, &str)> = content
        .files
        .iter()
        .map(|(src, dst)| (src.clone(), dst.as_str()))
        .collect();
    for (i, (dst, text)) in content.texts.iter().enumerate() {
        let p = generated.path().join(i.to_string());
        fs::write(&p, text).map_err(|e| BuildError::Io(p.clone(), e))?;
        copies.push((p, dst.as_str()));
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
