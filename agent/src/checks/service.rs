//! Declared services: running per Shepherd's socket, then their
//! readiness check (a TCP connect, an HTTP/1.0 GET answered 2xx, or a
//! command exiting 0). One try per call; the round retries until the
//! service's timeout (`round.rs`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use fruix_system::config::{HttpUrl, ReadyCheck, ServiceConfig};

use super::{Check, shepherd};

/// How long one connect, read or write of a readiness try may take.
const TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// How much of an HTTP answer is read: the status line is all we need.
const MAX_HTTP: u64 = 4096;

/// The service's status in Shepherd (`running`, `stopped`, ...), asked on
/// the first of `sockets` that answers; `Err` names why none did.
pub fn shepherd_status(sockets: &[PathBuf], name: &str) -> Result<String, String> {
    let mut last = "no shepherd socket".to_owned();
    for s in sockets {
        match shepherd::status_reply(s).and_then(|r| shepherd::statuses_from_reply(&r)) {
            Ok(all) => {
                return Ok(all
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map_or_else(|| "not-found".to_owned(), |(_, st)| st));
            }
            Err(e) => last = crate::error::chain(&e),
        }
    }
    Err(last)
}

/// One try of the check of `svc`, given its status in Shepherd; a
/// failure's reason names the service and what was seen. `env` is the
/// environment a `command` check runs with.
pub fn check_once(
    svc: &ServiceConfig,
    status: Result<String, String>,
    env: &[(String, String)],
) -> Check {
    let n = &svc.name;
    match status {
        Ok(s) if s == "running" => {}
        Ok(s) => {
            return Check::failed(
                n,
                "stopped",
                vec![format!("service {n}: not running in Shepherd ({s})")],
            );
        }
        Err(e) => {
            return Check::failed(
                n,
                "stopped",
                vec![format!("service {n}: cannot ask Shepherd: {e}")],
            );
        }
    }
    let why = match &svc.ready {
        None => return Check::ok(n, "running"),
        Some(ReadyCheck::Tcp { port }) => tcp(*port).err(),
        Some(ReadyCheck::Http { url }) => http(url).err(),
        Some(ReadyCheck::Command { argv }) => {
            let c = super::command::run(n, argv, env, Duration::from_secs(svc.timeout));
            (c.status != super::CheckStatus::Ok)
                .then(|| c.reasons.join("; ").replacen("probe ", "command of ", 1))
        }
    };
    match why {
        None => Check::ok(n, "ready"),
        Some(w) => Check::failed(n, "not-ready", vec![format!("service {n}: {w}")]),
    }
}

/// A TCP connection to 127.0.0.1:`port` is accepted.
pub fn tcp(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, TRY_TIMEOUT)
        .map(drop)
        .map_err(|e| format!("tcp 127.0.0.1:{port} {}", io_word(&e)))
}

/// An HTTP/1.0 GET of `url` answers with a 2xx status line.
pub fn http(url: &str) -> Result<(), String> {
    let u = HttpUrl::parse(url).ok_or_else(|| format!("{url} is not an http URL"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], u.port));
    let mut s = TcpStream::connect_timeout(&addr, TRY_TIMEOUT)
        .map_err(|e| format!("{url} {}", io_word(&e)))?;
    let _ = s.set_read_timeout(Some(TRY_TIMEOUT));
    let _ = s.set_write_timeout(Some(TRY_TIMEOUT));
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
        u.path, u.host, u.port
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{url} {}", io_word(&e)))?;
    let mut buf = Vec::new();
    let mut r = s.take(MAX_HTTP);
    // Until the status line is in, the server closes, or the bound.
    let mut chunk = [0u8; 512];
    while !buf.contains(&b'\n') {
        match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) => return Err(format!("{url} {}", io_word(&e))),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("").trim_end();
    let mut parts = line.split_whitespace();
    let (proto, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !proto.starts_with("HTTP/") || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        let shown: String = line.chars().take(40).collect();
        return Err(format!(
            "{url} answered '{}', not HTTP",
            shown.escape_debug()
        ));
    }
    if code.starts_with('2') {
        Ok(())
    } else {
        Err(format!("{url} answered {code}"))
    }
}

/// A short word for an I/O error of a connection.
fn io_word(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "refused".into(),
        TimedOut | WouldBlock => "timed out".into(),
        _ => format!("failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that answers each connection with `answer` (or, with
    /// `None`, accepts and says nothing).
    fn server(answer: Option<&'static str>) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { return };
                let mut req = [0u8; 1024];
                let _ = c.read(&mut req);
                match answer {
                    Some(a) => {
                        let _ = c.write_all(a.as_bytes());
                    }
                    None => std::thread::sleep(Duration::from_secs(4)),
                }
            }
        });
        port
    }

    fn closed_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    fn svc(ready: Option<ReadyCheck>) -> ServiceConfig {
        ServiceConfig {
            name: "web".into(),
            ready,
            timeout: 5,
        }
    }

    #[test]
    fn http_ok_404_refused_and_timeout() {
        let ok = server(Some("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        let missing = server(Some("HTTP/1.0 404 Not Found\r\n\r\n"));
        let silent = server(None);
        let refused = closed_port();
        let url = |p: u16| format!("http://127.0.0.1:{p}/x");
        let c = check_once(
            &svc(Some(ReadyCheck::Http { url: url(ok) })),
            Ok("running".into()),
            &[],
        );
        assert_eq!(
            (c.status, c.value.as_str()),
            (super::super::CheckStatus::Ok, "ready")
        );
        let c = check_once(
            &svc(Some(ReadyCheck::Http { url: url(missing) })),
            Ok("running".into()),
            &[],
        );
        assert_eq!(
            c.reasons,
            [format!(
                "service web: http://127.0.0.1:{missing}/x answered 404"
            )]
        );
        assert_eq!(c.value, "not-ready");
        assert_eq!(
            http(&url(refused)).unwrap_err(),
            format!("http://127.0.0.1:{refused}/x refused")
        );
        assert_eq!(
            http(&url(silent)).unwrap_err(),
            format!("http://127.0.0.1:{silent}/x timed out")
        );
    }

    #[test]
    fn tcp_ok_and_refused() {
        let open = server(Some(""));
        assert_eq!(tcp(open), Ok(()));
        let refused = closed_port();
        let c = check_once(
            &svc(Some(ReadyCheck::Tcp { port: refused })),
            Ok("running".into()),
            &[],
        );
        assert_eq!(
            c.reasons,
            [format!("service web: tcp 127.0.0.1:{refused} refused")]
        );
    }

    #[test]
    fn not_running_and_no_ready_check() {
        let c = check_once(&svc(None), Ok("stopped".into()), &[]);
        assert_eq!(
            c.reasons,
            ["service web: not running in Shepherd (stopped)"]
        );
        assert_eq!(c.value, "stopped");
        let c = check_once(&svc(None), Ok("running".into()), &[]);
        assert_eq!(
            (c.status, c.value.as_str()),
            (super::super::CheckStatus::Ok, "running")
        );
    }

    #[test]
    fn command_exit_status() {
        let c = check_once(
            &svc(Some(ReadyCheck::Command {
                argv: vec!["/bin/sh".into(), "-c".into(), "echo no; exit 3".into()],
            })),
            Ok("running".into()),
            &[],
        );
        assert_eq!(
            c.reasons,
            ["service web: command of web exited with exit status: 3: no"]
        );
        let c = check_once(
            &svc(Some(ReadyCheck::Command {
                argv: vec!["/bin/true".into()],
            })),
            Ok("running".into()),
            &[],
        );
        assert_eq!(c.value, "ready");
    }

    #[test]
    fn statuses_of_a_reply() {
        let reply = r#"(reply (version 0) (result (((service (version 0) (provides (root shepherd)) (status running)) (service (version 0) (provides (web)) (status stopped))))) (error #f) (messages ()))"#;
        assert_eq!(
            shepherd::statuses_from_reply(reply).unwrap(),
            [
                ("root".to_owned(), "running".to_owned()),
                ("web".to_owned(), "stopped".to_owned())
            ]
        );
    }
}
