//! `fruix-agent run`: the daemon. One mio event loop with four kinds of
//! source, each with its own token and handler: signals (SIGHUP re-checks,
//! SIGTERM and SIGINT end it), the status socket's listener, its
//! connections, and a waker that the check thread rings with each result.
//! Nothing polls: while idle the daemon sleeps in `Poll::poll`, with a
//! deadline only while a `wait` request is open.
//!
//! The status socket (`/run/fruix/agent.sock`, mode 0600, and the peer's
//! uid checked: only root can ask) takes one request line and answers
//! read-only: `status`, or `wait SECONDS` (answered when the outcome is
//! final, or at the deadline). Its bounds are in `socket.rs`.

use std::io;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use fruix_activation::GuestRoot;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::checks::Check;
use crate::markers;
use crate::report::{self, Facts, Report};
use crate::round::{self, RoundInputs};
use crate::socket::{self, Connections, Request};
use crate::system::SystemView;

const SIGNALS: Token = Token(0);
const LISTENER: Token = Token(1);
const WAKE: Token = Token(2);
const FIRST_CONNECTION: usize = 16;

/// Where the status socket is.
pub const SOCKET_PATH: &str = "/run/fruix/agent.sock";

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The guest's root.
    pub root: GuestRoot,
    /// The system item's guest path.
    pub system: String,
    /// Check what `/frx/var/current-system` names at each round instead
    /// of `system` once it exists: after a live switch the daemon checks
    /// the new system (`fruix-agent run` without `--system`).
    pub follow_current: bool,
    /// The system the boot line names: the boot line's digest is checked
    /// only against it.
    pub boot_system: Option<String>,
    /// Inputs of each round of checks.
    pub inputs: RoundInputs,
    /// The console device for the ready line, if any.
    pub console: Option<String>,
}

struct State {
    facts: Facts,
    /// This boot's facts, read once.
    boot: crate::bootfacts::BootFacts,
    /// The booted system's boot policy.
    policy: fruix_system::config::BootPolicy,
    /// The watchdog of a trial boot, until its first outcome.
    watchdog: Option<crate::platform::Watchdog>,
    gate: Vec<String>,
    checks: Vec<Check>,
    round: u64,
    marked_round: Option<u64>,
    report: Report,
}

impl State {
    fn rebuild(&mut self) {
        self.report = report::build(&self.facts, &self.checks, &self.gate);
    }

    fn record(&mut self, c: Check) {
        match self.checks.iter_mut().find(|x| x.name == c.name) {
            Some(slot) => *slot = c,
            None => self.checks.push(c),
        }
    }
}

/// Milliseconds since boot (the monotonic clock starts at boot on both
/// Linux and FreeBSD).
fn since_boot_ms() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    u64::try_from(t.tv_sec())
        .ok()
        .map(|s| s * 1000 + u64::try_from(t.tv_nsec()).unwrap_or(0) / 1_000_000)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: &Options) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let waker = std::sync::Arc::new(Waker::new(poll.registry(), WAKE)?);
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;

    let sock = opts.root.path(SOCKET_PATH);
    let mut listener = socket::bind(&sock)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;

    // Written before anything else, so that a switch can ask for a new
    // round (SIGHUP) as soon as the daemon listens. The old daemon's
    // binary goes first: a stale one must never pass for this one's.
    let _ = std::fs::remove_file(opts.root.path(crate::switch::notify::DAEMON_EXE));
    let _ = opts.root.write_if_changed(
        crate::switch::notify::DAEMON_PID,
        format!("{}\n", std::process::id()).as_bytes(),
        0o644,
        None,
    );
    // After the pid: a switch that restarted the daemon into a new agent
    // reads both to know the new one runs.
    if let Ok(exe) = std::env::current_exe() {
        let _ = opts.root.write_if_changed(
            crate::switch::notify::DAEMON_EXE,
            format!("{}\n", exe.display()).as_bytes(),
            0o644,
            None,
        );
    }
    // A switch left unfinished with nobody finishing it (a worker killed,
    // a power cut): rolled back by a worker of its own.
    if crate::switch::needs_recovery(&opts.root)
        && let Ok(exe) = std::env::current_exe()
    {
        let args = vec![
            "switch".to_owned(),
            "--recover".to_owned(),
            "--root".to_owned(),
            opts.root.as_path().display().to_string(),
        ];
        if let Err(e) = crate::switch::spawn_worker(&opts.root, &exe, &args) {
            eprintln!("fruix-agent: cannot finish the interrupted switch: {e}");
        }
    }
    let load = |system: &str| {
        let view = SystemView::load(&opts.root, system);
        let (facts, gate, planned) = match &view {
            Ok(v) => (round::facts(v), v.config.gate.clone(), round::planned(v)),
            Err(_) => (
                Facts {
                    system: system.to_owned(),
                    ..Facts::default()
                },
                vec!["system".into()],
                vec![],
            ),
        };
        (view, facts, gate, planned)
    };
    let (mut view, facts, gate, mut planned) = load(&opts.system);
    let boot = crate::bootcheck::boot_facts(&opts.root, crate::switch::generation_of(&opts.root));
    let booted_view = view
        .as_ref()
        .ok()
        .filter(|v| opts.boot_system.as_deref() == Some(v.guest_path.as_str()));
    let policy = booted_view
        .map(|v| v.config.boot.clone())
        .unwrap_or_default();
    let watchdog = booted_view.and_then(|v| {
        let since_boot_s = since_boot_ms().unwrap_or(0) / 1000;
        let assessed = crate::bootcheck::assessed(&opts.root);
        crate::watchdog::arm_for_trial(v, &boot, assessed, since_boot_s, opts.console.as_deref())
    });
    let mut state = State {
        facts,
        boot,
        policy,
        watchdog,
        gate,
        checks: Vec::new(),
        round: 0,
        marked_round: None,
        report: report::build(&Facts::default(), &[], &[]),
    };
    let (tx, rx) = mpsc::channel::<(u64, Check)>();
    let mut start_round = |state: &mut State| {
        if opts.follow_current
            && let Ok(current) = crate::switch::current_system(&opts.root)
            && view.as_ref().map_or(true, |v| v.guest_path != current)
        {
            let (v, facts, gate, p) = load(&current);
            (view, state.facts, state.gate, planned) = (v, facts, gate, p);
        }
        state.round += 1;
        state.checks = planned.iter().map(|n| Check::pending(n)).collect();
        state.facts.ready_ms = None;
        crate::switch::facts(&opts.root, &mut state.facts);
        state.facts.boot = state.boot.clone();
        match &view {
            Ok(v) => {
                let mut inputs = opts.inputs.clone();
                if opts.boot_system.as_deref() != Some(v.guest_path.as_str()) {
                    inputs.boot_digest = None;
                }
                let (v, tx, waker, round) = (v.clone(), tx.clone(), waker.clone(), state.round);
                thread::spawn(move || {
                    let t = Instant::now();
                    round::run(&v, &inputs, &|c| {
                        // One line per check on stderr (Shepherd's or the rc
                        // script's log): what each took, for whoever wonders
                        // why the marker came when it did.
                        eprintln!(
                            "fruix-agent: round {round}: {} {:?} after {} ms",
                            c.name,
                            c.status,
                            t.elapsed().as_millis()
                        );
                        let _ = tx.send((round, c));
                        let _ = waker.wake();
                    });
                });
            }
            Err(e) => {
                state.checks = vec![Check::failed(
                    "system",
                    "failed",
                    vec![format!(
                        "cannot read the system item: {}",
                        crate::error::chain(e)
                    )],
                )]
            }
        }
        state.rebuild();
    };
    start_round(&mut state);
    publish(opts, &mut state)?;

    let mut conns = Connections::new(FIRST_CONNECTION);
    let mut events = Events::with_capacity(64);
    loop {
        if let Err(e) = poll.poll(&mut events, conns.timeout()) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            match ev.token() {
                SIGNALS => {
                    for sig in signals.pending() {
                        if sig == SIGHUP {
                            start_round(&mut state);
                            publish(opts, &mut state)?;
                        } else {
                            let _ = std::fs::remove_file(&sock);
                            // No stale pid for a switch to signal later.
                            let _ = std::fs::remove_file(
                                opts.root.path(crate::switch::notify::DAEMON_PID),
                            );
                            return Ok(());
                        }
                    }
                }
                WAKE => {
                    for (r, c) in rx.try_iter() {
                        if r == state.round {
                            state.record(c);
                        }
                    }
                    state.rebuild();
                    publish(opts, &mut state)?;
                }
                LISTENER => conns.accept(&listener, poll.registry()),
                t => match conns.event(t, poll.registry()) {
                    Some(Request::Wait(wait)) if !state.report.outcome.is_final() => {
                        // The wait is at most a day: this cannot overflow,
                        // and if it did, the answer would come at once.
                        let now = Instant::now();
                        conns.wait(t, now.checked_add(wait).unwrap_or(now));
                    }
                    Some(_) => conns.reply(t, poll.registry(), body(&state.report)),
                    None => {}
                },
            }
        }
        // Waiters whose outcome is final, or whose deadline has passed;
        // connections that are late.
        conns.expire(poll.registry(), state.report.outcome.is_final(), &|| {
            body(&state.report)
        });
    }
}

/// A report as the socket sends it: one JSON line.
fn body(report: &Report) -> Rc<[u8]> {
    let mut body = serde_json::to_vec(report).unwrap_or_default();
    body.push(b'\n');
    body.into()
}

/// Writes the state files; when the outcome becomes final, stamps
/// `ready_ms` and announces it, once per round.
fn publish(opts: &Options, state: &mut State) -> io::Result<()> {
    let announce = state.report.outcome.is_final() && state.marked_round != Some(state.round);
    let mut verdict = crate::bootentries::Verdict::Stay;
    if announce {
        state.facts.ready_ms = since_boot_ms();
        state.marked_round = Some(state.round);
        // The boot's first outcome of the booted system judges its entry
        // (once per boot, whichever daemon gets here first), before the
        // marker, so that the marker tells the entry as it now is.
        let booted = format!("/frx/store/{}", state.facts.system);
        let ready = state.report.outcome.is_usable();
        // A ready trial is disarmed first: the assessment may wait for
        // the ESP's lock and copy kernels, and must not be reset.
        if ready && let Some(w) = state.watchdog.take() {
            crate::watchdog::disarm(&opts.root, w, opts.console.as_deref());
        }
        if opts.boot_system.as_deref() == Some(booted.as_str()) {
            verdict = crate::bootcheck::after_first_outcome(
                &opts.root,
                &mut state.boot,
                ready,
                &state.policy,
            );
            state.facts.boot = state.boot.clone();
        }
        // A failed trial that reboots keeps it armed, in case the reboot
        // hangs; one that stays up is disarmed.
        if verdict != crate::bootentries::Verdict::Reboot
            && let Some(w) = state.watchdog.take()
        {
            crate::watchdog::disarm(&opts.root, w, opts.console.as_deref());
        }
        state.rebuild();
    }
    markers::write_state(&opts.root, &state.report)?;
    if announce {
        markers::announce(&opts.root, &state.report, opts.console.as_deref());
    }
    if verdict == crate::bootentries::Verdict::Reboot {
        eprintln!("fruix-agent: this boot's trial failed: rebooting into the previous generation");
        // On a thread of its own: init stops us on the way down, and the
        // loop must still answer SIGTERM.
        let (root, mode) = (opts.root.clone(), state.facts.boot_mode.clone());
        thread::spawn(move || {
            let e = crate::bootcheck::reboot(&root, &mode);
            eprintln!("fruix-agent: reboot failed: {e}");
        });
    }
    Ok(())
}
