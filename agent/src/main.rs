//! `fruix-agent`, the in-guest agent: parses the command line, runs the
//! command, maps the result to an exit status (0 success, 1 findings or
//! not ready, 2 error) in this one place.

use fruix_agent::platform;

mod boot_cmd;
mod gen_cmd;
mod store_cmd;
mod switch_cmd;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use fruix_activation::GuestRoot;
use fruix_store::{Depth, ItemName, StoreRoot, VerifyOptions};

/// The Fruix guest agent.
#[derive(Debug, Parser)]
#[command(name = "fruix-agent", version, max_term_width = 80)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify the store against its manifests. Exit 0 clean, 1 findings,
    /// 2 error.
    Verify {
        /// The store root.
        #[arg(long, default_value = "/frx", value_name = "ROOT")]
        root: PathBuf,
        /// Check metadata only; read no file.
        #[arg(long)]
        metadata_only: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Items to verify, by name [default: all].
        #[arg(value_name = "ITEM")]
        items: Vec<String>,
    },
    /// The daemon: verify the store, run the readiness checks, write the
    /// ready markers, answer status; re-check on SIGHUP, end on SIGTERM.
    Run {
        /// The system item [default: the current system, followed through
        /// live switches; else fruix.system= on the boot line].
        #[arg(long, value_name = "PATH")]
        system: Option<String>,
        /// The guest's root (a directory, for tests).
        #[arg(long, default_value = "/", value_name = "DIR")]
        root: PathBuf,
        /// Where the ready line goes (a guest path; empty for nowhere).
        #[arg(long, default_value = "/dev/console", value_name = "DEV")]
        console: String,
        /// Seconds sshd may take to answer on its port (at most 86400;
        /// longer is cut to that).
        #[arg(long, default_value_t = 60, value_name = "S")]
        sshd_wait: u64,
    },
    /// Print the readiness report (key=value lines). Exit 0 ready or
    /// degraded, 1 failed or pending, 2 when the agent cannot be asked.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Wait up to S seconds for a final outcome; pending checks are
        /// named when the time runs out. At most 86400 (a day); longer is
        /// cut to that.
        #[arg(long, value_name = "S")]
        wait: Option<u64>,
        /// The guest's root (a directory, for tests).
        #[arg(long, default_value = "/", value_name = "DIR")]
        root: PathBuf,
    },
    /// The shepherd-pid1 boot path (as PID 1): mount what is missing,
    /// activate, then exec the system's Shepherd.
    Init {
        /// The system item [default: fruix.system= on the boot line].
        #[arg(long, value_name = "PATH")]
        system: Option<String>,
    },
    /// Run one declared command probe and print its result. Exit 0 when it
    /// passed, 1 when it failed.
    Probe {
        /// The probe's name, as the declaration gives it.
        #[arg(value_name = "NAME")]
        name: String,
        /// The system item [default: fruix.system= on the boot line, else
        /// /run/current-system].
        #[arg(long, value_name = "PATH")]
        system: Option<String>,
        /// The guest's root (a directory, for tests).
        #[arg(long, default_value = "/", value_name = "DIR")]
        root: PathBuf,
        /// Also leave the result for the daemon's first round (what init
        /// asks of the probes it starts early).
        #[arg(long)]
        record: bool,
    },
    /// Switch the running guest to a system item already in its store:
    /// activation of a new generation, services brought in line, its
    /// readiness checked; rolled back when not ready within the confirm
    /// timeout. Runs detached from the caller and follows it. Exit 0
    /// committed, 1 rolled back, 2 error or failed.
    Switch(switch_cmd::SwitchArgs),
    /// List the generations: number, date, state, current and booted.
    Generations(gen_cmd::ListArgs),
    /// Switch back to the previous committed generation, through the same
    /// gated switch. Exit as switch.
    Rollback(gen_cmd::RollbackArgs),
    /// Switch to generation N, through the same gated switch. Exit as
    /// switch.
    SwitchGeneration(gen_cmd::SwitchGenerationArgs),
    /// Delete old generations (never the current or the booted one).
    DeleteGenerations(gen_cmd::DeleteArgs),
    /// Remove the store items no remaining generation needs (nor the
    /// current or booted system); prints what it freed.
    Gc(gen_cmd::GcArgs),
    /// List the ESP's boot entries, newest first, and the one the next
    /// boot starts.
    BootEntries {
        /// Print them as JSON, with this boot's id and facts.
        #[arg(long)]
        json: bool,
    },
    /// Reboot the guest the way its boot mode does (Shepherd as PID 1, or
    /// the classic init).
    Reboot,
    /// Bring the guest in line with a system item: /etc, accounts, links,
    /// host keys, generations. Exit 0 when every step succeeded.
    Activate {
        /// The system item [default: fruix.system= on the boot line].
        #[arg(long, value_name = "PATH")]
        system: Option<String>,
        /// The guest's root (a directory, for tests and image building).
        #[arg(long, default_value = "/", value_name = "DIR")]
        root: PathBuf,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the ledger as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The store's part of a deploy: which items are missing, and receive
    /// a stream of items.
    Store(store_cmd::StoreArgs),
}

fn verify(root: PathBuf, metadata_only: bool, json: bool, items: Vec<String>) -> Result<bool> {
    let root = StoreRoot::new(root);
    let opts = VerifyOptions {
        depth: if metadata_only {
            Depth::Metadata
        } else {
            Depth::Full
        },
        ..VerifyOptions::default()
    };
    let report = if items.is_empty() {
        fruix_store::verify_root(&root, &opts)?
    } else {
        let names = items
            .iter()
            .map(|s| ItemName::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        fruix_store::verify_items(&root, &names, &opts)?
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        for f in &report.findings {
            writeln!(out, "{f}")?;
        }
    }
    Ok(report.is_clean())
}

fn activate(system: Option<String>, root: PathBuf, dry_run: bool, json: bool) -> Result<bool> {
    let system = match system {
        Some(s) => s,
        None => platform::boot_arg(platform::SYSTEM_KEY)
            .context("no system item: pass --system or boot with fruix.system=")?,
    };
    let system = checked_system(system)?;
    let mut guest = GuestRoot::new(root);
    if dry_run {
        guest = guest.dry_run();
    }
    let platform = fruix_activation::platform::native();
    let ledger = fruix_activation::activate(&guest, &system, platform.as_ref());
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&ledger)?)?;
    } else {
        for s in &ledger.steps {
            let status = serde_json::to_value(s.status)?;
            writeln!(
                out,
                "{:<13} {:<9} {} ms",
                s.step,
                status.as_str().unwrap_or(""),
                s.ms
            )?;
            for c in &s.changes {
                writeln!(out, "  {}{c}", if dry_run { "would: " } else { "" })?;
            }
            if let Some(e) = &s.error {
                writeln!(out, "  error: {e}")?;
            }
        }
        if !ledger.changed() && ledger.ok() {
            writeln!(out, "nothing to change")?;
        }
    }
    Ok(ledger.ok())
}

/// The system item: `--system`, else `fruix.system=` on the boot line,
/// else what `/run/current-system` points at.
fn system_arg(system: Option<String>, root: &GuestRoot) -> Result<String> {
    let system = match system {
        Some(s) => s,
        None => match platform::boot_arg(platform::SYSTEM_KEY) {
            Some(s) => s,
            None => std::fs::read_link(root.path("/run/current-system"))
                .map(|p| p.to_string_lossy().into_owned())
                .context(
                    "no system item: pass --system, boot with fruix.system=, or activate first",
                )?,
        },
    };
    checked_system(system)
}

/// `system` if it is `/frx/store/NAME` with NAME a store item name (no
/// `..`, no extra `/`), else a one-line error naming it.
pub(crate) fn checked_system(system: String) -> Result<String> {
    use fruix_agent::error::AgentError;
    match fruix_agent::system::parse_system_path(&system) {
        Ok(_) => Ok(system),
        Err(AgentError::SystemName { source, .. }) => bail!("--system: '{system}': {source}"),
        Err(_) => bail!("--system: '{system}' is not a store item under /frx/store"),
    }
}

fn run_daemon(
    system: Option<String>,
    root: PathBuf,
    console: String,
    sshd_wait: u64,
) -> Result<bool> {
    let root = GuestRoot::new(root);
    // Without --system the daemon checks the current system, and follows
    // it through live switches.
    let follow_current = system.is_none();
    let system = match system {
        Some(s) => checked_system(s)?,
        None => match fruix_agent::switch::current_system(&root) {
            Ok(s) => s,
            Err(_) => system_arg(None, &root)?,
        },
    };
    let opts = fruix_agent::daemon::Options {
        inputs: fruix_agent::round::RoundInputs {
            boot_digest: platform::boot_arg(platform::DIGEST_KEY),
            sshd_wait: std::time::Duration::from_secs(
                sshd_wait.min(fruix_agent::socket::MAX_WAIT_S),
            ),
        },
        console: (!console.is_empty()).then_some(console),
        root,
        system,
        follow_current,
        boot_system: platform::boot_arg(platform::SYSTEM_KEY),
    };
    fruix_agent::daemon::run(&opts).context("fruix-agent run")?;
    Ok(true)
}

fn status(json: bool, wait: Option<u64>, root: PathBuf) -> Result<bool> {
    let (report, source) = fruix_agent::client::query(&GuestRoot::new(root), wait)?;
    let mut out = std::io::stdout().lock();
    if json {
        let mut v = report.to_json();
        v["source"] = serde_json::json!(match source {
            fruix_agent::client::Source::Daemon => "daemon",
            fruix_agent::client::Source::File => "status-file",
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        write!(out, "{}", report.to_lines())?;
        if source == fruix_agent::client::Source::File {
            writeln!(out, "agent=not-running")?;
        }
    }
    use fruix_agent::report::Outcome;
    Ok(matches!(report.outcome, Outcome::Ready | Outcome::Degraded))
}

fn probe(name: String, system: Option<String>, root: PathBuf, record: bool) -> Result<bool> {
    let root = GuestRoot::new(root);
    let system = system_arg(system, &root)?;
    let view = fruix_agent::system::SystemView::load(&root, &system)?;
    let Some(p) = view.config.probes.iter().find(|p| p.name == name) else {
        bail!("{system}: declares no probe named '{name}'");
    };
    let check = fruix_agent::round::run_probe(&view, p);
    if record {
        fruix_agent::early::record(&root, &check).context("recording the result")?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}={}", check.name, check.value)?;
    for r in &check.reasons {
        writeln!(out, "reason={r}")?;
    }
    Ok(check.status == fruix_agent::checks::CheckStatus::Ok)
}

fn init(system: Option<String>) -> Result<bool> {
    let root = GuestRoot::new("/");
    // The boot path catches its own panics (init::guarded); this catches
    // any left, so that PID 1 never unwinds out of main.
    let msg = std::panic::catch_unwind(|| fruix_agent::init::run(&root, system))
        .unwrap_or_else(|_| "fruix-agent init panicked; PID 1 waits".to_owned());
    // PID 1 must not exit: wait for signals forever.
    if std::process::id() == 1 {
        loop {
            nix::unistd::pause();
        }
    }
    bail!("{msg}")
}

/// The command line, or `init` when the kernel started us as PID 1 with
/// `init=/frx/store/...-fruix-agent-.../bin/fruix-agent`: the kernel
/// passes no subcommand, only what it did not understand itself.
fn parse_cli() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let known = |a: &std::ffi::OsStr| {
        use clap::CommandFactory;
        Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == a || c.get_all_aliases().any(|n| n == a))
    };
    if std::process::id() == 1 && args.get(1).is_none_or(|a| !known(a)) {
        return Cli {
            command: Command::Init { system: None },
        };
    }
    Cli::parse_from(args)
}

fn main() -> ExitCode {
    let result = match parse_cli().command {
        Command::Verify {
            root,
            metadata_only,
            json,
            items,
        } => verify(root, metadata_only, json, items),
        Command::Activate {
            system,
            root,
            dry_run,
            json,
        } => activate(system, root, dry_run, json),
        Command::Run {
            system,
            root,
            console,
            sshd_wait,
        } => run_daemon(system, root, console, sshd_wait),
        Command::Status { json, wait, root } => status(json, wait, root),
        Command::Init { system } => init(system),
        Command::Probe {
            name,
            system,
            root,
            record,
        } => probe(name, system, root, record),
        Command::Switch(a) => switch_cmd::run(a),
        Command::Generations(a) => gen_cmd::list(a),
        Command::Rollback(a) => gen_cmd::rollback(a),
        Command::SwitchGeneration(a) => gen_cmd::switch_generation(a),
        Command::DeleteGenerations(a) => gen_cmd::delete(a),
        Command::Gc(a) => gen_cmd::gc(a),
        Command::BootEntries { json } => boot_cmd::list(json),
        Command::Reboot => boot_cmd::reboot(),
        Command::Store(args) => store_cmd::run(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        // Output cut short by a closed pipe (`| head`) is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fruix-agent: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
