//! The ready markers: `/run/fruix/ready` (key=value, written atomically,
//! only while the system is ready or degraded), `/run/fruix/status.json`
//! (the last report, for `fruix-agent status` when the daemon cannot be
//! asked), one console line and a syslog message per final outcome.

use std::io::Write;

use fruix_activation::GuestRoot;

use crate::report::{Outcome, Report};

/// Where the ready file is.
pub const READY_PATH: &str = "/run/fruix/ready";
/// Where the last report is kept.
pub const STATUS_PATH: &str = "/run/fruix/status.json";

/// Writes the state files for `report`: the status file always, the ready
/// file only when ready or degraded (and removes it otherwise).
pub fn write_state(root: &GuestRoot, report: &Report) -> std::io::Result<()> {
    let json = serde_json::to_vec(report).unwrap_or_default();
    root.write_if_changed(STATUS_PATH, &json, 0o644, None)
        .map_err(std::io::Error::other)?;
    match report.outcome {
        Outcome::Ready | Outcome::Degraded => {
            root.write_if_changed(READY_PATH, report.to_lines().as_bytes(), 0o644, None)
                .map_err(std::io::Error::other)?;
        }
        Outcome::Failed | Outcome::Pending => {
            root.remove(READY_PATH).map_err(std::io::Error::other)?;
        }
    }
    Ok(())
}

/// Announces a final outcome: one line on the console device (a guest
/// path), preceded by the SSH host keys' fingerprint and key blocks (as
/// cloud-init prints them: the host pins the keys from the console, the
/// channel it trusts) and a `fruix-reason:` line for each of the first reasons
/// (so that whoever watches the console, `fruix system vm` among them,
/// sees why without logging in), and the ready line to syslog (`info`
/// when ready, `warning` when degraded, `err` when failed). A guest
/// without either just misses it.
pub fn announce(root: &GuestRoot, report: &Report, console: Option<&str>) {
    let line = report.console_line();
    if let Some(dev) = console
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .open(root.path(dev))
    {
        // One write, so that the lines are not split by other output.
        let text = crate::hostkeys::console_block(root) + &report.console_text();
        let _ = f.write_all(text.as_bytes());
    }
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_DAEMON,
        hostname: None,
        process: "fruix-agent".into(),
        pid: std::process::id(),
    };
    if let Ok(mut w) = syslog::unix(formatter) {
        let _ = match report.outcome {
            Outcome::Ready => w.info(&line),
            Outcome::Degraded => w.warning(&line),
            _ => w.err(&line),
        };
    }
}

/// Writes one line on the console device (a guest path), in one write; a
/// guest without one just misses it.
pub fn console_line(root: &GuestRoot, console: &str, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .open(root.path(console))
    {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}
