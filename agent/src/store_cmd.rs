//! `fruix-agent store missing` and `fruix-agent store receive`: the guest's
//! half of a deploy. The host asks in one call which items the guest
//! lacks, then streams those; the checks themselves are the store crate's
//! (`fruix_store::transfer`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use fruix_store::transfer::{self, Received};
use fruix_store::{ItemName, StoreRoot};
use fruix_system::closure::{self, CLOSURE};

/// `fruix-agent store ...`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Print the items the store lacks (item directory or manifest
    /// absent), one per line: the system item, its closure when the system
    /// item is in the store, and the ITEMs named. Exit 0.
    Missing {
        /// The system item, by name or as /frx/store/NAME.
        #[arg(long, value_name = "SYSTEM")]
        system: String,
        /// The store root.
        #[arg(long, default_value = "/frx", value_name = "DIR")]
        root: PathBuf,
        /// Print JSON: {"system", "system_present", "missing"}.
        #[arg(long)]
        json: bool,
        /// More items to ask about (the host's closure, when the system
        /// item is not in the store yet).
        #[arg(value_name = "ITEM")]
        items: Vec<String>,
    },
    /// Read a transfer stream (zstd) on stdin and import its items, each
    /// checked against its name and the system item's manifest copy; only
    /// a whole, checked stream goes into the store. Exit 0, or 2 with a
    /// one-line error naming the item; nothing of a bad stream is left.
    Receive {
        /// The system item the stream brings or completes, by name or as
        /// /frx/store/NAME.
        #[arg(long, value_name = "SYSTEM")]
        system: String,
        /// The store root.
        #[arg(long, default_value = "/frx", value_name = "DIR")]
        root: PathBuf,
        /// Print the summary as JSON (and no line per item).
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `store` subcommand; true for exit 0.
pub fn run(args: StoreArgs) -> Result<bool> {
    match args.command {
        StoreCommand::Missing {
            system,
            root,
            json,
            items,
        } => missing(&system, root, json, &items),
        StoreCommand::Receive { system, root, json } => receive(&system, root, json),
    }
}

/// `--system` as an item name: `NAME` or `/frx/store/NAME`.
fn system_name(system: &str) -> Result<ItemName> {
    let name = match system.strip_prefix("/frx/store/") {
        Some(n) => n,
        None if system.starts_with('/') => {
            bail!("--system: '{system}' is not a store item under /frx/store")
        }
        None => system,
    };
    match ItemName::parse(name) {
        Ok(n) => Ok(n),
        Err(e) => bail!("--system: '{system}': {e}"),
    }
}

/// The closure of the system item in `dir`, from its `closure` file.
fn closure_of(dir: &Path) -> Result<Vec<ItemName>, String> {
    let path = dir.join(CLOSURE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{CLOSURE}: {e}"))?;
    let entries = closure::parse(&text, CLOSURE).map_err(|e| e.to_string())?;
    Ok(entries.into_iter().map(|e| e.item).collect())
}

fn missing(system: &str, root: PathBuf, json: bool, items: &[String]) -> Result<bool> {
    let system = system_name(system)?;
    let root = StoreRoot::new(root);
    let present = transfer::is_whole(&root, &system);
    let mut ask = vec![system.clone()];
    if present {
        let dir = root.item_path(&system);
        match closure_of(&dir) {
            Ok(c) => ask.extend(c),
            Err(e) => bail!("system {system}: {e}"),
        }
    }
    for s in items {
        match ItemName::parse(s) {
            Ok(n) => ask.push(n),
            Err(e) => bail!("item '{s}': {e}"),
        }
    }
    let lacking = transfer::missing(&root, &ask);
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "system": system,
            "system_present": present,
            "missing": lacking,
        });
        writeln!(out, "{v}")?;
    } else {
        for n in &lacking {
            writeln!(out, "{n}")?;
        }
    }
    Ok(true)
}

fn item_line(r: &Received) -> String {
    if r.skipped {
        format!(
            "present {} files={} bytes={}",
            r.name, r.files, r.file_bytes
        )
    } else {
        format!(
            "received {} files={} bytes={}",
            r.name, r.files, r.file_bytes
        )
    }
}

fn receive(system: &str, root: PathBuf, json: bool) -> Result<bool> {
    let system = system_name(system)?;
    // Held before any item arrives: a gc between this receive and the
    // switch keeps what it brings.
    fruix_agent::received::hold(&root, &system).with_context(|| {
        format!(
            "{}: hold on {system}",
            root.join(fruix_agent::received::DIR).display()
        )
    })?;
    let frx = root.clone();
    let root = StoreRoot::new(root);
    let stdin: Box<dyn BufRead> = Box::new(BufReader::with_capacity(
        fruix_store::hash::BUF_SIZE,
        std::io::stdin().lock(),
    ));
    let mut on_item = |r: &Received| {
        if !json {
            // Progress only: a closed stdout must not fail the import.
            let _ = writeln!(std::io::stdout().lock(), "{}", item_line(r));
        }
    };
    let summary =
        match transfer::receive_compressed(&root, &system, &closure_of, stdin, &mut on_item) {
            Ok(s) => s,
            Err(e) => {
                // Nothing came: nothing to hold (a system already whole keeps
                // the hold of the receive that brought it).
                if !transfer::is_whole(&root, &system) {
                    let _ = fruix_agent::received::release(&frx, system.as_str());
                }
                return Err(e.into());
            }
        };
    let received = summary.items.iter().filter(|i| !i.skipped).count();
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "system": system,
            "items": summary.items,
            "received": received,
            "present": summary.items.len() - received,
            "file_bytes": summary.file_bytes,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "summary items={} received={received} present={} bytes={}",
            summary.items.len(),
            summary.items.len() - received,
            summary.file_bytes
        )?;
    }
    Ok(true)
}
