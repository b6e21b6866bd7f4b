//! `fruix-agent`, the in-guest agent. Today it verifies the store with the
//! same engine as `fruix store verify`; activation, the daemon and status
//! arrive with the agent issue.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
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

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Verify {
            root,
            metadata_only,
            json,
            items,
        } => verify(root, metadata_only, json, items),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("fruix-agent: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
