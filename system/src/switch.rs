//! The state of a live switch, `/frx/var/fruix/switch.json`: which system
//! the guest is switching from and to, how far it got, and how it ended.
//! Written by `fruix-agent switch` after every step (atomically), read by
//! the next agent start (to finish an interrupted switch), by the agent's
//! report (`generation`, `switch`, `switch_reason`) and, as `--json`
//! output, by `fruix system deploy` on the host. The one writer is
//! [`SwitchState::to_json`], the one reader [`SwitchState::parse`].

use serde::{Deserialize, Serialize};

use crate::FormatError;

/// Where the state is kept: on the root file system, so that it survives
/// a reboot (a switch killed by a power cut is finished at the next boot).
pub const SWITCH_PATH: &str = "/frx/var/fruix/switch.json";
/// The lock a switch holds while it runs (`flock`): one switch at a time,
/// and a switch whose lock nobody holds was interrupted.
pub const SWITCH_LOCK: &str = "/frx/var/fruix/switch.lock";
/// What a detached switch prints (its standard output and error).
pub const SWITCH_LOG: &str = "/frx/var/fruix/switch.log";

/// How far a switch got. The order is the order of the steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Recorded, nothing changed yet.
    Starting,
    /// Activating the new system (generation N+1).
    Activating,
    /// Bringing Shepherd's services in line with the new system.
    Services,
    /// Running the new generation's readiness round.
    Checking,
    /// The new generation was ready: it stays.
    Committed,
    /// Going back to the old generation (activation, services, readiness).
    RollingBack,
    /// Back on the old generation.
    RolledBack,
    /// Neither committed nor rolled back cleanly: the rollback itself
    /// failed; `reason` says where.
    Failed,
}

impl Phase {
    /// True for the phases a switch ends in.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Committed | Phase::RolledBack | Phase::Failed)
    }

    /// The phase's name, as JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Activating => "activating",
            Phase::Services => "services",
            Phase::Checking => "checking",
            Phase::Committed => "committed",
            Phase::RollingBack => "rolling-back",
            Phase::RolledBack => "rolled-back",
            Phase::Failed => "failed",
        }
    }

    /// The report's `switch` value: `in-progress` until the end.
    pub fn report_value(self) -> &'static str {
        match self {
            Phase::Committed => "committed",
            Phase::RolledBack => "rolled-back",
            Phase::Failed => "failed",
            _ => "in-progress",
        }
    }
}

/// What a switch did to Shepherd's services, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePlan {
    /// Services of the new system only: loaded and started.
    pub start: Vec<String>,
    /// Services of the old system only: stopped and unloaded.
    pub stop: Vec<String>,
    /// Services whose definition changed: loaded and restarted.
    pub restart: Vec<String>,
}

impl ServicePlan {
    /// True when no service changes.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty() && self.stop.is_empty() && self.restart.is_empty()
    }

    /// The plan that undoes this one, for the services' names: what was
    /// started is stopped, what was stopped is started, what was
    /// restarted is restarted again (with its old definition).
    pub fn reversed(&self) -> ServicePlan {
        ServicePlan {
            start: self.stop.clone(),
            stop: self.start.clone(),
            restart: self.restart.clone(),
        }
    }
}

/// One line of a switch's progress, as the follower prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the switch started.
    pub ms: u64,
    /// The phase it belongs to.
    pub phase: Phase,
    /// What happened, one line.
    pub message: String,
}

/// The state of one switch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchState {
    /// Unique for each switch (seconds and the worker's pid).
    pub id: String,
    /// The system the guest ran before, as a guest path.
    pub from: String,
    /// Its generation number.
    pub from_generation: u64,
    /// The system switched to.
    pub to: String,
    /// Its generation number, once activation made it.
    pub generation: Option<u64>,
    /// How far it got.
    pub phase: Phase,
    /// Seconds the new generation has to become ready.
    pub confirm_timeout_s: u64,
    /// When it started, seconds since the epoch.
    pub started: u64,
    /// Why it rolled back or failed, one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The new generation's failed checks, one line each (`NAME: REASON`).
    #[serde(default)]
    pub failed_checks: Vec<String>,
    /// What it did to the services.
    #[serde(default)]
    pub services: ServicePlan,
    /// The outcome of the readiness round after the switch: the new
    /// generation's when committed, the old one's after a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// What happened, in order.
    #[serde(default)]
    pub events: Vec<Event>,
}

impl SwitchState {
    /// The state's bytes: pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these types cannot fail: no maps, no floats.
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Reads a state; `what` names it in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<SwitchState, FormatError> {
        serde_json::from_slice(bytes).map_err(|e| FormatError::Line {
            what: what.to_owned(),
            line: e.line(),
            message: e.to_string(),
        })
    }

    /// Adds a progress line.
    pub fn event(&mut self, ms: u64, message: impl Into<String>) {
        self.events.push(Event {
            ms,
            phase: self.phase,
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SwitchState {
        SwitchState {
            id: "1764660000-42".into(),
            from: "/frx/store/a-system-h".into(),
            from_generation: 1,
            to: "/frx/store/b-system-h".into(),
            generation: Some(2),
            phase: Phase::RolledBack,
            confirm_timeout_s: 60,
            started: 1_764_660_000,
            reason: Some("web: not ready".into()),
            failed_checks: vec!["web: service web: tcp 127.0.0.1:8081 refused".into()],
            services: ServicePlan {
                start: vec!["web".into()],
                stop: vec![],
                restart: vec!["sshd".into()],
            },
            outcome: Some("ready".into()),
            events: vec![Event {
                ms: 12,
                phase: Phase::Activating,
                message: "activated generation 2".into(),
            }],
        }
    }

    #[test]
    fn a_state_reads_back_as_written() {
        let s = sample();
        let back = SwitchState::parse(&s.to_json(), "switch.json").unwrap();
        assert_eq!(back, s);
        let v: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(v["phase"], "rolled-back");
        assert_eq!(v["events"][0]["phase"], "activating");
    }

    #[test]
    fn a_broken_state_names_its_file_and_line() {
        let e = SwitchState::parse(b"{\n  \"id\": 3\n}", "/frx/var/fruix/switch.json").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/frx/var/fruix/switch.json: line 2: invalid type: integer `3`, expected a string at line 2 column 9"
        );
    }

    #[test]
    fn phases_say_when_they_end_and_what_the_report_shows() {
        let all = [
            Phase::Starting,
            Phase::Activating,
            Phase::Services,
            Phase::Checking,
            Phase::Committed,
            Phase::RollingBack,
            Phase::RolledBack,
            Phase::Failed,
        ];
        let finals: Vec<&str> = all
            .iter()
            .filter(|p| p.is_final())
            .map(|p| p.as_str())
            .collect();
        assert_eq!(finals, ["committed", "rolled-back", "failed"]);
        let values: Vec<&str> = all.iter().map(|p| p.report_value()).collect();
        assert_eq!(
            values,
            [
                "in-progress",
                "in-progress",
                "in-progress",
                "in-progress",
                "committed",
                "in-progress",
                "rolled-back",
                "failed"
            ]
        );
        for p in all {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
    }

    #[test]
    fn a_reversed_plan_undoes_the_plan() {
        let p = sample().services;
        let r = p.reversed();
        assert_eq!(r.start, Vec::<String>::new());
        assert_eq!(r.stop, vec!["web".to_owned()]);
        assert_eq!(r.restart, vec!["sshd".to_owned()]);
        assert!(ServicePlan::default().is_empty());
    }
}
