//! Generations: the profile links `/frx/var/profiles/system-N` joined with
//! their records (`fruix_system::generations`), listing, deleting, and the
//! store's garbage collection. Writers hold the switch lock, so that a
//! deletion or a gc never runs beside a switch.

use std::collections::BTreeSet;
use std::fs;

use fruix_activation::GuestRoot;
use fruix_store::{ItemName, StoreRoot};
use fruix_system::generations::{GENERATIONS_PATH, GenState, Generation, Record, Records, rfc3339};
use serde::Serialize;

use crate::switch::error::SwitchError;
use crate::switch::state;
pub use fruix_system::generations::GenState as State;

/// Where the profile links are.
pub const PROFILES: &str = "/frx/var/profiles";

/// The records (none when the file is absent).
pub fn records(root: &GuestRoot) -> Result<Records, SwitchError> {
    let p = root.path(GENERATIONS_PATH);
    match fs::read(&p) {
        Ok(b) => Ok(Records::parse(&b, &p.display().to_string())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Records::default()),
        Err(source) => Err(SwitchError::Io { path: p, source }),
    }
}

fn save(root: &GuestRoot, r: &Records) -> Result<(), SwitchError> {
    root.ensure_dir(state::STATE_DIR, 0o755)
        .map_err(|e| SwitchError::State(e.to_string()))?;
    root.write_if_changed(GENERATIONS_PATH, &r.to_json(), 0o644, None)
        .map_err(|e| SwitchError::State(e.to_string()))?;
    Ok(())
}

/// Records generation `n` (its system read from its link) as `s`. The
/// caller holds the switch lock.
pub fn set_state(root: &GuestRoot, n: u64, s: GenState) -> Result<(), SwitchError> {
    let mut r = records(root)?;
    let link = root.path(&format!("{PROFILES}/system-{n}"));
    let system = fs::read_link(&link)
        .map_err(|source| SwitchError::Io { path: link, source })?
        .to_string_lossy()
        .into_owned();
    let created = r
        .get(n)
        .filter(|x| x.system == system)
        .map_or_else(state::now_s, |x| x.created);
    r.set(Record {
        number: n,
        system,
        created,
        state: s,
    });
    save(root, &r)
}

/// The profile links: (number, system), sorted by number.
fn links(root: &GuestRoot) -> Result<Vec<(u64, String)>, SwitchError> {
    let dir = root.path(PROFILES);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(SwitchError::Io { path: dir, source }),
    };
    let mut v = Vec::new();
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_prefix("system-").and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Ok(t) = fs::read_link(e.path()) {
            v.push((n, t.to_string_lossy().into_owned()));
        }
    }
    v.sort();
    Ok(v)
}

/// The generations, oldest first. `booted` is the boot line's system.
pub fn list(root: &GuestRoot, booted: Option<&str>) -> Result<Vec<Generation>, SwitchError> {
    let r = records(root)?;
    let current = state::generation_of(root);
    Ok(links(root)?
        .into_iter()
        .map(|(n, system)| {
            let rec = r.get(n).filter(|x| x.system == system);
            let created = rec.map_or_else(
                || {
                    fs::symlink_metadata(root.path(&format!("{PROFILES}/system-{n}")))
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs())
                },
                |x| x.created,
            );
            Generation {
                number: n,
                date: rfc3339(created),
                created,
                state: rec.map_or(GenState::Committed, |x| x.state),
                current: current == Some(n),
                booted: booted == Some(system.as_str()),
                system,
            }
        })
        .collect())
}

/// The newest committed generation older than the current one.
pub fn previous_committed(gens: &[Generation]) -> Option<&Generation> {
    let cur = gens.iter().find(|g| g.current)?.number;
    gens.iter()
        .rev()
        .find(|g| g.number < cur && g.state == GenState::Committed)
}

/// Deletes every generation but the current, the booted one and the
/// newest `keep` others; returns the numbers deleted.
pub fn delete(
    root: &GuestRoot,
    booted: Option<&str>,
    keep: usize,
) -> Result<Vec<u64>, SwitchError> {
    let Some(_lock) = state::try_lock(root)? else {
        return Err(SwitchError::Busy(
            root.path(fruix_system::switch::SWITCH_LOCK),
        ));
    };
    refuse_unfinished(root)?;
    let gens = list(root, booted)?;
    let others: Vec<&Generation> = gens.iter().filter(|g| !g.current && !g.booted).collect();
    let doomed: Vec<u64> = others
        .iter()
        .take(others.len().saturating_sub(keep))
        .map(|g| g.number)
        .collect();
    let mut r = records(root)?;
    for n in &doomed {
        root.remove(&format!("{PROFILES}/system-{n}"))
            .map_err(|e| SwitchError::State(e.to_string()))?;
    }
    r.generations.retain(|x| !doomed.contains(&x.number));
    save(root, &r)?;
    Ok(doomed)
}

/// A switch left unfinished may have half-activated a system no link
/// names yet: nothing is deleted until it is finished.
fn refuse_unfinished(root: &GuestRoot) -> Result<(), SwitchError> {
    match state::load(root)? {
        Some(s) if !s.phase.is_final() => Err(SwitchError::Unfinished {
            id: s.id,
            phase: s.phase.as_str(),
        }),
        _ => Ok(()),
    }
}

/// What a gc removed (or would).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// The items, with the bytes of their regular files.
    pub removed: Vec<(String, u64)>,
    /// Their bytes in all, from their manifests.
    pub freed_bytes: u64,
    /// True when nothing was changed.
    pub dry_run: bool,
}

/// The name of an item being collected in the store's tmp directory:
/// verification knows it (a manifest whose item is there is a gc in
/// progress, not an item missing), and the store's lock sweeps it.
pub fn gc_name(item: &str) -> String {
    format!("{}{item}", fruix_store::GC_PREFIX)
}

/// Removes the store items no generation, nor the current or booted
/// system, needs. Each item is renamed out of the store first (into the
/// store's tmp directory as [`gc_name`]), then its manifest removed, then
/// its tree: a gc killed between any two steps leaves verification clean,
/// and the next store lock sweeps what it left.
pub fn gc(root: &GuestRoot, booted: Option<&str>, dry_run: bool) -> Result<GcReport, SwitchError> {
    let Some(_lock) = state::try_lock(root)? else {
        return Err(SwitchError::Busy(
            root.path(fruix_system::switch::SWITCH_LOCK),
        ));
    };
    refuse_unfinished(root)?;
    let store = StoreRoot::new(root.path("/frx"));
    let io = |e: fruix_store::StoreError| SwitchError::State(e.to_string());
    let _store_lock = if dry_run {
        None
    } else {
        Some(store.lock().map_err(io)?)
    };
    let mut systems: BTreeSet<String> = links(root)?.into_iter().map(|(_, s)| s).collect();
    for l in ["/frx/var/current-system", "/run/current-system"] {
        if let Ok(t) = fs::read_link(root.path(l)) {
            systems.insert(t.to_string_lossy().into_owned());
        }
    }
    systems.extend(booted.map(str::to_owned));
    // Systems received for a switch that has not yet recorded them.
    let frx = root.path("/frx");
    let held =
        crate::received::held(&frx, crate::received::MAX_AGE, !dry_run).map_err(|source| {
            SwitchError::Io {
                path: frx.join(crate::received::DIR),
                source,
            }
        })?;
    // A hold whose system is not whole yet (a receive that failed, or one
    // still waiting for the store's lock) protects nothing yet.
    systems.extend(
        held.into_iter()
            .filter(|n| {
                ItemName::parse(n).is_ok_and(|n| fruix_store::transfer::is_whole(&store, &n))
            })
            .map(|n| format!("/frx/store/{n}")),
    );
    let mut live: BTreeSet<String> = BTreeSet::new();
    for s in &systems {
        // A root that cannot be read keeps everything: never collect on a
        // guess.
        let view = crate::system::SystemView::load(root, s)?;
        live.insert(view.item.to_string());
        live.extend(view.closure.iter().map(|c| c.item.to_string()));
    }
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    for name in store.item_names().map_err(io)? {
        if live.contains(name.as_str()) {
            continue;
        }
        let bytes = store.read_manifest(&name).map_or(0, |m| m.content_size());
        if !dry_run {
            collect(&store, &name)?;
        }
        report.freed_bytes += bytes;
        report.removed.push((name.to_string(), bytes));
    }
    Ok(report)
}

fn collect(store: &StoreRoot, name: &ItemName) -> Result<(), SwitchError> {
    let io = |path: std::path::PathBuf| move |source| SwitchError::Io { path, source };
    let trash = store.tmp_dir().join(gc_name(name.as_str()));
    let item = store.item_path(name);
    fs::rename(&item, &trash).map_err(io(item.clone()))?;
    let m = store.manifest_path(name);
    fs::remove_file(&m).map_err(io(m.clone()))?;
    fruix_store::remove_tree(&trash).map_err(io(trash.clone()))?;
    Ok(())
}

/// Records the state of generation `n` (the switch holds the lock). A
/// record that cannot be written is logged, not fatal: the profile links
/// and the switch state still say what happened.
pub fn generations_set(root: &GuestRoot, n: Option<u64>, s: State) {
    if let Some(n) = n
        && let Err(e) = set_state(root, n, s)
    {
        eprintln!(
            "fruix-agent switch: generation {n}: cannot record it {}: {e}",
            s.as_str()
        );
    }
}

/// Records generation `n` as rolled back, if its record says a switch
/// was trying it (or it has none).
pub fn generations_rolled_back(root: &GuestRoot, n: Option<u64>) {
    let Some(n) = n else { return };
    let trying = records(root)
        .map(|r| r.get(n).is_none_or(|x| x.state == State::Trying))
        .unwrap_or(true);
    if trying {
        generations_set(root, Some(n), State::RolledBack);
    }
}
