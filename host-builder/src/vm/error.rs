//! Why `fruix system vm` could not boot an image: each names the image or
//! the missing piece once.

use std::path::PathBuf;

use crate::tools::ToolError;

/// A failure on the host, before or while starting QEMU, or QEMU's own
/// failure (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The image file is not there.
    #[error("{}: no such image", .0.display())]
    NoImage(PathBuf),
    /// `sfdisk --json` printed something that is not its JSON.
    #[error("{}: sfdisk --json", .0.display())]
    Sfdisk(PathBuf, #[source] serde_json::Error),
    /// The image has no EFI system partition.
    #[error("{}: no EFI system partition (is it an image `fruix system image` wrote?)", .0.display())]
    NoEsp(PathBuf),
    /// Direct boot of an image without a Linux loader entry.
    #[error("{}: no Linux loader entry on its EFI system partition: direct boot is for Linux images, boot this one with --firmware uefi", .0.display())]
    NoLoaderEntry(PathBuf),
    /// The loader entry has no command line.
    #[error("{}: the loader entry has no options line", .0.display())]
    NoOptions(PathBuf),
    /// Direct boot of a qcow2 or VHD image.
    #[error("{}: direct boot reads the kernel from a raw image; use --firmware uefi for qcow2 and vhd", .0.display())]
    DirectNeedsRaw(PathBuf),
    /// `--append` without direct boot.
    #[error(
        "--append needs --firmware direct: under UEFI the loader entry on the image gives the command line"
    )]
    AppendNeedsDirect,
    /// A piece of OVMF is missing.
    #[error("no OVMF {0} (install the ovmf package)")]
    NoOvmf(&'static str),
    /// No `qemu-system-x86_64` in `PATH`.
    #[error("cannot run qemu-system-x86_64: not found in PATH (scripts/setup installs it)")]
    NoQemu,
    /// QEMU could not be started.
    #[error("cannot run qemu-system-x86_64: {0} (scripts/setup installs it)")]
    Qemu(std::io::Error),
    /// `--accel kvm` where KVM cannot run a guest.
    #[error("--accel kvm: KVM cannot run a guest here: {0}")]
    KvmRefused(String),
    /// QEMU exited with an error before the guest reported: it could not
    /// start the machine.
    #[error("QEMU failed ({status}): {why} (log: {})", log.display())]
    QemuFailed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its last line on stderr.
        why: String,
        /// Its log.
        log: PathBuf,
    },
    /// An I/O error on a path.
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
    /// A tool (sfdisk, mtools) failed.
    #[error(transparent)]
    Tool(#[from] ToolError),
}
