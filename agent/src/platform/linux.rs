//! Linux: the boot arguments are the kernel command line.

/// The value of boot argument `key`: `key=value` on the kernel command
/// line.
pub fn boot_arg(key: &str) -> Option<String> {
    super::cmdline_arg(&std::fs::read_to_string("/proc/cmdline").ok()?, key)
}

use std::path::Path;

use nix::mount::{MsFlags, mount};

use super::EarlyMount;

/// What the initramfs has usually moved onto the root already; mounted
/// here when it has not (a container, a kernel booted without initramfs).
pub const EARLY_MOUNTS: &[EarlyMount] = &[
    EarlyMount {
        target: "/proc",
        fstype: "proc",
        options: "",
        mode: 0o555,
    },
    EarlyMount {
        target: "/sys",
        fstype: "sysfs",
        options: "",
        mode: 0o555,
    },
    EarlyMount {
        target: "/dev",
        fstype: "devtmpfs",
        options: "mode=0755",
        mode: 0o755,
    },
    EarlyMount {
        target: "/dev/pts",
        fstype: "devpts",
        options: "gid=5,mode=620,ptmxmode=000",
        mode: 0o755,
    },
    EarlyMount {
        target: "/dev/shm",
        fstype: "tmpfs",
        options: "mode=1777",
        mode: 0o1777,
    },
    EarlyMount {
        target: "/run",
        fstype: "tmpfs",
        options: "mode=0755",
        mode: 0o755,
    },
];

/// Mounts `m` on `path`.
pub fn mount_fs(m: &EarlyMount, path: &Path) -> std::io::Result<()> {
    let data = (!m.options.is_empty()).then_some(m.options);
    mount(
        Some(m.fstype),
        path,
        Some(m.fstype),
        MsFlags::MS_NOSUID,
        data,
    )
    .map_err(std::io::Error::from)
}

/// The effective uid of the process that connected the Unix socket `fd`
/// (`SO_PEERCRED`: recorded by the kernel at `connect`).
pub fn peer_uid(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are live locals of the size passed; the
    // kernel writes at most `len` bytes; `fd` is borrowed, so it is open.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// How a switch restarts the agent's daemon in rc-shepherd mode: its LSB
/// script, which the new system's `/etc` now holds.
pub const RC_AGENT_RESTART: &[&str] = &["/etc/init.d/fruix-agent", "restart"];

/// The whole disk that holds the root file system, whose GPT has the ESP
/// with the boot entries: `/sys/dev/block/MAJ:MIN` of `/` names the
/// partition's directory, whose parent is the disk's. None when `/` is
/// not on a partition of a disk (a namespace boot, a tmpfs).
pub fn root_disk() -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let part = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    // A partition has a `partition` file; its parent directory is the disk.
    if !part.join("partition").is_file() {
        return None;
    }
    let disk = part.parent()?.file_name()?.to_str()?.to_owned();
    Some(std::path::PathBuf::from(format!("/dev/{disk}")))
}

/// Whether this platform keeps boot entries on the ESP (systemd-boot's
/// loader entries); FreeBSD's loader has its own means.
pub const ESP_BOOT_ENTRIES: bool = true;

/// How rc mode reboots: the classic init's own command, which stops the
/// rc services first.
pub const RC_REBOOT: &[&str] = &["/usr/sbin/reboot"];

/// This boot's id: a new one at every boot.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Reboots at once (the caller synced): reboot(2) with `RB_AUTOBOOT`.
/// Returns only on failure.
pub fn hard_reboot() -> std::io::Error {
    // SAFETY: reboot(2) takes no pointers; it reboots or fails (without
    // privilege), which errno says.
    let rc = unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    if rc == 0 {
        std::io::Error::other("reboot returned")
    } else {
        std::io::Error::last_os_error()
    }
}
