//! The status socket's side of the daemon: the listener, created with its
//! final mode, and its connections, bounded in number, in request size
//! and in time, each answered to the end without blocking the event loop.
//!
//! - At most [`MAX_CONNECTIONS`] connections are open at once, waiters
//!   included; a connection beyond that is accepted, answered with one
//!   error line and closed at once (so that a client learns why rather
//!   than hanging in the listen queue).
//! - Only root, or the user the agent runs as (root in a guest; the
//!   socket's owner, as its mode 0600 says), may ask: the peer's uid, as
//!   the kernel recorded it at `connect`, is checked before anything is
//!   read; anyone else gets one error line.
//! - A request is one line of at most [`MAX_REQUEST`] bytes, sent within
//!   [`IO_TIMEOUT`] of connecting; a reply that the client does not read
//!   within [`IO_TIMEOUT`] is dropped.
//! - `wait S` waits at most [`MAX_WAIT_S`] seconds; longer is cut to it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

/// How many connections may be open at once, waiters included.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a request line may be, in bytes, its newline excluded.
pub const MAX_REQUEST: usize = 256;
/// How long a client may take to send its request, and to read a reply.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `wait`, in seconds (a day); longer ones are cut to it.
pub const MAX_WAIT_S: u64 = 86_400;

/// A request on the status socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `status`: the report now.
    Status,
    /// `wait S`: the report once final, or after S seconds (at most
    /// [`MAX_WAIT_S`]).
    Wait(Duration),
}

/// Parses a request line: `status` or `wait SECONDS`.
pub fn parse_request(line: &str) -> Option<Request> {
    let mut w = line.split_whitespace();
    match (w.next(), w.next(), w.next()) {
        (Some("status"), None, None) => Some(Request::Status),
        (Some("wait"), Some(s), None) => s
            .parse::<u64>()
            .ok()
            .map(|s| Request::Wait(Duration::from_secs(s.min(MAX_WAIT_S)))),
        _ => None,
    }
}

/// An error answer: one JSON line.
pub fn error_line(msg: &str) -> Vec<u8> {
    let mut line = serde_json::json!({ "error": msg }).to_string().into_bytes();
    line.push(b'\n');
    line
}

/// Binds the listener at `path` with its final mode (0600): the socket
/// is made in a fresh directory of mode 0700 beside `path`, given its
/// mode there, and renamed onto `path`. So it is never reachable with
/// another mode (bind makes it with the process's umask), a stale socket
/// is replaced in one step, and, unlike setting the umask around `bind`,
/// nothing else in the process (another thread creating a file) is
/// affected.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let private = nix::unistd::mkdtemp(&dir.join(".agent-sock.XXXXXX"))?;
    let tmp = private.join("socket");
    let bound = (|| {
        let listener = UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&private);
    bound
}

/// Reads what a client has sent and not been read (once, without
/// waiting): a socket closed with unread input makes the client's next
/// read fail with "connection reset" instead of ending cleanly.
fn drain(stream: &mut UnixStream) {
    let mut sink = [0u8; MAX_REQUEST + 1];
    let _ = stream.read(&mut sink);
}

enum Phase {
    /// Reading the request line.
    Reading(Vec<u8>),
    /// A `wait` request, answered when the outcome is final or at the
    /// connection's deadline.
    Waiting,
    /// Writing a reply, from this offset.
    Writing(Rc<[u8]>, usize),
}

struct Connection {
    stream: UnixStream,
    phase: Phase,
    deadline: Instant,
}

/// The open connections of the status socket.
pub struct Connections {
    open: HashMap<Token, Connection>,
    next: usize,
}

impl Connections {
    /// No connection yet; tokens are handed out from `first` on.
    pub fn new(first: usize) -> Connections {
        Connections {
            open: HashMap::new(),
            next: first,
        }
    }

    /// Accepts the connections waiting on `listener`: each one of root's
    /// (or the agent's own user's) while fewer than [`MAX_CONNECTIONS`]
    /// are open; the others get one error line and are closed.
    pub fn accept(&mut self, listener: &UnixListener, registry: &Registry) {
        loop {
            let mut stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    // Out of descriptors, say: the daemon goes on serving
                    // the connections it has.
                    eprintln!("fruix-agent: status socket: cannot accept: {e}");
                    return;
                }
            };
            let refusal = match crate::platform::peer_uid(stream.as_fd()) {
                Ok(uid) if uid == 0 || uid == nix::unistd::geteuid().as_raw() => None,
                Ok(uid) => Some(format!("uid {uid} may not ask the agent: only root may")),
                Err(e) => Some(format!("cannot tell who is asking: {e}")),
            }
            .or_else(|| {
                (self.open.len() >= MAX_CONNECTIONS).then(|| {
                    format!("the agent is busy ({MAX_CONNECTIONS} connections open): try again")
                })
            });
            if let Some(msg) = refusal {
                // A fresh socket's buffer takes one short line; if it does
                // not, the client loses only this error.
                let _ = stream.write(&error_line(&msg));
                drain(&mut stream);
                continue;
            }
            let t = Token(self.next);
            self.next += 1;
            if let Err(e) = registry.register(&mut stream, t, Interest::READABLE) {
                eprintln!("fruix-agent: status socket: cannot watch a connection: {e}");
                continue;
            }
            self.open.insert(
                t,
                Connection {
                    stream,
                    phase: Phase::Reading(Vec::new()),
                    deadline: Instant::now() + IO_TIMEOUT,
                },
            );
        }
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Handles an event of connection `t`: returns its request once the
    /// line is complete and valid (the caller then calls [`Self::reply`]
    /// or [`Self::wait`]); answers a bad one with an error itself.
    pub fn event(&mut self, t: Token, registry: &Registry) -> Option<Request> {
        let conn = self.open.get_mut(&t)?;
        let mut chunk = [0u8; 512];
        match &mut conn.phase {
            Phase::Reading(buf) => {
                let closed = loop {
                    match conn.stream.read(&mut chunk) {
                        Ok(0) => break true,
                        Ok(n) => {
                            buf.extend_from_slice(&chunk[..n]);
                            if buf.len() > MAX_REQUEST {
                                break false;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break true,
                    }
                };
                if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    let line = String::from_utf8_lossy(&buf[..end]).trim().to_owned();
                    match parse_request(&line) {
                        Some(r) => {
                            conn.phase = Phase::Waiting;
                            return Some(r);
                        }
                        None => {
                            let msg = format!(
                                "unknown request '{}': use 'status' or 'wait SECONDS'",
                                line.escape_default()
                            );
                            self.reply(t, registry, error_line(&msg).into());
                        }
                    }
                } else if buf.len() > MAX_REQUEST {
                    let msg = format!("request longer than {MAX_REQUEST} bytes");
                    self.reply(t, registry, error_line(&msg).into());
                } else if closed {
                    self.close(t, registry);
                }
            }
            Phase::Waiting => {
                // Anything more is ignored; a client that hangs up frees
                // its place.
                let closed = loop {
                    match conn.stream.read(&mut chunk) {
                        Ok(0) => break true,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break true,
                    }
                };
                if closed {
                    self.close(t, registry);
                }
            }
            Phase::Writing(..) => self.flush(t, registry),
        }
        None
    }

    /// Makes connection `t` (which sent `wait`) wait until `until`, or
    /// until [`Self::expire`] finds the outcome final.
    pub fn wait(&mut self, t: Token, until: Instant) {
        if let Some(c) = self.open.get_mut(&t) {
            c.phase = Phase::Waiting;
            c.deadline = until;
        }
    }

    /// Answers connection `t` with `body`, written to its end as the
    /// client reads it, then closes it.
    pub fn reply(&mut self, t: Token, registry: &Registry, body: Rc<[u8]>) {
        let Some(c) = self.open.get_mut(&t) else {
            return;
        };
        c.phase = Phase::Writing(body, 0);
        c.deadline = Instant::now() + IO_TIMEOUT;
        if registry
            .reregister(&mut c.stream, t, Interest::WRITABLE)
            .is_err()
        {
            self.close(t, registry);
            return;
        }
        self.flush(t, registry);
    }

    fn flush(&mut self, t: Token, registry: &Registry) {
        let Some(c) = self.open.get_mut(&t) else {
            return;
        };
        let Phase::Writing(body, at) = &mut c.phase else {
            return;
        };
        while *at < body.len() {
            match c.stream.write(&body[*at..]) {
                Ok(0) => break,
                Ok(n) => *at += n,
                // The rest when the client has read some.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close(t, registry);
    }

    fn close(&mut self, t: Token, registry: &Registry) {
        if let Some(mut c) = self.open.remove(&t) {
            let _ = registry.deregister(&mut c.stream);
            drain(&mut c.stream);
        }
    }

    /// How long until the next deadline, if any connection is open.
    pub fn timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        self.open
            .values()
            .map(|c| c.deadline.saturating_duration_since(now))
            .min()
    }

    /// Answers the waiters, with `body` (made once), when `final_now` or
    /// at their deadline; ends the connections whose request or reader is
    /// late.
    pub fn expire(&mut self, registry: &Registry, final_now: bool, body: &dyn Fn() -> Rc<[u8]>) {
        let now = Instant::now();
        let mut made: Option<Rc<[u8]>> = None;
        let due: Vec<Token> = self
            .open
            .iter()
            .filter(|(_, c)| c.deadline <= now || (final_now && matches!(c.phase, Phase::Waiting)))
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            match self.open.get(&t).map(|c| &c.phase) {
                Some(Phase::Waiting) => {
                    let b = made.get_or_insert_with(body).clone();
                    self.reply(t, registry, b);
                }
                Some(Phase::Reading(_)) => {
                    let msg = format!("no request within {} s", IO_TIMEOUT.as_secs());
                    self.reply(t, registry, error_line(&msg).into());
                }
                Some(Phase::Writing(..)) | None => self.close(t, registry),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(parse_request("status"), Some(Request::Status));
        assert_eq!(
            parse_request("wait 30"),
            Some(Request::Wait(Duration::from_secs(30)))
        );
        assert_eq!(
            parse_request("wait 18446744073709551615"),
            Some(Request::Wait(Duration::from_secs(MAX_WAIT_S)))
        );
        assert_eq!(parse_request("wait 18446744073709551616"), None);
        assert_eq!(parse_request("wait"), None);
        assert_eq!(parse_request("reboot"), None);
    }

    #[test]
    fn errors_are_json_lines() {
        assert_eq!(
            error_line("say \"hi\""),
            b"{\"error\":\"say \\\"hi\\\"\"}\n".to_vec()
        );
    }

    #[test]
    fn the_socket_is_made_with_its_final_mode_and_nothing_is_left() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("run/agent.sock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // A stale socket is replaced.
        std::fs::write(&path, "stale").unwrap();
        let _l = bind(&path).unwrap();
        use std::os::unix::fs::FileTypeExt;
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(m.permissions().mode() & 0o7777, 0o600);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["agent.sock"]);
    }
}
