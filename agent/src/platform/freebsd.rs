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

/// The disk holding the root's ESP: FreeBSD's boot entries are not
/// loader entries on the ESP (docs/boot.md), so none.
pub fn root_disk() -> Option<std::path::PathBuf> {
    None
}

/// Where this platform keeps boot entries: the loader's `loader.conf.local` and `nextboot.conf` (nextboot(8)).
pub const BOOT_ENTRIES: super::BootEntries = super::BootEntries::Nextboot;

/// How rc mode reboots: rc.shutdown first, then the reboot.
pub const RC_REBOOT: &[&str] = &["/sbin/shutdown", "-r", "now"];

/// This boot's id: the kernel's boot time, new at every boot.
pub fn boot_id() -> Option<String> {
    let out = Command::new("/sbin/sysctl")
        .args(["-n", "kern.boottime"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Reboots at once (the caller synced): reboot(2) with `RB_AUTOBOOT`,
/// which is 0 on FreeBSD (sys/reboot.h; libc names no constant for it).
/// Returns only on failure.
pub fn hard_reboot() -> std::io::Error {
    // SAFETY: reboot(2) takes no pointers; it reboots or fails (without
    // privilege), which errno says.
    let rc = unsafe { libc::reboot(0) };
    if rc == 0 {
        std::io::Error::other("reboot returned")
    } else {
        std::io::Error::last_os_error()
    }
}

/// watchdog(4)'s device.
const WATCHDOG_DEVICE: &str = "/dev/fido";

/// `WDIOCPATPAT`: `_IOW('W', 42, u_int)`.
const WDIOCPATPAT: u64 = 0x8004_572a;
/// `WD_ACTIVE` of `sys/watchdog.h`: arm (the low byte is the timeout as a
/// power of two of nanoseconds).
const WD_ACTIVE: u32 = 0x0800_0000;
/// `WD_TO_NEVER`: disarm.
const WD_TO_NEVER: u32 = 0;

/// Arms watchdog(4) to reset the machine in `secs` seconds (rounded up to
/// the next power of two of nanoseconds, as the interface counts) unless
/// [`watchdog_disarm`] comes first: a hardware driver's timer (`ichwd`,
/// ...) or the kernel's `SW_WATCHDOG`. `modules` is unused: FreeBSD's
/// drivers are in the kernel or loaded by loader.conf.
pub fn watchdog_arm(secs: u64, _modules: Option<&Path>) -> std::io::Result<super::Watchdog> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(WATCHDOG_DEVICE)?;
    let ns = secs.max(1).saturating_mul(1_000_000_000);
    let power = 64 - (ns - 1).leading_zeros();
    let mut t: libc::c_uint = WD_ACTIVE | power;
    // SAFETY: `t` is a live u_int, as the request encodes; the kernel
    // reads it.
    if unsafe { libc::ioctl(file.as_raw_fd(), WDIOCPATPAT as _, &raw mut t) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(super::Watchdog {
        file,
        name: "watchdog(4)".to_owned(),
        timeout: (1u64 << power) / 1_000_000_000,
    })
}

/// Stops the watchdog: a pat with `WD_TO_NEVER`.
pub fn watchdog_disarm(w: super::Watchdog) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut t: libc::c_uint = WD_TO_NEVER;
    // SAFETY: as in `watchdog_arm`.
    if unsafe { libc::ioctl(w.file.as_raw_fd(), WDIOCPATPAT as _, &raw mut t) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `line` on the console (FreeBSD has no writable kernel log).
pub fn kernel_log(line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}
