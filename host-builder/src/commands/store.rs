//! `fruix store import|verify|list`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use fruix_store::{Depth, ImportOptions, ItemName, StoreRoot, VerifyOptions};

use crate::Outcome;
use crate::cli::{ImportArgs, ListArgs, StoreCommand, VerifyArgs};

/// Runs a `fruix store` subcommand.
pub fn run(cmd: StoreCommand) -> Result<Outcome> {
    match cmd {
        StoreCommand::Import(a) => import(a),
        StoreCommand::Verify(a) => verify(a),
        StoreCommand::List(a) => list(a),
    }
}

fn jobs(n: Option<usize>) -> Result<usize> {
    match n {
        Some(0) => bail!("--jobs: must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, usize::from)),
    }
}

fn import(a: ImportArgs) -> Result<Outcome> {
    let root = StoreRoot::new(&a.root);
    let opts = ImportOptions {
        jobs: jobs(a.jobs)?,
    };
    let meta = std::fs::metadata(&a.src).with_context(|| format!("{}", a.src.display()))?;
    let out = if meta.is_dir() {
        fruix_store::import_dir(&root, &a.name, &a.src, &opts)?
    } else {
        fruix_store::import_archive(&root, &a.name, &a.src, &opts)?
    };
    for d in &out.dropped {
        eprintln!(
            "fruix: dropped setuid/setgid/sticky bits of '{}' (mode {:04o})",
            d.entry, d.mode
        );
    }
    let mut stdout = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({
            "item": out.path,
            "name": out.name,
            "existed": out.existed,
            "entries": out.manifest.entries().len(),
            "size": out.manifest.content_size(),
            "dropped": out.dropped,
        });
        writeln!(stdout, "{v}")?;
    } else {
        writeln!(stdout, "{}", out.path.display())?;
    }
    Ok(Outcome::Success)
}

/// Accepts an item's name or any path whose last component is one.
fn item_arg(s: &str) -> Result<ItemName> {
    let last = Path::new(s)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(s);
    Ok(ItemName::parse(last)?)
}

fn verify(a: VerifyArgs) -> Result<Outcome> {
    let root = StoreRoot::new(&a.root);
    let opts = VerifyOptions {
        depth: if a.metadata_only {
            Depth::Metadata
        } else {
            Depth::Full
        },
        jobs: jobs(a.jobs)?,
    };
    let report = if a.items.is_empty() {
        fruix_store::verify_root(&root, &opts)?
    } else {
        let items = a
            .items
            .iter()
            .map(|s| item_arg(s))
            .collect::<Result<Vec<_>>>()?;
        fruix_store::verify_items(&root, &items, &opts)?
    };
    let mut stdout = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({
            "clean": report.is_clean(),
            "items": report.items,
            "entries": report.entries,
            "bytes_hashed": report.bytes_hashed,
            "findings": report.findings,
        });
        writeln!(stdout, "{v}")?;
    } else {
        for f in &report.findings {
            writeln!(stdout, "{f}")?;
        }
    }
    Ok(if report.is_clean() {
        Outcome::Success
    } else {
        Outcome::Findings
    })
}

fn list(a: ListArgs) -> Result<Outcome> {
    let items = StoreRoot::new(&a.root).list()?;
    let mut stdout = std::io::stdout().lock();
    if a.json {
        writeln!(stdout, "{}", serde_json::to_string(&items)?)?;
    } else {
        for i in &items {
            writeln!(
                stdout,
                "{:>14} {:>8} {}",
                i.size,
                i.entries,
                i.path.display()
            )?;
        }
    }
    Ok(Outcome::Success)
}
