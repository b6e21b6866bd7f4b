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

/// The value of `key=value` in a boot-argument string (the Linux kernel
/// command line, or FreeBSD's loader variables joined the same way). The
/// last one wins, as for the kernel's own parameters, so that a value
/// appended by a boot loader or `fruix system vm --append` overrides.
pub fn boot_arg(args: &str, key: &str) -> Option<String> {
    args.split_whitespace()
        .rev()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_system_on_the_boot_line() {
        let line = "root=/dev/vda2 rw console=ttyS0 fruix.system=/frx/store/abc-system-x fruix.digest=abc quiet";
        assert_eq!(
            boot_arg(line, "fruix.system").as_deref(),
            Some("/frx/store/abc-system-x")
        );
        assert_eq!(boot_arg(line, "fruix.digest").as_deref(), Some("abc"));
        assert_eq!(boot_arg(line, "nope"), None);
        let twice = format!("{line} fruix.digest=def");
        assert_eq!(boot_arg(&twice, "fruix.digest").as_deref(), Some("def"));
    }
}
