//! The external tools an image is made with, run with their output kept
//! in a log, and their last lines in the error when they fail.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::build::BuildError;

/// Runs `cmd` (with `input` on its stdin, if any), appending its output
/// and how long it took to `log`. Returns its stdout.
pub fn run(cmd: &mut Command, input: Option<&str>, log: &Path) -> Result<String, BuildError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let line = format!(
        "$ {tool} {}\n",
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let started = std::time::Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        BuildError::Input(format!(
            "cannot run {tool}: {e} (scripts/setup installs the image tools)"
        ))
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| BuildError::Io(PathBuf::from(&tool), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| BuildError::Io(PathBuf::from(&tool), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(parent) = log.parent() {
        let _ = fs::create_dir_all(parent);
    }
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(log) {
        let secs = started.elapsed().as_secs_f64();
        let _ = writeln!(f, "{line}{stdout}{stderr}# {tool}: {secs:.3} s");
    }
    if !out.status.success() {
        let tail: Vec<&str> = stderr
            .lines()
            .chain(stdout.lines())
            .filter(|l| !l.trim().is_empty())
            .collect();
        let start = tail.len().saturating_sub(6);
        return Err(BuildError::Tool {
            tool,
            log: log.to_owned(),
            tail: format!("{}: {}", out.status, tail[start..].join(" | ")),
        });
    }
    Ok(stdout)
}
