//! Linux: the boot arguments are the kernel command line.

/// The boot arguments, as one string.
pub fn boot_args() -> Option<String> {
    std::fs::read_to_string("/proc/cmdline").ok()
}
