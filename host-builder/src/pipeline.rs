//! The library pipeline the commands call: declaration -> system ->
//! image, with typed options (not the command line's structs). `fruix
//! system build`, `image` and `vm DECL` each take as much of it as they
//! need.

use std::path::PathBuf;

use crate::declaration::{self, ImageFormat, Loaded};
use crate::error::BuildError;
use crate::image::{self, ImageOptions, ImageOutcome};
use crate::progress::Progress;
use crate::realize::{self, BuildOptions, BuildOutcome};

/// What a system build needs beyond the declaration.
#[derive(Clone, Debug)]
pub struct SystemRequest {
    /// The declaration file.
    pub declaration: PathBuf,
    /// The output directory; the root is `OUT/frx`.
    pub out: PathBuf,
    /// The `fruix-agent` binary; `None`: the one next to the running
    /// `fruix`, looked for once the declaration is known to be good.
    pub agent: Option<PathBuf>,
    /// Where downloaded `.deb`s are kept.
    pub cache_dir: PathBuf,
    /// Worker threads.
    pub jobs: usize,
}

/// `fruix-agent` next to the running `fruix`.
pub fn default_agent() -> Result<PathBuf, PipelineError> {
    let exe = std::env::current_exe().map_err(PipelineError::CurrentExe)?;
    let agent = exe.with_file_name("fruix-agent");
    if !agent.is_file() {
        return Err(PipelineError::NoAgent(agent));
    }
    Ok(agent)
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

/// Loads the declaration and builds its system. Everything about the
/// declaration is checked before anything is written.
pub fn system(
    req: &SystemRequest,
    progress: &Progress,
) -> Result<(Loaded, BuildOutcome), PipelineError> {
    let loaded = declaration::load(&req.declaration)?;
    let agent = match &req.agent {
        Some(a) => a.clone(),
        None => default_agent()?,
    };
    let opts = BuildOptions {
        out: req.out.clone(),
        agent,
        cache_dir: req.cache_dir.clone(),
        jobs: req.jobs,
    };
    let outcome = realize::build_system(&loaded, &opts, progress)?;
    Ok((loaded, outcome))
}

/// Builds the system and its images; `formats` empty means the declared
/// ones.
pub fn image(
    req: &SystemRequest,
    formats: &[ImageFormat],
    vhd_fixed: bool,
    progress: &Progress,
) -> Result<(Loaded, ImageOutcome), PipelineError> {
    let (loaded, built) = system(req, progress)?;
    let formats = if formats.is_empty() {
        loaded.decl.image.formats.clone()
    } else {
        let mut f = formats.to_vec();
        f.dedup();
        f
    };
    let opts = ImageOptions {
        out: req.out.clone(),
        formats,
        vhd_fixed,
    };
    let made = image::build_image(&loaded, &built, &opts, progress)?;
    Ok((loaded, made))
}

/// Why the pipeline stopped: the declaration, or a build step.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The declaration is not valid.
    #[error(transparent)]
    Declaration(#[from] declaration::DeclError),
    /// A build or image step failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// No `--agent` and no `fruix-agent` beside `fruix`.
    #[error("{}: no fruix-agent next to fruix; build it (cargo build --release -p fruix-agent) or pass --agent", .0.display())]
    NoAgent(PathBuf),
    /// The running `fruix` cannot be found.
    #[error("cannot find the running fruix")]
    CurrentExe(#[source] std::io::Error),
}
