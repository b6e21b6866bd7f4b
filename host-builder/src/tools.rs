//! The external tools images are made and booted with (sfdisk, mtools,
//! mke2fs, qemu-img, ...), run with their output kept in a log and their
//! last lines in the error when they fail. Used by `image/` and `vm/`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a tool run failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The tool could not be started.
    #[error("cannot run {tool}: {cause} (scripts/setup installs the image tools)")]
    Spawn {
        /// The program.
        tool: String,
        /// Why (shown in the message: it is the whole story).
        cause: std::io::Error,
    },
    /// Talking to the running tool failed.
    #[error("{tool}")]
    Io {
        /// The program.
        tool: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tool ran and failed; its last lines and its log.
    #[error("{tool} failed (whole log: {}): {tail}", log.display())]
    Failed {
        /// The tool.
        tool: String,
        /// Its full output.
        log: PathBuf,
        /// Its exit status and last lines, joined with ` | `.
        tail: String,
    },
}

/// Runs `cmd` (with `input` on its stdin, if any), appending its output
/// and how long it took to `log`. Returns its stdout.
pub fn run(cmd: &mut Command, input: Option<&str>, log: &Path) -> Result<String, ToolError> {
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
    let mut child = cmd.spawn().map_err(|cause| ToolError::Spawn {
        tool: tool.clone(),
        cause,
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|source| ToolError::Io {
                tool: tool.clone(),
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| ToolError::Io {
        tool: tool.clone(),
        source,
    })?;
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
        return Err(ToolError::Failed {
            tool,
            log: log.to_owned(),
            tail: format!("{}: {}", out.status, tail[start..].join(" | ")),
        });
    }
    Ok(stdout)
}

/// `FILE@@OFFSET`, mtools' way of naming a partition inside a disk image.
pub fn mtools_image(disk: &Path, offset: u64) -> String {
    format!("{}@@{offset}", disk.display())
}

/// An mtools program (`mcopy`, `mtype`, ...) that accepts a FAT of any
/// geometry, as one inside a disk image has.
pub fn mtools(prog: &str) -> Command {
    let mut c = Command::new(prog);
    c.env("MTOOLS_SKIP_CHECK", "1");
    c
}
