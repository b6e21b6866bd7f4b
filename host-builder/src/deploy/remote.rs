//! Commands run on a guest over SSH, as `fruix query` reaches it: batch
//! mode, the host keys checked strictly against the pinned ones, the
//! destination after `--`. ssh's own failures (exit 255) are told apart:
//! a refusal (host key, authentication) is final, an unreachable guest
//! may be tried again.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::query::{self, Answer, HostKeys, Target};

/// The agent of the guest's current system.
pub const AGENT: &str = query::REMOTE_AGENT;

/// A guest reached over SSH.
#[derive(Clone, Debug)]
pub struct Remote {
    /// Where.
    pub target: Target,
    /// The private key to log in with.
    pub identity: Option<PathBuf>,
    /// The host keys accepted.
    pub host_keys: HostKeys,
    /// The socket of a shared master connection ([`super::mux::Master`]).
    pub control: Option<PathBuf>,
    /// How long a silent connection is kept.
    pub keepalive: Keepalive,
}

/// How long ssh keeps a connection whose other end has gone silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keepalive {
    /// 30 s (5 s x 6): a network's hiccup does not end a deploy.
    Steady,
    /// 6 s (2 s x 3), and 5 s to connect: after a reboot, a guest gone
    /// silent has gone down (its kernel does not close the session;
    /// QEMU's user network keeps the host's end open).
    Rebooting,
}

/// Why a command could not be run on the guest.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The guest may not be trusted, or refused us: final.
    #[error("refused: {0}")]
    Refused(String),
    /// The guest could not be reached.
    #[error("not reachable: {0}")]
    Unreachable(String),
    /// The remote command failed.
    #[error("{command} exited {code}: {message}")]
    Failed {
        /// The remote command.
        command: String,
        /// Its exit status.
        code: i32,
        /// The last line of its error output.
        message: String,
    },
    /// ssh could not be run or talked to.
    #[error("ssh")]
    Io(#[source] io::Error),
}

/// What a remote command printed, with its exit status.
#[derive(Clone, Debug)]
pub struct Output {
    /// Its exit status.
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Remote {
    /// The ssh command running `remote` (a shell command line whose words
    /// the caller has made safe).
    pub fn command(&self, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.args(&[]));
        c.arg(remote);
        c
    }

    /// ssh's arguments up to the destination, with `extra` options: the
    /// pinned keys, keepalives and, when shared, the master's socket.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        // A silent network cut ends the session instead of hanging it.
        // While the guest reboots, a connect or banner that does not come
        // within 5 s is a guest not up yet: asking again costs less.
        let (connect, every, count) = match self.keepalive {
            Keepalive::Steady => (10, 5, 6),
            Keepalive::Rebooting => (5, 2, 3),
        };
        let mut args = query::ssh_base_args(
            &self.target,
            &self.host_keys,
            self.identity.as_deref(),
            connect,
        );
        let mut opts: Vec<String> = vec![
            "-o".to_owned(),
            format!("ServerAliveInterval={every}"),
            "-o".to_owned(),
            format!("ServerAliveCountMax={count}"),
        ];
        // Through the deploy's master connection while it lives; a new
        // connection of its own when the master is gone.
        if let Some(p) = &self.control {
            opts.extend([
                "-o".to_owned(),
                format!("ControlPath={}", p.display()),
                "-o".to_owned(),
                "ControlMaster=no".to_owned(),
            ]);
        }
        opts.extend(extra.iter().map(|s| (*s).to_owned()));
        // Options go before the `--` that ends them.
        let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
        args.splice(at..at, opts);
        args
    }

    /// The same guest reached over a new connection of its own for every
    /// command, not through a master connection.
    pub fn without_master(&self) -> Remote {
        Remote {
            control: None,
            ..self.clone()
        }
    }

    /// The same guest while it reboots: a new connection for every
    /// command (the deploy's master does not survive the guest's side of
    /// it) that gives up on a guest gone silent within 6 s.
    pub fn rebooting(&self) -> Remote {
        Remote {
            keepalive: Keepalive::Rebooting,
            ..self.without_master()
        }
    }

    /// Maps ssh's exit 255 to why.
    pub fn ssh_failure(&self, stderr: &str) -> RemoteError {
        match query::classify(&self.target, &self.host_keys, stderr.trim()) {
            Answer::Refused(m) => RemoteError::Refused(m),
            Answer::Unreachable(m) | Answer::Report { text: m, .. } => RemoteError::Unreachable(m),
        }
    }

    /// Runs `remote`, feeding `input` its standard input (nothing when
    /// `None`), and returns what it printed. Exit 255 is ssh's own failure.
    pub fn run(&self, remote: &str, input: Option<&mut Feed<'_>>) -> Result<Output, RemoteError> {
        let mut c = self.command(remote);
        c.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(RemoteError::Io)?;
        let stderr = drain(child.stderr.take());
        let stdout = drain(child.stdout.take());
        let fed = match (input, child.stdin.take()) {
            (Some(f), Some(mut w)) => {
                let r = f(&mut w);
                drop(w);
                r
            }
            _ => Ok(()),
        };
        let status = child.wait().map_err(RemoteError::Io)?;
        let (stdout, stderr) = (join(stdout), join(stderr));
        let stderr: String = stderr
            .lines()
            .filter(|l| !is_mux_noise(l))
            .map(|l| format!("{l}\n"))
            .collect();
        let code = status.code().unwrap_or(255);
        if code == 255 {
            return Err(self.ssh_failure(&stderr));
        }
        // A stream cut short by the remote end is reported by the remote
        // command's own error, which names the item.
        if let Err(e) = fed
            && code == 0
        {
            return Err(RemoteError::Io(e));
        }
        Ok(Output {
            code,
            stdout,
            stderr,
        })
    }

    /// Runs `remote` with nothing on its standard input for at most
    /// `limit`: its output, or `None` when it was still running then and
    /// was killed (a command that takes its connection down with it, such
    /// as a reboot, leaves ssh waiting for its keepalives). Not through a
    /// master connection: the master would keep the killed client's
    /// pipes open.
    pub fn run_for(
        &self,
        remote: &str,
        limit: std::time::Duration,
    ) -> Result<Option<Output>, RemoteError> {
        let mut c = self.without_master().command(remote);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(RemoteError::Io)?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let end = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(RemoteError::Io)? {
                break Some(s);
            }
            if std::time::Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let (stdout, stderr) = (join(stdout), join(stderr));
        let Some(status) = status else {
            return Ok(None);
        };
        let code = status.code().unwrap_or(255);
        if code == 255 {
            return Err(self.ssh_failure(&stderr));
        }
        Ok(Some(Output {
            code,
            stdout,
            stderr,
        }))
    }

    /// Runs `remote`, handing each line of its standard error to `on` as
    /// it comes, and returns its output.
    pub fn run_following(
        &self,
        remote: &str,
        on: &mut dyn FnMut(&str),
    ) -> Result<Output, RemoteError> {
        let mut c = self.command(remote);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child: Child = c.spawn().map_err(RemoteError::Io)?;
        let stdout = drain(child.stdout.take());
        let mut err = String::new();
        if let Some(e) = child.stderr.take() {
            for line in BufReader::new(e).lines() {
                let Ok(line) = line else { break };
                if is_mux_noise(&line) {
                    continue;
                }
                on(&line);
                err.push_str(&line);
                err.push('\n');
            }
        }
        let status = child.wait().map_err(RemoteError::Io)?;
        let code = status.code().unwrap_or(255);
        if code == 255 {
            return Err(self.ssh_failure(&err));
        }
        Ok(Output {
            code,
            stdout: join(stdout),
            stderr: err,
        })
    }
}

/// ssh's complaint about a master connection that is gone (its socket
/// left behind by a killed master), after which it connects on its own:
/// not the remote command's output.
fn is_mux_noise(line: &str) -> bool {
    line.starts_with("Control socket connect(")
}

/// The last non-empty line of `text`.
pub fn last_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned()
}

/// What writes a remote command's standard input.
pub type Feed<'a> = dyn FnMut(&mut dyn Write) -> io::Result<()> + 'a;

type Drain = Option<std::thread::JoinHandle<String>>;

fn drain<R: Read + Send + 'static>(r: Option<R>) -> Drain {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    })
}

fn join(d: Drain) -> String {
    d.and_then(|h| h.join().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_before_the_destination_and_the_command_last() {
        let r = Remote {
            target: Target::parse("root@127.0.0.1:2222").unwrap(),
            identity: None,
            host_keys: HostKeys::File("/k/known".into()),
            control: None,
            keepalive: Keepalive::Steady,
        };
        let c = r.command("fruix-agent status");
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let n = args.len();
        assert_eq!(
            args[n - 7..],
            [
                "-o",
                "ServerAliveInterval=5",
                "-o",
                "ServerAliveCountMax=6",
                "--",
                "root@127.0.0.1",
                "fruix-agent status"
            ]
        );
        assert!(args.contains(&"UserKnownHostsFile=/k/known".to_owned()));
    }

    #[test]
    fn a_rebooting_guest_gets_its_own_connections_that_give_up_in_6_s() {
        let r = Remote {
            target: Target::parse("root@127.0.0.1:2222").unwrap(),
            identity: None,
            host_keys: HostKeys::File("/k/known".into()),
            control: Some("/tmp/fruix-ssh-x/master".into()),
            keepalive: Keepalive::Steady,
        }
        .rebooting();
        let args = r.args(&[]);
        let at = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(
            args[at - 4..],
            [
                "-o",
                "ServerAliveInterval=2",
                "-o",
                "ServerAliveCountMax=3",
                "--",
                "root@127.0.0.1"
            ]
        );
        assert!(!args.iter().any(|a| a.starts_with("ControlPath=")));
        assert!(args.contains(&"ConnectTimeout=5".to_owned()));
    }
}
