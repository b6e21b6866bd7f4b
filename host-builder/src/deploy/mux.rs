//! One SSH connection for all of a deploy's commands (OpenSSH's
//! connection sharing): a guest under emulation spends most of a second on
//! each key exchange, and a deploy asks it several times. The master is
//! started after the build, its socket in a fresh private directory; it
//! ends when the deploy does (`ssh -O exit`), or by itself 60 s after its
//! last session should the deploy be killed. A command finding the master
//! gone (a network cut) connects on its own.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::remote::{Remote, RemoteError};

/// A running master connection; dropping it ends it.
#[derive(Debug)]
pub struct Master {
    remote: Remote,
    // Holds the socket; removed after the master has exited.
    dir: tempfile::TempDir,
}

impl Master {
    /// Starts the master (returns once it is authenticated), or says why
    /// the guest could not be reached or refused.
    pub fn open(remote: &Remote) -> Result<Master, RemoteError> {
        let dir = tempfile::Builder::new()
            .prefix("fruix-ssh-")
            // Under /tmp, not a long $TMPDIR: a socket path has ~100 bytes.
            .tempdir_in("/tmp")
            .map_err(RemoteError::Io)?;
        let socket = dir.path().join("master");
        let log = dir.path().join("master.err");
        let args = control_args(
            remote,
            &socket,
            &["-M", "-N", "-f", "-o", "ControlPersist=60"],
        );
        // The master goes to the background with its own stdio on
        // /dev/null; its errors before that go to a file, not to a pipe
        // that the background process could hold open.
        let err = File::create(&log).map_err(RemoteError::Io)?;
        let status = Command::new("ssh")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .map_err(RemoteError::Io)?;
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(remote.ssh_failure(&text));
        }
        let mut shared = remote.clone();
        shared.control = Some(socket);
        Ok(Master {
            remote: shared,
            dir,
        })
    }

    /// The guest, reached through this master.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("master")
    }
}

/// ssh's arguments for the master itself at `socket` (starting it,
/// ending it): the guest's, with that socket and `extra`.
fn control_args(remote: &Remote, socket: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let plain = remote.without_master();
    let path = format!("ControlPath={}", socket.display());
    let mut opts = vec!["-o", path.as_str()];
    opts.extend_from_slice(extra);
    plain.args(&opts)
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = Command::new("ssh")
            .args(control_args(&self.remote, &self.socket(), &["-O", "exit"]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{HostKeys, Target};

    #[test]
    fn commands_go_through_the_masters_socket_and_fall_back_without_it() {
        let r = Remote {
            target: Target::parse("root@127.0.0.1:2222").unwrap(),
            identity: None,
            host_keys: HostKeys::File("/k/known".into()),
            control: Some("/tmp/fruix-ssh-x/master".into()),
            keepalive: crate::deploy::remote::Keepalive::Steady,
        };
        let args = r.args(&[]);
        let at = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(
            args[at - 4..at],
            [
                "-o",
                "ControlPath=/tmp/fruix-ssh-x/master",
                "-o",
                "ControlMaster=no"
            ]
        );
        assert_eq!(args[at + 1..], ["root@127.0.0.1"]);
    }
}
