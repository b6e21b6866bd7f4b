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

/// Where the daemon writes the path of the binary it runs, after its pid.
pub const DAEMON_EXE: &str = "/run/fruix/agent.exe";

/// The pid the daemon wrote, if it is one (never 0 or init's 1, which a
/// signal must not reach).
fn daemon_pid(root: &GuestRoot) -> Option<i32> {
    std::fs::read_to_string(root.path(DAEMON_PID))
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|p| *p > 1)
}

/// The path of `view`'s agent binary.
pub fn agent_binary(view: &SystemView) -> String {
    format!("/frx/store/{}/bin/fruix-agent", view.config.agent)
}

/// Waits until the daemon runs the agent binary `want` (its pid alive,
/// and the binary it names `want`), up to `deadline`; says what runs
/// instead when it does not.
pub fn wait_for_agent(
    root: &GuestRoot,
    want: &str,
    deadline: std::time::Instant,
) -> Result<u32, String> {
    loop {
        let pid = daemon_pid(root);
        let exe = std::fs::read_to_string(root.path(DAEMON_EXE)).ok();
        let exe = exe.as_deref().map(str::trim_end);
        let alive = pid.is_some_and(|p| kill(Pid::from_raw(p), None).is_ok());
        if alive && exe == Some(want) {
            return Ok(pid.unwrap_or_default().unsigned_abs());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "agent: the daemon does not run {want} (pid {}, {}, binary {})",
                pid.map_or("none".to_owned(), |p| p.to_string()),
                if alive { "running" } else { "not running" },
                exe.unwrap_or("unknown")
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// True when a daemon has run on this guest since its boot (its pid file
/// is there, alive or not): a switch that changes the agent then waits
/// for the new one, also when the old one was just stopped or never came
/// back.
pub fn daemon_known(root: &GuestRoot) -> bool {
    std::fs::symlink_metadata(root.path(DAEMON_PID)).is_ok()
}

/// Sends SIGHUP to the daemon, if it runs; true when it was sent.
pub fn recheck(root: &GuestRoot) -> bool {
    daemon_pid(root).is_some_and(|p| kill(Pid::from_raw(p), Signal::SIGHUP).is_ok())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_new_agent_is_waited_for_by_its_pid_and_binary() {
        let t = tempfile::tempdir().unwrap();
        let root = GuestRoot::new(t.path());
        assert!(!daemon_known(&root));
        let soon = || Instant::now() + Duration::from_millis(150);
        assert_eq!(
            wait_for_agent(&root, "/frx/store/a-2/bin/fruix-agent", soon()),
            Err("agent: the daemon does not run /frx/store/a-2/bin/fruix-agent (pid none, not running, binary unknown)".to_owned())
        );
        std::fs::create_dir_all(t.path().join("run/fruix")).unwrap();
        let me = std::process::id();
        std::fs::write(t.path().join("run/fruix/agent.pid"), format!("{me}\n")).unwrap();
        std::fs::write(
            t.path().join("run/fruix/agent.exe"),
            "/frx/store/a-1/bin/fruix-agent\n",
        )
        .unwrap();
        assert!(daemon_known(&root));
        assert_eq!(
            wait_for_agent(&root, "/frx/store/a-2/bin/fruix-agent", soon()),
            Err(format!(
                "agent: the daemon does not run /frx/store/a-2/bin/fruix-agent (pid {me}, running, binary /frx/store/a-1/bin/fruix-agent)"
            ))
        );
        std::fs::write(
            t.path().join("run/fruix/agent.exe"),
            "/frx/store/a-2/bin/fruix-agent\n",
        )
        .unwrap();
        assert_eq!(
            wait_for_agent(&root, "/frx/store/a-2/bin/fruix-agent", soon()),
            Ok(me)
        );
    }
}
