//! `fruix-agent switch`: starts a switch detached from the caller and
//! follows it, follows one again by its id, rolls back an unfinished one,
//! or previews one (`fruix_agent::switch` does the work).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use fruix_activation::GuestRoot;
use fruix_agent::switch;
use fruix_system::switch::{Event, SwitchState};

use crate::checked_system;

/// The arguments of `fruix-agent switch`.
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The system item (/frx/store/NAME).
    #[arg(value_name = "SYSTEM", required_unless_present_any = ["follow", "recover"])]
    pub system: Option<String>,
    /// Seconds the new generation has to become ready.
    #[arg(long, default_value_t = 120, value_name = "S")]
    pub confirm_timeout: u64,
    /// Print what the switch would change; change nothing.
    #[arg(long, conflicts_with_all = ["follow", "recover"])]
    pub dry_run: bool,
    /// With --dry-run, for a system the guest lacks: read it from
    /// standard input (the builder's stream of that one item) into a
    /// private temporary directory; the store is not written.
    #[arg(long, requires = "dry_run")]
    pub from_stdin: bool,
    /// Switch nothing now: make SYSTEM the generation the next boot tries
    /// (a counted boot entry; blessed by that boot's readiness, else the
    /// boot falls back to the current generation).
    #[arg(long, conflicts_with_all = ["dry_run", "follow", "recover"])]
    pub boot: bool,
    /// Follow the switch with this id (after a lost connection).
    #[arg(long, value_name = "ID", conflicts_with = "recover")]
    pub follow: Option<String>,
    /// Roll back a switch left unfinished (what the daemon's start does).
    #[arg(long)]
    pub recover: bool,
    /// Print the switch's final state as JSON (progress on stderr).
    #[arg(long)]
    pub json: bool,
    /// The guest's root (a directory, for tests).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// Run the switch in this process (what the detached worker is
    /// started with).
    #[arg(long, value_name = "ID", hide = true)]
    pub worker: Option<String>,
    /// Make this existing generation current again instead of a new one
    /// (what rollback and switch-generation start the worker with).
    #[arg(long, value_name = "N", hide = true)]
    pub generation: Option<u64>,
}

/// Runs `fruix-agent switch`.
pub fn run(a: SwitchArgs) -> Result<bool> {
    let root = GuestRoot::new(&a.root);
    let timeout = std::time::Duration::from_secs(a.confirm_timeout.min(86_400));
    let mut out = std::io::stdout().lock();
    let end = if a.recover {
        match switch::recover(&root)? {
            Some(s) => s,
            None => {
                writeln!(out, "no unfinished switch")?;
                return Ok(true);
            }
        }
    } else if let Some(id) = &a.worker {
        let system = checked_system(a.system.clone().context("--worker needs SYSTEM")?)?;
        switch::run_worker(&root, id, &system, a.generation, timeout)?
    } else if let Some(id) = &a.follow {
        let json = a.json;
        switch::follow(&root, id, None, &mut |e| print_event(json, e))?
    } else {
        let system = checked_system(a.system.clone().context("SYSTEM is required")?)?;
        if a.from_stdin {
            let stdin = std::io::BufReader::new(std::io::stdin().lock());
            let p = switch::dry_run::preview_streamed(&root, &system, stdin)?;
            return print_preview(&p, a.json);
        }
        // Refused here, before anything starts: a system that is not whole
        // in the store.
        fruix_agent::system::SystemView::load(&root, &system)?;
        if a.dry_run {
            let p = switch::dry_run::preview(&root, &system)?;
            return print_preview(&p, a.json);
        }
        if a.boot {
            let s = switch::boot::stage(&root, &system)?;
            if a.json {
                writeln!(out, "{}", serde_json::to_string(&s)?)?;
            } else {
                for c in &s.changes {
                    writeln!(out, "{c}")?;
                }
                writeln!(
                    out,
                    "generation {} ({}) is tried at the next boot: entry {}",
                    s.generation, s.system, s.entry
                )?;
            }
            return Ok(true);
        }
        start_and_follow(&a, &root, &system)?
    };
    finish(&mut out, a.json, &end)
}

/// Starts the detached worker for `system` and follows it.
pub fn start_and_follow(a: &SwitchArgs, root: &GuestRoot, system: &str) -> Result<SwitchState> {
    let id = switch::new_id();
    let exe = std::env::current_exe().context("the agent's own path")?;
    let mut args = vec![
        "switch".to_owned(),
        "--worker".to_owned(),
        id.clone(),
        "--confirm-timeout".to_owned(),
        a.confirm_timeout.to_string(),
        "--root".to_owned(),
        a.root.display().to_string(),
    ];
    if let Some(g) = a.generation {
        args.extend(["--generation".to_owned(), g.to_string()]);
    }
    args.push(system.to_owned());
    let mut child = switch::spawn_worker(root, &exe, &args)?;
    // The host follows by this id again after a lost connection.
    if a.json {
        eprintln!("switch {id} started");
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "switch {id} started")?;
        out.flush()?;
    }
    let json = a.json;
    Ok(switch::follow(root, &id, Some(&mut child), &mut |e| {
        print_event(json, e)
    })?)
}

fn print_preview(p: &switch::dry_run::Preview, json: bool) -> Result<bool> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(p)?)?;
        return Ok(true);
    }
    writeln!(out, "switch {} -> {}", p.from, p.to)?;
    for (step, c) in &p.activation {
        writeln!(out, "would: {step}: {c}")?;
    }
    for (verb, names) in [
        ("start", &p.services.start),
        ("stop", &p.services.stop),
        ("restart", &p.services.restart),
    ] {
        for n in names {
            writeln!(out, "would {verb} service {n}")?;
        }
    }
    Ok(true)
}

/// Prints a switch's end and maps it to the exit status.
pub fn finish(out: &mut dyn Write, json: bool, end: &SwitchState) -> Result<bool> {
    if json {
        writeln!(
            out,
            "{}",
            String::from_utf8_lossy(&end.to_json()).trim_end()
        )?;
    } else {
        writeln!(
            out,
            "switch {} {}: generation {}{}",
            end.id,
            end.phase.as_str(),
            end.generation.map_or("none".into(), |g| g.to_string()),
            end.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )?;
    }
    match switch::exit_code(end) {
        0 => Ok(true),
        1 => Ok(false),
        _ => bail!(
            "switch {} failed: {}",
            end.id,
            end.reason.as_deref().unwrap_or("no reason recorded")
        ),
    }
}

/// One progress line of a followed switch: on stdout, or on stderr when
/// stdout carries the JSON.
fn print_event(json: bool, e: &Event) {
    let line = format!("[{:>6} ms] {}: {}", e.ms, e.phase.as_str(), e.message);
    // A reader gone (a dropped session) must not end the follower here.
    if json {
        let _ = writeln!(std::io::stderr(), "{line}");
    } else {
        let _ = writeln!(std::io::stdout(), "{line}");
    }
}
