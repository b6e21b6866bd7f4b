//! The activation ledger, `/run/fruix/activation.json`: what each step of
//! one activation did, written by activation after every step (so that a
//! killed run shows where it stopped) and read by the agent's activation
//! check. Its one writer is `fruix_activation`'s (through
//! [`Ledger::to_json`]), its one reader [`Ledger::parse`].

use serde::{Deserialize, Serialize};

use crate::FormatError;

/// Where the ledger is written.
pub const LEDGER_PATH: &str = "/run/fruix/activation.json";

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The record of one activation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

    /// Records a step run outside activation's own list (the agent's
    /// mounts, say).
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

    /// The ledger's bytes: pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these types cannot fail: no maps with non-string
        // keys, no floats.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Reads a ledger; `what` names it in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Ledger, FormatError> {
        serde_json::from_slice(bytes).map_err(|e| FormatError::Line {
            what: what.to_owned(),
            line: e.line(),
            message: e.to_string(),
        })
    }

    /// The steps that failed.
    pub fn failed(&self) -> impl Iterator<Item = &StepRecord> {
        self.steps.iter().filter(|s| s.status == StepStatus::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_the_exact_bytes() {
        let mut l = Ledger {
            system: "/frx/store/x-system-h".into(),
            generation: Some(2),
            dry_run: false,
            steps: Vec::new(),
        };
        l.push(
            "etc",
            StepStatus::Changed,
            vec!["/etc/hosts".into()],
            3,
            None,
        );
        l.push(
            "host-keys",
            StepStatus::Failed,
            vec![],
            1,
            Some("ssh-keygen failed".into()),
        );
        let bytes = l.to_json();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            "{\n  \"system\": \"/frx/store/x-system-h\",\n  \"generation\": 2,\n  \"dry_run\": false,\n  \"steps\": [\n    {\n      \"step\": \"etc\",\n      \"status\": \"changed\",\n      \"changes\": [\n        \"/etc/hosts\"\n      ],\n      \"ms\": 3\n    },\n    {\n      \"step\": \"host-keys\",\n      \"status\": \"failed\",\n      \"changes\": [],\n      \"ms\": 1,\n      \"error\": \"ssh-keygen failed\"\n    }\n  ]\n}"
        );
        let back = Ledger::parse(&bytes, "ledger").unwrap();
        assert_eq!(back, l);
        assert!(!back.ok());
        assert_eq!(
            back.failed().map(|s| s.step.as_str()).collect::<Vec<_>>(),
            ["host-keys"]
        );
        assert_eq!(
            Ledger::parse(b"{", "/run/fruix/activation.json")
                .unwrap_err()
                .to_string(),
            "/run/fruix/activation.json: line 1: EOF while parsing an object at line 1 column 1"
        );
    }
}
