//! What the agent reads or does differently per operating system, behind
//! one small interface, chosen here and nowhere else. To add a platform,
//! add `platform/NAME.rs` with the same functions and a `cfg` line below.

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "freebsd")]
pub use freebsd::*;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

/// A pseudo file system the guest needs before anything runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EarlyMount {
    /// Where (a guest path).
    pub target: &'static str,
    /// The file-system type.
    pub fstype: &'static str,
    /// Mount options (`key=value,...`), empty for none.
    pub options: &'static str,
    /// Mode of the mount point when it has to be made.
    pub mode: u32,
}

/// Where a platform keeps the boot entries of its generations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootEntries {
    /// systemd-boot's entries on the ESP, counted (`bootentries`).
    Esp,
    /// FreeBSD's loader: `loader.conf.local` and a `nextboot.conf` tried
    /// once (`nextboot`).
    Nextboot,
}

/// An armed watchdog: the open device (closing it does not stop it) and
/// what it is.
#[derive(Debug)]
pub struct Watchdog {
    /// The open device.
    pub file: std::fs::File,
    /// The driver, as the kernel names it (`Software Watchdog`, `i6300ESB
    /// timer`).
    pub name: String,
    /// Seconds until it resets the machine, as the driver took them.
    pub timeout: u64,
}

/// The boot argument naming the system item to activate.
pub const SYSTEM_KEY: &str = "fruix.system";
/// The boot argument carrying the system item's digest.
pub const DIGEST_KEY: &str = "fruix.digest";

/// The value of `key=value` on a Linux kernel command line. The last one
/// wins, as for the kernel's own parameters, so that a value appended by a
/// boot loader or `fruix system vm --append` overrides.
pub fn cmdline_arg(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .rev()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}

/// The value `kenv -q KEY` printed: the whole of its output but the one
/// newline kenv ends it with, spaces and all (a value is never split into
/// words, so it cannot pass for another key). None when kenv failed (the
/// key is not set) or printed nothing or no UTF-8.
pub fn kenv_value(succeeded: bool, stdout: &[u8]) -> Option<String> {
    if !succeeded {
        return None;
    }
    let text = std::str::from_utf8(stdout).ok()?;
    let value = text.strip_suffix('\n').unwrap_or(text);
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_system_on_the_boot_line() {
        let line = "root=/dev/vda2 rw console=ttyS0 fruix.system=/frx/store/abc-system-x fruix.digest=abc quiet";
        assert_eq!(
            cmdline_arg(line, SYSTEM_KEY).as_deref(),
            Some("/frx/store/abc-system-x")
        );
        assert_eq!(cmdline_arg(line, DIGEST_KEY).as_deref(), Some("abc"));
        assert_eq!(cmdline_arg(line, "nope"), None);
        let twice = format!("{line} fruix.digest=def");
        assert_eq!(cmdline_arg(&twice, DIGEST_KEY).as_deref(), Some("def"));
    }

    #[test]
    fn a_kenv_value_is_taken_whole() {
        // A value with a space that looks like another key stays one value.
        let out = b"/frx/store/abc-system-x fruix.digest=forged\n";
        assert_eq!(
            kenv_value(true, out).as_deref(),
            Some("/frx/store/abc-system-x fruix.digest=forged")
        );
        // Only the one trailing newline goes; quotes are the value's own.
        assert_eq!(kenv_value(true, b" a\"b\" \n").as_deref(), Some(" a\"b\" "));
        assert_eq!(kenv_value(true, b"x\n\n").as_deref(), Some("x\n"));
        assert_eq!(kenv_value(true, b"x").as_deref(), Some("x"));
        // Not set: kenv -q fails and prints nothing.
        assert_eq!(kenv_value(false, b""), None);
        assert_eq!(kenv_value(true, b"\n"), None);
        assert_eq!(kenv_value(true, b"\xff\n"), None);
    }
}
