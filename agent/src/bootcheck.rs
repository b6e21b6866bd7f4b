//! Where the daemon and the switch meet the boot entries: this boot's
//! facts (read once per boot, kept in `/run/fruix/boot.json`), the
//! assessment after the boot's first outcome (once per boot, whichever
//! daemon makes it), the entries brought in line after a switch, and the
//! reboot a failed trial asks for.

use fruix_activation::GuestRoot;
use fruix_system::config::{BootPolicy, OnFailedBoot};

use crate::bootentries::{self, BOOT_FACTS, BootError, BootFacts, Verdict};
use crate::esp::Esp;
use crate::platform::BootEntries;

/// Where this guest's boot entries are, when it has any of ours.
pub enum Loader {
    /// systemd-boot's, on this ESP (boxed: fatfs's state is large).
    Esp(Box<Esp>),
    /// FreeBSD's loader files (`crate::nextboot`).
    Nextboot,
}

/// This guest's boot entries, when they are ours to write (see
/// `bootentries::running`).
pub fn loader(root: &GuestRoot) -> Result<Option<Loader>, BootError> {
    match crate::platform::BOOT_ENTRIES {
        BootEntries::Esp => Ok(bootentries::open_running(root)?.map(|e| Loader::Esp(Box::new(e)))),
        BootEntries::Nextboot => Ok(bootentries::running(root).then_some(Loader::Nextboot)),
    }
}

/// The boot line's key naming the booted generation.
pub const GENERATION_KEY: &str = "fruix.generation";

/// The assessment's mark, once it is made for this boot.
const ASSESSED: &str = "/run/fruix/boot.assessed";

/// Whether this boot's assessment is made (or being made).
pub fn assessed(root: &GuestRoot) -> bool {
    root.path(ASSESSED).exists()
}

/// This boot's facts: the ones saved earlier in this boot, else read from
/// the ESP now and saved. `current` is the generation activation made
/// current, used when the boot line names none (an image older than boot
/// entries).
pub fn boot_facts(root: &GuestRoot, current: Option<u64>) -> BootFacts {
    if let Ok(b) = std::fs::read(root.path(BOOT_FACTS))
        && let Ok(f) = serde_json::from_slice::<BootFacts>(&b)
    {
        return f;
    }
    let booted = crate::platform::boot_arg(GENERATION_KEY)
        .and_then(|g| g.parse().ok())
        .or(current);
    let f = match loader(root) {
        Ok(Some(Loader::Esp(esp))) => match bootentries::entries(&esp) {
            Ok(names) => {
                let failed_before = booted.is_some_and(|g| {
                    crate::generations::records(root).is_ok_and(|r| {
                        r.get(g).is_some_and(|x| {
                            x.state == fruix_system::generations::GenState::BootFailed
                        })
                    })
                });
                bootentries::facts(&names, booted, failed_before)
            }
            Err(e) => unknown(booted, &e.to_string()),
        },
        Ok(Some(Loader::Nextboot)) => {
            crate::nextboot::facts(root, booted).unwrap_or_else(|e| unknown(booted, &e.to_string()))
        }
        Ok(None) => BootFacts {
            generation: booted,
            entry: "none".into(),
            ..BootFacts::default()
        },
        Err(e) => unknown(booted, &e.to_string()),
    };
    save(root, &f);
    f
}

/// Saves this boot's facts (a lost write only costs a new read).
fn save(root: &GuestRoot, f: &BootFacts) {
    let mut bytes = serde_json::to_vec(f).unwrap_or_default();
    bytes.push(b'\n');
    let _ = root.write_if_changed(BOOT_FACTS, &bytes, 0o644, None);
}

fn unknown(generation: Option<u64>, why: &str) -> BootFacts {
    BootFacts {
        generation,
        entry: "unknown".into(),
        error: Some(why.to_owned()),
        ..BootFacts::default()
    }
}

/// The assessment of this boot, made once: see `bootentries::assess`.
/// Each change is logged on stderr (the daemon's log).
/// `facts` is updated to what the entry has become (`blessed`, `bad`)
/// and saved again. `policy` is the booted system's: whether a failed
/// trial reboots.
pub fn after_first_outcome(
    root: &GuestRoot,
    facts: &mut BootFacts,
    ready: bool,
    policy: &BootPolicy,
) -> Verdict {
    if assessed(root) {
        return Verdict::Stay;
    }
    let _ = root.write_if_changed(ASSESSED, b"", 0o644, None);
    let trial = facts.entry == "trying";
    let result = (|| -> Result<(Vec<String>, Verdict), BootError> {
        let Some(loader) = loader(root)? else {
            return Ok((Vec::new(), Verdict::Stay));
        };
        let _lock = bootentries::lock(root)?;
        // A ready boot's sync may write entries: see `update`.
        nix::unistd::sync();
        let reboot = policy.on_failed_boot == OnFailedBoot::Reboot;
        match loader {
            Loader::Esp(esp) => {
                let out = bootentries::assess(root, &esp, facts, ready, reboot)?;
                esp.close()?;
                Ok(out)
            }
            Loader::Nextboot => {
                let gens = || crate::nextboot::generations(root);
                let out = crate::nextboot::assess(root, gens, facts, ready, reboot)?;
                // The trial's "entry" is nextboot.conf: committed or spent.
                if trial {
                    facts.entry = if ready { "blessed" } else { "bad" }.into();
                }
                Ok(out)
            }
        }
    })();
    match result {
        Ok((changes, verdict)) => {
            for c in &changes {
                eprintln!("fruix-agent: boot entries: {c}");
            }
            if changes.iter().any(|c| c.starts_with("blessed boot entry")) {
                facts.entry = "blessed".into();
            } else if changes.iter().any(|c| c.starts_with("marked boot entry")) {
                facts.entry = "bad".into();
            }
            save(root, facts);
            verdict
        }
        Err(e) => {
            eprintln!("fruix-agent: boot entries: {}", crate::error::chain(&e));
            Verdict::Stay
        }
    }
}

/// Makes generation `n` the next boot's trial afresh: what a spent trial
/// of it left (a bad entry, a spent `nextboot.conf`) goes before the
/// sync writes it again. Returns what changed.
pub fn restage(root: &GuestRoot, n: u64) -> Result<Vec<String>, BootError> {
    let Some(loader) = loader(root)? else {
        return Ok(Vec::new());
    };
    let _lock = bootentries::lock(root)?;
    match loader {
        Loader::Esp(esp) => {
            let removed = bootentries::restage(&esp, n)?;
            esp.close()?;
            Ok(removed.into_iter().collect())
        }
        Loader::Nextboot => Ok(if crate::nextboot::restage(root, n)? {
            vec![format!(
                "removed the spent {} of generation {n} (tried again)",
                fruix_system::nextboot::NEXTBOOT_CONF
            )]
        } else {
            Vec::new()
        }),
    }
}

/// Brings the boot entries in line with the generations after a switch
/// or a deletion; returns what changed. No entries of ours: nothing.
pub fn update(root: &GuestRoot) -> Result<Vec<String>, BootError> {
    let Some(loader) = loader(root)? else {
        return Ok(Vec::new());
    };
    // An entry must never name a system that a power cut can take back:
    // what the store received (ext4 allocates file data late) goes to
    // the disk before the entry does.
    nix::unistd::sync();
    let _lock = bootentries::lock(root)?;
    let esp = match loader {
        Loader::Esp(esp) => esp,
        Loader::Nextboot => {
            return crate::nextboot::sync(root, &crate::nextboot::generations(root)?);
        }
    };
    let booted = boot_facts(root, None).generation;
    let changes = bootentries::sync(root, &esp, booted)?;
    esp.close()?;
    Ok(changes)
}

/// Reboots the guest the way its boot mode does: Shepherd as PID 1 is
/// asked to stop `root` (its own `reboot`); rc mode runs the classic
/// init's reboot command. When neither can be asked, the file systems are
/// synced and the kernel reboots.
pub fn reboot(root: &GuestRoot, boot_mode: &str) -> std::io::Error {
    // First, whatever init does on the way down: a reboot right after a
    // deploy must not lose what it wrote (seen: a received system item's
    // files empty after Shepherd's reboot).
    nix::unistd::sync();
    let asked = if boot_mode == "shepherd-pid1" {
        crate::shepherd_ctl::Control::find(root)
            .and_then(|c| c.stop_root())
            .map_err(|e| e.to_string())
    } else {
        match crate::platform::RC_REBOOT.split_first() {
            Some((prog, args)) => match std::process::Command::new(prog).args(args).status() {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!("{prog}: {s}")),
                Err(e) => Err(format!("{prog}: {e}")),
            },
            None => Err("no reboot command".into()),
        }
    };
    match asked {
        // Init stops the services, then us: the kernel's reboot below
        // only comes when it has not within a minute.
        Ok(()) => std::thread::sleep(std::time::Duration::from_secs(60)),
        Err(e) => eprintln!("fruix-agent: reboot: {e}; rebooting at once"),
    }
    nix::unistd::sync();
    crate::platform::hard_reboot()
}
