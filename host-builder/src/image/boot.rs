//! What a system boots from: the kernel command line, the ESP's content
//! and the root's extra files, per declared os (systemd-boot and a loader
//! entry for Linux; FreeBSD's loader and `/boot` through `freebsd.rs`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use fruix_store::ItemName;

use super::esp::EspContent;
use super::freebsd;
use crate::declaration::{InitMode, Loaded, Os};
use crate::error::BuildError;
use crate::target::{GenFile, ROOT_LABEL};

/// The kernel command line: the root by label, the serial console, and
/// the system item with its digest; in shepherd-pid1 mode the agent is
/// `init`.
pub fn kernel_cmdline(system: &str, digest: &str, init: InitMode, agent: &str) -> String {
    let mut s = format!(
        "root=LABEL={ROOT_LABEL} rw console=ttyS0 net.ifnames=0 panic=-1 fruix.system=/frx/store/{system} fruix.digest={digest}"
    );
    if init == InitMode::ShepherdPid1 {
        s.push_str(&format!(" init=/frx/store/{agent}/bin/fruix-agent"));
    }
    s
}

/// Where the ESP keeps the kernel, the initrd and the loader entry.
pub mod esp_paths {
    /// The kernel.
    pub const KERNEL: &str = "::/EFI/fruix/vmlinuz";
    /// The initrd.
    pub const INITRD: &str = "::/EFI/fruix/initrd.img";
    /// The loader entry (systemd-boot's format).
    pub const ENTRY: &str = "::/loader/entries/fruix.conf";
}

/// The kernel and initrd of a kernel item: the newest `boot/vmlinuz-*`
/// and its `boot/initrd.img-*`.
fn kernel_files(item: &Path) -> Result<(PathBuf, PathBuf), BuildError> {
    let boot = item.join("boot");
    let names: BTreeSet<String> = fs::read_dir(&boot)
        .map_err(|e| BuildError::Io(boot.clone(), e))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let version = names
        .iter()
        .rev()
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .find(|v| names.contains(&format!("initrd.img-{v}")))
        .ok_or_else(|| {
            BuildError::Input(format!(
                "{}: the kernel item has no boot/vmlinuz-VERSION with a boot/initrd.img-VERSION",
                item.display()
            ))
        })?;
    Ok((
        boot.join(format!("vmlinuz-{version}")),
        boot.join(format!("initrd.img-{version}")),
    ))
}

/// What a system boots from: the ESP's content, the root's extra files,
/// the root partition's type, and the boot line the image reports.
pub(super) struct BootPlan {
    pub(super) esp: EspContent,
    pub(super) extra: Vec<GenFile>,
    pub(super) root_type: &'static str,
    pub(super) cmdline: String,
}

/// The boot plan of the declared system: systemd-boot with a loader
/// entry for Linux, FreeBSD's loader and `/boot` for FreeBSD.
pub(super) fn boot_plan(
    loaded: &Loaded,
    (system, digest, agent): (&str, &str, &str),
    kernel: (&ItemName, &Path),
    bootloader: (&ItemName, &Path),
) -> Result<BootPlan, BuildError> {
    let d = &loaded.decl;
    match *d.os.get_ref() {
        Os::Linux => {
            let cmdline = kernel_cmdline(system, digest, d.init, agent);
            let (kernel, initrd) = kernel_files(kernel.1)?;
            let efi = bootloader
                .1
                .join("usr/lib/systemd/boot/efi/systemd-bootx64.efi");
            if !efi.is_file() {
                return Err(BuildError::Input(format!(
                    "{}: the boot-loader item has no systemd-boot (install systemd-boot-efi in its source)",
                    efi.display()
                )));
            }
            let entry = format!(
                "title Fruix ({})\nlinux /EFI/fruix/vmlinuz\ninitrd /EFI/fruix/initrd.img\noptions {cmdline}\n",
                d.host_name.get_ref()
            );
            Ok(BootPlan {
                esp: EspContent {
                    dirs: &[
                        "::/EFI",
                        "::/EFI/BOOT",
                        "::/EFI/fruix",
                        "::/loader",
                        "::/loader/entries",
                    ],
                    files: vec![
                        (efi, "::/EFI/BOOT/BOOTX64.EFI"),
                        (kernel, esp_paths::KERNEL),
                        (initrd, esp_paths::INITRD),
                    ],
                    texts: vec![
                        (
                            "::/loader/loader.conf",
                            "default fruix.conf\ntimeout 0\n".into(),
                        ),
                        (esp_paths::ENTRY, entry),
                    ],
                },
                extra: Vec::new(),
                root_type: "linux",
                cmdline,
            })
        }
        Os::Freebsd => {
            let conf = freebsd::loader_conf(system, digest, d.init, agent);
            let cmdline = freebsd::boot_words(&conf);
            let boot = freebsd::boot(kernel, bootloader, conf)?;
            Ok(BootPlan {
                esp: EspContent {
                    dirs: &["::/EFI", "::/EFI/BOOT"],
                    files: vec![(boot.loader_efi, "::/EFI/BOOT/BOOTX64.EFI")],
                    texts: Vec::new(),
                },
                extra: boot.extra,
                root_type: freebsd::UFS_PARTITION_TYPE,
                cmdline,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_names_the_system_and_init_only_in_pid1_mode() {
        let pid1 = kernel_cmdline(
            "abc-system-x",
            "abc",
            InitMode::ShepherdPid1,
            "def-fruix-agent-0.1.0",
        );
        assert!(pid1.contains("fruix.system=/frx/store/abc-system-x fruix.digest=abc"));
        assert!(pid1.ends_with("init=/frx/store/def-fruix-agent-0.1.0/bin/fruix-agent"));
        let rc = kernel_cmdline("abc-system-x", "abc", InitMode::RcShepherd, "def");
        assert!(!rc.contains("init="));
        assert!(rc.contains("root=LABEL=fruix-root"));
    }
}
