//! `fruix-agent switch`: a live switch to a new system, gated on the new
//! generation's readiness, rolled back when it is not ready.
//!
//! The command that SSH runs only starts the switch and follows it: the
//! switch itself runs in a worker process of its own session (`setsid`,
//! SIGHUP ignored, output to `/frx/var/fruix/switch.log`), so that a
//! dropped connection, or sshd restarted by the switch, cannot stop it
//! halfway (nixos-rebuild runs under `systemd-run` for the same reason).
//! The worker holds the switch lock and saves its state after every
//! step; the follower prints the state's events as they come and exits
//! with the switch's outcome: 0 committed, 1 rolled back, 2 failed or
//! error. `--follow ID` follows a running switch again after a reconnect.

pub mod boot;
pub mod dry_run;
pub mod error;
pub mod notify;
pub mod plan;
pub mod state;
pub mod worker;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fruix_activation::GuestRoot;
use fruix_system::switch::{Event, Phase, SWITCH_LOG, SwitchState};

pub use error::SwitchError;
pub use state::{current_system, generation_of, now_s};

/// The report's switch facts: the current generation, and the last
/// switch's end (or `in-progress`) and reason.
pub fn facts(root: &GuestRoot, facts: &mut crate::report::Facts) {
    facts.generation = generation_of(root);
    match state::load(root) {
        Ok(Some(s)) => {
            facts.switch = s.phase.report_value().to_owned();
            facts.switch_reason = s.reason.map(|r| r.replace('\n', " "));
        }
        Ok(None) => {
            facts.switch = "none".into();
            facts.switch_reason = None;
        }
        Err(e) => {
            facts.switch = "unknown".into();
            facts.switch_reason = Some(e.to_string());
        }
    }
}

/// A new switch id: the time and the pid of the process that makes it.
pub fn new_id() -> String {
    format!("{}-{}", now_s(), std::process::id())
}

/// Runs a switch in this process: takes the lock (or fails with
/// [`SwitchError::Busy`]), then [`worker::run`].
pub fn run_worker(
    root: &GuestRoot,
    id: &str,
    to: &str,
    generation: Option<u64>,
    confirm_timeout: Duration,
) -> Result<SwitchState, SwitchError> {
    let Some(_lock) = state::try_lock(root)? else {
        return Err(SwitchError::Busy(
            root.path(fruix_system::switch::SWITCH_LOCK),
        ));
    };
    // The connection that started us may go at any time.
    // SAFETY: SIG_IGN for SIGHUP installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGHUP,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    match worker::run(root, id, to, generation, confirm_timeout) {
        Ok(s) => Ok(s),
        Err(e) => {
            // The switch must not stay half: what was saved of it is rolled
            // back now, under the lock still held.
            eprintln!("fruix-agent switch {id}: {e}; rolling back");
            match state::load(root) {
                Ok(Some(s)) if s.id == id && !s.phase.is_final() => {
                    let _ = worker::recover_locked(root, s);
                }
                _ => {}
            }
            Err(e)
        }
    }
}

/// Rolls back a switch found unfinished whose lock nobody holds (a worker
/// killed, a power cut): what `fruix-agent switch --recover` and the
/// daemon's start do. `None` when there is nothing to finish.
pub fn recover(root: &GuestRoot) -> Result<Option<SwitchState>, SwitchError> {
    let Some(_lock) = state::try_lock(root)? else {
        return Ok(None);
    };
    match state::load(root)? {
        Some(s) if !s.phase.is_final() => worker::recover_locked(root, s).map(Some),
        _ => Ok(None),
    }
}

/// True when a switch was left unfinished and nobody is finishing it.
pub fn needs_recovery(root: &GuestRoot) -> bool {
    matches!(state::load(root), Ok(Some(s)) if !s.phase.is_final())
        && matches!(state::is_running(root), Ok(false))
}

/// Starts `exe switch --worker` in a session of its own, with its output
/// appended to the switch log, and returns it.
pub fn spawn_worker(
    root: &GuestRoot,
    exe: &std::path::Path,
    args: &[String],
) -> Result<std::process::Child, SwitchError> {
    root.ensure_dir(state::STATE_DIR, 0o755)
        .map_err(|e| SwitchError::State(e.to_string()))?;
    let log_path = root.path(SWITCH_LOG);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags_nofollow()
        .open(&log_path)
        .map_err(|source| SwitchError::Io {
            path: log_path.clone(),
            source,
        })?;
    let err = log.try_clone().map_err(|source| SwitchError::Io {
        path: log_path.clone(),
        source,
    })?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err));
    // SAFETY: setsid is async-signal-safe, and nothing else runs between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| SwitchError::Io {
        path: exe.to_owned(),
        source,
    })
}

/// Opening flags that refuse a link at the last component.
trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600).custom_flags(libc::O_NOFOLLOW)
    }
}

/// Follows switch `id` until it ends, handing each new event to `on`.
/// `worker` is the process that runs it when this process started it:
/// until the state names `id`, its exit means it never started.
pub fn follow(
    root: &GuestRoot,
    id: &str,
    mut worker: Option<&mut std::process::Child>,
    on: &mut dyn FnMut(&Event),
) -> Result<SwitchState, SwitchError> {
    let mut seen = 0;
    let started = Instant::now();
    loop {
        let s = state::load(root)?;
        match s {
            Some(s) if s.id == id => {
                for e in s.events.iter().skip(seen) {
                    on(e);
                }
                seen = s.events.len();
                if s.phase.is_final() {
                    // The worker ends once the daemon's report shows the
                    // end too (`notify::recheck_and_wait`): wait for it, so
                    // that whoever asks after us reads the new report.
                    let until = Instant::now() + Duration::from_secs(20);
                    while state::is_running(root)? && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    return Ok(s);
                }
                if !state::is_running(root)? {
                    // The state may have been saved just before the worker
                    // let go of the lock: read it once more.
                    let again = state::load(root)?;
                    if let Some(a) = again.filter(|a| a.id == id) {
                        for e in a.events.iter().skip(seen) {
                            on(e);
                        }
                        if a.phase.is_final() {
                            return Ok(a);
                        }
                        return Err(SwitchError::Interrupted {
                            id: id.to_owned(),
                            phase: a.phase.as_str(),
                        });
                    }
                }
            }
            _ => {
                let gone = match worker.as_deref_mut() {
                    Some(w) => matches!(w.try_wait(), Ok(Some(_))),
                    // Followed by id: the worker may still be finishing an
                    // earlier switch before it records this one.
                    None => {
                        started.elapsed() > Duration::from_secs(10) && !state::is_running(root)?
                    }
                };
                if gone {
                    if state::load(root)?.is_some_and(|s| s.id == id) {
                        continue;
                    }
                    if worker.is_none() {
                        return Err(SwitchError::Unknown(id.to_owned()));
                    }
                    let log = root.path(SWITCH_LOG);
                    let tail = std::fs::read_to_string(&log)
                        .ok()
                        .and_then(|t| t.lines().last().map(str::to_owned))
                        .unwrap_or_default();
                    return Err(SwitchError::WorkerGone {
                        id: id.to_owned(),
                        log: SWITCH_LOG.to_owned(),
                        tail,
                    });
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The exit status a switch's end maps to: 0 committed, 1 rolled back,
/// 2 failed.
pub fn exit_code(s: &SwitchState) -> u8 {
    match s.phase {
        Phase::Committed => 0,
        Phase::RolledBack => 1,
        _ => 2,
    }
}
