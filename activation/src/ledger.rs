//! The activation ledger: its types and format are `fruix_system`'s (the
//! agent reads it with the same code); activation writes it to
//! `/run/fruix/activation.json` after every step, so that a killed run
//! shows where it stopped.

pub use fruix_system::ledger::{LEDGER_PATH, Ledger, StepRecord, StepStatus};

use crate::error::ActivationError;
use crate::root::GuestRoot;

/// Writes the ledger to [`LEDGER_PATH`] (not in a dry run).
pub fn write(ledger: &Ledger, root: &GuestRoot) -> Result<(), ActivationError> {
    if root.is_dry_run() {
        return Ok(());
    }
    root.write_if_changed(LEDGER_PATH, &ledger.to_json(), 0o644, None)
        .map(|_| ())
}
