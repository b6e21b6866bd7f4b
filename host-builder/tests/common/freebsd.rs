//! A FreeBSD-shaped world and a declaration cut from it, shared by the
//! FreeBSD image tests and the system test that reads the image's UFS2
//! root with Linux's own `ufs` driver. No FreeBSD binary can be had here
//! (but the agent), so the packages are small trees laid out as FreeBSD's
//! distribution sets are (`boot/kernel/kernel`, `boot/loader.efi`, ...).
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes `bytes` at `p` with `mode`, making its parents.
pub fn write(p: &Path, bytes: &[u8], mode: u32) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Bytes that differ from block to block, so that a misplaced block shows.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// A FreeBSD-shaped world in `DIR/world`, a stand-in agent in
/// `DIR/agent` and a declaration cut from the world, `DIR/freebsd.toml`.
pub fn setup(dir: &Path, init: &str, firmware: &str) -> PathBuf {
    let w = dir.join("world");
    // Larger than 12 blocks of 32 KiB: read back through an indirect block.
    write(&w.join("boot/kernel/kernel"), &pattern(1_300_000, 7), 0o555);
    write(&w.join("boot/kernel/virtio_blk.ko"), b"module", 0o444);
    write(&w.join("boot/loader.efi"), &pattern(70_000, 9), 0o444);
    write(&w.join("boot/lua/loader.lua"), b"-- loader\n", 0o444);
    write(
        &w.join("boot/defaults/loader.conf"),
        b"kernel=\"kernel\"\n",
        0o444,
    );
    write(
        &w.join("boot/device.hints"),
        b"hint.uart.0.at=\"isa\"\n",
        0o444,
    );
    write(&w.join("bin/sh"), b"#!/bin/sh\n", 0o555);
    write(&w.join("sbin/init"), b"init", 0o555);
    write(&w.join("usr/bin/true"), b"true", 0o555);
    write(&w.join("usr/include/stdio.h"), b"int printf();", 0o444);
    write(&w.join("etc/rc"), b"#!/bin/sh\n", 0o444);
    write(&dir.join("agent"), b"#!/bin/sh\necho agent\n", 0o555);
    let decl = dir.join("freebsd.toml");
    write(
        &decl,
        format!(
            r#"host-name = "fruix-bsd"
os = "freebsd"
init = "{init}"
kernel = "freebsd-kernel"
bootloader = "freebsd-boot"
base-packages = ["freebsd-runtime"]

[packages.freebsd-world]
version = "14.3"
source = {{ type = "dir", path = "world" }}

[packages.freebsd-kernel]
version = "14.3"
from = "freebsd-world"
keep = ["boot/kernel"]

[packages.freebsd-boot]
version = "14.3"
from = "freebsd-world"
keep = ["boot/loader.efi", "boot/lua", "boot/defaults", "boot/device.hints"]

[packages.freebsd-runtime]
version = "14.3"
from = "freebsd-world"
prune = ["boot", "usr/include"]

[services.sshd]
port = 22

[image]
capacity = "256m"
root-size = "96m"
firmware = "{firmware}"
"#
        )
        .as_bytes(),
        0o644,
    );
    decl
}

/// The partitions of a raw image, from `sfdisk --json`: (type, start, size)
/// in bytes, and GPT name.
pub fn partitions(raw: &Path) -> Vec<(String, u64, u64, String)> {
    let o = Command::new("sfdisk")
        .arg("--json")
        .arg(raw)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["type"].as_str().unwrap().to_owned(),
                p["start"].as_u64().unwrap() * 512,
                p["size"].as_u64().unwrap() * 512,
                p["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}
