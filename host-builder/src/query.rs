//! `fruix query`: asks a guest's agent whether the guest is ready, over
//! the system's `ssh` client in batch mode (no prompts), retrying with
//! backoff until the outcome is final or the deadline passes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where and how to reach the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The user (`root` when not given).
    pub user: String,
    /// The host.
    pub host: String,
    /// The port (22 when not given).
    pub port: u16,
}

impl Target {
    /// Parses `[USER@]HOST[:PORT]` (`[ADDR]:PORT` for IPv6).
    pub fn parse(s: &str) -> Result<Target, String> {
        let (user, rest) = match s.split_once('@') {
            Some((u, r)) if !u.is_empty() => (u.to_owned(), r),
            Some(_) => return Err(format!("'{s}': empty user before '@'")),
            None => ("root".to_owned(), s),
        };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("'{s}': no ']' after an IPv6 address"))?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("'{s}': no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("'{s}': '{p}' is not a port"))?,
            None => 22,
        };
        Ok(Target { user, host, port })
    }
}

/// Options of a query.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// The guest.
    pub target: Target,
    /// Private key for `ssh -i`.
    pub identity: Option<std::path::PathBuf>,
    /// How long to keep trying.
    pub wait: Duration,
    /// Ask for JSON.
    pub json: bool,
    /// Accept any host key and remember none (for throwaway VMs, whose
    /// keys are new at every boot). Otherwise new keys are accepted and
    /// changed ones refused, as `StrictHostKeyChecking=accept-new`.
    pub any_host_key: bool,
}

/// What the guest answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The agent's report, with its exit status: 0 ready (or degraded),
    /// 1 not ready.
    Report {
        /// The report as the agent printed it.
        text: String,
        /// 0 or 1.
        status: i32,
        /// The outcome, from `ready_marker`.
        outcome: String,
    },
    /// The guest or its agent could not be asked.
    Unreachable(String),
}

/// The path of the agent on an activated guest.
pub const REMOTE_AGENT: &str = "/run/current-system/bin/fruix-agent";

fn ssh_once(opts: &QueryOptions, remote_wait: u64, connect_timeout: u64) -> Answer {
    let t = &opts.target;
    let mut cmd = Command::new("ssh");
    cmd.args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR"])
        .arg("-o")
        .arg(format!("ConnectTimeout={}", connect_timeout.max(1)))
        .args(["-p", &t.port.to_string()]);
    if opts.any_host_key {
        cmd.args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ]);
    } else {
        cmd.args(["-o", "StrictHostKeyChecking=accept-new"]);
    }
    if let Some(i) = &opts.identity {
        cmd.arg("-i").arg(i).args(["-o", "IdentitiesOnly=yes"]);
    }
    cmd.arg(format!("{}@{}", t.user, t.host));
    let mut remote = format!("{REMOTE_AGENT} status");
    if opts.json {
        remote.push_str(" --json");
    }
    if remote_wait > 0 {
        remote.push_str(&format!(" --wait {remote_wait}"));
    }
    cmd.arg(remote);
    cmd.stdin(Stdio::null());
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return Answer::Unreachable(format!("cannot run ssh: {e}")),
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    match out.status.code() {
        Some(code @ (0 | 1)) => {
            let outcome = outcome_of(&text, opts.json).unwrap_or_default();
            if outcome.is_empty() {
                // Exit 1 from something else than the agent (a shell
                // that cannot find it, say).
                return Answer::Unreachable(format!(
                    "{}: no report from {REMOTE_AGENT} ({})",
                    t.host,
                    if err.is_empty() { "no output" } else { &err }
                ));
            }
            Answer::Report {
                text,
                status: code,
                outcome,
            }
        }
        Some(255) => Answer::Unreachable(format!(
            "ssh {}@{}:{}: {}",
            t.user,
            t.host,
            t.port,
            if err.is_empty() { "failed" } else { &err }
        )),
        other => Answer::Unreachable(format!(
            "{REMOTE_AGENT} status exited {}: {}",
            other.map_or_else(|| "by a signal".to_owned(), |c| c.to_string()),
            if err.is_empty() { &text } else { &err }
        )),
    }
}

/// `ready_marker` of a report, in either form, read by the agent's own
/// format crate.
fn outcome_of(text: &str, json: bool) -> Option<String> {
    let what = "report";
    let r = if json {
        fruix_system::Report::from_json(text, what)
    } else {
        fruix_system::Report::from_lines(text, what)
    };
    r.ok().map(|r| r.outcome.as_str().to_owned())
}

/// Asks until the outcome is final (`ready`, `degraded`, `failed`) or
/// `wait` has passed. Unreachable guests are retried with backoff (0.5 s
/// doubling up to 5 s); a pending outcome is waited for by the agent
/// itself (`status --wait`).
pub fn query(opts: &QueryOptions) -> Answer {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(500);
    loop {
        let left = opts.wait.saturating_sub(start.elapsed());
        let answer = ssh_once(opts, left.as_secs(), left.as_secs().clamp(1, 10));
        let final_outcome =
            matches!(&answer, Answer::Report { outcome, .. } if outcome != "pending");
        let left = opts.wait.saturating_sub(start.elapsed());
        if final_outcome || left.is_zero() {
            return answer;
        }
        std::thread::sleep(backoff.min(left));
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("root@127.0.0.1:10022").unwrap();
        assert_eq!(
            (t.user.as_str(), t.host.as_str(), t.port),
            ("root", "127.0.0.1", 10022)
        );
        let t = Target::parse("guest").unwrap();
        assert_eq!(
            (t.user.as_str(), t.host.as_str(), t.port),
            ("root", "guest", 22)
        );
        let t = Target::parse("fruix@[::1]:2222").unwrap();
        assert_eq!(
            (t.user.as_str(), t.host.as_str(), t.port),
            ("fruix", "::1", 2222)
        );
        assert!(Target::parse("@h").is_err());
        assert!(Target::parse("h:0").is_err());
        assert!(Target::parse("h:x").is_err());
        assert!(Target::parse(":22").is_err());
    }

    #[test]
    fn outcome_from_lines_or_json() {
        assert_eq!(
            outcome_of("ready_marker=failed\nreason=x\n", false).as_deref(),
            Some("failed")
        );
        assert_eq!(
            outcome_of("{\"ready_marker\":\"ready\"}", true).as_deref(),
            Some("ready")
        );
        assert_eq!(outcome_of("bash: not found", false), None);
    }
}
