//! sshd: its pid alive, and its port answering with an SSH banner.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::Check;

/// Checks that the daemon with `pid` (from its pid file) is alive, as
/// `alive` tells, and that `127.0.0.1:port` sends `SSH-2.0-...`.
pub fn check(pid: Option<u32>, alive: impl Fn(u32) -> bool, port: u16, timeout: Duration) -> Check {
    let mut reasons = Vec::new();
    match pid {
        None => reasons.push("sshd has no pid file".to_owned()),
        Some(p) if !alive(p) => reasons.push(format!("sshd pid {p} is not running")),
        Some(_) => {}
    }
    match banner(port, timeout) {
        Ok(b) if b.starts_with("SSH-2.0-") => {}
        Ok(b) => reasons.push(format!(
            "port {port} answers '{}', not an SSH banner",
            b.chars().take(40).collect::<String>()
        )),
        Err(e) => reasons.push(format!("port {port}: {e}")),
    }
    if reasons.is_empty() {
        Check::ok("sshd", "running")
    } else {
        Check::failed("sshd", "stopped", reasons)
    }
}

/// How much of a banner is read (SSH allows 255 bytes, RFC 4253 4.2).
const MAX_BANNER: u64 = 256;

/// The first line a TCP server on loopback sends, or its first
/// [`MAX_BANNER`] bytes: a server that never sends a newline is not
/// followed.
pub fn banner(port: u16, timeout: Duration) -> std::io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    BufReader::new(s.take(MAX_BANNER)).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}
