//! `fruix system build`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::Outcome;
use crate::build::progress::Progress;
use crate::build::{self, BuildOptions, BuildOutcome};
use crate::cli::{BuildArgs, ImageArgs, SystemCommand};
use crate::declaration::{self, Loaded};
use crate::image::{self, ImageOptions};

/// Runs a `fruix system` subcommand.
pub fn run(cmd: SystemCommand) -> Result<Outcome> {
    match cmd {
        SystemCommand::Build(a) => build_cmd(a),
        SystemCommand::Image(a) => image_cmd(a),
        SystemCommand::Vm(a) => super::vm::run(a),
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

/// Loads the declaration and builds its system: what `build`, `image` and
/// `vm DECL` all start with.
pub fn build_from(a: &BuildArgs) -> Result<(Loaded, BuildOutcome)> {
    let jobs = match a.jobs {
        Some(0) => bail!("--jobs: must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    // Everything about the declaration is checked before anything is
    // written.
    let loaded = declaration::load(&a.declaration)?;
    let agent = match &a.agent {
        Some(p) => p.clone(),
        None => default_agent()?,
    };
    let opts = BuildOptions {
        out: a.out.clone(),
        agent,
        cache_dir: a.cache_dir.clone().unwrap_or_else(default_cache_dir),
        jobs,
    };
    let progress = Progress::new(a.quiet || a.json);
    let outcome = build::build_system(&loaded, &opts, &progress)?;
    Ok((loaded, outcome))
}

fn build_cmd(a: BuildArgs) -> Result<Outcome> {
    let (_, outcome) = build_from(&a)?;
    let mut stdout = std::io::stdout().lock();
    if a.json {
        writeln!(stdout, "{}", serde_json::to_string(&outcome)?)?;
    } else {
        writeln!(stdout, "{}", outcome.system_path.display())?;
    }
    Ok(Outcome::Success)
}

/// Builds the system and its images: what `image` and `vm DECL` do.
pub fn image_from(a: &ImageArgs) -> Result<image::ImageOutcome> {
    let (loaded, built) = build_from(&a.build)?;
    let formats = if a.formats.is_empty() {
        loaded.decl.image.formats.clone()
    } else {
        let mut f = a.formats.clone();
        f.dedup();
        f
    };
    let opts = ImageOptions {
        out: a.build.out.clone(),
        formats,
        vhd_fixed: a.vhd_fixed,
    };
    let progress = Progress::new(a.build.quiet || a.build.json);
    Ok(image::build_image(&loaded, &built, &opts, &progress)?)
}

fn image_cmd(a: ImageArgs) -> Result<Outcome> {
    let outcome = image_from(&a)?;
    let mut stdout = std::io::stdout().lock();
    if a.build.json {
        writeln!(stdout, "{}", serde_json::to_string(&outcome)?)?;
    } else {
        for i in &outcome.images {
            writeln!(stdout, "{}", i.path.display())?;
        }
    }
    Ok(Outcome::Success)
}
