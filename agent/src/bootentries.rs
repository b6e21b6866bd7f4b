//! Boot entries per generation on the ESP, and boot assessment: the
//! agent's readiness blesses a tried entry.
//!
//! The ESP is kept a projection of the generations ([`sync`]): a loader
//! entry for each committed generation up to the current one and for the
//! one a `switch --boot` made, each new one counted
//! (`fruix-G+TRIES.conf`); the kernel and initrd of each kernel item those
//! entries use, once; nothing else of ours. Every step leaves a bootable
//! ESP, and a sync run again finishes what a killed one began.
//!
//! At boot ([`assess`]), once the first round has an outcome: `ready`
//! blesses the booted entry (renamed without its counter) and commits its
//! generation; `failed` marks a counted entry bad (`+0`) so that
//! systemd-boot falls back, and asks for a reboot when another entry is
//! left. An entry blessed before is never marked bad: it was good once,
//! and the report says what failed. A boot whose newer, counted entry
//! ran out of tries says so (`boot_fallback_from`, `boot_tries_failed`).

use std::fs::File;
use std::path::Path;

use fruix_activation::GuestRoot;
use fruix_system::Role;
use fruix_system::bootentry::{
    self, ENTRIES_DIR, Entry, EntryName, INITRD_FILE, KERNEL_FILE, KERNELS_DIR, LOADER_CONF,
};
use fruix_system::generations::GenState;
use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

use crate::esp::{Esp, EspError};
use crate::system::SystemView;

/// The lock every writer of the ESP holds (the switch, the daemon's
/// assessment, generation deletion).
pub const ESP_LOCK: &str = "/frx/var/fruix/esp.lock";

/// This boot's facts, written once per boot by the daemon.
pub const BOOT_FACTS: &str = "/run/fruix/boot.json";

/// What went wrong with the boot entries.
#[derive(Debug, Error)]
pub enum BootError {
    /// The ESP.
    #[error(transparent)]
    Esp(#[from] EspError),
    /// A generation's system could not be read.
    #[error("generation {generation}: {message}")]
    System {
        /// The generation.
        generation: u64,
        /// Why.
        message: String,
    },
    /// The generations.
    #[error(transparent)]
    Generations(#[from] crate::switch::SwitchError),
    /// The lock or the facts file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

pub use crate::bootfacts::BootFacts;

/// What the daemon does after [`assess`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing more.
    Stay,
    /// Reboot: the tried entry is marked bad and an older one is left.
    Reboot,
}

/// Whether the boot entries of `root` are ours to write: not in a root
/// that is not `/` (tests), nor on a machine whose boot line names no
/// Fruix system (a namespace boot on a build host: its disk is not ours).
pub fn running(root: &GuestRoot) -> bool {
    root.path("/") == Path::new("/")
        && crate::platform::boot_arg(crate::platform::SYSTEM_KEY).is_some()
}

/// The ESP of the running guest, when it has one of ours: None on a
/// platform whose loader has no entries on the ESP, when the entries are
/// not ours to write ([`running`]), or when the root is on no disk.
pub fn open_running(root: &GuestRoot) -> Result<Option<Esp>, EspError> {
    if crate::platform::BOOT_ENTRIES != crate::platform::BootEntries::Esp || !running(root) {
        return Ok(None);
    }
    match crate::platform::root_disk() {
        Some(disk) => match Esp::open(&disk) {
            Ok(e) => Ok(Some(e)),
            Err(EspError::NoEsp(_)) => Ok(None),
            Err(e) => Err(e),
        },
        None => Ok(None),
    }
}

/// Takes the ESP lock, waiting for another writer.
pub fn lock(root: &GuestRoot) -> Result<Flock<File>, BootError> {
    let p = root.path(ESP_LOCK);
    let io = |source: std::io::Error| BootError::Io {
        path: p.display().to_string(),
        source,
    };
    let f = crate::switch::state::open_lock_file(root, ESP_LOCK).map_err(io)?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io(e.into()))
}

/// The entries of ours on the ESP.
pub fn entries(esp: &Esp) -> Result<Vec<EntryName>, EspError> {
    Ok(esp
        .list(ENTRIES_DIR)?
        .iter()
        .filter_map(|n| EntryName::parse(n))
        .collect())
}

/// The entry of generation `g`, if there is one.
fn entry_of(names: &[EntryName], g: u64) -> Option<EntryName> {
    names.iter().find(|n| n.generation == g).copied()
}

/// This boot's facts from the ESP's entries and the booted generation.
/// A counted entry is this boot's trial even with no tries left:
/// systemd-boot counts the last try down to `+0` before it boots it. It
/// is `bad` only when `failed_before` (its record says `boot-failed`: the
/// agent marked it, and systemd-boot booted it for want of another).
pub fn facts(names: &[EntryName], booted: Option<u64>, failed_before: bool) -> BootFacts {
    let entry = match booted.and_then(|g| entry_of(names, g)) {
        None => "none",
        Some(n) if n.is_bad() && failed_before => "bad",
        Some(n) if n.tries_left.is_some() => "trying",
        Some(_) => "blessed",
    };
    let fallback = names
        .iter()
        .filter(|n| n.is_bad() && booted.is_some_and(|b| n.generation > b))
        .max_by_key(|n| n.generation);
    BootFacts {
        generation: booted,
        entry: entry.into(),
        fallback_from: fallback.map(|n| n.generation),
        tries_failed: fallback.map_or(0, |n| n.tries_done),
        error: None,
    }
}

/// Makes generation `n` the next boot's trial afresh (`switch --boot` of
/// a generation whose entry ran out of tries or was marked bad): that
/// entry goes, so that the sync after writes it counted again. Returns
/// what it removed. The caller holds [`lock`].
pub fn restage(esp: &Esp, n: u64) -> Result<Option<String>, EspError> {
    match entry_of(&entries(esp)?, n) {
        Some(e) if e.is_bad() => {
            esp.remove_all(&e.path())?;
            Ok(Some(format!("removed boot entry {e} (tried again)")))
        }
        _ => Ok(None),
    }
}

/// Brings the ESP in line with the generations (see the module doc);
/// `booted` keeps the running boot's entry; a new entry gets the tries
/// its system declares. Returns what it changed, a line each. The caller
/// holds [`lock`].
pub fn sync(root: &GuestRoot, esp: &Esp, booted: Option<u64>) -> Result<Vec<String>, BootError> {
    let mut changes = Vec::new();
    for dir in [ENTRIES_DIR, KERNELS_DIR, "loader"] {
        for p in esp.sweep(dir)? {
            changes.push(format!("removed {p} (left by an interrupted write)"));
        }
    }
    let gens = crate::generations::list(root, None)?;
    let current = gens.iter().find(|g| g.current).map(|g| g.number);
    let at_most_current = |n: u64| current.is_some_and(|c| n <= c);
    // The booted generation only while it is not newer than the current
    // one: after a live rollback the next boot must start the current.
    let wanted: Vec<_> = gens
        .iter()
        .filter(|g| {
            g.state == GenState::BootPending
                || ((g.state == GenState::Committed || Some(g.number) == booted)
                    && at_most_current(g.number))
        })
        .collect();
    // What stays of the entries there: those of wanted generations that
    // boot their generation's system (a number used again after a
    // deletion must not keep the old system's entry).
    let mut kept = Vec::new();
    let mut kernels_used = Vec::new();
    for n in entries(esp)? {
        let text = String::from_utf8_lossy(&esp.read(&n.path())?).into_owned();
        let entry = Entry::parse(&text);
        let system = entry.as_ref().and_then(|e| {
            e.options
                .split_whitespace()
                .find_map(|w| w.strip_prefix("fruix.system="))
                .map(str::to_owned)
        });
        let keep = wanted
            .iter()
            .any(|g| g.number == n.generation && system.as_deref() == Some(g.system.as_str()));
        if keep {
            if let Some(k) = entry.as_ref().and_then(Entry::kernel_item) {
                kernels_used.push(k.to_owned());
            }
            kept.push(n);
        } else {
            // Removals first: the ESP's room goes to what is wanted, and
            // the wanted entries that stay keep it bootable.
            esp.remove_all(&n.path())?;
            changes.push(format!("removed boot entry {n}"));
        }
    }
    // The entries to write, with their kernels.
    let mut new = Vec::new();
    for g in wanted
        .iter()
        .filter(|g| !kept.iter().any(|n| n.generation == g.number))
    {
        let err = |message: String| BootError::System {
            generation: g.number,
            message,
        };
        let view = SystemView::load(root, &g.system).map_err(|e| err(e.to_string()))?;
        let kernel = view
            .closure
            .iter()
            .find(|c| c.roles.contains(&Role::Kernel))
            .map(|c| c.item.to_string())
            .ok_or_else(|| err("its closure has no kernel".into()))?;
        kernels_used.push(kernel.clone());
        new.push((g.number, view, kernel));
    }
    for f in esp.list(KERNELS_DIR)? {
        if bootentry::kernel_of_file(&f).is_some_and(|k| !kernels_used.iter().any(|u| u == k)) {
            esp.remove_all(&format!("{KERNELS_DIR}/{f}"))?;
            changes.push(format!("removed {KERNELS_DIR}/{f} from the ESP"));
        }
    }
    for (g, view, kernel) in &new {
        let err = |message: String| BootError::System {
            generation: *g,
            message,
        };
        if !esp.exists(&bootentry::kernel_path(kernel, INITRD_FILE)) {
            let (vmlinuz, initrd) =
                bootentry::kernel_files(&root.path(&format!("/frx/store/{kernel}")))
                    .map_err(err)?;
            let read =
                |p: &Path| std::fs::read(p).map_err(|e| err(format!("{}: {e}", p.display())));
            let (k, i) = (read(&vmlinuz)?, read(&initrd)?);
            // Both or neither: room for the pair is checked first.
            let need = (k.len() + i.len()) as u64 + 128 * 1024;
            let free = esp.free()?;
            if need > free {
                return Err(EspError::Full {
                    path: bootentry::kernel_path(kernel, "{vmlinuz,initrd.img}"),
                    need,
                    free,
                }
                .into());
            }
            esp.write_new(
                KERNELS_DIR,
                &bootentry::kernel_file(kernel, KERNEL_FILE),
                &k,
            )?;
            esp.write_new(
                KERNELS_DIR,
                &bootentry::kernel_file(kernel, INITRD_FILE),
                &i,
            )?;
            changes.push(format!("copied kernel {kernel} to the ESP"));
        }
        let pid1 = (view.config.boot_mode == "shepherd-pid1").then_some(view.config.agent.as_str());
        let options = bootentry::linux_cmdline(&view.item.to_string(), pid1, *g);
        let entry = Entry::new(&view.config.host_name, *g, kernel, options);
        let name = EntryName::counted(*g, view.config.boot.tries.max(1));
        esp.write_new(ENTRIES_DIR, &name.to_string(), entry.to_text().as_bytes())?;
        changes.push(format!("wrote boot entry {name}"));
    }
    if esp.read("loader/loader.conf").ok().as_deref() != Some(LOADER_CONF.as_bytes()) {
        esp.write_new("loader", "loader.conf", LOADER_CONF.as_bytes())?;
        changes.push("wrote loader/loader.conf (no default: the newest good entry boots)".into());
    }
    Ok(changes)
}

/// Boot assessment once this boot's first round is final: `ready` blesses
/// the booted entry, `failed` marks a counted one bad (see the module
/// doc). Returns what it changed and whether to reboot.
pub fn assess(
    root: &GuestRoot,
    esp: &Esp,
    facts: &BootFacts,
    ready: bool,
    reboot_on_failure: bool,
) -> Result<(Vec<String>, Verdict), BootError> {
    let mut changes = Vec::new();
    let Some(g) = facts.generation else {
        return Ok((changes, Verdict::Stay));
    };
    let names = entries(esp)?;
    let mut verdict = Verdict::Stay;
    // The booted entry first: nothing that fails below may keep a ready
    // boot from being blessed.
    match entry_of(&names, g) {
        Some(n) if ready && n.tries_left.is_some() => {
            let blessed = EntryName::blessed(g);
            esp.rename(&n.path(), &blessed.path())?;
            changes.push(format!("blessed boot entry {n} -> {blessed}"));
            set_committed(root, g)?;
        }
        Some(_) if ready => set_committed(root, g)?,
        // A counted entry that failed, on any try (the last one is `+0`
        // already: systemd-boot counted it down before the boot).
        Some(n) if n.tries_left.is_some() => {
            if !n.is_bad() {
                let bad = n.marked_bad();
                esp.rename(&n.path(), &bad.path())?;
                changes.push(format!("marked boot entry {n} bad -> {bad}"));
            }
            crate::generations::set_state(root, g, GenState::BootFailed)?;
            if reboot_on_failure && names.iter().any(|o| o.generation != g && !o.is_bad()) {
                verdict = Verdict::Reboot;
            }
        }
        _ => {}
    }
    changes.extend(record_fallback(root, facts));
    if ready {
        changes.extend(sync(root, esp, Some(g))?);
    }
    Ok((changes, verdict))
}

/// Records the generation this boot fell back from `boot-failed`, for
/// either loader's assessment; returns what it did, a line.
pub(crate) fn record_fallback(root: &GuestRoot, facts: &BootFacts) -> Option<String> {
    let from = facts.fallback_from?;
    Some(
        match crate::generations::set_state(root, from, GenState::BootFailed) {
            Ok(()) => format!(
                "generation {from} failed {} tries at boot: recorded boot-failed",
                facts.tries_failed
            ),
            // Deleted since: nothing to record.
            Err(e) => format!("generation {from}: not recorded boot-failed: {e}"),
        },
    )
}

/// Records generation `g` committed when a `switch --boot` made it.
pub(crate) fn set_committed(root: &GuestRoot, g: u64) -> Result<(), BootError> {
    let pending = crate::generations::records(root)?
        .get(g)
        .is_some_and(|r| matches!(r.state, GenState::BootPending | GenState::BootFailed));
    if pending {
        crate::generations::set_state(root, g, GenState::Committed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<EntryName> {
        v.iter().map(|s| EntryName::parse(s).unwrap()).collect()
    }

    #[test]
    fn facts_tell_a_trial_a_blessed_boot_and_a_fallback() {
        let f = facts(
            &names(&["fruix-1.conf", "fruix-2+2-1.conf"]),
            Some(2),
            false,
        );
        assert_eq!((f.entry.as_str(), f.fallback_from), ("trying", None));
        // The last try: counted down to +0 before this boot.
        let f = facts(
            &names(&["fruix-1.conf", "fruix-2+0-1.conf"]),
            Some(2),
            false,
        );
        assert_eq!((f.entry.as_str(), f.fallback_from), ("trying", None));
        // Marked bad by its agent, booted for want of another.
        let f = facts(&names(&["fruix-1.conf", "fruix-2+0-1.conf"]), Some(2), true);
        assert_eq!(f.entry, "bad");
        let f = facts(
            &names(&["fruix-1.conf", "fruix-2+0-3.conf"]),
            Some(1),
            false,
        );
        assert_eq!(
            (f.entry.as_str(), f.fallback_from, f.tries_failed),
            ("blessed", Some(2), 3)
        );
        let f = facts(&names(&["fruix-2.conf"]), Some(1), false);
        assert_eq!((f.entry.as_str(), f.fallback_from), ("none", None));
        let f = facts(
            &names(&["fruix-1+0-1.conf", "fruix-2.conf"]),
            Some(2),
            false,
        );
        assert_eq!(f.fallback_from, None, "an older bad entry is no fallback");
    }
}
