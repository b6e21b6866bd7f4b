//! Command probes: a program that passes by exiting 0 within its timeout.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::Check;

/// How much of each output stream is kept (its end: the reason quotes
/// the last line).
const KEEP: usize = 16 * 1024;

/// Runs `argv` with `env` added to a minimal environment, and kills its
/// process group at `timeout`. A waiter thread blocks on the child and
/// closes a pipe when it has ended; this thread reads the child's output
/// with `poll` until then, or until the deadline, so nothing polls and
/// nothing waits for the end of a pipe that a descendant in a session of
/// its own (`setsid`) may hold open for ever. The reason names the exit
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
        // Its own process group, so that a timeout ends its children too.
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let cannot = |e: &dyn std::fmt::Display| {
        Check::failed(
            name,
            "failed",
            vec![format!("probe {name}: cannot run {prog}: {e}")],
        )
    };
    // Close-on-exec, so that no other probe started meanwhile inherits it.
    let (done_r, done_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return cannot(&e),
    };
    let deadline = Instant::now().checked_add(timeout);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return cannot(&e),
    };
    let pid = child.id();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
        drop(done_w);
    });
    let (out, err, ended) = collect(stdout, stderr, &done_r, deadline);
    let status = if ended {
        rx.recv().ok()
    } else {
        if let Ok(p) = i32::try_from(pid) {
            let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
        }
        // Reap it (it is killed: this returns at once), so that no zombie
        // is left.
        let _ = rx.recv();
        return Check::failed(
            name,
            "failed",
            vec![format!(
                "probe {name} did not finish within {} s",
                timeout.as_secs()
            )],
        );
    };
    let status: ExitStatus = match status {
        Some(Ok(s)) => s,
        Some(Err(e)) => return Check::failed(name, "failed", vec![format!("probe {name}: {e}")]),
        None => return Check::failed(name, "failed", vec![format!("probe {name}: lost")]),
    };
    if status.success() {
        return Check::ok(name, "ok");
    }
    let text = String::from_utf8_lossy(&err).into_owned() + &String::from_utf8_lossy(&out);
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
        vec![format!("probe {name} exited with {status}: {last}")],
    )
}

/// Appends to `buf`, keeping its last [`KEEP`] bytes.
fn keep(buf: &mut Vec<u8>, data: &[u8]) {
    buf.extend_from_slice(data);
    if buf.len() > 2 * KEEP {
        buf.drain(..buf.len() - KEEP);
    }
}

/// Reads the child's output until the child has ended (`done` readable)
/// or `deadline` (`None`: no deadline) has passed. What is still in the
/// pipes when the child ends is read; a descendant holding them open is
/// not waited for. Returns stdout, stderr, and whether the child ended.
fn collect(
    mut stdout: Option<ChildStdout>,
    mut stderr: Option<ChildStderr>,
    done: &OwnedFd,
    deadline: Option<Instant>,
) -> (Vec<u8>, Vec<u8>, bool) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut chunk = [0u8; 8192];
    let mut ended = false;
    // Reads after the child ended: a descendant that keeps writing is not
    // followed for ever.
    let mut drains = 0;
    loop {
        if ended {
            drains += 1;
        }
        if ended && ((stdout.is_none() && stderr.is_none()) || drains > 64) {
            return (out, err, true);
        }
        let timeout = match (ended, deadline) {
            // Drain what is there, without waiting for more.
            (true, _) => PollTimeout::ZERO,
            (false, None) => PollTimeout::NONE,
            (false, Some(d)) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (out, err, false);
                }
                // Longer than i32::MAX ms: waited in slices.
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = vec![PollFd::new(done.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            stdout
                .as_ref()
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN)),
        );
        fds.extend(
            stderr
                .as_ref()
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return (out, err, ended),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        ended |= ready[0];
        let out_ready = stdout.is_some() && ready[1];
        let err_ready = stderr.is_some() && ready[if stdout.is_some() { 2 } else { 1 }];
        if out_ready {
            read_into(&mut stdout, &mut out, &mut chunk);
        }
        if err_ready {
            read_into(&mut stderr, &mut err, &mut chunk);
        }
        if ended && !out_ready && !err_ready {
            return (out, err, true);
        }
    }
}

/// Reads once from a readable pipe; drops it at its end.
fn read_into<R: Read>(pipe: &mut Option<R>, buf: &mut Vec<u8>, chunk: &mut [u8]) {
    if let Some(p) = pipe {
        match p.read(chunk) {
            Ok(0) | Err(_) => *pipe = None,
            Ok(n) => keep(buf, &chunk[..n]),
        }
    }
}
