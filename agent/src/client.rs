//! `fruix-agent status`: asks the daemon over its socket, or, when it
//! cannot be reached, reads the last report it wrote.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use fruix_activation::GuestRoot;

use crate::daemon::SOCKET_PATH;
use crate::markers::STATUS_PATH;
use crate::report::Report;
use crate::socket::MAX_WAIT_S;

/// Where a report came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The running daemon.
    Daemon,
    /// The status file the daemon last wrote (the daemon is not running).
    File,
}

/// Asks the daemon for the report; with `wait` (seconds, at most
/// [`MAX_WAIT_S`]: longer is cut to it), for the final one or the one at
/// the deadline. An error the daemon answers is an error here.
pub fn query(root: &GuestRoot, wait: Option<u64>) -> io::Result<(Report, Source)> {
    let wait = wait.map(|w| w.min(MAX_WAIT_S));
    match UnixStream::connect(root.path(SOCKET_PATH)) {
        Ok(mut s) => {
            let request = match wait {
                Some(w) => format!("wait {w}\n"),
                None => "status\n".to_owned(),
            };
            // A daemon that turns the client away answers before reading
            // (and may have closed already): its line is read even when
            // the request could not be sent.
            let sent = s.write_all(request.as_bytes());
            // The daemon answers at the deadline; allow it a little more.
            s.set_read_timeout(Some(Duration::from_secs(wait.unwrap_or(0) + 10)))?;
            let mut line = String::new();
            let read = BufReader::new(s).read_line(&mut line);
            if line.is_empty() {
                let e = sent
                    .err()
                    .or(read.err())
                    .map_or_else(|| "it closed the connection".to_owned(), |e| e.to_string());
                return Err(io::Error::other(format!(
                    "{SOCKET_PATH}: no answer from the agent: {e}"
                )));
            }
            if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(&line)
                && let Some(serde_json::Value::String(e)) = o.get("error")
            {
                return Err(io::Error::other(format!(
                    "{SOCKET_PATH}: the agent answered: {e}"
                )));
            }
            let r = serde_json::from_str(&line).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{SOCKET_PATH}: bad answer: {e}"),
                )
            })?;
            Ok((r, Source::Daemon))
        }
        Err(e) => {
            let bytes = std::fs::read(root.path(STATUS_PATH)).map_err(|_| io::Error::new(e.kind(), format!("cannot reach the agent at {SOCKET_PATH} ({e}) and there is no {STATUS_PATH}")))?;
            let r = serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{STATUS_PATH}: {e}"))
            })?;
            Ok((r, Source::File))
        }
    }
}
