//! Changing a running Shepherd over its control socket, as a live switch
//! needs: `load` a file of service definitions, `unload`, `start` and
//! `restart` services. One `shepherd-command` line each, in the protocol
//! `herd` speaks (see `checks/shepherd.rs` for the reader). What a
//! running Shepherd 1.0.3 does with each is measured in
//! `shared/facts/shepherd-live-reload.md`: a `load` that redefines a
//! running service records a replacement, applied by the `restart` that
//! follows; `unload` stops and removes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fruix_activation::GuestRoot;
use fruix_system::scheme_string as quote;

use crate::checks::shepherd::{SOCKETS, Sexp, ShepherdError, exchange, parse};

/// How long one command may take: a `restart` waits for the old process
/// to end, up to Shepherd's grace period (5 s) and then some.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Shepherd, by its control socket.
#[derive(Clone, Debug)]
pub struct Control {
    socket: PathBuf,
}

/// The command line for `action` on `service` with string `args`.
fn command_line(action: &str, service: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    format!(
        "(shepherd-command (version 0) (action {action}) (service {service}) (arguments ({})) (directory \"/\"))\n",
        args.join(" ")
    )
}

/// The `result` of a reply, or Shepherd's error.
fn result_of(reply: &str) -> Result<Sexp, ShepherdError> {
    let r = parse(reply).map_err(|_| ShepherdError::NotSexp)?;
    if let Some([e]) = r.field("error")
        && e.atom() != Some("#f")
    {
        return Err(ShepherdError::Answered(describe(e)));
    }
    match r.field("result") {
        Some([v]) => Ok(v.clone()),
        _ => Err(ShepherdError::NoResult),
    }
}

/// An error s-expression on one line, as Shepherd wrote it.
fn describe(e: &Sexp) -> String {
    match e {
        Sexp::Atom(a) => a.clone(),
        Sexp::Str(s) => quote(s),
        Sexp::List(items) => format!(
            "({})",
            items.iter().map(describe).collect::<Vec<_>>().join(" ")
        ),
    }
}

/// True when a `start` or `restart` result says the service did not
/// start: Shepherd answers `#f` (or a list of `#f`) for a failed start.
fn failed_start(result: &Sexp) -> bool {
    match result {
        Sexp::Atom(a) => a == "#f",
        Sexp::List(items) => !items.is_empty() && items.iter().all(failed_start),
        Sexp::Str(_) => false,
    }
}

impl Control {
    /// The Shepherd whose socket exists under `root`, at one of the
    /// places a system Shepherd listens.
    pub fn find(root: &GuestRoot) -> Result<Control, ShepherdError> {
        let candidates: Vec<PathBuf> = SOCKETS.iter().map(|s| root.path(s)).collect();
        match candidates.iter().find(|p| p.exists()) {
            Some(p) => Ok(Control { socket: p.clone() }),
            None => Err(ShepherdError::Socket {
                path: candidates[0].clone(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
        }
    }

    /// The Shepherd listening on `socket`.
    pub fn at(socket: &Path) -> Control {
        Control {
            socket: socket.to_owned(),
        }
    }

    fn send(&self, action: &str, service: &str, args: &[&str]) -> Result<Sexp, ShepherdError> {
        let reply = exchange(
            &self.socket,
            command_line(action, service, args).as_bytes(),
            COMMAND_TIMEOUT,
        )?;
        result_of(&reply)
    }

    /// Stops `root`: as PID 1, Shepherd stops every service, then
    /// reboots (what its own `reboot` command asks). Its reply may never
    /// come (it is going down): no reply is no error.
    pub fn stop_root(&self) -> Result<(), ShepherdError> {
        match self.send("stop", "root", &[]) {
            Ok(_) | Err(ShepherdError::NotSexp | ShepherdError::NoResult) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Loads a file of service definitions (it registers them: running
    /// ones get a pending replacement).
    pub fn load(&self, file: &str) -> Result<(), ShepherdError> {
        self.send("load", "root", &[file]).map(|_| ())
    }

    /// Stops and removes a service.
    pub fn unload(&self, name: &str) -> Result<(), ShepherdError> {
        self.send("unload", "root", &[name]).map(|_| ())
    }

    /// Starts a service and waits for its start to end.
    pub fn start(&self, name: &str) -> Result<(), ShepherdError> {
        let r = self.send("start", name, &[])?;
        if failed_start(&r) {
            return Err(ShepherdError::Answered(format!("{name} did not start")));
        }
        Ok(())
    }

    /// Restarts a service (its pending replacement takes effect) and the
    /// services that require it.
    pub fn restart(&self, name: &str) -> Result<(), ShepherdError> {
        let r = self.send("restart", name, &[])?;
        if failed_start(&r) {
            return Err(ShepherdError::Answered(format!("{name} did not restart")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;

    #[test]
    fn commands_are_quoted_scheme() {
        assert_eq!(
            command_line("load", "root", &["/frx/store/x/etc/a \"b\\.scm"]),
            "(shepherd-command (version 0) (action load) (service root) (arguments (\"/frx/store/x/etc/a \\\"b\\\\.scm\")) (directory \"/\"))\n"
        );
        assert_eq!(
            command_line("restart", "web", &[]),
            "(shepherd-command (version 0) (action restart) (service web) (arguments ()) (directory \"/\"))\n"
        );
    }

    #[test]
    fn replies_give_their_result_or_error() {
        let ok =
            result_of("(reply (version 0) (result (\"#<unspecified>\")) (error #f) (messages ()))")
                .unwrap();
        assert_eq!(ok, Sexp::List(vec![Sexp::Str("#<unspecified>".into())]));
        let e = result_of("(reply (version 0) (result #f) (error (error (version 0) service-not-found nosuch)) (messages ()))").unwrap_err();
        assert_eq!(
            e.to_string(),
            "shepherd answered with an error: (error (version 0) service-not-found nosuch)"
        );
        assert!(failed_start(
            &result_of("(reply (result (#f)) (error #f))").unwrap()
        ));
        assert!(!failed_start(
            &result_of("(reply (result (#t)) (error #f))").unwrap()
        ));
    }

    /// A stand-in Shepherd socket answering each command with `reply`, and
    /// recording the lines it got.
    fn fake(dir: &Path, reply: &'static str) -> (PathBuf, std::thread::JoinHandle<Vec<String>>) {
        let p = dir.join("socket");
        let l = UnixListener::bind(&p).unwrap();
        let h = std::thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = l.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&s).read_line(&mut line).unwrap();
                got.push(line);
                s.write_all(reply.as_bytes()).unwrap();
            }
            got
        });
        (p, h)
    }

    #[test]
    fn a_failed_start_is_an_error_naming_the_service() {
        let d = tempfile::tempdir().unwrap();
        let (p, h) = fake(
            d.path(),
            "(reply (version 0) (result (#f)) (error #f) (messages ()))",
        );
        let c = Control::at(&p);
        assert_eq!(
            c.start("web").unwrap_err().to_string(),
            "shepherd answered with an error: web did not start"
        );
        assert_eq!(
            c.restart("sshd").unwrap_err().to_string(),
            "shepherd answered with an error: sshd did not restart"
        );
        let got = h.join().unwrap();
        assert_eq!(
            got,
            [
                "(shepherd-command (version 0) (action start) (service web) (arguments ()) (directory \"/\"))\n",
                "(shepherd-command (version 0) (action restart) (service sshd) (arguments ()) (directory \"/\"))\n"
            ]
        );
    }
}
