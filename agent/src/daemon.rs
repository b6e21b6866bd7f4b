//! `fruix-agent run`: the daemon. One mio event loop with four kinds of
//! source, each with its own token and handler: signals (SIGHUP re-checks,
//! SIGTERM and SIGINT end it), the status socket's listener, its
//! connections, and a waker that the check thread rings with each result.
//! Nothing polls: while idle the daemon sleeps in `Poll::poll`, with a
//! deadline only while a `wait` request is open.
//!
//! The status socket (`/run/fruix/agent.sock`, mode 0600, so only root can
//! open it) takes one request line and answers read-only: `status`, or
//! `wait SECONDS` (answered when the outcome is final, or at the deadline).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use fruix_activation::GuestRoot;
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::checks::Check;
use crate::markers;
use crate::report::{self, Facts, Report};
use crate::round::{self, RoundInputs};
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
    /// Inputs of each round of checks.
    pub inputs: RoundInputs,
    /// The console device for the ready line, if any.
    pub console: Option<String>,
}

struct Connection {
    stream: UnixStream,
    buf: Vec<u8>,
}

struct State {
    facts: Facts,
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
    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&sock);
    let mut listener = UnixListener::bind(&sock)?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;

    let view = SystemView::load(&opts.root, &opts.system);
    let (facts, gate, planned) = match &view {
        Ok(v) => (round::facts(v), v.config.gate.clone(), round::planned(v)),
        Err(_) => (
            Facts {
                system: opts.system.clone(),
                ..Facts::default()
            },
            vec!["system".into()],
            vec![],
        ),
    };
    let mut state = State {
        facts,
        gate,
        checks: Vec::new(),
        round: 0,
        marked_round: None,
        report: report::build(&Facts::default(), &[], &[]),
    };
    let (tx, rx) = mpsc::channel::<(u64, Check)>();
    let start_round = |state: &mut State| {
        state.round += 1;
        state.checks = planned.iter().map(|n| Check::pending(n)).collect();
        state.facts.ready_ms = None;
        match &view {
            Ok(v) => {
                let (v, tx, waker, inputs, round) = (
                    v.clone(),
                    tx.clone(),
                    waker.clone(),
                    opts.inputs.clone(),
                    state.round,
                );
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

    let mut connections: HashMap<Token, Connection> = HashMap::new();
    let mut waiters: Vec<(Token, Instant)> = Vec::new();
    let mut next = FIRST_CONNECTION;
    let mut events = Events::with_capacity(64);
    loop {
        let timeout = waiters
            .iter()
            .map(|(_, d)| d.saturating_duration_since(Instant::now()))
            .min();
        if let Err(e) = poll.poll(&mut events, timeout) {
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
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let t = Token(next);
                            next += 1;
                            poll.registry()
                                .register(&mut stream, t, Interest::READABLE)?;
                            connections.insert(
                                t,
                                Connection {
                                    stream,
                                    buf: Vec::new(),
                                },
                            );
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                },
                t => {
                    let Some(conn) = connections.get_mut(&t) else {
                        continue;
                    };
                    let mut chunk = [0u8; 256];
                    let closed = loop {
                        match conn.stream.read(&mut chunk) {
                            Ok(0) => break true,
                            Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                            Err(_) => break true,
                        }
                    };
                    if let Some(end) = conn.buf.iter().position(|&b| b == b'\n') {
                        let line = String::from_utf8_lossy(&conn.buf[..end]).trim().to_owned();
                        match parse_request(&line) {
                            Some(None) => answer(&mut poll, &mut connections, t, &state.report),
                            Some(Some(wait)) if !state.report.outcome.is_final() => {
                                waiters.push((t, Instant::now() + wait))
                            }
                            Some(Some(_)) => answer(&mut poll, &mut connections, t, &state.report),
                            None => refuse(&mut poll, &mut connections, t, &line),
                        }
                    } else if (closed || conn.buf.len() > 1024)
                        && let Some(mut c) = connections.remove(&t)
                    {
                        let _ = poll.registry().deregister(&mut c.stream);
                    }
                }
            }
        }
        // Waiters whose outcome is final, or whose deadline has passed.
        let now = Instant::now();
        let final_now = state.report.outcome.is_final();
        let (done, open): (Vec<_>, Vec<_>) = waiters
            .into_iter()
            .partition(|(_, d)| final_now || *d <= now);
        waiters = open;
        for (t, _) in done {
            answer(&mut poll, &mut connections, t, &state.report);
        }
    }
}

/// `status` -> `Some(None)`, `wait S` -> `Some(Some(S))`, else `None`.
fn parse_request(line: &str) -> Option<Option<Duration>> {
    let mut w = line.split_whitespace();
    match (w.next(), w.next(), w.next()) {
        (Some("status"), None, None) => Some(None),
        (Some("wait"), Some(s), None) => {
            s.parse::<u64>().ok().map(|s| Some(Duration::from_secs(s)))
        }
        _ => None,
    }
}

fn answer(poll: &mut Poll, conns: &mut HashMap<Token, Connection>, t: Token, report: &Report) {
    if let Some(mut c) = conns.remove(&t) {
        let _ = poll.registry().deregister(&mut c.stream);
        let mut body = serde_json::to_vec(report).unwrap_or_default();
        body.push(b'\n');
        // A report is a few kilobytes: it fits the socket's buffer.
        let _ = c.stream.write_all(&body);
    }
}

fn refuse(poll: &mut Poll, conns: &mut HashMap<Token, Connection>, t: Token, line: &str) {
    if let Some(mut c) = conns.remove(&t) {
        let _ = poll.registry().deregister(&mut c.stream);
        let _ = writeln!(
            c.stream,
            "{{\"error\":\"unknown request '{}': use 'status' or 'wait SECONDS'\"}}",
            line.escape_default()
        );
    }
}

/// Writes the state files; when the outcome becomes final, stamps
/// `ready_ms` and announces it, once per round.
fn publish(opts: &Options, state: &mut State) -> io::Result<()> {
    let announce = state.report.outcome.is_final() && state.marked_round != Some(state.round);
    if announce {
        state.facts.ready_ms = since_boot_ms();
        state.rebuild();
        state.marked_round = Some(state.round);
    }
    markers::write_state(&opts.root, &state.report)?;
    if announce {
        markers::announce(&opts.root, &state.report, opts.console.as_deref());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(parse_request("status"), Some(None));
        assert_eq!(
            parse_request("wait 30"),
            Some(Some(Duration::from_secs(30)))
        );
        assert_eq!(parse_request("wait"), None);
        assert_eq!(parse_request("reboot"), None);
    }
}
