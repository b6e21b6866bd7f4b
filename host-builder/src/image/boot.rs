//! What a system boots from: the kernel command line, the ESP's content
//! and the root's extra files, per declared os (systemd-boot and a loader
//! entry for Linux; FreeBSD's loader and `/boot` through `freebsd.rs`).

use std::path::Path;

use fruix_store::ItemName;
use fruix_system::bootentry::{self, Entry, EntryName};

use super::esp::EspContent;
use super::freebsd;
use crate::declaration::{InitMode, Loaded, Os};
use crate::error::BuildError;
use crate::target::GenFile;

/// The kernel command line of the image's system, generation 1 (the
/// first boot's): the root by label, the serial console, and the system
/// item with its digest; in shepherd-pid1 mode the agent is `init`.
pub fn kernel_cmdline(system: &str, init: InitMode, agent: &str) -> String {
    let pid1 = (init == InitMode::ShepherdPid1).then_some(agent);
    bootentry::linux_cmdline(system, pid1, 1)
}

/// An ESP path as mtools names it.
fn on_esp(path: &str) -> String {
    format!("::/{path}")
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
    (system, agent): (&str, &str),
    kernel: (&ItemName, &Path),
    bootloader: (&ItemName, &Path),
) -> Result<BootPlan, BuildError> {
    let d = &loaded.decl;
    match *d.os.get_ref() {
        Os::Linux => {
            let cmdline = kernel_cmdline(system, d.init, agent);
            let (vmlinuz, initrd) = bootentry::kernel_files(kernel.1).map_err(BuildError::Input)?;
            let efi = bootloader
                .1
                .join("usr/lib/systemd/boot/efi/systemd-bootx64.efi");
            if !efi.is_file() {
                return Err(BuildError::Input(format!(
                    "{}: the boot-loader item has no systemd-boot (install systemd-boot-efi in its source)",
                    efi.display()
                )));
            }
            // Generation 1's entry, blessed: a first boot has nothing to
            // fall back to. Later generations' entries are the agent's.
            let kernel_item = kernel.0.to_string();
            let entry = Entry::new(d.host_name.get_ref(), 1, &kernel_item, cmdline.clone());
            Ok(BootPlan {
                esp: EspContent {
                    dirs: [
                        "EFI",
                        "EFI/BOOT",
                        bootentry::KERNELS_DIR,
                        "loader",
                        bootentry::ENTRIES_DIR,
                    ]
                    .iter()
                    .map(|d| on_esp(d))
                    .collect(),
                    files: vec![
                        (efi, on_esp("EFI/BOOT/BOOTX64.EFI")),
                        (
                            vmlinuz,
                            on_esp(&bootentry::kernel_path(
                                &kernel_item,
                                bootentry::KERNEL_FILE,
                            )),
                        ),
                        (
                            initrd,
                            on_esp(&bootentry::kernel_path(
                                &kernel_item,
                                bootentry::INITRD_FILE,
                            )),
                        ),
                    ],
                    texts: vec![
                        (on_esp("loader/loader.conf"), bootentry::LOADER_CONF.into()),
                        (on_esp(&EntryName::blessed(1).path()), entry.to_text()),
                    ],
                },
                extra: Vec::new(),
                root_type: "linux",
                cmdline,
            })
        }
        Os::Freebsd => {
            let conf = freebsd::loader_conf(system, d.init, agent);
            let cmdline = freebsd::boot_words(&conf);
            let boot = freebsd::boot(kernel, bootloader, conf)?;
            Ok(BootPlan {
                esp: EspContent {
                    dirs: vec![on_esp("EFI"), on_esp("EFI/BOOT")],
                    files: vec![(boot.loader_efi, on_esp("EFI/BOOT/BOOTX64.EFI"))],
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
    fn cmdline_names_the_system_generation_one_and_init_only_in_pid1_mode() {
        let pid1 = kernel_cmdline(
            "abc-system-x",
            InitMode::ShepherdPid1,
            "def-fruix-agent-0.1.0",
        );
        assert!(
            pid1.contains(
                "fruix.system=/frx/store/abc-system-x fruix.digest=abc fruix.generation=1"
            )
        );
        assert!(pid1.ends_with("init=/frx/store/def-fruix-agent-0.1.0/bin/fruix-agent"));
        let rc = kernel_cmdline("abc-system-x", InitMode::RcShepherd, "def");
        assert!(!rc.contains("init="));
        assert!(rc.contains("root=LABEL=fruix-root"));
    }
}
