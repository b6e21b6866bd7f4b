//! The Linux root: an ext4 file system written by `mke2fs -d` straight
//! into its partition, then every inode given the same times by
//! `debugfs` (mke2fs copies the tree's change times).

use std::fs;
use std::path::Path;
use std::process::Command;

use super::layout::{Ids, Layout};
use crate::error::BuildError;
use crate::target::ROOT_LABEL;
use crate::tools;

/// Fixed time for e2fsprogs (it takes 0 as "unset").
const E2FS_TIME: &str = "1";

/// Writes the staged tree as the ext4 root inside `disk`.
pub(super) fn write_root(
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
}
