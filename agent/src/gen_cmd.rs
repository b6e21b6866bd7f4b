//! `fruix-agent generations`, `rollback`, `switch-generation`,
//! `delete-generations`, `gc` (`fruix_agent::generations` does the work).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use fruix_activation::GuestRoot;
use fruix_agent::generations;
use fruix_agent::platform;

use crate::switch_cmd::{self, SwitchArgs};

/// The guest's root and the output form.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The guest's root (a directory, for tests).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
}

/// Arguments of `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Seconds the generation switched to has to become ready.
    #[arg(long, default_value_t = 120, value_name = "S")]
    pub confirm_timeout: u64,
    /// The root and the output form.
    #[command(flatten)]
    pub common: ListArgs,
}

/// Arguments of `switch-generation`.
#[derive(Debug, Args)]
pub struct SwitchGenerationArgs {
    /// The generation.
    #[arg(value_name = "N")]
    pub number: u64,
    /// Seconds the generation switched to has to become ready.
    #[arg(long, default_value_t = 120, value_name = "S")]
    pub confirm_timeout: u64,
    /// The root and the output form.
    #[command(flatten)]
    pub common: ListArgs,
}

/// Arguments of `delete-generations`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Keep the newest K generations besides the current and booted ones.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub keep: usize,
    /// The root and the output form.
    #[command(flatten)]
    pub common: ListArgs,
}

/// Arguments of `gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The root and the output form.
    #[command(flatten)]
    pub common: ListArgs,
}

fn booted() -> Option<String> {
    platform::boot_arg(platform::SYSTEM_KEY)
}

/// Runs `generations`.
pub fn list(a: ListArgs) -> Result<bool> {
    let root = GuestRoot::new(&a.root);
    let gens = generations::list(&root, booted().as_deref())?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&gens)?)?;
        return Ok(true);
    }
    for g in &gens {
        let marks = [(g.current, "current"), (g.booted, "booted")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, m)| *m)
            .collect::<Vec<_>>()
            .join(",");
        writeln!(
            out,
            "{:>4}  {}  {:<11}  {}{}",
            g.number,
            g.date,
            g.state.as_str(),
            g.system,
            if marks.is_empty() {
                String::new()
            } else {
                format!("  ({marks})")
            }
        )?;
    }
    Ok(true)
}

/// Switches to generation `n`'s system, making `n` current again.
fn switch_to(root_dir: PathBuf, json: bool, confirm_timeout: u64, n: u64) -> Result<bool> {
    let root = GuestRoot::new(&root_dir);
    let gens = generations::list(&root, booted().as_deref())?;
    let Some(g) = gens.iter().find(|g| g.number == n) else {
        bail!("no generation {n}");
    };
    let a = SwitchArgs {
        system: Some(g.system.clone()),
        confirm_timeout,
        dry_run: false,
        boot: false,
        from_stdin: false,
        follow: None,
        recover: false,
        json,
        root: root_dir,
        worker: None,
        generation: Some(n),
    };
    let system = crate::checked_system(g.system.clone())?;
    let end = switch_cmd::start_and_follow(&a, &root, &system)?;
    switch_cmd::finish(&mut std::io::stdout().lock(), json, &end)
}

/// Runs `rollback`.
pub fn rollback(a: RollbackArgs) -> Result<bool> {
    let root = GuestRoot::new(&a.common.root);
    let gens = generations::list(&root, booted().as_deref())?;
    let Some(prev) = generations::previous_committed(&gens) else {
        bail!("no committed generation before the current one to roll back to");
    };
    let n = prev.number;
    switch_to(a.common.root, a.common.json, a.confirm_timeout, n)
}

/// Runs `switch-generation`.
pub fn switch_generation(a: SwitchGenerationArgs) -> Result<bool> {
    switch_to(a.common.root, a.common.json, a.confirm_timeout, a.number)
}

/// Runs `delete-generations`.
pub fn delete(a: DeleteArgs) -> Result<bool> {
    let root = GuestRoot::new(&a.common.root);
    let gone = generations::delete(&root, booted().as_deref(), a.keep)?;
    // Their boot entries go with them: an entry must never name a system
    // that gc may remove.
    let esp = fruix_agent::bootcheck::update(&root)
        .context("generations deleted, but their boot entries are still on the ESP")?;
    for c in esp {
        eprintln!("boot entries: {c}");
    }
    let mut out = std::io::stdout().lock();
    if a.common.json {
        writeln!(out, "{}", serde_json::json!({ "deleted": gone }))?;
    } else if gone.is_empty() {
        writeln!(out, "no generation to delete")?;
    } else {
        for n in &gone {
            writeln!(out, "deleted generation {n}")?;
        }
    }
    Ok(true)
}

/// Runs `gc`.
pub fn gc(a: GcArgs) -> Result<bool> {
    let root = GuestRoot::new(&a.common.root);
    let r = generations::gc(&root, booted().as_deref(), a.dry_run)?;
    let mut out = std::io::stdout().lock();
    if a.common.json {
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
        return Ok(true);
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for (name, bytes) in &r.removed {
        writeln!(out, "{verb} {name} ({bytes} bytes)")?;
    }
    writeln!(
        out,
        "{} {} items, {} bytes",
        if a.dry_run { "would free" } else { "freed" },
        r.removed.len(),
        r.freed_bytes
    )?;
    Ok(true)
}
