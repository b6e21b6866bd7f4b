//! `debian` sources: a suite and a package list installed into a tree by
//! mmdebstrap, with the downloaded `.deb`s kept outside the store, keyed by
//! suite, mirror and package list, so that a second build downloads
//! nothing.
//!
//! The recipe is the one measured in `../shared/facts/booting-guests.md`:
//! the `apt` variant, no documentation, an initramfs with only the virtio
//! modules the guest needs, the `.deb`s synced in and out of a cache. What
//! a guest must make for itself is removed from the tree: SSH host keys,
//! the machine id, device nodes, apt's lists and caches, and logs.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

use super::context::Context;
use crate::error::{BuildError, TempTree};
use crate::progress::Step;

/// Revision of the recipe below; part of every debian package's
/// description, so that changing the recipe rebuilds the trees.
pub const RECIPE_REVISION: u32 = 1;

/// A fixed date for the files mmdebstrap and dpkg write (2026-01-01), so
/// that two builds of the same packages agree as far as they can.
const SOURCE_DATE_EPOCH: &str = "1767225600";

/// The mirror to use: the given one, or the first Debian archive in the
/// host's apt sources, or deb.debian.org.
pub fn mirror_or_default(mirror: Option<&str>) -> String {
    if let Some(m) = mirror {
        return m.to_owned();
    }
    host_mirror().unwrap_or_else(|| "http://deb.debian.org/debian".to_owned())
}

fn host_mirror() -> Option<String> {
    let deb822 = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let from_deb822 = deb822
        .lines()
        .filter_map(|l| l.strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .find(|u| u.ends_with("/debian") || u.ends_with("/debian/"));
    if let Some(u) = from_deb822 {
        return Some(u.trim_end_matches('/').to_owned());
    }
    let list = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    list.lines()
        .filter(|l| l.trim_start().starts_with("deb "))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("http")))
        .find(|u| u.trim_end_matches('/').ends_with("/debian"))
        .map(|u| u.trim_end_matches('/').to_owned())
}

/// Installs `packages` from `suite` into a fresh tree and cleans it.
pub fn make_tree(
    cx: &Context<'_>,
    name: &str,
    suite: &str,
    packages: &[String],
    mirror: Option<&str>,
    step: &Step,
) -> Result<TempTree, BuildError> {
    if !fruix_store::root::running_as_root() {
        return Err(BuildError::Input("a debian source needs root: mmdebstrap runs in root mode so that owners and modes are right".into()));
    }
    if Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err(BuildError::Input(
            "mmdebstrap is not installed (Debian package mmdebstrap)".into(),
        ));
    }
    let mirror = mirror_or_default(mirror);
    let mut sorted = packages.to_vec();
    sorted.sort();
    let key = fruix_store::hash::hex(&Sha256::digest(
        format!("{suite}\n{mirror}\n{}\n{RECIPE_REVISION}", sorted.join(" ")).as_bytes(),
    ));
    let cache = cx.deb_cache.join(format!("{suite}-{}", &key[..16]));
    fs::create_dir_all(&cache).map_err(|e| BuildError::Io(cache.clone(), e))?;
    // Builds that share this cache take turns: mmdebstrap syncs the whole
    // archive directory in and out.
    // The lock sits beside the cache, not in it: mmdebstrap copies the
    // cache's files into the tree and back.
    let lock_path = cache.with_extension("lock");
    let lock = fs::File::create(&lock_path).map_err(|e| BuildError::Io(lock_path.clone(), e))?;
    step.message(&format!("{name}: waiting for the .deb cache"));
    lock.lock()
        .map_err(|e| BuildError::Io(lock_path.clone(), e))?;
    let tree = TempTree::new(&cx.work_dir, &format!("debian-{name}"))?;
    let log_path = cx.work_dir.join(format!("mmdebstrap-{name}.log"));

    let cached = fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    step.message(&format!(
        "{name}: mmdebstrap {suite} ({} packages, {cached} .debs cached)",
        packages.len()
    ));
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let mut cmd = Command::new("mmdebstrap");
    cmd.env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .arg("--mode=root")
        .arg("--variant=apt")
        .arg(format!("--include={}", sorted.join(",")))
        .arg("--skip=essential/unlink")
        .args([
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/info/*",
        ])
        .arg("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/")
        .arg(format!("--setup-hook=sync-in {} /var/cache/apt/archives/", q(&cache)))
        .arg("--essential-hook=mkdir -p \"$1\"/etc/initramfs-tools/conf.d \"$1\"/usr/share/initramfs-tools/modules.d")
        .arg("--essential-hook=echo MODULES=list > \"$1\"/etc/initramfs-tools/conf.d/fruix")
        .arg("--essential-hook=printf 'virtio_blk\\nvirtio_net\\nvirtio_pci\\next4\\n' > \"$1\"/usr/share/initramfs-tools/modules.d/fruix")
        .arg(format!("--customize-hook=sync-out /var/cache/apt/archives {}", q(&cache)))
        .arg(suite)
        .arg(tree.path())
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| BuildError::Io(PathBuf::from("mmdebstrap"), e))?;
    let mut log = fs::File::create(&log_path).map_err(|e| BuildError::Io(log_path.clone(), e))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let readers: Vec<_> = [
        stdout.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        stderr.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        })
    })
    .collect();
    drop(tx);
    let mut tail: Vec<String> = Vec::new();
    for line in rx {
        let _ = writeln!(log, "{line}");
        step.message(&format!(
            "{name}: {}",
            line.chars().take(70).collect::<String>()
        ));
        tail.push(line);
        if tail.len() > 8 {
            tail.remove(0);
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child
        .wait()
        .map_err(|e| BuildError::Io(PathBuf::from("mmdebstrap"), e))?;
    if !status.success() {
        return Err(BuildError::BuildTool {
            tool: "mmdebstrap".into(),
            log: log_path,
            tail: tail.join(" | "),
        });
    }
    clean_tree(tree.path())?;
    Ok(tree)
}

/// Removes what no two guests may share and what the store cannot hold.
fn clean_tree(root: &Path) -> Result<(), BuildError> {
    let rm = |rel: &str| {
        let p = root.join(rel);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&p).map_err(|e| BuildError::Io(p.clone(), e)),
            Ok(_) => fs::remove_file(&p).map_err(|e| BuildError::Io(p.clone(), e)),
            Err(_) => Ok(()),
        }
    };
    let empty = |rel: &str| -> Result<(), BuildError> {
        let d = root.join(rel);
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                r.map_err(|e| BuildError::Io(p.clone(), e))?;
            }
        }
        Ok(())
    };
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "var/log",
        "var/cache/debconf",
        "var/cache/ldconfig",
    ] {
        empty(d)?;
    }
    if let Ok(rd) = fs::read_dir(root.join("etc/ssh")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                rm(&format!("etc/ssh/{}", e.file_name().to_string_lossy()))?;
            }
        }
    }
    for f in [
        "etc/machine-id",
        "var/lib/dbus/machine-id",
        "etc/hostname",
        "etc/resolv.conf",
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        rm(f)?;
    }
    // Sockets and fifos left by the install (none are expected) cannot be
    // in an item; the import would refuse them by name.
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
