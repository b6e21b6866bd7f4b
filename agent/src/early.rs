//! Command probes started early: `fruix-agent init` starts each declared
//! probe before activation (a Guile start-up takes seconds in an emulated
//! guest, and would otherwise only begin with the daemon, after Shepherd
//! has started), and the daemon's first round takes its result instead of
//! running it again.
//!
//! Hand-over without polling: init opens `/run/fruix/probes/NAME.lock`,
//! takes an exclusive `flock` on it and gives that open file to the probe
//! process as its stdin, so the lock lasts exactly as long as the probe
//! process, however it ends. The daemon takes a shared lock on the same
//! file, which returns when the probe is done, then reads `NAME.json`.
//! Only a passed result is taken: a probe that failed that early (before
//! activation) is run again by the daemon.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use fruix_activation::GuestRoot;
use nix::fcntl::{Flock, FlockArg};

use crate::checks::{Check, CheckStatus};

/// Where early probes leave their locks and results.
pub const PROBE_DIR: &str = "/run/fruix/probes";

fn lock_path(name: &str) -> String {
    format!("{PROBE_DIR}/{name}.lock")
}

fn result_path(name: &str) -> String {
    format!("{PROBE_DIR}/{name}.json")
}

/// Starts `agent probe NAME --system SYSTEM` for each probe name, each
/// holding its lock. Returns what could not be started.
pub fn spawn(root: &GuestRoot, agent: &str, system: &str, names: &[String]) -> Vec<String> {
    let mut errors = Vec::new();
    if let Err(e) = root.ensure_dir(PROBE_DIR, 0o700) {
        return vec![crate::error::chain(&e)];
    }
    for name in names {
        let started = (|| -> std::io::Result<()> {
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(root.path(&lock_path(name)))?;
            let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
                .map_err(|(_, e)| std::io::Error::from(e))?;
            let stdin = lock.try_clone()?;
            Command::new(agent)
                .args(["probe", name, "--system", system, "--record"])
                .stdin(Stdio::from(stdin))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            // Our descriptor goes without unlocking: the probe's stdin
            // shares the open file, and with it the lock.
            let fd = lock.as_raw_fd();
            std::mem::forget(lock);
            let _ = nix::unistd::close(fd);
            Ok(())
        })();
        if let Err(e) = started {
            let _ = fs::remove_file(root.path(&lock_path(name)));
            errors.push(format!("probe {name}: cannot start it early: {e}"));
        }
    }
    errors
}

/// Records a probe's result where [`take`] finds it.
pub fn record(root: &GuestRoot, check: &Check) -> std::io::Result<()> {
    let json = serde_json::to_vec(check)?;
    root.write_if_changed(&result_path(&check.name), &json, 0o600, None)
        .map(|_| ())
        .map_err(std::io::Error::other)
}

/// The early result of probe `name`, once it is done, if it passed; the
/// files are removed, so that a later round runs the probe itself.
pub fn take(root: &GuestRoot, name: &str) -> Option<Check> {
    let file = File::open(root.path(&lock_path(name))).ok()?;
    // Blocks until the probe process has ended (its own timeout bounds it).
    let lock = Flock::lock(file, FlockArg::LockShared).ok();
    let check: Option<Check> = fs::read(root.path(&result_path(name)))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    drop(lock);
    let _ = fs::remove_file(root.path(&result_path(name)));
    let _ = fs::remove_file(root.path(&lock_path(name)));
    match check {
        Some(c) if c.status == CheckStatus::Ok && c.name == name => Some(c),
        other => {
            eprintln!(
                "fruix-agent: probe {name} started early {}; running it again",
                match other {
                    Some(c) => format!("failed: {}", c.reasons.join("; ")),
                    None => "left no result".to_owned(),
                }
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_pass_is_taken_once_and_a_failure_never() {
        let t = tempfile::tempdir().unwrap();
        let root = GuestRoot::new(t.path());
        root.ensure_dir(PROBE_DIR, 0o700).unwrap();
        assert_eq!(take(&root, "smoke"), None, "nothing started");
        fs::write(root.path(&lock_path("smoke")), "").unwrap();
        record(&root, &Check::ok("smoke", "ok")).unwrap();
        assert_eq!(take(&root, "smoke"), Some(Check::ok("smoke", "ok")));
        assert_eq!(take(&root, "smoke"), None, "taken once");
        fs::write(root.path(&lock_path("smoke")), "").unwrap();
        record(&root, &Check::failed("smoke", "failed", vec!["x".into()])).unwrap();
        assert_eq!(take(&root, "smoke"), None, "a failure is run again");
    }

    #[test]
    fn take_waits_for_the_lock_holder() {
        let t = tempfile::tempdir().unwrap();
        let root = GuestRoot::new(t.path());
        root.ensure_dir(PROBE_DIR, 0o700).unwrap();
        let f = File::create(root.path(&lock_path("slow"))).unwrap();
        let held = Flock::lock(f, FlockArg::LockExclusive).unwrap();
        let r2 = root.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            record(&r2, &Check::ok("slow", "ok")).unwrap();
            drop(held);
        });
        // Without waiting for the holder, there would be no result yet.
        assert_eq!(take(&root, "slow"), Some(Check::ok("slow", "ok")));
        writer.join().unwrap();
    }
}
