//! Shepherd: its pid alive, and the services the system needs started.
//! Shepherd is asked over its control socket, in the protocol `herd`
//! speaks: one `shepherd-command` s-expression, one reply. That costs a
//! millisecond, where `herd status` costs a Guile start-up (a third of a
//! second here, seconds in an emulated guest). Should the socket not
//! answer, the system's own `herd status` is asked instead.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::Check;

/// Where a system Shepherd listens (its default, under `/var/run`, which
/// is `/run` on most systems).
pub const SOCKETS: &[&str] = &["/var/run/shepherd/socket", "/run/shepherd/socket"];

/// An s-expression, as much of one as Shepherd's replies need.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Sexp {
    List(Vec<Sexp>),
    Atom(String),
    Str(String),
}

impl Sexp {
    /// `(key value...)` inside a list: the values after `key`.
    pub(crate) fn field(&self, key: &str) -> Option<&[Sexp]> {
        let Sexp::List(items) = self else { return None };
        items.iter().find_map(|i| match i {
            Sexp::List(kv) if matches!(kv.first(), Some(Sexp::Atom(k)) if k == key) => {
                Some(&kv[1..])
            }
            _ => None,
        })
    }

    pub(crate) fn atom(&self) -> Option<&str> {
        match self {
            Sexp::Atom(a) => Some(a),
            _ => None,
        }
    }
}

/// How deep lists may nest in a reply (Shepherd's own nest about eight
/// deep): deeper input is refused, so that the recursive reader below
/// cannot exhaust the stack.
pub const MAX_DEPTH: usize = 32;
/// How long a reply may be (a system's status is a few tens of kilobytes).
pub const MAX_REPLY: usize = 1 << 20;

/// Why a reply does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// It ends before the s-expression does (more may come).
    Incomplete,
    /// It cannot become one.
    Invalid,
    /// It nests deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// Parses one s-expression from the start of `text`.
pub(crate) fn parse(text: &str) -> Result<Sexp, ParseError> {
    use ParseError::{Incomplete, Invalid, TooDeep};
    fn value(c: &[char], i: &mut usize, depth: usize) -> Result<Sexp, ParseError> {
        while *i < c.len() && c[*i].is_whitespace() {
            *i += 1;
        }
        match c.get(*i).ok_or(Incomplete)? {
            '(' => {
                if depth >= MAX_DEPTH {
                    return Err(TooDeep);
                }
                *i += 1;
                let mut items = Vec::new();
                loop {
                    while *i < c.len() && c[*i].is_whitespace() {
                        *i += 1;
                    }
                    if *c.get(*i).ok_or(Incomplete)? == ')' {
                        *i += 1;
                        return Ok(Sexp::List(items));
                    }
                    items.push(value(c, i, depth + 1)?);
                }
            }
            '"' => {
                *i += 1;
                let mut s = String::new();
                loop {
                    match *c.get(*i).ok_or(Incomplete)? {
                        '"' => {
                            *i += 1;
                            return Ok(Sexp::Str(s));
                        }
                        '\\' => {
                            s.push(*c.get(*i + 1).ok_or(Incomplete)?);
                            *i += 2;
                        }
                        ch => {
                            s.push(ch);
                            *i += 1;
                        }
                    }
                }
            }
            ')' => Err(Invalid),
            _ => {
                let start = *i;
                while *i < c.len() && !c[*i].is_whitespace() && c[*i] != '(' && c[*i] != ')' {
                    *i += 1;
                }
                Ok(Sexp::Atom(c[start..*i].iter().collect()))
            }
        }
    }
    let chars: Vec<char> = text.chars().collect();
    value(&chars, &mut 0, 0)
}

/// Why Shepherd could not be asked which services run.
#[derive(Debug, thiserror::Error)]
pub enum ShepherdError {
    /// The reply does not parse.
    #[error("shepherd's reply is not an s-expression")]
    NotSexp,
    /// The reply nests lists deeper than [`MAX_DEPTH`].
    #[error("shepherd's reply nests lists deeper than {MAX_DEPTH}")]
    TooDeep,
    /// The reply is longer than [`MAX_REPLY`] bytes.
    #[error("shepherd's reply is longer than {MAX_REPLY} bytes")]
    TooLong,
    /// Shepherd answered with an error.
    #[error("shepherd answered with an error: {0}")]
    Answered(String),
    /// The reply has no `result`.
    #[error("shepherd's reply has no result")]
    NoResult,
    /// The result is not a list of services.
    #[error("shepherd's result is not a list of services")]
    NotServices,
    /// The control socket could not be used.
    #[error("{}", path.display())]
    Socket {
        /// The socket.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `herd` could not be run.
    #[error("cannot run {herd}")]
    Herd {
        /// The program.
        herd: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `herd status` failed.
    #[error("herd status exited with {status}: {stderr}")]
    HerdFailed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
}

/// The services a `status` reply shows running, by their first name.
pub fn running_from_reply(reply: &str) -> Result<Vec<String>, ShepherdError> {
    Ok(statuses_from_reply(reply)?
        .into_iter()
        .filter(|(_, st)| st == "running")
        .map(|(n, _)| n)
        .collect())
}

/// Every service of a `status` reply: its first name and its status
/// (`running`, `stopped`, `starting`, ...).
pub fn statuses_from_reply(reply: &str) -> Result<Vec<(String, String)>, ShepherdError> {
    if reply.len() > MAX_REPLY {
        return Err(ShepherdError::TooLong);
    }
    let r = parse(reply).map_err(|e| match e {
        ParseError::TooDeep => ShepherdError::TooDeep,
        ParseError::Incomplete | ParseError::Invalid => ShepherdError::NotSexp,
    })?;
    if let Some([e]) = r.field("error")
        && e.atom() != Some("#f")
    {
        return Err(ShepherdError::Answered(format!("{e:?}")));
    }
    let Some([result]) = r.field("result") else {
        return Err(ShepherdError::NoResult);
    };
    // The result is a list of the action's return values, the one of
    // `status` being the list of services: unwrap down to the list whose
    // items are `(service ...)`.
    let is_service =
        |s: &Sexp| matches!(s, Sexp::List(i) if i.first().and_then(Sexp::atom) == Some("service"));
    let mut services = result;
    while let Sexp::List(items) = services {
        match items.as_slice() {
            [only] if !is_service(only) => services = only,
            _ => break,
        }
    }
    let Sexp::List(services) = services else {
        return Err(ShepherdError::NotServices);
    };
    Ok(services
        .iter()
        .filter_map(|s| {
            let status = s
                .field("status")
                .and_then(|v| v.first())
                .and_then(Sexp::atom)
                .unwrap_or("unknown")
                .to_owned();
            match s.field("provides") {
                Some([Sexp::List(names)]) => names
                    .first()
                    .and_then(Sexp::atom)
                    .map(|n| (n.to_owned(), status)),
                _ => None,
            }
        })
        .collect())
}

/// Asks the Shepherd listening on `socket` for the status of its services.
pub fn ask_socket(socket: &Path) -> Result<Vec<String>, ShepherdError> {
    running_from_reply(&status_reply(socket)?)
}

/// Shepherd's reply to `status`, from the Shepherd listening on `socket`.
pub fn status_reply(socket: &Path) -> Result<String, ShepherdError> {
    exchange(
        socket,
        b"(shepherd-command (version 0) (action status) (service root) (arguments ()) (directory \"/\"))\n",
        Duration::from_secs(5),
    )
}

/// Sends one command line to the Shepherd listening on `socket` and reads
/// its reply, waiting at most `timeout` for each read and write.
pub(crate) fn exchange(
    socket: &Path,
    command: &[u8],
    timeout: Duration,
) -> Result<String, ShepherdError> {
    let io = |source| ShepherdError::Socket {
        path: socket.to_owned(),
        source,
    };
    let mut s = UnixStream::connect(socket).map_err(io)?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    s.write_all(command).map_err(io)?;
    // Shepherd closes the connection after its reply; read until the
    // s-expression is complete (or cannot become one), in case it does
    // not, and no further than MAX_REPLY.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let n = s.read(&mut chunk).map_err(io)?;
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REPLY {
            return Err(ShepherdError::TooLong);
        }
        if n == 0 || parse(&String::from_utf8_lossy(&buf)) != Err(ParseError::Incomplete) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

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

/// The services `herd status` (the system's own herd, with `env`) lists
/// as started.
fn ask_herd(herd: &str, env: &[(String, String)]) -> Result<Vec<String>, ShepherdError> {
    let o = Command::new(herd)
        .arg("status")
        .env_clear()
        .env("PATH", "/usr/bin:/usr/sbin:/bin:/sbin")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .map_err(|source| ShepherdError::Herd {
            herd: herd.to_owned(),
            source,
        })?;
    if !o.status.success() {
        return Err(ShepherdError::HerdFailed {
            status: o.status,
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        });
    }
    Ok(started(&String::from_utf8_lossy(&o.stdout)))
}

/// Checks Shepherd with `pid` (1 in shepherd-pid1 mode, from its pid file
/// otherwise) and that `required` services are started, asking it on the
/// first of `sockets` that answers, else with `herd` and `env`.
pub fn check(
    pid: Option<u32>,
    alive: impl Fn(u32) -> bool,
    sockets: &[std::path::PathBuf],
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
    // The socket when one answers, else herd: either way the services
    // that are up, checked against the required ones in one place.
    let up = match sockets.iter().find_map(|s| ask_socket(s).ok()) {
        Some(up) => Ok(up),
        None => ask_herd(herd, env),
    };
    match up {
        Ok(up) => {
            for r in required {
                if !up.iter().any(|s| s == r) {
                    reasons.push(format!("shepherd service {r} is not started"));
                }
            }
        }
        Err(e) => reasons.push(crate::error::chain(&e)),
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

    /// Shepherd 1.0.3's reply to `status` on this machine (root, a running
    /// service and a one-shot that ran), cut to the fields read here.
    const REPLY: &str = r#"(reply (version 0) (result (((service (version 0) (provides (root shepherd)) (requires ()) (docstring "The root service is used to operate on shepherd itself.") (running (process (version 0) (id 2464) (command ()))) (status-changes ((running . 1795422248) (starting . 1795422248))) (status running) (one-shot? #f) (recent-messages ((1795422248 . "Service sleeper running with value #<<process> id: 2469 command: (\"/bin/sleep\" \"1000\")>.")))) (service (version 0) (provides (sleeper)) (requires ()) (status running) (one-shot? #f)) (service (version 0) (provides (oneshot)) (requires ()) (running #f) (status stopped) (one-shot? #t))))) (error #f) (messages ()))"#;

    #[test]
    fn parses_the_socket_reply() {
        assert_eq!(running_from_reply(REPLY).unwrap(), ["root", "sleeper"]);
        assert!(running_from_reply("(reply (version 0) (result #f) (error (error (version 0) service-not-found sshd)) (messages ()))").is_err());
        assert!(running_from_reply("(reply").is_err());
    }

    #[test]
    fn asks_a_socket_that_answers_like_shepherd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut req = [0u8; 512];
            let n = c.read(&mut req).unwrap();
            assert!(String::from_utf8_lossy(&req[..n]).contains("(action status)"));
            // In two pieces, as a socket may deliver it.
            c.write_all(&REPLY.as_bytes()[..100]).unwrap();
            c.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
            c.write_all(&REPLY.as_bytes()[100..]).unwrap();
        });
        assert_eq!(ask_socket(&path).unwrap(), ["root", "sleeper"]);
        server.join().unwrap();
        assert!(ask_socket(&dir.path().join("nothing")).is_err());
    }

    #[test]
    fn deep_or_long_replies_are_errors_not_crashes() {
        let deep = "(".repeat(100_000);
        assert_eq!(
            running_from_reply(&deep).unwrap_err().to_string(),
            "shepherd's reply nests lists deeper than 32"
        );
        let closed = format!("{}{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(
            running_from_reply(&closed).unwrap_err().to_string(),
            "shepherd's reply nests lists deeper than 32"
        );
        // Just within the limit, it parses (and is not a reply).
        let ok = format!("{}{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        assert_eq!(
            running_from_reply(&ok).unwrap_err().to_string(),
            "shepherd's reply has no result"
        );
        let long = format!("(reply \"{}\")", "x".repeat(MAX_REPLY));
        assert_eq!(
            running_from_reply(&long).unwrap_err().to_string(),
            "shepherd's reply is longer than 1048576 bytes"
        );
        assert_eq!(
            running_from_reply("(reply").unwrap_err().to_string(),
            "shepherd's reply is not an s-expression"
        );
        assert_eq!(
            running_from_reply(")").unwrap_err().to_string(),
            "shepherd's reply is not an s-expression"
        );
    }

    #[test]
    fn a_socket_that_talks_forever_is_cut_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let _ = c.write_all(b"(reply \"");
            let chunk = [b'x'; 65536];
            // Until the reader hangs up.
            while c.write_all(&chunk).is_ok() {}
        });
        assert_eq!(
            ask_socket(&path).unwrap_err().to_string(),
            "shepherd's reply is longer than 1048576 bytes"
        );
        server.join().unwrap();
    }

    #[test]
    fn parses_herd_status() {
        assert_eq!(started(REAL), ["root", "sleeper", "once"]);
        assert_eq!(started("Started:\n + root\nStopped:\n - sshd\n"), ["root"]);
    }
}
