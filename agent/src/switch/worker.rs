//! The switch itself, step by step: activation of the new system
//! (generation N+1), Shepherd's services brought in line, the new
//! generation's readiness round; committed when ready within the confirm
//! timeout, else rolled back by a full activation of generation N, its
//! services brought back and its readiness checked again. The state is
//! saved after every step, so that a switch killed anywhere is finished
//! (rolled back) by the next agent start.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fruix_activation::{ActivateOptions, GuestRoot};
use fruix_system::switch::{Phase, ServicePlan, SwitchState};

use super::plan::{SERVICES_DIR, plan, service_files};
use super::{SwitchError, generation_of, notify, state};
use crate::checks::{Check, CheckStatus};
use crate::report::{self, Outcome};
use crate::round::{self, RoundInputs};
use crate::shepherd_ctl::Control;
use crate::system::SystemView;

/// A switch in progress: its state and the clock of its events.
struct Run<'a> {
    root: &'a GuestRoot,
    state: SwitchState,
    t0: Instant,
}

impl Run<'_> {
    fn ms(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a progress line (also on stderr, the switch's log).
    fn event(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        eprintln!("fruix-agent switch {}: {msg}", self.state.id);
        let ms = self.ms();
        self.state.event(ms, msg);
    }

    fn enter(&mut self, phase: Phase) -> Result<(), SwitchError> {
        self.state.phase = phase;
        self.save()?;
        crate::hold::point(&format!("switch-{}", phase.as_str()), nix::unistd::sync);
        if phase.is_final() {
            // The system is a generation now (committed or rolled back):
            // its record keeps it from gc, not the receive's hold.
            // A hold left behind is dropped by gc after its age: the
            // switch's end is not undone for it.
            let item = self
                .state
                .to
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let frx = self.root.path("/frx");
            if let Err(e) = crate::received::release(&frx, &item) {
                eprintln!(
                    "fruix-agent switch {}: hold on {item} not released: {e}",
                    self.state.id
                );
            }
        }
        Ok(())
    }

    fn save(&self) -> Result<(), SwitchError> {
        state::save(self.root, &self.state)
    }
}

/// Runs a switch to `to` under the switch lock, which the caller holds.
/// A switch of the last run that never ended is rolled back first.
pub fn run(
    root: &GuestRoot,
    id: &str,
    to: &str,
    generation: Option<u64>,
    confirm_timeout: Duration,
) -> Result<SwitchState, SwitchError> {
    if let Some(prev) = state::load(root)?
        && !prev.phase.is_final()
    {
        recover_locked(root, prev)?;
    }
    let from = super::current_system(root)?;
    let from_generation = generation_of(root).unwrap_or(0);
    let mut run = Run {
        root,
        t0: Instant::now(),
        state: SwitchState {
            id: id.to_owned(),
            from: from.clone(),
            from_generation,
            to: to.to_owned(),
            generation: None,
            phase: Phase::Starting,
            confirm_timeout_s: confirm_timeout.as_secs(),
            started: super::now_s(),
            reason: None,
            failed_checks: Vec::new(),
            services: ServicePlan::default(),
            outcome: None,
            events: Vec::new(),
        },
    };
    run.event(format!(
        "switching from {from} (generation {from_generation}) to {to}"
    ));
    run.save()?;
    if from == to {
        run.state.generation = Some(from_generation);
        run.event("already the current system: nothing to change");
        run.state.outcome = Some("unchanged".into());
        run.enter(Phase::Committed)?;
        return Ok(run.state);
    }
    let old_view = SystemView::load(root, &from)?;
    let new_view = SystemView::load(root, to)?;

    // Activation of the new system: generation N+1.
    run.enter(Phase::Activating)?;
    let platform = fruix_activation::platform::native();
    // An existing generation made current again (`rollback`,
    // `switch-generation`), else a new one.
    let ledger = fruix_activation::activate_with(
        root,
        to,
        platform.as_ref(),
        ActivateOptions {
            generation,
            ..ActivateOptions::default()
        },
    );
    run.state.generation = ledger.generation;
    run.save()?;
    let failed: Vec<String> = ledger
        .steps
        .iter()
        .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.step)))
        .collect();
    if !failed.is_empty() {
        run.state.failed_checks = failed.clone();
        run.event(format!("activation failed: {}", failed.join("; ")));
        return rollback(run, format!("activation failed: {}", failed[0]));
    }
    run.event(format!(
        "activated generation {}",
        ledger.generation.unwrap_or(0)
    ));
    if generation.is_none() {
        crate::generations::generations_set(
            root,
            ledger.generation,
            crate::generations::State::Trying,
        );
    }

    // Shepherd brought in line.
    run.enter(Phase::Services)?;
    let services = (|| {
        Ok::<_, SwitchError>((
            service_files(&root.path(&from))?,
            service_files(&root.path(to))?,
        ))
    })();
    let (old_files, new_files) = match services {
        Ok(v) => v,
        Err(e) => return rollback(run, e.to_string()),
    };
    let p = plan(&old_files, &new_files);
    run.state.services = p.clone();
    run.save()?;
    // A daemon that ran on this guest must run the new agent after (when
    // it changed): a generation whose agent cannot start is not ready.
    let daemon = notify::daemon_known(root);
    if let Err(e) = apply(&mut run, &p, to, &new_files) {
        return rollback(run, format!("services: {e}"));
    }
    notify::follow_switch(root, &old_view, &new_view, &p);
    if daemon && old_view.config.agent != new_view.config.agent {
        match notify::wait_for_agent(
            root,
            &notify::agent_binary(&new_view),
            Instant::now() + confirm_timeout,
        ) {
            Ok(pid) => run.event(format!("the daemon runs the new agent (pid {pid})")),
            Err(e) => {
                run.state.failed_checks = vec![e.clone()];
                return rollback(run, format!("not ready: {e}"));
            }
        }
    }

    // The new generation's readiness.
    run.enter(Phase::Checking)?;
    let (outcome, checks) = readiness(&new_view, confirm_timeout);
    run.state.outcome = Some(outcome.as_str().to_owned());
    if matches!(outcome, Outcome::Ready | Outcome::Degraded) {
        run.event(format!(
            "generation {} is {}",
            ledger.generation.unwrap_or(0),
            outcome.as_str()
        ));
        crate::generations::generations_set(
            root,
            ledger.generation,
            crate::generations::State::Committed,
        );
        boot_entries(&mut run);
        run.enter(Phase::Committed)?;
        notify::recheck_and_wait(root, "committed");
        return Ok(run.state);
    }
    run.state.failed_checks = failed_lines(&checks, &new_view.config.gate);
    let reason = match outcome {
        Outcome::Pending => format!(
            "not ready within {} s: {} pending",
            confirm_timeout.as_secs(),
            pending_names(&checks).join(", ")
        ),
        _ => format!("not ready: {}", run.state.failed_checks.join("; ")),
    };
    run.event(reason.clone());
    rollback(run, reason)
}

/// The ESP's boot entries brought in line with the committed generation
/// (its new entry counted: the next boot tries it). An ESP that cannot
/// be written leaves the live switch committed, and says so.
fn boot_entries(run: &mut Run<'_>) {
    // A generation that waited for the next boot is superseded by this
    // one: a failed boot of this one falls back to the one it replaced.
    let pending: Vec<u64> = crate::generations::list(run.root, None)
        .unwrap_or_default()
        .iter()
        .filter(|g| g.state == fruix_system::generations::GenState::BootPending)
        .map(|g| g.number)
        .collect();
    for n in pending {
        crate::generations::generations_set(
            run.root,
            Some(n),
            crate::generations::State::RolledBack,
        );
        run.event(format!(
            "generation {n}, waiting for the next boot, is superseded"
        ));
    }
    match crate::bootcheck::update(run.root) {
        Ok(changes) => {
            for c in changes {
                run.event(format!("boot entries: {c}"));
            }
        }
        Err(e) => run.event(format!(
            "boot entries not updated: {}",
            crate::error::chain(&e)
        )),
    }
}

/// Loads, unloads, restarts and starts what `p` says, loading the
/// definitions of the system item `system`.
fn apply(
    run: &mut Run<'_>,
    p: &ServicePlan,
    system: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), SwitchError> {
    if p.is_empty() {
        run.event("services: nothing to change");
        return Ok(());
    }
    let c = Control::find(run.root)?;
    for name in &p.stop {
        c.unload(name)?;
        run.event(format!("stopped and unloaded {name}"));
    }
    for name in p.restart.iter().chain(&p.start) {
        if files.contains_key(name) {
            c.load(&format!("{system}/{SERVICES_DIR}/{name}.scm"))?;
        }
    }
    for name in &p.restart {
        c.restart(name)?;
        run.event(format!("restarted {name}"));
    }
    for name in &p.start {
        c.start(name)?;
        run.event(format!("started {name}"));
    }
    Ok(())
}

/// Rolls back to the switch's old generation: full activation, services
/// brought back (errors noted, the rest still done), readiness checked.
fn rollback(mut run: Run<'_>, reason: String) -> Result<SwitchState, SwitchError> {
    run.state.reason = Some(reason);
    run.enter(Phase::RollingBack)?;
    let root = run.root;
    let from = run.state.from.clone();
    // The plan back is always the switch's own, `to` -> `from`, whatever
    // an interrupted run had done of it (a rollback killed after its
    // activation would otherwise find nothing to bring back): loading an
    // old definition again, or starting a running service, is harmless.
    let current = run.state.to.clone();
    let platform = fruix_activation::platform::native();
    let ledger = fruix_activation::activate_with(
        root,
        &from,
        platform.as_ref(),
        ActivateOptions {
            generation: (run.state.from_generation > 0).then_some(run.state.from_generation),
            ..ActivateOptions::default()
        },
    );
    if let Some(e) = ledger.steps.iter().find_map(|s| {
        s.error
            .as_ref()
            .map(|e| format!("rollback activation failed: {}: {e}", s.step))
    }) {
        run.event(e.clone());
        run.state.reason = Some(e);
        run.enter(Phase::Failed)?;
        return Ok(run.state);
    }
    run.event(format!(
        "activated generation {} again",
        run.state.from_generation
    ));
    // Only a generation this switch was trying: a failed switch back to an
    // existing committed generation leaves its record alone.
    if run.state.generation != Some(run.state.from_generation) {
        crate::generations::generations_rolled_back(root, run.state.generation);
    }
    let files = (
        service_files(&root.path(&current)).unwrap_or_default(),
        service_files(&root.path(&from)).unwrap_or_default(),
    );
    let back = plan(&files.0, &files.1);
    // Best effort, each on its own: a service the interrupted switch never
    // loaded cannot be unloaded, and the rest must still come back.
    match Control::find(root) {
        Ok(c) => {
            for name in &back.stop {
                note(
                    &mut run,
                    c.unload(name),
                    format!("stopped and unloaded {name}"),
                );
            }
            for name in back.restart.iter().chain(&back.start) {
                let file = format!("{from}/{SERVICES_DIR}/{name}.scm");
                note(&mut run, c.load(&file), format!("loaded {file}"));
            }
            for name in &back.restart {
                note(&mut run, c.restart(name), format!("restarted {name}"));
            }
            for name in &back.start {
                note(&mut run, c.start(name), format!("started {name}"));
            }
        }
        Err(e) if !back.is_empty() => run.event(format!("services: {e}")),
        Err(_) => {}
    }
    let view = SystemView::load(root, &from)?;
    let daemon = notify::daemon_known(root);
    if let Ok(new_view) = SystemView::load(root, &current) {
        notify::follow_switch(root, &new_view, &view, &back);
        if daemon && new_view.config.agent != view.config.agent {
            let deadline = Instant::now() + Duration::from_secs(60);
            match notify::wait_for_agent(root, &notify::agent_binary(&view), deadline) {
                Ok(pid) => run.event(format!("the daemon runs the old agent again (pid {pid})")),
                Err(e) => run.event(format!("after the rollback: {e}")),
            }
        }
    }
    let (outcome, checks) = readiness(&view, Duration::from_secs(run.state.confirm_timeout_s));
    run.state.outcome = Some(outcome.as_str().to_owned());
    run.event(format!(
        "generation {} is {} after the rollback",
        run.state.from_generation,
        outcome.as_str()
    ));
    for l in failed_lines(&checks, &view.config.gate) {
        run.event(format!("after the rollback: {l}"));
    }
    run.enter(Phase::RolledBack)?;
    notify::recheck_and_wait(root, "rolled-back");
    Ok(run.state)
}

fn note(run: &mut Run<'_>, r: Result<(), crate::checks::shepherd::ShepherdError>, ok: String) {
    match r {
        Ok(()) => run.event(ok),
        Err(e) => run.event(format!("{ok}: failed: {e}")),
    }
}

/// Finishes a switch found unfinished with nobody holding its lock: rolls
/// it back (the caller holds the lock now).
pub fn recover_locked(root: &GuestRoot, prev: SwitchState) -> Result<SwitchState, SwitchError> {
    let phase = prev.phase;
    let mut run = Run {
        root,
        state: prev,
        t0: Instant::now(),
    };
    run.event(format!(
        "found interrupted in phase {}: rolling back",
        phase.as_str()
    ));
    if phase == Phase::Starting {
        // Nothing was changed yet.
        run.state.reason = Some("interrupted before activation".into());
        run.enter(Phase::RolledBack)?;
        return Ok(run.state);
    }
    let reason = run
        .state
        .reason
        .clone()
        .unwrap_or_else(|| format!("interrupted in phase {}", phase.as_str()));
    rollback(run, reason)
}

/// One readiness round of `view`, cut at `timeout`: its outcome under the
/// system's gate, and every check (those not back in time pending).
pub fn readiness(view: &SystemView, timeout: Duration) -> (Outcome, Vec<Check>) {
    let planned = round::planned(view);
    let (tx, rx) = mpsc::channel::<Check>();
    let v = view.clone();
    let inputs = RoundInputs {
        // The boot line's digest is the booted system's, not this one's.
        boot_digest: None,
        sshd_wait: timeout,
    };
    std::thread::spawn(move || {
        round::run(&v, &inputs, &|c| {
            let _ = tx.send(c);
        });
    });
    let deadline = Instant::now() + timeout;
    let mut checks: Vec<Check> = planned.iter().map(|n| Check::pending(n)).collect();
    let mut left = planned.len();
    while left > 0 {
        let now = Instant::now();
        let Some(wait) = deadline.checked_duration_since(now) else {
            break;
        };
        match rx.recv_timeout(wait) {
            Ok(c) => {
                if let Some(slot) = checks.iter_mut().find(|x| x.name == c.name) {
                    if slot.status == CheckStatus::Pending {
                        left -= 1;
                    }
                    *slot = c;
                } else {
                    checks.push(c);
                }
            }
            Err(_) => break,
        }
    }
    (report::outcome(&checks, &view.config.gate), checks)
}

/// The failed gating checks, `NAME: REASON` each.
fn failed_lines(checks: &[Check], gate: &[String]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c.status == CheckStatus::Failed && gate.contains(&c.name))
        .flat_map(|c| {
            let name = c.name.clone();
            let reasons = if c.reasons.is_empty() {
                vec![c.value.clone()]
            } else {
                c.reasons.clone()
            };
            reasons.into_iter().map(move |r| format!("{name}: {r}"))
        })
        .collect()
}

fn pending_names(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c.status == CheckStatus::Pending)
        .map(|c| c.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_lines_name_the_gating_checks_and_their_reasons() {
        let checks = vec![
            Check::failed(
                "web",
                "failed",
                vec!["service web: tcp 127.0.0.1:8081 refused".into()],
            ),
            Check::failed("extra", "failed", vec!["not gating".into()]),
            Check::failed("store", "corrupt", vec![]),
            Check::ok("sshd", "running"),
        ];
        let gate = vec!["web".into(), "store".into(), "sshd".into()];
        assert_eq!(
            failed_lines(&checks, &gate),
            [
                "web: service web: tcp 127.0.0.1:8081 refused",
                "store: corrupt"
            ]
        );
        assert_eq!(
            pending_names(&[Check::pending("web"), Check::ok("a", "b")]),
            ["web"]
        );
    }
}
