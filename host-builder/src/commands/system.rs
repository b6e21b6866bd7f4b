//! `fruix system build`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::Outcome;
use crate::build::progress::Progress;
use crate::build::{self, BuildOptions};
use crate::cli::{BuildArgs, SystemCommand};
use crate::declaration;

/// Runs a `fruix system` subcommand.
pub fn run(cmd: SystemCommand) -> Result<Outcome> {
    match cmd {
        SystemCommand::Build(a) => build_cmd(a),
    }
}

/// The default `.deb` cache: `$FRUIX_CACHE_DIR`, `$XDG_CACHE_HOME/fruix`
/// or `~/.cache/fruix`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FRUIX_CACHE_DIR") {
        return d.into();
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("fruix");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/fruix")
}

/// `fruix-agent` next to the running `fruix`.
fn default_agent() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running fruix")?;
    let agent = exe.with_file_name("fruix-agent");
    if !agent.is_file() {
        bail!(
            "{}: no fruix-agent next to fruix; build it (cargo build --release -p fruix-agent) or pass --agent",
            agent.display()
        );
    }
    Ok(agent)
}

fn build_cmd(a: BuildArgs) -> Result<Outcome> {
    let jobs = match a.jobs {
        Some(0) => bail!("--jobs: must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    // Everything about the declaration is checked before anything is
    // written.
    let loaded = declaration::load(&a.declaration)?;
    let agent = match a.agent {
        Some(p) => p,
        None => default_agent()?,
    };
    let opts = BuildOptions {
        out: a.out,
        agent,
        cache_dir: a.cache_dir.unwrap_or_else(default_cache_dir),
        jobs,
    };
    let progress = Progress::new(a.quiet || a.json);
    let outcome = build::build_system(&loaded, &opts, &progress)?;
    let mut stdout = std::io::stdout().lock();
    if a.json {
        writeln!(stdout, "{}", serde_json::to_string(&outcome)?)?;
    } else {
        writeln!(stdout, "{}", outcome.system_path.display())?;
    }
    Ok(Outcome::Success)
}
