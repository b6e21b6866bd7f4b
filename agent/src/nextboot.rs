//! FreeBSD's boot entries: its loader has no counted entries, so a new
//! generation is tried once with nextboot(8)'s file. The committed
//! generation's loader variables are in `/boot/loader.conf.local` (read
//! after the image's `loader.conf`, which they override); a generation
//! `switch --boot` made is named by `/boot/nextboot.conf`, whose first
//! line `nextboot_enable="YES"` the loader rewrites to `"NO"` as it reads
//! it, so that the trial is booted once and a boot that fails, hangs (the
//! watchdog) or is cut is followed by the committed generation's. The
//! formats are `fruix_system::nextboot`'s.
//!
//! The same decisions as the ESP's ([`crate::bootentries`]), in the same
//! records and report fields: a trial that reaches `ready` is committed
//! (`loader.conf.local` names it, `nextboot.conf` goes); one that reaches
//! `failed` is recorded `boot-failed` and reboots into the committed
//! generation; the boot after a spent trial reports
//! `boot_fallback_from=N` and `boot_tries_failed=1`.

use fruix_activation::GuestRoot;
use fruix_system::generations::GenState;
use fruix_system::nextboot::{
    self as files, LOADER_CONF, LOADER_CONF_LOCAL, LoaderVars, NEXTBOOT_CONF,
};

use crate::bootentries::{BootError, BootFacts, Verdict};
use crate::system::SystemView;

/// A generation as the loader files name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderGen {
    /// Its number.
    pub number: u64,
    /// Its record's state.
    pub state: GenState,
    /// Whether it is the current generation.
    pub current: bool,
    /// Its system item's name.
    pub system: String,
    /// Its agent's item, in shepherd-pid1 mode (the loader's `init_path`).
    pub pid1_agent: Option<String>,
}

impl LoaderGen {
    /// The loader variables that boot it.
    fn vars(&self) -> String {
        files::system_vars(&self.system, self.pid1_agent.as_deref(), Some(self.number))
    }
}

/// The generations with what their loader variables need, read from
/// their systems.
pub fn generations(root: &GuestRoot) -> Result<Vec<LoaderGen>, BootError> {
    let mut out = Vec::new();
    for g in crate::generations::list(root, None)? {
        let view = SystemView::load(root, &g.system).map_err(|e| BootError::System {
            generation: g.number,
            message: e.to_string(),
        })?;
        out.push(LoaderGen {
            number: g.number,
            state: g.state,
            current: g.current,
            system: view.item.to_string(),
            pid1_agent: (view.config.boot_mode == "shepherd-pid1")
                .then(|| view.config.agent.clone()),
        });
    }
    Ok(out)
}

/// A loader file's variables; None when it is absent.
fn read(root: &GuestRoot, path: &str) -> Result<Option<LoaderVars>, BootError> {
    match std::fs::read(root.path(path)) {
        Ok(b) => Ok(Some(files::parse(&String::from_utf8_lossy(&b)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BootError::Io {
            path: root.path(path).display().to_string(),
            source,
        }),
    }
}

/// The generation the loader boots by default: `loader.conf.local`'s,
/// else the image's `loader.conf`'s (generation 1 when it names none).
fn default_generation(root: &GuestRoot) -> Result<Option<u64>, BootError> {
    if let Some(l) = read(root, LOADER_CONF_LOCAL)?
        && l.system().is_some()
    {
        return Ok(l.generation());
    }
    Ok(read(root, LOADER_CONF)?
        .filter(|c| c.system().is_some())
        .map(|c| c.generation().unwrap_or(1)))
}

/// This boot's facts, from the loader files and the booted generation
/// (the boot's `fruix.generation`, from `kenv`).
pub fn facts(root: &GuestRoot, booted: Option<u64>) -> Result<BootFacts, BootError> {
    let next = read(root, NEXTBOOT_CONF)?;
    // A nextboot.conf the loader has read: this boot is its trial, or
    // the boot after a trial that did not come up.
    // One still enabled that names the booted generation was read by a
    // loader that could not rewrite it: a trial too.
    let spent = next
        .filter(|n| !n.enabled() || (n.generation().is_some() && n.generation() == booted))
        .and_then(|n| n.generation());
    let entry = match booted {
        Some(b) if spent == Some(b) => "trying",
        Some(b) if default_generation(root)? == Some(b) => "blessed",
        _ => "none",
    };
    let fallback = spent.filter(|n| booted.is_some_and(|b| *n > b));
    Ok(BootFacts {
        generation: booted,
        entry: entry.into(),
        fallback_from: fallback,
        tries_failed: u32::from(fallback.is_some()),
        error: None,
    })
}

/// The loader files that name a system, the one the next boot reads
/// last first, and that one: what `boot-entries` lists on FreeBSD.
pub fn listing(root: &GuestRoot) -> Result<(Vec<String>, Option<String>), BootError> {
    let mut files_there = Vec::new();
    let mut next = None;
    for path in [NEXTBOOT_CONF, LOADER_CONF_LOCAL, LOADER_CONF] {
        let Some(v) = read(root, path)? else { continue };
        if v.system().is_none() {
            continue;
        }
        let spent = path == NEXTBOOT_CONF && !v.enabled();
        let g = v
            .generation()
            .map_or_else(String::new, |g| format!(" (generation {g})"));
        files_there.push(format!("{path}{g}{}", if spent { " spent" } else { "" }));
        if next.is_none() && !spent {
            next = files_there.last().cloned();
        }
    }
    Ok((files_there, next))
}

/// Brings the loader files in line with the generations: the current
/// generation in `loader.conf.local`, the one a `switch --boot` made in
/// an enabled `nextboot.conf`, no `nextboot.conf` when none waits.
/// Returns what it changed. The caller holds the ESP lock (one lock for
/// every writer of boot entries).
pub fn sync(root: &GuestRoot, gens: &[LoaderGen]) -> Result<Vec<String>, BootError> {
    let mut changes = Vec::new();
    let write = |path: &str, text: &str| {
        root.write_if_changed(path, text.as_bytes(), 0o644, None)
            .map_err(|e| BootError::Io {
                path: path.to_owned(),
                source: std::io::Error::other(e.to_string()),
            })
    };
    // The default is the newest committed generation up to the current
    // one: never a trial's (current while it boots), nor a failed one.
    let current = gens.iter().find(|g| g.current).map(|g| g.number);
    let default = gens
        .iter()
        .filter(|g| g.state == GenState::Committed && current.is_some_and(|c| g.number <= c))
        .max_by_key(|g| g.number);
    if let Some(c) = default
        && write(LOADER_CONF_LOCAL, &files::local_text(&c.vars()))?
    {
        changes.push(format!(
            "wrote {LOADER_CONF_LOCAL}: generation {} boots by default",
            c.number
        ));
    }
    let next = read(root, NEXTBOOT_CONF)?;
    match gens.iter().find(|g| g.state == GenState::BootPending) {
        // One the loader has read already (this boot's trial, or a trial
        // that failed) is the assessment's to judge, not written again.
        Some(p)
            if next
                .as_ref()
                .is_some_and(|n| n.generation() == Some(p.number)) => {}
        Some(p) => {
            write(NEXTBOOT_CONF, &files::nextboot_text(&p.vars()))?;
            changes.push(format!(
                "wrote {NEXTBOOT_CONF}: generation {} is tried once at the next boot",
                p.number
            ));
        }
        None if next.is_some() => {
            remove(root)?;
            changes.push(format!("removed {NEXTBOOT_CONF}"));
        }
        None => {}
    }
    Ok(changes)
}

/// Boot assessment once this boot's first round is final, as
/// `bootentries::assess` does on the ESP: a ready trial is committed, a
/// failed one is recorded `boot-failed` and reboots (the committed
/// generation boots next), a fallback records its trial `boot-failed`; a
/// ready boot then brings the files in line with the generations
/// `reload` reads (after the records changed). Returns what it changed
/// and whether to reboot.
pub fn assess(
    root: &GuestRoot,
    reload: impl Fn() -> Result<Vec<LoaderGen>, BootError>,
    facts: &BootFacts,
    ready: bool,
    reboot_on_failure: bool,
) -> Result<(Vec<String>, Verdict), BootError> {
    let mut changes = Vec::new();
    let Some(g) = facts.generation else {
        return Ok((changes, Verdict::Stay));
    };
    let mut verdict = Verdict::Stay;
    let trial = facts.entry == "trying";
    if ready {
        crate::bootentries::set_committed(root, g)?;
        if trial {
            changes.push(format!("generation {g} ready in its trial boot: committed"));
        }
    } else if trial {
        crate::generations::set_state(root, g, GenState::BootFailed)?;
        changes.push(format!(
            "generation {g} failed its trial boot: recorded boot-failed"
        ));
        if disable(root)? {
            changes.push(format!(
                "{NEXTBOOT_CONF}: disabled (the loader had not: a loader that cannot write /boot)"
            ));
        }
        if reboot_on_failure && default_generation(root)?.is_some_and(|d| d != g) {
            verdict = Verdict::Reboot;
        }
    }
    changes.extend(crate::bootentries::record_fallback(root, facts));
    if ready {
        changes.extend(sync(root, &reload()?)?);
    }
    Ok((changes, verdict))
}

/// Removes `nextboot.conf`, for good (its directory synced).
fn remove(root: &GuestRoot) -> Result<(), BootError> {
    let p = root.path(NEXTBOOT_CONF);
    let io = |source: std::io::Error| BootError::Io {
        path: p.display().to_string(),
        source,
    };
    std::fs::remove_file(&p).map_err(io)?;
    let dir = p.parent().unwrap_or(std::path::Path::new("/"));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// Makes generation `n` the next boot's trial afresh (`switch --boot` of
/// a generation tried before): a spent `nextboot.conf` naming it goes, so
/// that the sync after writes it enabled again. True when it went.
pub fn restage(root: &GuestRoot, n: u64) -> Result<bool, BootError> {
    match read(root, NEXTBOOT_CONF)? {
        Some(v) if !v.enabled() && v.generation() == Some(n) => remove(root).map(|()| true),
        _ => Ok(false),
    }
}

/// Rewrites an enabled `nextboot.conf`'s first line to `"NO"`, as the
/// loader does when it reads it; true when it was enabled.
fn disable(root: &GuestRoot) -> Result<bool, BootError> {
    let p = root.path(NEXTBOOT_CONF);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(BootError::Io {
                path: p.display().to_string(),
                source,
            });
        }
    };
    if !files::parse(&text).enabled() {
        return Ok(false);
    }
    let off = text.replacen(files::NEXTBOOT_YES, files::NEXTBOOT_NO, 1);
    root.write_if_changed(NEXTBOOT_CONF, off.as_bytes(), 0o644, None)
        .map_err(|e| BootError::Io {
            path: p.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok(true)
}

#[cfg(test)]
mod tests;
