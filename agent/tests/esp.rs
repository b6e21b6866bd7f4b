//! The agent's ESP access on a real FAT: a GPT disk image made by sfdisk
//! and mkfs.vfat (as the image builder makes it), written with
//! `fruix_agent::esp`, then read back by mtools and checked by
//! `fsck.fat -n`, two other FAT implementations.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fruix_agent::esp::{Esp, EspError, tmp_name};

/// A 80 MiB disk with a GPT and a 64 MiB FAT16 ESP at 1 MiB.
fn disk(dir: &Path) -> PathBuf {
    let img = dir.join("disk.raw");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(80 << 20)
        .unwrap();
    let mut sf = Command::new("sfdisk")
        .arg("--quiet")
        .arg(&img)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        sf.stdin.as_mut().unwrap(),
        b"label: gpt\nstart=2048, size=131072, type=uefi\n",
    )
    .unwrap();
    assert!(sf.wait().unwrap().success());
    let st = Command::new("mkfs.vfat")
        .args(["-F", "16", "--offset=2048"])
        .arg(&img)
        .arg("65536")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    // The directories the image builder makes.
    let st = Command::new("mmd")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@1M", img.display()))
        .args(["::/EFI", "::/EFI/fruix", "::/loader", "::/loader/entries"])
        .status()
        .unwrap();
    assert!(st.success());
    img
}

/// `mdir -b` of `dir` on the ESP, as mtools reads it.
fn mdir(img: &Path, dir: &str) -> Vec<String> {
    let out = Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-b", "-i"])
        .arg(format!("{}@@1M", img.display()))
        .arg(format!("::/{dir}"))
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.rsplit('/').next().map(str::to_owned))
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// `fsck.fat -n` of the ESP (copied out: fsck.fat takes no offset).
fn fsck(img: &Path) -> (bool, String) {
    let part = img.with_extension("esp");
    let data = std::fs::read(img).unwrap();
    std::fs::write(&part, &data[1 << 20..(1 << 20) + (64 << 20)]).unwrap();
    let out = Command::new("fsck.fat")
        .arg("-n")
        .arg(&part)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn entries_written_renamed_and_removed_are_what_mtools_and_fsck_see() {
    let t = tempfile::tempdir().unwrap();
    let img = disk(t.path());
    let esp = Esp::open(&img).unwrap();
    assert!(esp.list("loader/entries").unwrap().is_empty());
    esp.write_new("loader/entries", "fruix-1.conf", b"title one\n")
        .unwrap();
    esp.write_new("loader/entries", "fruix-2+3.conf", b"title two\n")
        .unwrap();
    esp.write_new("EFI/fruix", "abc-kernel-vmlinuz", &vec![7u8; 3 << 20])
        .unwrap();
    esp.rename(
        "loader/entries/fruix-2+3.conf",
        "loader/entries/fruix-2.conf",
    )
    .unwrap();
    assert_eq!(
        esp.list("loader/entries").unwrap(),
        ["fruix-1.conf", "fruix-2.conf"]
    );
    assert_eq!(
        esp.read("loader/entries/fruix-2.conf").unwrap(),
        b"title two\n"
    );
    assert_eq!(
        esp.read("EFI/fruix/abc-kernel-vmlinuz").unwrap(),
        vec![7u8; 3 << 20]
    );
    // What a killed write leaves is swept.
    let left = tmp_name("fruix-3+3.conf");
    assert_eq!(left, ".fruix-tmp-fruix-3+3.conf.part");
    esp.write_new("loader/entries", &left, b"x").unwrap();
    assert_eq!(
        esp.sweep("loader/entries").unwrap(),
        [format!("loader/entries/{left}")]
    );
    // A generation staged again: its bad entry goes, a good one stays.
    esp.write_new("loader/entries", "fruix-3+0-1.conf", b"title three\n")
        .unwrap();
    assert_eq!(
        fruix_agent::bootentries::restage(&esp, 3)
            .unwrap()
            .as_deref(),
        Some("removed boot entry fruix-3+0-1.conf (tried again)")
    );
    assert_eq!(fruix_agent::bootentries::restage(&esp, 2).unwrap(), None);
    assert_eq!(
        esp.list("loader/entries").unwrap(),
        ["fruix-1.conf", "fruix-2.conf"]
    );
    esp.remove_all("EFI/fruix/abc-kernel-vmlinuz").unwrap();
    assert!(esp.list("EFI/fruix").unwrap().is_empty());
    // Too big for the ESP: refused before anything is written.
    let free = esp.free().unwrap();
    let e = esp
        .write_new("EFI/fruix", "big-initrd.img", &vec![0u8; 70 << 20])
        .unwrap_err();
    assert!(matches!(e, EspError::Full { .. }));
    assert_eq!(
        e.to_string(),
        format!(
            "the ESP is full: EFI/fruix/big-initrd.img needs {} bytes, {free} are free (delete old generations)",
            (70u64 << 20) + 64 * 1024
        )
    );
    assert!(!esp.exists("EFI/fruix/big-initrd.img"));
    // A directory the builder did not make is not made.
    assert!(esp.write_new("EFI/other", "x", b"x").is_err());
    esp.close().unwrap();
    assert_eq!(
        mdir(&img, "loader/entries"),
        ["fruix-1.conf", "fruix-2.conf"]
    );
    // Valid FAT dates (1980-01-01): UEFI's FAT driver refuses to rename
    // an entry dated 0 (systemd-boot's try counter needs that rename).
    let long = Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@1M", img.display()))
        .arg("::/loader/entries")
        .output()
        .unwrap();
    let long = String::from_utf8_lossy(&long.stdout).into_owned();
    for name in ["fruix-1.conf", "fruix-2.conf"] {
        let line = long.lines().find(|l| l.ends_with(name)).unwrap();
        assert!(line.contains(" 1980-01-01 "), "{line}");
    }
    let (clean, out) = fsck(&img);
    assert!(clean, "fsck.fat -n: {out}");
}

/// The FAT16 state byte of the ESP (bit 0: dirty).
fn state_byte(img: &Path) -> u8 {
    std::fs::read(img).unwrap()[(1 << 20) + 0x25]
}

#[test]
fn a_kill_between_steps_leaves_a_clean_volume_and_one_in_a_step_a_dirty_one() {
    let t = tempfile::tempdir().unwrap();
    let img = disk(t.path());
    // Killed after two steps (the process gone, nothing unmounted).
    let esp = Esp::open(&img).unwrap();
    esp.write_new("loader/entries", "fruix-1.conf", b"title one\n")
        .unwrap();
    esp.rename(
        "loader/entries/fruix-1.conf",
        "loader/entries/fruix-1+3.conf",
    )
    .unwrap();
    std::mem::forget(esp);
    assert_eq!(state_byte(&img) & 1, 0, "clean between steps");
    let (clean, out) = fsck(&img);
    assert!(clean, "fsck.fat -n after a kill between steps: {out}");
    // A volume found dirty (a write cut short) stays dirty for fsck,
    // through our writes and the unmount.
    let mut data = std::fs::read(&img).unwrap();
    data[(1 << 20) + 0x25] |= 1;
    std::fs::write(&img, &data).unwrap();
    let esp = Esp::open(&img).unwrap();
    esp.write_new("loader/entries", "fruix-2.conf", b"title two\n")
        .unwrap();
    esp.close().unwrap();
    assert_eq!(state_byte(&img) & 1, 1, "left dirty for fsck");
    assert_eq!(
        mdir(&img, "loader/entries"),
        ["fruix-1+3.conf", "fruix-2.conf"]
    );
}

#[test]
fn a_disk_without_an_esp_is_named() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("blank.raw");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let e = Esp::open(&img).err().unwrap();
    assert_eq!(
        e.to_string(),
        format!("{}: no EFI system partition in its GPT", img.display())
    );
}
