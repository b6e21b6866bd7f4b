//! FreeBSD: the boot arguments are the loader's environment (kenv), which
//! carries `fruix.system` and `fruix.digest` from loader.conf. Each is read
//! by itself with `kenv -q KEY`, never from kenv's listing of every
//! variable, so that no value can pass for another key.

use std::process::Command;

/// The value of boot argument `key`: `kenv -q KEY`'s output, whole.
pub fn boot_arg(key: &str) -> Option<String> {
    let out = Command::new("/bin/kenv").arg("-q").arg(key).output().ok()?;
    super::kenv_value(out.status.success(), &out.stdout)
}

use std::path::Path;

use nix::mount::{MntFlags, Nmount};

use super::EarlyMount;

/// devfs is mounted by the kernel; the others as FreeBSD's rc would.
pub const EARLY_MOUNTS: &[EarlyMount] = &[
    EarlyMount {
        target: "/dev",
        fstype: "devfs",
        options: "",
        mode: 0o555,
    },
    EarlyMount {
        target: "/dev/fd",
        fstype: "fdescfs",
        options: "",
        mode: 0o555,
    },
    EarlyMount {
        target: "/proc",
        fstype: "procfs",
        options: "",
        mode: 0o555,
    },
    EarlyMount {
        target: "/tmp",
        fstype: "tmpfs",
        options: "",
        mode: 0o1777,
    },
];

/// Mounts `m` on `path` with nmount(2).
pub fn mount_fs(m: &EarlyMount, path: &Path) -> std::io::Result<()> {
    let mut n = Nmount::new();
    n.str_opt_owned("fstype", m.fstype)
        .str_opt_owned("fspath", path);
    n.nmount(MntFlags::empty())
        .map_err(|e| std::io::Error::from(e.error()))
}

/// The effective uid of the process that connected the Unix socket `fd`
/// (`getpeereid`: recorded by the kernel at `connect`).
pub fn peer_uid(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let (mut uid, mut gid): (libc::uid_t, libc::gid_t) = (0, 0);
    // SAFETY: `uid` and `gid` are live locals the call writes; `fd` is
    // borrowed, so it is open.
    let r = unsafe { libc::getpeereid(fd.as_raw_fd(), &mut uid, &mut gid) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(uid)
}

/// How a switch restarts the agent's daemon in rc-shepherd mode: its rc.d
/// script, which the new system's `/etc` now holds.
pub const RC_AGENT_RESTART: &[&str] = &["/etc/rc.d/fruix_agent", "restart"];
