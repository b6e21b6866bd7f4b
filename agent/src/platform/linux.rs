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

/// Where this platform keeps boot entries: systemd-boot entries on the ESP.
pub const BOOT_ENTRIES: super::BootEntries = super::BootEntries::Esp;

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

/// The watchdog device the kernel makes for the first driver.
const WATCHDOG_DEVICE: &str = "/dev/watchdog0";

/// `WDIOC_GETSUPPORT`: `_IOR('W', 0, struct watchdog_info)` (40 bytes).
const WDIOC_GETSUPPORT: u64 = 0x8028_5700;
/// `WDIOC_SETTIMEOUT`: `_IOWR('W', 6, int)`.
const WDIOC_SETTIMEOUT: u64 = 0xc004_5706;

/// `struct watchdog_info` of `linux/watchdog.h`.
#[repr(C)]
struct WatchdogInfo {
    options: u32,
    firmware_version: u32,
    identity: [u8; 32],
}

/// Arms a watchdog that resets the machine in `secs` seconds unless
/// [`watchdog_disarm`] comes first. Without a watchdog device, its driver
/// is loaded from the kernel item's modules (`modules` is its `usr`, for
/// `modprobe -d`): QEMU's `i6300esb` when the machine has that PCI device
/// (a hardware timer: it also resets a hung kernel), else the kernel's
/// `softdog` (a kernel timer: it resets a machine whose user space hangs,
/// not one whose kernel does). A device that cannot be stopped again
/// (`nowayout`) is refused: it would reset a boot that is ready.
pub fn watchdog_arm(secs: u64, modules: Option<&Path>) -> std::io::Result<super::Watchdog> {
    use std::io::{Error, ErrorKind};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let dev = Path::new(WATCHDOG_DEVICE);
    if !dev.exists() {
        let modules = modules.ok_or_else(|| {
            Error::other("no watchdog device, and no kernel modules to load a driver from")
        })?;
        // The hardware timer first when the machine has one; softdog
        // when it has not, or its driver will not load.
        let drivers: &[&str] = if pci_device_present(0x8086, 0x25ab) {
            &["i6300esb", "softdog"]
        } else {
            &["softdog"]
        };
        let mut failed = Vec::new();
        for driver in drivers {
            let out = std::process::Command::new("/usr/sbin/modprobe")
                .arg("-d")
                .arg(modules)
                .arg(driver)
                .output()?;
            if out.status.success() {
                failed.clear();
                break;
            }
            failed.push(format!(
                "modprobe -d {} {driver}: {}",
                modules.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        if !failed.is_empty() {
            return Err(Error::other(failed.join("; ")));
        }
        // devtmpfs makes the node right after the driver registers.
        for _ in 0..40 {
            if dev.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let sysfs = "/sys/class/watchdog/watchdog0/nowayout";
    if std::fs::read_to_string(sysfs).is_ok_and(|v| v.trim() == "1") {
        return Err(Error::other(format!(
            "{WATCHDOG_DEVICE} cannot be stopped once started (nowayout)"
        )));
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dev)?;
    if !file.metadata()?.file_type().is_char_device() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{WATCHDOG_DEVICE} is not a character device"),
        ));
    }
    let mut info = WatchdogInfo {
        options: 0,
        firmware_version: 0,
        identity: [0; 32],
    };
    // SAFETY: `info` is a live `struct watchdog_info` of the size the
    // request encodes; the kernel writes at most that.
    let name =
        if unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_GETSUPPORT as _, &raw mut info) } == 0 {
            let end = info.identity.iter().position(|b| *b == 0).unwrap_or(32);
            String::from_utf8_lossy(&info.identity[..end]).into_owned()
        } else {
            "watchdog".to_owned()
        };
    let mut t = libc::c_int::try_from(secs.max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: `t` is a live int, as the request encodes; the kernel reads
    // it and writes the timeout it took back.
    if unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT as _, &raw mut t) } != 0 {
        let e = Error::last_os_error();
        // Opening started it: stop it again before saying no.
        let _ = watchdog_disarm(super::Watchdog {
            file,
            name: name.clone(),
            timeout: 0,
        });
        return Err(Error::new(
            e.kind(),
            format!("{name}: cannot set a timeout of {secs} s: {e}"),
        ));
    }
    Ok(super::Watchdog {
        file,
        name,
        timeout: u64::try_from(t).unwrap_or(0),
    })
}

/// Stops the watchdog: the magic close (`V`, then close).
pub fn watchdog_disarm(w: super::Watchdog) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = w.file;
    f.write_all(b"V")?;
    drop(f);
    Ok(())
}

/// Whether a PCI device with these ids is present.
fn pci_device_present(vendor: u16, device: u16) -> bool {
    let id = |p: &Path, f: &str| {
        std::fs::read_to_string(p.join(f))
            .ok()
            .and_then(|s| u16::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
    };
    std::fs::read_dir("/sys/bus/pci/devices").is_ok_and(|d| {
        d.flatten().any(|e| {
            let p = e.path();
            id(&p, "vendor") == Some(vendor) && id(&p, "device") == Some(device)
        })
    })
}

/// Writes `line` to the kernel's log at level `crit`, which the console
/// shows even on a `quiet` boot line.
pub fn kernel_log(line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = f.write_all(format!("<2>{line}\n").as_bytes());
    }
}
