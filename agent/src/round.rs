//! One round of readiness checks for a system: which checks, in which
//! order, with what inputs. Results are handed over one by one, as they
//! come, so that the status shows progress while the store is verified.

use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::checks::{Check, command, local, service, shepherd, sshd, store};
use crate::report::Facts;
use crate::system::SystemView;

/// Pid files sshd writes (Linux, FreeBSD).
const SSHD_PID_FILES: &[&str] = &["/run/sshd.pid", "/var/run/sshd.pid"];
/// Pid files of Shepherd when the rc scripts run it (LSB, rc.d).
const SHEPHERD_PID_FILES: &[&str] = &["/run/fruix-shepherd.pid", "/var/run/fruix_shepherd.pid"];

/// Inputs of a round beyond the system.
#[derive(Clone, Debug)]
pub struct RoundInputs {
    /// `fruix.digest` from the boot line, if given.
    pub boot_digest: Option<String>,
    /// How long sshd may take to answer after the agent starts (Shepherd
    /// starts the agent once sshd is forked, not once it listens).
    pub sshd_wait: Duration,
}

/// Whether a process is alive (signal 0).
pub fn alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|p| kill(Pid::from_raw(p), None).is_ok())
}

fn read_pid(view: &SystemView, files: &[&str]) -> Option<u32> {
    files
        .iter()
        .find_map(|f| std::fs::read_to_string(view.root.path(f)).ok())
        .and_then(|t| t.trim().parse().ok())
}

/// Shepherd's pid: 1 when it is PID 1, else from its pid file.
pub fn shepherd_pid(view: &SystemView) -> Option<u32> {
    if view.config.boot_mode == "shepherd-pid1" {
        Some(1)
    } else {
        read_pid(view, SHEPHERD_PID_FILES)
    }
}

/// The checks a round runs, by name, in order.
pub fn planned(view: &SystemView) -> Vec<String> {
    let mut v: Vec<String> = ["compat-shims", "activation", "runtime-slice", "store"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if view.config.sshd.is_some() {
        v.push("sshd".into());
    }
    if !view.config.shepherd.is_empty() {
        v.push("shepherd".into());
    }
    v.extend(view.config.probes.iter().map(|p| p.name.clone()));
    v.extend(view.config.services.iter().map(|s| s.name.clone()));
    v
}

/// The values of the report that are not checks.
pub fn facts(view: &SystemView) -> Facts {
    let (native, host) = view.base_counts();
    Facts {
        boot_mode: view.config.boot_mode.clone(),
        system: view.item.to_string(),
        shepherd_pid: shepherd_pid(view),
        native_base_store_count: native,
        host_base_store_count: host,
        runtime_store: view.config.runtime.clone(),
        ready_ms: None,
        // Read by the daemon at each round (`switch::facts`).
        generation: None,
        switch: "none".into(),
        switch_reason: None,
        host_keys: crate::hostkeys::fingerprints(&crate::hostkeys::read(&view.root)),
        // Read by the daemon, once per boot (`bootcheck::boot_facts`).
        boot: crate::bootfacts::BootFacts::default(),
    }
}

/// Runs `check` until it passes or `wait` is over, pausing with backoff
/// between tries: for services that Shepherd has forked but that may not
/// answer yet. Runs on a check thread; the event loop never waits.
fn retry(wait: Duration, check: impl Fn() -> Check) -> Check {
    // `None`: a wait beyond what the clock can count, that is, for ever.
    let deadline = Instant::now().checked_add(wait);
    let mut pause = Duration::from_millis(20);
    loop {
        let c = check();
        let late =
            deadline.is_some_and(|d| Instant::now().checked_add(pause).is_none_or(|t| t > d));
        if c.status == crate::checks::CheckStatus::Ok || late {
            return c;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Runs one declared command probe, with the Guile paths of the system
/// and the probe's own environment.
pub fn run_probe(view: &SystemView, p: &fruix_activation::config::ProbeConfig) -> Check {
    let mut env = view.guile_env();
    env.extend(p.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    command::run(&p.name, &p.command, &env, Duration::from_secs(p.timeout))
}

/// Runs the checks of [`planned`] concurrently (one thread each; the
/// slowest, a Guile probe or full verification, sets the pace), handing
/// each result to `on` as it comes.
pub fn run(view: &SystemView, inputs: &RoundInputs, on: &(dyn Fn(Check) + Sync)) {
    let env = view.guile_env();
    std::thread::scope(|s| {
        s.spawn(|| {
            on(local::compat_shims(&view.root));
            on(local::activation(&view.root));
            on(local::runtime_slice(view));
        });
        s.spawn(|| {
            on(store::check(
                view,
                &view.config.store_verify,
                inputs.boot_digest.as_deref(),
            ))
        });
        if let Some(sd) = &view.config.sshd {
            s.spawn(|| {
                on(retry(inputs.sshd_wait, || {
                    sshd::check(
                        read_pid(view, SSHD_PID_FILES),
                        alive,
                        sd.port,
                        Duration::from_secs(2),
                    )
                }))
            });
        }
        if !view.config.shepherd.is_empty() {
            let env = &env;
            s.spawn(move || {
                let herd = view
                    .root
                    .path(&format!("/frx/store/{}/bin/herd", view.config.shepherd));
                let required: Vec<&str> = if view.config.sshd.is_some() {
                    vec!["sshd"]
                } else {
                    vec![]
                };
                let sockets: Vec<_> = shepherd::SOCKETS
                    .iter()
                    .map(|s| view.root.path(s))
                    .collect();
                on(retry(inputs.sshd_wait, || {
                    shepherd::check(
                        shepherd_pid(view),
                        alive,
                        &sockets,
                        &herd.to_string_lossy(),
                        env,
                        &required,
                    )
                }));
            });
        }
        for svc in &view.config.services {
            let env = &env;
            s.spawn(move || {
                let sockets: Vec<_> = shepherd::SOCKETS
                    .iter()
                    .map(|s| view.root.path(s))
                    .collect();
                // Pending (the round's initial value) until it passes or
                // its timeout, counted from this first try, is over.
                on(retry(Duration::from_secs(svc.timeout), || {
                    service::check_once(svc, service::shepherd_status(&sockets, &svc.name), env)
                }));
            });
        }
        for p in &view.config.probes {
            s.spawn(move || {
                // A passed result of the same probe started by init.
                match crate::early::take(&view.root, &p.name) {
                    Some(c) => on(c),
                    None => on(run_probe(view, p)),
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;
    use std::cell::Cell;

    #[test]
    fn retry_takes_any_wait_without_overflow() {
        let tries = Cell::new(0);
        let c = retry(Duration::MAX, || {
            tries.set(tries.get() + 1);
            if tries.get() < 3 {
                Check::failed("x", "stopped", vec!["not yet".into()])
            } else {
                Check::ok("x", "running")
            }
        });
        assert_eq!((c.status, tries.get()), (CheckStatus::Ok, 3));
        let c = retry(Duration::ZERO, || {
            Check::failed("x", "stopped", vec!["no".into()])
        });
        assert_eq!(c.status, CheckStatus::Failed);
    }
}
