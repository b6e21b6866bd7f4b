//! `fruix-agent`, the in-guest agent: parses the command line, runs the
//! command, maps the result to an exit status (0 success, 1 findings or
//! not ready, 2 error) in this one place.

use fruix_agent::platform;

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
        None => platform::boot_args()
            .and_then(|a| platform::boot_arg(&a, "fruix.system"))
            .context("no system item: pass --system or boot with fruix.system=")?,
    };
    if !system.starts_with("/frx/store/") {
        bail!("--system: '{system}' is not a store item under /frx/store");
    }
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

fn main() -> ExitCode {
    let result = match Cli::parse().command {
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
