//! `fruix system deploy --boot` and `--reboot`: the new generation made
//! the next boot's first try (`fruix-agent switch --boot`: a counted boot
//! entry, nothing switched live), then, with `--reboot`, the guest
//! rebooted, waited for until its boot id changed and its agent's report
//! is final, and the generation it came up in told: the new one, blessed,
//! or the one its failed trial fell back to.

use std::time::{Duration, Instant};

use fruix_system::Report;
use serde::Serialize;

use super::error::DeployError;
use super::remote::{AGENT, Remote, RemoteError, last_line};

/// How long `fruix-agent reboot` may keep its session open: an agent that
/// refuses answers within it; one that reboots takes the guest down, and
/// a guest going down does not always close the session (QEMU's user
/// network keeps the host's end), which ssh would wait on for its
/// keepalives (30 s).
const REBOOT_ANSWER: Duration = Duration::from_secs(15);

/// What `switch --boot` made in the guest.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Staged {
    /// The generation the next boot tries.
    pub generation: u64,
    /// Its loader entry's file name.
    pub entry: String,
    /// What changed on the ESP.
    pub changes: Vec<String>,
}

/// How the reboot went.
#[derive(Clone, Debug, Serialize)]
pub struct Rebooted {
    /// The generation the guest came up in.
    pub booted_generation: Option<u64>,
    /// Its outcome (`ready`, `degraded`, `failed`, `pending`).
    pub ready_marker: String,
    /// The newer generation it fell back from, if it did.
    pub boot_fallback_from: Option<u64>,
    /// The tries that generation used.
    pub boot_tries_failed: u32,
    /// Its boot entry's state (`blessed`, `trying`, ...).
    pub boot_entry: String,
    /// Seconds from the reboot to the final report.
    pub seconds: f64,
}

impl Rebooted {
    /// True when the guest came up ready in `generation`.
    pub fn came_up_in(&self, generation: u64) -> bool {
        self.booted_generation == Some(generation)
            && matches!(self.ready_marker.as_str(), "ready" | "degraded")
    }
}

/// Runs `fruix-agent switch --boot` for `guest_system`.
pub fn stage(remote: &Remote, host: &str, guest_system: &str) -> Result<Staged, DeployError> {
    let out = remote.run(
        &format!("{AGENT} switch --boot --json {guest_system}"),
        None,
    )?;
    let answer = |text: &str| DeployError::Answer {
        host: host.to_owned(),
        what: "fruix-agent switch --boot".into(),
        text: last_line(text),
    };
    if out.code != 0 {
        return Err(answer(&out.stderr));
    }
    serde_json::from_str(out.stdout.trim()).map_err(|_| answer(&out.stdout))
}

/// The guest's boot id, from `fruix-agent boot-entries --json`.
fn boot_id(remote: &Remote) -> Result<Option<String>, RemoteError> {
    let out = remote.run(&format!("{AGENT} boot-entries --json"), None)?;
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
    Ok(v["boot_id"].as_str().map(str::to_owned))
}

/// Waits until the guest answers with a boot id other than `seen`
/// (`None`: any boot id).
fn wait_for_boot(
    remote: &Remote,
    host: &str,
    seen: &Option<String>,
    (t, deadline): (Instant, Instant),
    on_event: &mut dyn FnMut(&str),
) -> Result<Option<String>, DeployError> {
    let mut waits = 0u32;
    loop {
        std::thread::sleep(Duration::from_secs(2));
        match boot_id(remote) {
            Ok(now) if now.is_some() && now != *seen => return Ok(now),
            Ok(_) | Err(RemoteError::Unreachable(_)) if Instant::now() < deadline => {
                waits += 1;
                if waits.is_multiple_of(15) {
                    on_event(&format!(
                        "waiting for the guest to come back ({:.0} s)",
                        t.elapsed().as_secs_f64()
                    ));
                }
            }
            Ok(_) | Err(RemoteError::Unreachable(_)) => {
                return Err(DeployError::Answer {
                    host: host.to_owned(),
                    what: "the reboot".into(),
                    text: format!(
                        "the guest did not come back within {:.0} s",
                        t.elapsed().as_secs_f64()
                    ),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reboots the guest into its next boot's first try, `generation`, and
/// waits, up to `timeout`, for the boot that stays: a new boot id and a
/// final report, and when that report is the tried generation failing,
/// the boot its agent falls back to. `on_event` gets a line at each stage.
pub fn reboot_and_wait(
    remote: &Remote,
    host: &str,
    generation: u64,
    timeout: Duration,
    on_event: &mut dyn FnMut(&str),
) -> Result<Rebooted, DeployError> {
    let mut seen = boot_id(remote)?;
    // From the reboot on, a new connection for every command, quick to
    // give up on a guest gone silent: a guest going down leaves its
    // sessions open (its kernel closes none; QEMU's user network keeps
    // the host's end), and ssh's steady keepalives would wait 30 s on
    // each (docs/performance.md, boot fallback).
    let remote = &remote.rebooting();
    let t = Instant::now();
    on_event("rebooting");
    // The connection goes down with the guest: no answer is the answer
    // (a session still open after REBOOT_ANSWER is the guest going down
    // without closing it), but an agent that refused at once is an error.
    match remote.run_for(&format!("{AGENT} reboot"), REBOOT_ANSWER) {
        Ok(Some(out)) if out.code != 0 && !out.stdout.contains("rebooting") => {
            return Err(DeployError::Answer {
                host: host.to_owned(),
                what: "fruix-agent reboot".into(),
                text: last_line(&out.stderr),
            });
        }
        Ok(_) | Err(RemoteError::Unreachable(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let deadline = t + timeout;
    // Set when the report's session was lost in a boot that may still be
    // up (a short silence of a busy guest): ask that boot again.
    let mut lost = false;
    let mut asked_again = 0u32;
    loop {
        let now = wait_for_boot(
            remote,
            host,
            if lost { &None } else { &seen },
            (t, deadline),
            on_event,
        )?;
        if now != seen {
            seen = now;
            on_event(&format!(
                "up after {:.1} s; waiting for its report",
                t.elapsed().as_secs_f64()
            ));
        } else if lost {
            // A retry that could hide a fault: counted, and said.
            asked_again += 1;
            on_event(&format!(
                "lost the session waiting for the report, but the same boot answers: asking again ({asked_again})"
            ));
        }
        lost = false;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1);
        let out = match remote.run(&format!("{AGENT} status --json --wait {left}"), None) {
            Ok(out) => out,
            // Gone while we waited: a failed trial's reboot (the next
            // boot is the one to report), or a silence of this boot's.
            Err(RemoteError::Unreachable(_)) => {
                lost = true;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let report =
            Report::from_json(out.stdout.trim(), "fruix-agent status --json").map_err(|_| {
                DeployError::Answer {
                    host: host.to_owned(),
                    what: "fruix-agent status".into(),
                    text: last_line(&out.stdout),
                }
            })?;
        let num = |k: &str| report.get(k).and_then(|v| v.parse().ok());
        let r = Rebooted {
            booted_generation: num("booted_generation"),
            ready_marker: report.outcome.as_str().to_owned(),
            boot_fallback_from: num("boot_fallback_from"),
            boot_tries_failed: num("boot_tries_failed").map_or(0, |n: u64| n as u32),
            boot_entry: report.get("boot_entry").unwrap_or("none").to_owned(),
            seconds: t.elapsed().as_secs_f64(),
        };
        // The tried generation failed: its agent marks the entry bad and
        // reboots into the one before, which is the boot to report. (A
        // blessed entry that fails is not tried again: it stays.)
        if r.booted_generation == Some(generation)
            && matches!(r.boot_entry.as_str(), "trying" | "bad")
            && !matches!(r.ready_marker.as_str(), "ready" | "degraded")
        {
            on_event(&format!(
                "generation {generation} is {} at boot; its agent falls back",
                r.ready_marker
            ));
            continue;
        }
        return Ok(r);
    }
}
