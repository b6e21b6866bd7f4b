//! Shepherd: its pid alive, and the services the system needs started,
//! as `herd status` (the system's own herd, from the store) reports them.

use std::process::Command;

use super::Check;

/// The services `herd status` lists as started, as it prints them in
/// Shepherd 1.0 (`Started:` then ` + NAME` lines), and the one-shots that
/// ran (` * NAME` under `One-shot:`).
pub fn started(herd_status: &str) -> Vec<String> {
    let mut section = "";
    let mut out = Vec::new();
    for line in herd_status.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
        } else if let Some(name) = line.strip_prefix(" + ").filter(|_| section == "Started:") {
            out.push(name.trim().to_owned());
        } else if let Some(name) = line.strip_prefix(" * ").filter(|_| section == "One-shot:") {
            out.push(name.trim().to_owned());
        }
    }
    out
}

/// Checks Shepherd with `pid` (1 in shepherd-pid1 mode, from its pid file
/// otherwise) and that `required` services are started, asking `herd`
/// with `env`.
pub fn check(
    pid: Option<u32>,
    alive: impl Fn(u32) -> bool,
    herd: &str,
    env: &[(String, String)],
    required: &[&str],
) -> Check {
    let mut reasons = Vec::new();
    match pid {
        None => reasons.push("shepherd has no pid file".to_owned()),
        Some(p) if !alive(p) => reasons.push(format!("shepherd pid {p} is not running")),
        Some(_) => {}
    }
    let out = Command::new(herd)
        .arg("status")
        .env_clear()
        .env("PATH", "/usr/bin:/usr/sbin:/bin:/sbin")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let up = started(&String::from_utf8_lossy(&o.stdout));
            for r in required {
                if !up.iter().any(|s| s == r) {
                    reasons.push(format!("shepherd service {r} is not started"));
                }
            }
        }
        Ok(o) => reasons.push(format!(
            "herd status exited with {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => reasons.push(format!("cannot run {herd}: {e}")),
    }
    if reasons.is_empty() {
        Check::ok("shepherd", "running")
    } else {
        Check::failed("shepherd", "stopped", reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Shepherd 1.0.3's `herd status` printed it on this machine.
    const REAL: &str = "Started:\n + root\n + sleeper\nOne-shot:\n * once\n";

    #[test]
    fn parses_herd_status() {
        assert_eq!(started(REAL), ["root", "sleeper", "once"]);
        assert_eq!(started("Started:\n + root\nStopped:\n - sshd\n"), ["root"]);
    }
}
