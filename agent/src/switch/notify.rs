//! Telling the agent's daemon that the system changed under it: a SIGHUP
//! makes it start a new round of the current system; when the agent's
//! binary changed, the daemon is restarted into the new one (by Shepherd,
//! whose `fruix-agent` service file changed with it, in shepherd-pid1
//! mode; by its rc script in rc-shepherd mode).

use fruix_activation::GuestRoot;
use fruix_system::switch::ServicePlan;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::system::SystemView;

/// Where the daemon writes its pid.
pub const DAEMON_PID: &str = "/run/fruix/agent.pid";

/// Sends SIGHUP to the daemon, if it runs; true when it was sent.
pub fn recheck(root: &GuestRoot) -> bool {
    let pid = std::fs::read_to_string(root.path(DAEMON_PID))
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|p| *p > 1);
    pid.is_some_and(|p| kill(Pid::from_raw(p), Signal::SIGHUP).is_ok())
}

/// [`recheck`], then waits (up to 15 s) until the daemon's published
/// report shows the switch as `want` (`committed`, `rolled-back`), so that
/// whoever asks right after the switch ends never reads a report of before
/// it. A daemon that is not running is not waited for.
pub fn recheck_and_wait(root: &GuestRoot, want: &str) {
    if !recheck(root) {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        let shown = std::fs::read(root.path(crate::markers::STATUS_PATH))
            .ok()
            .and_then(|b| serde_json::from_slice::<crate::report::Report>(&b).ok())
            .and_then(|r| {
                r.fields
                    .iter()
                    .find(|(k, _)| k == "switch")
                    .map(|(_, v)| v.clone())
            });
        if shown.as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// After the services of `old` were brought to those of `new` by `plan`:
/// restarts the daemon into the new agent when the agent changed and
/// Shepherd did not do it, else asks it to check again.
pub fn follow_switch(root: &GuestRoot, old: &SystemView, new: &SystemView, plan: &ServicePlan) {
    let agent_changed = old.config.agent != new.config.agent;
    if new.config.boot_mode == "shepherd-pid1" {
        // The agent's service file names the agent item: a new agent is a
        // changed file, restarted with the other services.
        if !plan.restart.iter().any(|s| s == "fruix-agent") {
            let _ = recheck(root);
        }
        return;
    }
    if agent_changed && root.as_path() == std::path::Path::new("/") {
        let argv = crate::platform::RC_AGENT_RESTART;
        let _ = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .status();
    } else {
        let _ = recheck(root);
    }
}
