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
    /// Parses `[USER@]HOST[:PORT]` (`[ADDR]:PORT` for IPv6). The user is
    /// a POSIX login name and the host a DNS name or an address, neither
    /// starting with `-`, so that no part of it can reach ssh as an
    /// option (the destination is also passed after `--`).
    pub fn parse(s: &str) -> Result<Target, String> {
        let (user, rest) = match s.split_once('@') {
            Some((u, r)) if !u.is_empty() => (u.to_owned(), r),
            Some(_) => return Err(format!("'{s}': empty user before '@'")),
            None => ("root".to_owned(), s),
        };
        let (host, port, bracketed) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("'{s}': no ']' after an IPv6 address"))?;
            let port = match after {
                "" => None,
                a => Some(
                    a.strip_prefix(':')
                        .ok_or_else(|| format!("'{s}': '{a}' after ']' is not ':PORT'"))?,
                ),
            };
            (h.to_owned(), port, true)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p), false),
                None => (rest.to_owned(), None, false),
            }
        };
        if host.is_empty() {
            return Err(format!("'{s}': no host"));
        }
        let user_ok = user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !user.starts_with('-');
        if !user_ok {
            return Err(format!(
                "'{s}': '{user}' is not a user name (letters, digits, '.', '_', '-', not first)"
            ));
        }
        let host_ok = if bracketed {
            host.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
                && !host.starts_with(['-', '.'])
        };
        if !host_ok {
            return Err(format!(
                "'{s}': '{host}' is not a host name or address{}",
                if bracketed { " (IPv6 inside [])" } else { "" }
            ));
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

    /// The host as ssh and known_hosts name it: `[HOST]:PORT` for any
    /// port but 22.
    pub fn known_hosts_name(&self) -> String {
        fruix_system::hostkeys::known_hosts_name(&self.host, self.port)
    }
}

/// Which host keys the guest may answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeys {
    /// Only those pinned in this known_hosts file (`--known-hosts`).
    File(std::path::PathBuf),
    /// Only those in the user's own known_hosts files (ssh's default).
    User,
    /// Any, remembering none (`--any-host-key`, an explicit opt-out).
    Any,
}

impl HostKeys {
    /// The ssh options for this policy. Strict in both checked cases: an
    /// unknown key is refused as a changed one is.
    fn ssh_options(&self) -> Vec<String> {
        let o = |s: &str| ["-o".to_owned(), s.to_owned()];
        match self {
            HostKeys::File(f) => [
                o("StrictHostKeyChecking=yes"),
                o(&format!("UserKnownHostsFile={}", f.display())),
                o("GlobalKnownHostsFile=/dev/null"),
            ]
            .concat(),
            HostKeys::User => o("StrictHostKeyChecking=yes").to_vec(),
            HostKeys::Any => [
                o("StrictHostKeyChecking=no"),
                o("UserKnownHostsFile=/dev/null"),
            ]
            .concat(),
        }
    }

    /// The file named in errors.
    fn file(&self) -> String {
        match self {
            HostKeys::File(f) => f.display().to_string(),
            _ => "the user's known_hosts".into(),
        }
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
    /// The host keys accepted.
    pub host_keys: HostKeys,
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
    /// The guest or its agent could not be asked (yet): tried again until
    /// the deadline.
    Unreachable(String),
    /// The guest answered but may not be trusted or refused us: a host
    /// key that is not the pinned one, or authentication refused. Final,
    /// at once: waiting would not change it.
    Refused(String),
}

/// The path of the agent on an activated guest.
pub const REMOTE_AGENT: &str = "/run/current-system/bin/fruix-agent";

/// ssh's options for reaching `target` in batch mode with `host_keys`
/// and `identity`, then `--` and the destination: what every command run
/// on a guest shares. The remote command comes after.
pub fn ssh_base_args(
    target: &Target,
    host_keys: &HostKeys,
    identity: Option<&std::path::Path>,
    connect_timeout: u64,
) -> Vec<String> {
    let t = target;
    let mut args: Vec<String> = ["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o"]
        .map(str::to_owned)
        .to_vec();
    args.push(format!("ConnectTimeout={}", connect_timeout.max(1)));
    args.extend(["-p".to_owned(), t.port.to_string()]);
    args.extend(host_keys.ssh_options());
    if let Some(i) = identity {
        args.extend([
            "-i".to_owned(),
            i.display().to_string(),
            "-o".to_owned(),
            "IdentitiesOnly=yes".to_owned(),
        ]);
    }
    args.push("--".to_owned());
    args.push(format!("{}@{}", t.user, t.host));
    args
}

/// The ssh command line of one query: options, then `--`, then the
/// destination and the remote command, so that nothing in the target
/// can be read as an option.
fn ssh_args(opts: &QueryOptions, remote_wait: u64, connect_timeout: u64) -> Vec<String> {
    let mut args = ssh_base_args(
        &opts.target,
        &opts.host_keys,
        opts.identity.as_deref(),
        connect_timeout,
    );
    let mut remote = format!("{REMOTE_AGENT} status");
    if opts.json {
        remote.push_str(" --json");
    }
    if remote_wait > 0 {
        remote.push_str(&format!(" --wait {remote_wait}"));
    }
    args.push(remote);
    args
}

/// What ssh's exit 255 means: a refusal that waiting cannot change, or
/// a guest not reachable yet. `err` is ssh's standard error.
fn classify_ssh_failure(opts: &QueryOptions, err: &str) -> Answer {
    classify(&opts.target, &opts.host_keys, err)
}

/// What ssh's exit 255 means for `target` checked against `host_keys`:
/// a refusal that waiting cannot change, or a guest not reachable yet.
pub fn classify(target: &Target, host_keys: &HostKeys, err: &str) -> Answer {
    let t = target;
    let name = t.known_hosts_name();
    if err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || err.contains("has changed and you have requested strict checking")
    {
        return Answer::Refused(format!(
            "host key of {name} does not match the one pinned in {}",
            host_keys.file()
        ));
    }
    if err.contains("host key is known for") && err.contains("requested strict checking") {
        return Answer::Refused(format!(
            "no host key for {name} is pinned in {}",
            host_keys.file()
        ));
    }
    if err.contains("Host key verification failed") {
        return Answer::Refused(format!(
            "host key of {name} not verified against {}: {}",
            host_keys.file(),
            one_line(err)
        ));
    }
    if err.contains("Permission denied") || err.contains("Too many authentication failures") {
        return Answer::Refused(format!(
            "ssh {}@{name}: authentication refused: {}",
            t.user,
            one_line(err)
        ));
    }
    Answer::Unreachable(format!(
        "ssh {}@{name}: {}",
        t.user,
        if err.is_empty() {
            "failed"
        } else {
            one_line(err)
        }
    ))
}

/// The last line of ssh's error output: the one that says what failed.
fn one_line(err: &str) -> &str {
    err.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(err)
}

fn ssh_once(opts: &QueryOptions, remote_wait: u64, connect_timeout: u64) -> Answer {
    let mut cmd = Command::new("ssh");
    cmd.args(ssh_args(opts, remote_wait, connect_timeout));
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
                    opts.target.host,
                    if err.is_empty() { "no output" } else { &err }
                ));
            }
            Answer::Report {
                text,
                status: code,
                outcome,
            }
        }
        Some(255) => classify_ssh_failure(opts, &err),
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
/// `wait` has passed, or the guest is refused (host key, authentication),
/// which is final at once. Unreachable guests are retried with backoff (0.5 s
/// doubling up to 5 s); a pending outcome is waited for by the agent
/// itself (`status --wait`).
pub fn query(opts: &QueryOptions) -> Answer {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(500);
    loop {
        let left = opts.wait.saturating_sub(start.elapsed());
        let answer = ssh_once(opts, left.as_secs(), left.as_secs().clamp(1, 10));
        let final_outcome = match &answer {
            Answer::Report { outcome, .. } => outcome != "pending",
            Answer::Refused(_) => true,
            Answer::Unreachable(_) => false,
        };
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
        let t = Target::parse("[::1]").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 22));
    }

    #[test]
    fn targets_that_could_become_options_are_refused() {
        let e = |s: &str| Target::parse(s).unwrap_err();
        assert_eq!(
            e("-oProxyCommand=x@h"),
            "'-oProxyCommand=x@h': '-oProxyCommand=x' is not a user name (letters, digits, '.', '_', '-', not first)"
        );
        assert_eq!(
            e("root@-oProxyCommand=x"),
            "'root@-oProxyCommand=x': '-oProxyCommand=x' is not a host name or address"
        );
        assert_eq!(
            e("root@h st:22"),
            "'root@h st:22': 'h st' is not a host name or address"
        );
        assert_eq!(
            e("root@[nothex]:22"),
            "'root@[nothex]:22': 'nothex' is not a host name or address (IPv6 inside [])"
        );
        assert_eq!(
            e("root@[::1]x"),
            "'root@[::1]x': 'x' after ']' is not ':PORT'"
        );
    }

    fn opts(host_keys: HostKeys) -> QueryOptions {
        QueryOptions {
            target: Target::parse("root@127.0.0.1:10022").unwrap(),
            identity: Some("/k/id".into()),
            wait: Duration::from_secs(5),
            json: true,
            host_keys,
        }
    }

    #[test]
    fn the_destination_comes_after_double_dash_and_keys_are_checked_strictly() {
        let a = ssh_args(&opts(HostKeys::File("/x/guest.known_hosts".into())), 7, 3);
        assert_eq!(
            a.join(" "),
            "-o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=3 -p 10022 \
             -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/x/guest.known_hosts \
             -o GlobalKnownHostsFile=/dev/null -i /k/id -o IdentitiesOnly=yes \
             -- root@127.0.0.1 /run/current-system/bin/fruix-agent status --json --wait 7"
        );
        let a = ssh_args(&opts(HostKeys::User), 0, 0);
        assert!(a.contains(&"StrictHostKeyChecking=yes".to_owned()));
        assert!(!a.iter().any(|x| x.starts_with("UserKnownHostsFile")));
    }

    #[test]
    fn host_key_and_authentication_failures_are_final() {
        let o = opts(HostKeys::File("/x/k".into()));
        // What OpenSSH 9.2 prints, LogLevel=ERROR.
        let changed = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
            @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
            Host key for [127.0.0.1]:10022 has changed and you have requested strict checking.\n\
            Host key verification failed.";
        assert_eq!(
            classify_ssh_failure(&o, changed),
            Answer::Refused(
                "host key of [127.0.0.1]:10022 does not match the one pinned in /x/k".into()
            )
        );
        let unknown = "No ED25519 host key is known for [127.0.0.1]:10022 and you have requested strict checking.\n\
            Host key verification failed.";
        assert_eq!(
            classify_ssh_failure(&o, unknown),
            Answer::Refused("no host key for [127.0.0.1]:10022 is pinned in /x/k".into())
        );
        assert_eq!(
            classify_ssh_failure(&o, "root@127.0.0.1: Permission denied (publickey)."),
            Answer::Refused(
                "ssh root@[127.0.0.1]:10022: authentication refused: root@127.0.0.1: Permission denied (publickey).".into()
            )
        );
        assert_eq!(
            classify_ssh_failure(
                &o,
                "ssh: connect to host 127.0.0.1 port 10022: Connection refused"
            ),
            Answer::Unreachable(
                "ssh root@[127.0.0.1]:10022: ssh: connect to host 127.0.0.1 port 10022: Connection refused".into()
            )
        );
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
