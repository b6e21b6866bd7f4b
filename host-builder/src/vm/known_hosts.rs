//! The guest's host keys pinned for `fruix query` and ssh: read from the
//! serial console (the channel the host trusts: only the guest writes
//! it), written as a known_hosts file beside the console log, for the
//! forwarded port on 127.0.0.1.

use std::io::Write;
use std::path::{Path, PathBuf};

use fruix_system::hostkeys::HostKey;

use super::VmError;

/// Where the known_hosts file of a boot goes: `HOST.known_hosts` beside
/// `HOST.console.log` (or the console log's name with the extension
/// `known_hosts`).
pub fn path_for(console_log: &Path) -> PathBuf {
    let name = console_log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.strip_suffix(".console.log") {
        Some(host) if !host.is_empty() => console_log.with_file_name(format!("{host}.known_hosts")),
        _ => console_log.with_extension("known_hosts"),
    }
}

/// The file's text: one line per key, for `[127.0.0.1]:PORT`.
pub fn text(keys: &[HostKey], port: u16) -> String {
    keys.iter()
        .map(|k| k.known_hosts_line("127.0.0.1", port) + "\n")
        .collect()
}

/// Writes the known_hosts file for `keys` at [`path_for`]: a temporary
/// file beside it, synced, renamed over it, so that a reader never sees
/// half of it. Returns its path.
pub fn write(console_log: &Path, port: u16, keys: &[HostKey]) -> Result<PathBuf, VmError> {
    let path = path_for(console_log);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let io = |e| VmError::Io(path.clone(), e);
    let mut tmp = tempfile::Builder::new()
        .prefix(".known_hosts.")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(text(keys, port).as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(&path).map_err(|e| io(e.error))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEOB2N+37FzU+spOOcsTWo6nCX5sEdojXO4y4Qmq8vEJ";

    #[test]
    fn beside_the_console_log_for_the_forwarded_port() {
        assert_eq!(
            path_for(Path::new("/o/guest.console.log")),
            Path::new("/o/guest.known_hosts")
        );
        assert_eq!(
            path_for(Path::new("/o/serial.log")),
            Path::new("/o/serial.known_hosts")
        );
        let t = tempfile::tempdir().unwrap();
        let key = HostKey::parse(ED, "key").unwrap();
        let p = write(&t.path().join("g.console.log"), 10022, &[key]).unwrap();
        assert_eq!(p, t.path().join("g.known_hosts"));
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("[127.0.0.1]:10022 {ED}\n")
        );
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["g.known_hosts"], "no temporary file left");
    }
}
