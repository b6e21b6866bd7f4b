//! The switch's durable state and its lock: `switch.json` written
//! atomically after every step (a new file under a random name, synced,
//! renamed, the directory synced: `GuestRoot::write_if_changed`), and an
//! exclusive `flock` held for as long as a switch runs, so that one runs at
//! a time and a state whose lock nobody holds belongs to a switch that was
//! interrupted.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;

use fruix_activation::GuestRoot;
use fruix_system::switch::{SWITCH_LOCK, SWITCH_PATH, SwitchState};
use nix::fcntl::{Flock, FlockArg};

use super::error::SwitchError;

/// The directory of the state, the lock and the log.
pub const STATE_DIR: &str = "/frx/var/fruix";

/// The held lock; dropping it releases it.
pub type Lock = Flock<File>;

/// Opens (or makes, 0600) the lock file `path` in [`STATE_DIR`], never
/// through a link planted at its name: the switch's lock and the ESP's.
pub fn open_lock_file(root: &GuestRoot, path: &str) -> std::io::Result<File> {
    root.ensure_dir(STATE_DIR, 0o755)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(root.path(path))
}

fn open_lock(root: &GuestRoot) -> Result<File, SwitchError> {
    open_lock_file(root, SWITCH_LOCK).map_err(|source| SwitchError::Io {
        path: root.path(SWITCH_LOCK),
        source,
    })
}

/// Takes the lock, or `None` when another switch holds it.
pub fn try_lock(root: &GuestRoot) -> Result<Option<Lock>, SwitchError> {
    let f = open_lock(root)?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(SwitchError::Io {
            path: root.path(SWITCH_LOCK),
            source: e.into(),
        }),
    }
}

/// True while a switch holds the lock.
pub fn is_running(root: &GuestRoot) -> Result<bool, SwitchError> {
    Ok(try_lock(root)?.is_none())
}

/// The last switch's state, if any.
pub fn load(root: &GuestRoot) -> Result<Option<SwitchState>, SwitchError> {
    let p = root.path(SWITCH_PATH);
    match std::fs::read(&p) {
        Ok(b) => Ok(Some(SwitchState::parse(&b, &p.display().to_string())?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SwitchError::Io { path: p, source }),
    }
}

/// Writes the state (atomically, synced).
pub fn save(root: &GuestRoot, state: &SwitchState) -> Result<(), SwitchError> {
    root.ensure_dir(STATE_DIR, 0o755)
        .map_err(|e| SwitchError::State(e.to_string()))?;
    root.write_if_changed(SWITCH_PATH, &state.to_json(), 0o644, None)
        .map_err(|e| SwitchError::State(e.to_string()))?;
    Ok(())
}

/// Seconds since the epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The current system: where `/frx/var/current-system` points (kept on
/// the root, so it is right after a reboot too).
pub fn current_system(root: &GuestRoot) -> Result<String, SwitchError> {
    let p = root.path("/frx/var/current-system");
    let t = std::fs::read_link(&p).map_err(|source| SwitchError::Io { path: p, source })?;
    let t = t.to_string_lossy().into_owned();
    crate::system::parse_system_path(&t)?;
    Ok(t)
}

/// The current generation's number, from the profile link
/// (`/frx/var/profiles/system -> system-N`).
pub fn generation_of(root: &GuestRoot) -> Option<u64> {
    std::fs::read_link(root.path("/frx/var/profiles/system"))
        .ok()?
        .to_str()?
        .strip_prefix("system-")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fruix_system::switch::Phase;

    #[test]
    fn one_lock_at_a_time_and_a_saved_state_reads_back() {
        let t = tempfile::tempdir().unwrap();
        let root = GuestRoot::new(t.path());
        assert!(load(&root).unwrap().is_none());
        let held = try_lock(&root).unwrap().expect("free at first");
        assert!(try_lock(&root).unwrap().is_none());
        assert!(is_running(&root).unwrap());
        drop(held);
        assert!(!is_running(&root).unwrap());
        let s = SwitchState {
            id: "1-2".into(),
            from: "/frx/store/a-system-h".into(),
            from_generation: 1,
            to: "/frx/store/b-system-h".into(),
            generation: None,
            phase: Phase::Starting,
            confirm_timeout_s: 5,
            started: 1,
            reason: None,
            failed_checks: vec![],
            services: Default::default(),
            outcome: None,
            events: vec![],
        };
        save(&root, &s).unwrap();
        assert_eq!(load(&root).unwrap(), Some(s));
    }

    #[test]
    fn a_link_at_the_lock_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let root = GuestRoot::new(t.path());
        std::fs::create_dir_all(root.path(STATE_DIR)).unwrap();
        let victim = t.path().join("victim");
        std::os::unix::fs::symlink(&victim, root.path(SWITCH_LOCK)).unwrap();
        let e = try_lock(&root).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}", root.path(SWITCH_LOCK).display())
        );
        assert!(!victim.exists());
    }
}
