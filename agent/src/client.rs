//! `fruix-agent status`: asks the daemon over its socket, or, when it
//! cannot be reached, reads the last report it wrote.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use fruix_activation::GuestRoot;

use crate::daemon::SOCKET_PATH;
use crate::markers::STATUS_PATH;
use crate::report::Report;

/// Where a report came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The running daemon.
    Daemon,
    /// The status file the daemon last wrote (the daemon is not running).
    File,
}

/// Asks the daemon for the report; with `wait`, for the final one or the
/// one at the deadline.
pub fn query(root: &GuestRoot, wait: Option<u64>) -> io::Result<(Report, Source)> {
    match UnixStream::connect(root.path(SOCKET_PATH)) {
        Ok(mut s) => {
            let request = match wait {
                Some(w) => format!("wait {w}\n"),
                None => "status\n".to_owned(),
            };
            s.write_all(request.as_bytes())?;
            // The daemon answers at the deadline; allow it a little more.
            s.set_read_timeout(Some(Duration::from_secs(wait.unwrap_or(0) + 10)))?;
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line)?;
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
