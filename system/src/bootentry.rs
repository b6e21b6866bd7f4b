//! The boot entries of a UEFI image: one systemd-boot loader entry per
//! generation on the ESP (`loader/entries/fruix-G[+L[-D]].conf`, the Boot
//! Loader Specification's names with a try counter), the kernel and
//! initrd of each kernel item once (`EFI/fruix/KERNEL-ITEM/`), and the
//! kernel command line. The image builder writes the first entry, the
//! agent the later ones and their renames (blessing, marking bad), and
//! `fruix system vm --firmware direct` reads the default one: all with
//! this module.
//!
//! Names are generation-numbered so that systemd-boot's own order (entries
//! with no tries left last, then by falling version of their id) puts the
//! newest generation first and falls back to the one before it;
//! `loader.conf` names no `default`, which would pin an entry even when it
//! is bad (systemd#31215, `shared/facts/systemd-boot-counting.md`).

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// The root file system's label, on the kernel command line and in fstab.
pub const ROOT_LABEL: &str = "fruix-root";

/// The ESP's directory of loader entries.
pub const ENTRIES_DIR: &str = "loader/entries";

/// The ESP's directory of kernels: `ITEM-vmlinuz` and `ITEM-initrd.img`
/// for each kernel item.
pub const KERNELS_DIR: &str = "EFI/fruix";

/// `loader/loader.conf`: no menu, and no `default` (see the module doc).
pub const LOADER_CONF: &str = "timeout 0\n";

/// A loader entry's file name: its generation and try counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryName {
    /// The generation it boots.
    pub generation: u64,
    /// Tries left (`+L`); `None`: not counted (blessed, or never counted).
    pub tries_left: Option<u32>,
    /// Tries done (`-D`), with a counter.
    pub tries_done: u32,
}

impl EntryName {
    /// A blessed (uncounted) entry of `generation`.
    pub fn blessed(generation: u64) -> EntryName {
        EntryName {
            generation,
            tries_left: None,
            tries_done: 0,
        }
    }

    /// A new entry of `generation` with `tries` tries.
    pub fn counted(generation: u64, tries: u32) -> EntryName {
        EntryName {
            generation,
            tries_left: Some(tries),
            tries_done: 0,
        }
    }

    /// Parses a file name of `loader/entries`; `None` for names that are
    /// not Fruix entries (other files are left alone).
    pub fn parse(file: &str) -> Option<EntryName> {
        let stem = file.strip_suffix(".conf")?.strip_prefix("fruix-")?;
        let (g, counter) = match stem.split_once('+') {
            Some((g, c)) => (g, Some(c)),
            None => (stem, None),
        };
        // Digits without a leading zero (systemd-boot's counter is a
        // plain number; a zero-padded one is somebody else's file).
        let number = |s: &str| -> Option<u64> {
            let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            (digits && (s == "0" || !s.starts_with('0')))
                .then(|| s.parse().ok())
                .flatten()
        };
        let generation = number(g).filter(|g| *g > 0)?;
        let (tries_left, tries_done) = match counter {
            None => (None, 0),
            Some(c) => {
                let (l, d) = match c.split_once('-') {
                    Some((l, d)) => (l, number(d)?),
                    None => (c, 0),
                };
                (Some(u32::try_from(number(l)?).ok()?), d)
            }
        };
        Some(EntryName {
            generation,
            tries_left,
            tries_done: u32::try_from(tries_done).ok()?,
        })
    }

    /// The entry's id, as systemd-boot names it (the counter dropped).
    pub fn id(&self) -> String {
        format!("fruix-{}.conf", self.generation)
    }

    /// Known bad: counted, with no tries left.
    pub fn is_bad(&self) -> bool {
        self.tries_left == Some(0)
    }

    /// The same entry marked bad: no tries left, the done count kept.
    pub fn marked_bad(&self) -> EntryName {
        EntryName {
            tries_left: Some(0),
            ..*self
        }
    }

    /// The file's path on the ESP, from its root.
    pub fn path(&self) -> String {
        format!("{ENTRIES_DIR}/{self}")
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tries_left {
            None => write!(f, "fruix-{}.conf", self.generation),
            Some(l) if self.tries_done == 0 => write!(f, "fruix-{}+{l}.conf", self.generation),
            Some(l) => write!(f, "fruix-{}+{l}-{}.conf", self.generation, self.tries_done),
        }
    }
}

/// systemd-boot's order of our entries: those with no tries left last,
/// then the newest generation first (its ids compare as versions, so by
/// number), then more tries left first.
pub fn boot_order(a: &EntryName, b: &EntryName) -> Ordering {
    a.is_bad()
        .cmp(&b.is_bad())
        .then(b.generation.cmp(&a.generation))
        .then(b.tries_left.cmp(&a.tries_left))
}

/// The entry systemd-boot boots with no key pressed: the first in
/// [`boot_order`] (a bad one only when nothing else is left).
pub fn default_entry(entries: &[EntryName]) -> Option<EntryName> {
    entries.iter().min_by(|a, b| boot_order(a, b)).copied()
}

/// A loader entry's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The menu's title.
    pub title: String,
    /// The kernel, an ESP path with a leading `/`.
    pub linux: String,
    /// The initrd, likewise.
    pub initrd: String,
    /// The kernel command line.
    pub options: String,
}

impl Entry {
    /// The entry of generation `generation` of host `host`, booting the
    /// kernel item `kernel`'s files with `options`.
    pub fn new(host: &str, generation: u64, kernel: &str, options: String) -> Entry {
        Entry {
            title: format!("Fruix {host} (generation {generation})"),
            linux: format!("/{}", kernel_path(kernel, KERNEL_FILE)),
            initrd: format!("/{}", kernel_path(kernel, INITRD_FILE)),
            options,
        }
    }

    /// The file's bytes.
    pub fn to_text(&self) -> String {
        format!(
            "title {}\nlinux {}\ninitrd {}\noptions {}\n",
            self.title, self.linux, self.initrd, self.options
        )
    }

    /// Reads an entry's text (keys other than these four are ignored, as
    /// systemd-boot ignores keys it does not know); `None` without a
    /// `linux` line.
    pub fn parse(text: &str) -> Option<Entry> {
        let mut e = Entry {
            title: String::new(),
            linux: String::new(),
            initrd: String::new(),
            options: String::new(),
        };
        for line in text.lines() {
            let line = line.trim();
            let (k, v) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            let v = v.trim().to_owned();
            match k {
                "title" => e.title = v,
                "linux" => e.linux = v,
                "initrd" => e.initrd = v,
                "options" if v.is_empty() => {}
                "options" if e.options.is_empty() => e.options = v,
                "options" => {
                    e.options.push(' ');
                    e.options.push_str(&v);
                }
                _ => {}
            }
        }
        (!e.linux.is_empty()).then_some(e)
    }

    /// The kernel item this entry boots, when it is one of ours
    /// (`/EFI/fruix/ITEM-vmlinuz`).
    pub fn kernel_item(&self) -> Option<&str> {
        self.linux
            .strip_prefix('/')?
            .strip_prefix(KERNELS_DIR)?
            .strip_prefix('/')?
            .strip_suffix(&format!("-{KERNEL_FILE}"))
    }
}

/// The kernel's file name in a kernel item's ESP directory.
pub const KERNEL_FILE: &str = "vmlinuz";
/// The initrd's file name there.
pub const INITRD_FILE: &str = "initrd.img";

/// The file name in [`KERNELS_DIR`] of `file` of kernel item `kernel`.
pub fn kernel_file(kernel: &str, file: &str) -> String {
    format!("{kernel}-{file}")
}

/// The ESP path (from its root) of `file` of kernel item `kernel`.
pub fn kernel_path(kernel: &str, file: &str) -> String {
    format!("{KERNELS_DIR}/{}", kernel_file(kernel, file))
}

/// The kernel item a file of [`KERNELS_DIR`] belongs to.
pub fn kernel_of_file(name: &str) -> Option<&str> {
    name.strip_suffix(&format!("-{KERNEL_FILE}"))
        .or_else(|| name.strip_suffix(&format!("-{INITRD_FILE}")))
}

/// The Linux kernel command line of a system: the root by label, the
/// serial console, the system item with its digest and the generation;
/// in shepherd-pid1 mode the agent is `init`.
pub fn linux_cmdline(system: &str, pid1_agent: Option<&str>, generation: u64) -> String {
    let digest = system.split('-').next().unwrap_or_default();
    let mut s = format!(
        "root=LABEL={ROOT_LABEL} rw console=ttyS0 net.ifnames=0 panic=-1 \
         fruix.system=/frx/store/{system} fruix.digest={digest} fruix.generation={generation}"
    );
    if let Some(agent) = pid1_agent {
        s.push_str(&format!(" init=/frx/store/{agent}/bin/fruix-agent"));
    }
    s
}

/// The kernel and initrd of a kernel item: the newest `boot/vmlinuz-*`
/// with a `boot/initrd.img-*` of the same version.
pub fn kernel_files(item: &Path) -> Result<(PathBuf, PathBuf), String> {
    let boot = item.join("boot");
    let names: BTreeSet<String> = fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let version = names
        .iter()
        .rev()
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .find(|v| names.contains(&format!("initrd.img-{v}")))
        .ok_or_else(|| {
            format!(
                "{}: the kernel item has no boot/vmlinuz-VERSION with a boot/initrd.img-VERSION",
                item.display()
            )
        })?;
    Ok((
        boot.join(format!("vmlinuz-{version}")),
        boot.join(format!("initrd.img-{version}")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_not_ours() {
        for (s, g, l, d) in [
            ("fruix-1.conf", 1, None, 0),
            ("fruix-12+3.conf", 12, Some(3), 0),
            ("fruix-2+0-3.conf", 2, Some(0), 3),
            ("fruix-2+1-2.conf", 2, Some(1), 2),
        ] {
            let n = EntryName::parse(s).unwrap();
            assert_eq!(
                n,
                EntryName {
                    generation: g,
                    tries_left: l,
                    tries_done: d
                }
            );
            assert_eq!(n.to_string(), s);
            assert_eq!(n.id(), format!("fruix-{g}.conf"));
        }
        for s in [
            "fruix.conf",
            "fruix-0.conf",
            "fruix-01.conf",
            "fruix-1+.conf",
            "fruix-1+a.conf",
            "fruix-1-2.conf",
            "fruix-1+1-.conf",
            "other-1.conf",
            "fruix-1.conf.tmp",
            "fruix-99999999999999999999.conf",
        ] {
            assert_eq!(EntryName::parse(s), None, "{s}");
        }
    }

    #[test]
    fn the_default_is_the_newest_with_tries_left_and_a_bad_one_only_when_alone() {
        let p = |s: &str| EntryName::parse(s).unwrap();
        let d = |v: &[&str]| default_entry(&v.iter().map(|s| p(s)).collect::<Vec<_>>());
        assert_eq!(
            d(&["fruix-1.conf", "fruix-2+2.conf"]),
            Some(p("fruix-2+2.conf"))
        );
        assert_eq!(
            d(&["fruix-1.conf", "fruix-2+0-3.conf"]),
            Some(p("fruix-1.conf"))
        );
        assert_eq!(
            d(&["fruix-9.conf", "fruix-10.conf"]),
            Some(p("fruix-10.conf"))
        );
        assert_eq!(d(&["fruix-2+0-1.conf"]), Some(p("fruix-2+0-1.conf")));
        assert_eq!(d(&[]), None);
        assert!(p("fruix-3+2-1.conf").marked_bad().is_bad());
        assert_eq!(
            p("fruix-3+2-1.conf").marked_bad().to_string(),
            "fruix-3+0-1.conf"
        );
    }

    #[test]
    fn entry_text_round_trips_and_names_its_kernel_item() {
        let e = Entry::new(
            "web",
            4,
            "abc-native-boot-trixie",
            linux_cmdline("d1-system-web", Some("a1-fruix-agent-0.1.0"), 4),
        );
        let t = e.to_text();
        assert_eq!(
            t,
            "title Fruix web (generation 4)\n\
             linux /EFI/fruix/abc-native-boot-trixie-vmlinuz\n\
             initrd /EFI/fruix/abc-native-boot-trixie-initrd.img\n\
             options root=LABEL=fruix-root rw console=ttyS0 net.ifnames=0 panic=-1 \
             fruix.system=/frx/store/d1-system-web fruix.digest=d1 fruix.generation=4 \
             init=/frx/store/a1-fruix-agent-0.1.0/bin/fruix-agent\n"
        );
        assert_eq!(Entry::parse(&t).unwrap(), e);
        assert_eq!(e.kernel_item(), Some("abc-native-boot-trixie"));
        assert_eq!(kernel_of_file("abc-k-initrd.img"), Some("abc-k"));
        assert_eq!(kernel_of_file("abc-k-vmlinuz"), Some("abc-k"));
        assert_eq!(kernel_of_file("other"), None);
        assert_eq!(Entry::parse("title x\n"), None);
        assert!(!linux_cmdline("d1-system-web", None, 1).contains("init="));
    }
}
