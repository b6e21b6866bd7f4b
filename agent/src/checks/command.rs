//! Command probes: a program that passes by exiting 0 within its timeout.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use std::os::unix::process::CommandExt;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::Check;

/// Runs `argv` with `env` added to a minimal environment, and kills it at
/// `timeout`. A waiter thread blocks on the child; this one blocks on the
/// waiter with a deadline, so nothing polls. The reason names the exit
/// status and the last line of output.
pub fn run(name: &str, argv: &[String], env: &[(String, String)], timeout: Duration) -> Check {
    let Some((prog, args)) = argv.split_first() else {
        return Check::failed(name, "failed", vec![format!("probe {name} has no program")]);
    };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/usr/sbin:/bin:/sbin:/usr/local/bin")
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout ends its children too
        // (they would hold its output pipe open).
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Check::failed(
                name,
                "failed",
                vec![format!("probe {name}: cannot run {prog}: {e}")],
            );
        }
    };
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(timeout) {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Check::failed(name, "failed", vec![format!("probe {name}: {e}")]),
        Err(_) => {
            if let Ok(p) = i32::try_from(pid) {
                let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
            }
            // Reap it, so that no zombie is left.
            let _ = rx.recv();
            return Check::failed(
                name,
                "failed",
                vec![format!(
                    "probe {name} did not finish within {} s",
                    timeout.as_secs()
                )],
            );
        }
    };
    if output.status.success() {
        return Check::ok(name, "ok");
    }
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let last: String = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(120)
        .collect();
    Check::failed(
        name,
        "failed",
        vec![format!(
            "probe {name} exited with {}: {last}",
            output.status
        )],
    )
}
