//! The activation ledger: what each step of one activation did, written
//! to `/run/fruix/activation.json` after every step, so that a killed run
//! shows where it stopped and the agent can report the last activation.

use serde::Serialize;

use crate::error::ActivationError;
use crate::root::GuestRoot;

/// Where the ledger is written.
pub const LEDGER_PATH: &str = "/run/fruix/activation.json";

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// It ran; it has no state to compare (such as mounting).
    Done,
    /// Nothing needed changing.
    Unchanged,
    /// It changed the guest.
    Changed,
    /// It failed; `error` says why.
    Failed,
}

/// One step of the ledger.
#[derive(Clone, Debug, Serialize)]
pub struct StepRecord {
    /// The step's name.
    pub step: String,
    /// How it ended.
    pub status: StepStatus,
    /// What it changed (or, in a dry run, would change), one line each.
    pub changes: Vec<String>,
    /// Milliseconds it took.
    pub ms: u64,
    /// The error, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The record of one activation.
#[derive(Clone, Debug, Serialize)]
pub struct Ledger {
    /// The system item, as a guest path.
    pub system: String,
    /// The generation number it is (or would be).
    pub generation: Option<u64>,
    /// True for a dry run: nothing was changed.
    pub dry_run: bool,
    /// The steps, in order.
    pub steps: Vec<StepRecord>,
}

impl Ledger {
    /// True when no step failed.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.status != StepStatus::Failed)
    }

    /// True when a step changed something.
    pub fn changed(&self) -> bool {
        self.steps.iter().any(|s| s.status == StepStatus::Changed)
    }

    /// Records a step run outside [`activate`](fn@crate::activate) (the
    /// agent's mounts, say).
    pub fn push(
        &mut self,
        step: &str,
        status: StepStatus,
        changes: Vec<String>,
        ms: u64,
        error: Option<String>,
    ) {
        self.steps.push(StepRecord {
            step: step.to_owned(),
            status,
            changes,
            ms,
            error,
        });
    }

    /// Writes the ledger to [`LEDGER_PATH`] (not in a dry run).
    pub fn write(&self, root: &GuestRoot) -> Result<(), ActivationError> {
        if root.is_dry_run() {
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        root.write_if_changed(LEDGER_PATH, &json, 0o644, None)
            .map(|_| ())
    }
}
