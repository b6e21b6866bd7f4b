//! One module per subcommand group, each with a `run()`.

pub mod query;
pub mod scan;
pub mod store;
pub mod system;
pub mod vm;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cli::BuildArgs;
use crate::pipeline::{SystemRequest, default_cache_dir};
use crate::realize::BuildOptions;

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

/// The pipeline's request from the command line's build arguments.
pub fn request(a: &BuildArgs) -> Result<SystemRequest> {
    let jobs = match a.jobs {
        Some(0) => bail!("--jobs: must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let agent = match &a.agent {
        Some(p) => p.clone(),
        None => default_agent()?,
    };
    Ok(SystemRequest {
        declaration: a.declaration.clone(),
        build: BuildOptions {
            out: a.out.clone(),
            agent,
            cache_dir: a.cache_dir.clone().unwrap_or_else(default_cache_dir),
            jobs,
        },
    })
}
