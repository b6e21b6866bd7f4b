//! The readiness checks. Each returns a [`Check`]: its name (as `gate`
//! names it), its value for the status report, whether it passed, and the
//! reasons when it did not.
//!
//! To add a check: a function here or in a module of its own returning a
//! `Check`, a key in [`crate::report`], and its name in the declaration's
//! built-in checks (`host-builder/src/declaration/mod.rs`).

pub mod command;
pub mod local;
pub mod service;
pub mod shepherd;
pub mod sshd;
pub mod store;

use serde::{Deserialize, Serialize};

/// How a check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    /// It passed.
    Ok,
    /// It failed; see the reasons.
    Failed,
    /// It has not finished yet.
    Pending,
    /// It was not asked for (a verification policy of `none`).
    Skipped,
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The check's name, as `gate` names it (`sshd`, `store`, a probe's name).
    pub name: String,
    /// Passed, failed, pending, skipped.
    pub status: CheckStatus,
    /// The value the status report shows for it (`running`, `ok`, `absent`).
    pub value: String,
    /// Why it failed, one line each, naming what is wrong.
    pub reasons: Vec<String>,
}

impl Check {
    /// A passed check.
    pub fn ok(name: &str, value: impl Into<String>) -> Check {
        Check {
            name: name.to_owned(),
            status: CheckStatus::Ok,
            value: value.into(),
            reasons: Vec::new(),
        }
    }

    /// A failed check with its reasons.
    pub fn failed(name: &str, value: impl Into<String>, reasons: Vec<String>) -> Check {
        Check {
            name: name.to_owned(),
            status: CheckStatus::Failed,
            value: value.into(),
            reasons,
        }
    }

    /// A check still running.
    pub fn pending(name: &str) -> Check {
        Check {
            name: name.to_owned(),
            status: CheckStatus::Pending,
            value: "pending".into(),
            reasons: Vec::new(),
        }
    }
}
