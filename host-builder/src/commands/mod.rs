//! One module per subcommand group, each with a `run()`.

pub mod deploy;
pub mod query;
pub mod scan;
pub mod store;
pub mod system;
pub mod vm;

use anyhow::{Result, bail};

use crate::cli::BuildArgs;
use crate::pipeline::{SystemRequest, default_cache_dir};

/// The pipeline's request from the command line's build arguments.
pub fn request(a: &BuildArgs) -> Result<SystemRequest> {
    let jobs = match a.jobs {
        Some(0) => bail!("--jobs: must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    Ok(SystemRequest {
        declaration: a.declaration.clone(),
        out: a.out.clone(),
        agent: a.agent.clone(),
        cache_dir: a.cache_dir.clone().unwrap_or_else(default_cache_dir),
        jobs,
    })
}
