//! `fruix system build`.

use std::io::Write;

use anyhow::Result;

use super::request;
use crate::Outcome;
use crate::cli::{BuildArgs, ImageArgs, SystemCommand};
use crate::pipeline;
use crate::progress::Progress;

/// Runs a `fruix system` subcommand.
pub fn run(cmd: SystemCommand) -> Result<Outcome> {
    match cmd {
        SystemCommand::Build(a) => build_cmd(a),
        SystemCommand::Image(a) => image_cmd(a),
        SystemCommand::Vm(a) => super::vm::run(a),
        SystemCommand::Deploy(a) => super::deploy::deploy(a),
        SystemCommand::Generations(a) => super::deploy::generations(a),
        SystemCommand::Rollback(a) => super::deploy::rollback(a),
    }
}

fn build_cmd(a: BuildArgs) -> Result<Outcome> {
    let progress = Progress::new(a.quiet || a.json);
    let (_, outcome) = pipeline::system(&request(&a)?, &progress)?;
    let mut stdout = std::io::stdout().lock();
    if a.json {
        writeln!(stdout, "{}", serde_json::to_string(&outcome)?)?;
    } else {
        writeln!(stdout, "{}", outcome.system_path.display())?;
    }
    Ok(Outcome::Success)
}

fn image_cmd(a: ImageArgs) -> Result<Outcome> {
    let progress = Progress::new(a.build.quiet || a.build.json);
    let (_, outcome) = pipeline::image(&request(&a.build)?, &a.formats, a.vhd_fixed, &progress)?;
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
