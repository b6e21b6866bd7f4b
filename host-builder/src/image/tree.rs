//! The root file system's tree, staged in a work directory before
//! `mke2fs -d` copies it: the closure's items (hard links to the store,
//! so nothing is copied), their manifests, the top-level links into the
//! runtime, and the empty directories activation fills.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use filetime::FileTime;
use fruix_activation::{ActivateOptions, GuestRoot};
use fruix_store::{ItemName, StoreRoot};

use fruix_activation::platform::GuestOs;

use crate::declaration::{InitMode, Os};
use crate::error::BuildError;
use crate::target::GenFile;

/// The version of what [`stage`] makes; a change to it must bump this, so
/// that trees staged by an older `fruix` are not reused.
pub const STAGE_VERSION: u32 = 2;

/// The time every file of an image carries: the store's own (1 second
/// past the epoch, what imports normalize to).
pub const IMAGE_TIME: i64 = 1;

/// Directories of the image root besides `/frx`, with their modes. The
/// kernel and initramfs mount onto `/dev`, `/proc`, `/sys` and `/run`.
const ROOT_DIRS: &[(&str, u32)] = &[
    ("etc", 0o755),
    ("var", 0o755),
    ("tmp", 0o1777),
    ("run", 0o755),
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("root", 0o700),
    ("home", 0o755),
    ("mnt", 0o755),
    ("frx", 0o755),
    ("frx/store", 0o755),
    ("frx/var", 0o755),
    ("frx/var/db", 0o755),
    ("frx/var/db/fruix", 0o755),
    ("frx/var/db/fruix/manifests", 0o755),
];

/// What [`stage`] needs to know of the system.
pub struct StageInput<'a> {
    /// The store the items come from.
    pub root: &'a StoreRoot,
    /// The closure's items, the system item among them.
    pub items: &'a [ItemName],
    /// The system item.
    pub system: &'a ItemName,
    /// The runtime item (what `/usr` and its peers point into).
    pub runtime: &'a str,
    /// The boot mode.
    pub init: InitMode,
    /// The operating system.
    pub os: Os,
    /// Files and links beyond the store's, such as FreeBSD's `/boot`.
    pub extra: &'a [GenFile],
}

/// Stages the root tree in `dir` (empty).
pub fn stage(dir: &Path, input: &StageInput<'_>) -> Result<(), BuildError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e| BuildError::Io(p, e)
    };
    for (d, mode) in ROOT_DIRS {
        let p = dir.join(d);
        fs::create_dir_all(&p).map_err(io(&p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(io(&p))?;
    }
    // Hard links, one thread per item: the image costs no copy, and mke2fs
    // reads each file once.
    std::thread::scope(|s| {
        let jobs: Vec<_> = input
            .items
            .iter()
            .map(|item| {
                let src = input.root.item_path(item);
                let dst = dir.join("frx/store").join(item.as_str());
                s.spawn(move || link_tree(&src, &dst))
            })
            .collect();
        jobs.into_iter().try_for_each(|j| {
            j.join()
                .unwrap_or_else(|_| Err(BuildError::Internal("staging thread panicked".into())))
        })
    })?;
    for item in input.items {
        let m = input.root.manifest_path(item);
        let to = dir
            .join("frx/var/db/fruix/manifests")
            .join(format!("{item}.mtree"));
        fs::copy(&m, &to).map_err(io(&m))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o444)).map_err(io(&to))?;
    }

    let guest = GuestRoot::new(dir);
    let runtime = format!("/frx/store/{}", input.runtime);
    let system = format!("/frx/store/{}", input.system);
    for f in input.extra {
        f.write_into(dir)?;
    }
    match (input.os, input.init) {
        // `fruix-agent init` activates at boot; the initramfs only needs
        // the top-level links to find it. `/etc` stays empty. So does
        // FreeBSD's in rc mode: its accounts need FreeBSD's pwd_mkdb, so
        // the loader's init_script activates before /etc/rc.
        (_, InitMode::ShepherdPid1) | (Os::Freebsd, InitMode::RcShepherd) => {
            fruix_activation::top_level_links(&guest, &runtime).map_err(|e| {
                BuildError::Input(format!(
                    "image: top-level links: {}",
                    fruix_system::chain(&e)
                ))
            })?;
        }
        // The classic init reads /etc (inittab, rc scripts) before any rc
        // script can activate anything: the image carries the first
        // activation, and the boot's fruix-activate completes it (host
        // keys are made there, so that no two guests share them).
        (Os::Linux, InitMode::RcShepherd) => {
            // The guest's platform, not the build host's: a FreeBSD
            // build host writes a Linux image's /etc/passwd, not its
            // master.passwd.
            let platform = fruix_activation::platform::for_os(GuestOs::Linux);
            let ledger = fruix_activation::activate_with(
                &guest,
                &system,
                platform.as_ref(),
                ActivateOptions {
                    host_keys: false,
                    ..Default::default()
                },
            );
            if let Some(step) = ledger.steps.iter().find(|s| s.error.is_some()) {
                return Err(BuildError::Input(format!(
                    "image: activation step '{}' failed: {}",
                    step.step,
                    step.error.as_deref().unwrap_or("")
                )));
            }
            // /run is a tmpfs in the guest; what activation left there
            // (ledger, current-system link) is made again at boot.
            let run = dir.join("run");
            fruix_store::root::remove_tree(&run).map_err(io(&run))?;
            fs::create_dir(&run).map_err(io(&run))?;
            fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).map_err(io(&run))?;
        }
    }
    fix_times(dir, &dir.join("frx/store"))
}

/// Recreates the tree `src` at `dst`: directories with their modes and
/// times, files as hard links, symbolic links as they are.
fn link_tree(src: &Path, dst: &Path) -> Result<(), BuildError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e| BuildError::Io(p, e)
    };
    let meta = fs::symlink_metadata(src).map_err(io(src))?;
    fs::create_dir(dst).map_err(io(dst))?;
    for e in fs::read_dir(src).map_err(io(src))? {
        let e = e.map_err(io(src))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let ft = e.file_type().map_err(io(&from))?;
        if ft.is_dir() {
            link_tree(&from, &to)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(io(&from))?;
            std::os::unix::fs::symlink(&target, &to).map_err(io(&to))?;
            let m = fs::symlink_metadata(&from).map_err(io(&from))?;
            let t = FileTime::from_last_modification_time(&m);
            filetime::set_symlink_file_times(&to, t, t).map_err(io(&to))?;
        } else {
            fs::hard_link(&from, &to).map_err(io(&to))?;
        }
    }
    // Last, once its entries no longer change it.
    fs::set_permissions(dst, meta.permissions()).map_err(io(dst))?;
    let t = FileTime::from_last_modification_time(&meta);
    filetime::set_file_times(dst, t, t).map_err(io(dst))
}

/// Gives every entry outside the store (whose times imports have already
/// fixed) the image time, so that the tree's times do not depend on when
/// it was staged.
fn fix_times(dir: &Path, store: &Path) -> Result<(), BuildError> {
    let t = FileTime::from_unix_time(IMAGE_TIME, 0);
    let mut stack = vec![dir.to_owned()];
    let mut dirs = Vec::new();
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(|e| BuildError::Io(d.clone(), e))? {
            let e = e.map_err(|e| BuildError::Io(d.clone(), e))?;
            let p = e.path();
            let ft = e.file_type().map_err(|e| BuildError::Io(p.clone(), e))?;
            if ft.is_dir() {
                if p != store {
                    stack.push(p.clone());
                }
                dirs.push(p);
            } else {
                filetime::set_symlink_file_times(&p, t, t).map_err(|e| BuildError::Io(p, e))?;
            }
        }
    }
    dirs.push(dir.to_owned());
    for d in dirs {
        filetime::set_symlink_file_times(&d, t, t).map_err(|e| BuildError::Io(d, e))?;
    }
    Ok(())
}
