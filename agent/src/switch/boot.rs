//! `fruix-agent switch --boot`: a new generation for the next boot only,
//! like `nixos-rebuild boot`. Nothing of the running system changes: the
//! generation's profile link is made (not `system`, nor the current-system
//! links), its record says `boot-pending`, and its loader entry is written
//! counted, so that the next boot tries it and falls back to the entry
//! before it when it fails. Activation at that boot keeps its number.

use fruix_activation::GuestRoot;
use fruix_system::generations::GenState;
use serde::Serialize;

use super::{SwitchError, state};
use crate::bootentries::BootError;

/// What `switch --boot` did.
#[derive(Clone, Debug, Serialize)]
pub struct Staged {
    /// The generation the next boot tries.
    pub generation: u64,
    /// Its system.
    pub system: String,
    /// Its loader entry's file name.
    pub entry: String,
    /// What changed on the ESP, a line each.
    pub changes: Vec<String>,
}

/// Why a generation could not be staged for boot.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The switch's side: the lock, the links, the records.
    #[error(transparent)]
    Switch(#[from] SwitchError),
    /// The ESP's side.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// No ESP of ours to write an entry on.
    #[error(
        "this guest has no boot entries of ours (no EFI system partition on the root's disk): --boot needs them"
    )]
    NoEsp,
}

/// Makes `to` the generation the next boot tries (see the module doc).
pub fn stage(root: &GuestRoot, to: &str) -> Result<Staged, StageError> {
    let Some(_lock) = state::try_lock(root)? else {
        return Err(SwitchError::Busy(root.path(fruix_system::switch::SWITCH_LOCK)).into());
    };
    // Closed at once: the sync below opens the ESP for itself, and a
    // second handle's caches would not see what it writes.
    if crate::bootcheck::loader(root)?.is_none() {
        return Err(StageError::NoEsp);
    }
    let gens = crate::generations::list(root, None)?;
    // A system that already is a generation keeps its number (as
    // activation does), else the next one.
    let n = gens
        .iter()
        .rev()
        .find(|g| g.system == to)
        .map(|g| g.number)
        .unwrap_or_else(|| gens.iter().map(|g| g.number).max().unwrap_or(0) + 1);
    let link = format!("{}/system-{n}", crate::generations::PROFILES);
    root.symlink_if_changed(&link, to)
        .map_err(|e| SwitchError::State(e.to_string()))?;
    let current = state::generation_of(root);
    // One generation waits for the next boot: an older one that waited is
    // superseded, so that a failed trial falls back to the current one.
    for g in gens
        .iter()
        .filter(|g| g.state == GenState::BootPending && g.number != n)
    {
        crate::generations::set_state(root, g.number, GenState::RolledBack)?;
    }
    let mut changes = Vec::new();
    if current != Some(n) {
        crate::generations::set_state(root, n, GenState::BootPending)?;
        changes.extend(crate::bootcheck::restage(root, n)?);
    }
    changes.extend(crate::bootcheck::update(root)?);
    // The system is a generation now: its record keeps it from gc.
    let item = to.rsplit('/').next().unwrap_or_default();
    let _ = crate::received::release(&root.path("/frx"), item);
    let entry = match crate::bootcheck::loader(root).ok().flatten() {
        Some(crate::bootcheck::Loader::Esp(esp)) => crate::bootentries::entries(&esp)
            .ok()
            .and_then(|names| names.into_iter().find(|e| e.generation == n))
            .map_or_else(|| "none".into(), |e| e.to_string()),
        Some(crate::bootcheck::Loader::Nextboot) => fruix_system::nextboot::NEXTBOOT_CONF.into(),
        None => "none".into(),
    };
    Ok(Staged {
        generation: n,
        system: to.to_owned(),
        entry,
        changes,
    })
}
