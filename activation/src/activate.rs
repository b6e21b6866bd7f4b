//! Activation: runs the steps of [`crate::steps`] in order and records
//! each in a [`Ledger`].
//!
//! Each step compares what the system item wants with what the guest has
//! and changes only the difference, atomically. Running activation twice
//! changes nothing the second time; a run killed at any point is completed
//! by the next one. After every step the ledger is written to
//! `/run/fruix/activation.json`, so a killed run shows where it stopped.

use std::time::Instant;

use crate::config::{DeclaredAccounts, SystemConfig};
use crate::error::{ActivationError, chain};
use crate::ledger::{Ledger, StepStatus};
use crate::platform::Platform;
use crate::root::GuestRoot;
use crate::steps::{
    accounts_step, directories, etc, host_keys, remove_compat_shims, setuid_programs,
    switch_generation, top_level_links,
};

/// Choices of an activation run.
#[derive(Clone, Copy, Debug)]
pub struct ActivateOptions {
    /// Make missing SSH host keys. Off when an image is pre-activated on
    /// the host: every guest makes its own keys at first boot.
    pub host_keys: bool,
    /// Make this generation number current again (a rollback) instead of
    /// a new one for a system that is not the newest.
    pub generation: Option<u64>,
}

impl Default for ActivateOptions {
    fn default() -> Self {
        ActivateOptions {
            host_keys: true,
            generation: None,
        }
    }
}

/// Activates the system item at `system` (a guest path such as
/// `/frx/store/<digest>-system-host`) in `root`. Failed steps are
/// recorded and the others still run; the ledger says what happened.
pub fn activate(root: &GuestRoot, system: &str, platform: &dyn Platform) -> Ledger {
    activate_with(root, system, platform, ActivateOptions::default())
}

/// [`activate`], with choices.
pub fn activate_with(
    root: &GuestRoot,
    system: &str,
    platform: &dyn Platform,
    opts: ActivateOptions,
) -> Ledger {
    let mut ledger = Ledger {
        system: system.to_owned(),
        generation: None,
        dry_run: root.is_dry_run(),
        steps: Vec::new(),
    };
    let system_dir = root.path(system);
    let loaded = (|| {
        Ok::<_, ActivationError>((
            SystemConfig::load(&system_dir)?,
            DeclaredAccounts::load(&system_dir)?,
        ))
    })();
    let (cfg, declared) = match loaded {
        Ok(v) => v,
        Err(e) => {
            ledger.push("system", StepStatus::Failed, Vec::new(), 0, Some(chain(&e)));
            let _ = crate::ledger::write(&ledger, root);
            return ledger;
        }
    };
    let runtime = format!("/frx/store/{}", cfg.runtime);
    let step = |ledger: &mut Ledger,
                name: &str,
                f: &mut dyn FnMut() -> Result<Vec<String>, ActivationError>| {
        run_step(ledger, root, name, f)
    };
    step(&mut ledger, "directories", &mut || directories(root));
    if platform.grows_root() {
        step(&mut ledger, "grow-root", &mut || platform.grow_root(root));
    }
    step(&mut ledger, "top-level", &mut || {
        top_level_links(root, &runtime)
    });
    step(&mut ledger, "etc", &mut || etc(root, &runtime, system));
    step(&mut ledger, "accounts", &mut || {
        accounts_step(root, &runtime, &declared, platform)
    });
    step(&mut ledger, "setuid-programs", &mut || {
        setuid_programs(root, system, &runtime, &cfg.setuid_programs)
    });
    if opts.host_keys {
        step(&mut ledger, "host-keys", &mut || host_keys(root, platform));
    }
    step(&mut ledger, "compat-shims", &mut || {
        remove_compat_shims(root)
    });
    let mut generation = None;
    step(&mut ledger, "generation", &mut || {
        let (n, changes) = switch_generation(root, system, opts.generation)?;
        generation = Some(n);
        Ok(changes)
    });
    ledger.generation = generation;
    let _ = crate::ledger::write(&ledger, root);
    ledger
}

/// Runs one step, records it with its time and writes the ledger.
fn run_step(
    ledger: &mut Ledger,
    root: &GuestRoot,
    name: &str,
    f: &mut dyn FnMut() -> Result<Vec<String>, ActivationError>,
) {
    let t = Instant::now();
    let (status, changes, error) = match f() {
        Ok(c) if c.is_empty() => (StepStatus::Unchanged, c, None),
        Ok(c) => (StepStatus::Changed, c, None),
        Err(e) => (StepStatus::Failed, Vec::new(), Some(chain(&e))),
    };
    ledger.push(name, status, changes, t.elapsed().as_millis() as u64, error);
    let _ = crate::ledger::write(ledger, root);
}

/// The `host-keys` step on its own, added to `ledger`: for a caller that
/// activated with `host_keys: false` and has work to start before the
/// keys, which take seconds in an emulated guest (`fruix-agent init`).
pub fn add_host_keys(root: &GuestRoot, platform: &dyn Platform, ledger: &mut Ledger) {
    run_step(ledger, root, "host-keys", &mut || host_keys(root, platform));
}
