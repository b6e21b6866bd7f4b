//! The guest's file system as activation sees it: every absolute guest path
//! is taken from an injected root (`/` in a guest, a temporary directory in
//! tests), and every change is atomic and reports whether it changed
//! anything. In dry-run mode the same calls report what they would change
//! and touch nothing, so the plan and the run are the same code.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::error::{ActivationError, At};

/// The file system a guest is activated into.
#[derive(Clone, Debug)]
pub struct GuestRoot {
    root: PathBuf,
    dry_run: bool,
}

impl GuestRoot {
    /// A guest root at `root` that changes things.
    pub fn new(root: impl Into<PathBuf>) -> GuestRoot {
        GuestRoot {
            root: root.into(),
            dry_run: false,
        }
    }

    /// The same root, reporting instead of changing.
    pub fn dry_run(mut self) -> GuestRoot {
        self.dry_run = true;
        self
    }

    /// True when nothing is changed.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Maps an absolute guest path (such as `/frx/var/current-system`) into
    /// this root.
    pub fn path(&self, guest_path: &str) -> PathBuf {
        self.root.join(guest_path.trim_start_matches('/'))
    }

    /// The root directory.
    pub fn as_path(&self) -> &Path {
        &self.root
    }

    /// Makes a directory (and its parents) with `mode` on the directory
    /// itself. True when something changed.
    pub fn ensure_dir(&self, guest: &str, mode: u32) -> Result<bool, ActivationError> {
        let p = self.path(guest);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() && m.permissions().mode() & 0o7777 == mode => Ok(false),
            Ok(m) if m.is_dir() => {
                if !self.dry_run {
                    fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                        .at(guest, "set mode")?;
                }
                Ok(true)
            }
            Ok(_) => {
                // Something else stands where a directory must be.
                if !self.dry_run {
                    fs::remove_file(&p).at(guest, "remove")?;
                    fs::create_dir_all(&p).at(guest, "create directory")?;
                    fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                        .at(guest, "set mode")?;
                }
                Ok(true)
            }
            Err(_) => {
                if !self.dry_run {
                    fs::create_dir_all(&p).at(guest, "create directory")?;
                    fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                        .at(guest, "set mode")?;
                }
                Ok(true)
            }
        }
    }

    /// Writes a file when its content, mode or owner differ: a temporary
    /// name beside it, synced, then renamed over it. True when changed.
    pub fn write_if_changed(
        &self,
        guest: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<bool, ActivationError> {
        let p = self.path(guest);
        if let Ok(m) = fs::symlink_metadata(&p)
            && m.is_file()
            && m.permissions().mode() & 0o7777 == mode
            && owner.is_none_or(|(u, g)| {
                use std::os::unix::fs::MetadataExt;
                m.uid() == u && m.gid() == g
            })
            && fs::read(&p).is_ok_and(|old| old == bytes)
        {
            return Ok(false);
        }
        if self.dry_run {
            return Ok(true);
        }
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).at(guest, "create parent directory")?;
        }
        let tmp = tmp_name(&p);
        let result = (|| -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            if let Some((u, g)) = owner {
                own(&tmp, u, g)?;
            }
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &p)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.at(guest, "write")?;
        Ok(true)
    }

    /// Points the symbolic link `guest` at `target` (a new link renamed over
    /// the old one, so the link is never missing). True when changed.
    pub fn symlink_if_changed(&self, guest: &str, target: &str) -> Result<bool, ActivationError> {
        let p = self.path(guest);
        if fs::read_link(&p).is_ok_and(|t| t == Path::new(target)) {
            return Ok(false);
        }
        if self.dry_run {
            return Ok(true);
        }
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).at(guest, "create parent directory")?;
        }
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            // A directory cannot be renamed over; it was not ours to keep.
            fs::remove_dir_all(&p).at(guest, "remove directory")?;
        }
        let tmp = tmp_name(&p);
        let _ = fs::remove_file(&tmp);
        symlink(target, &tmp).at(guest, "create link")?;
        fs::rename(&tmp, &p).at(guest, "rename link into place")?;
        Ok(true)
    }

    /// Removes a file, link or tree. True when something was there.
    pub fn remove(&self, guest: &str) -> Result<bool, ActivationError> {
        let p = self.path(guest);
        let Ok(m) = fs::symlink_metadata(&p) else {
            return Ok(false);
        };
        if !self.dry_run {
            if m.is_dir() {
                fruix_store::root::remove_tree(&p).at(guest, "remove")?;
            } else {
                fs::remove_file(&p).at(guest, "remove")?;
            }
        }
        Ok(true)
    }

    /// Sets the owner of a guest path when it differs. True when changed.
    pub fn chown_if_changed(
        &self,
        guest: &str,
        uid: u32,
        gid: u32,
    ) -> Result<bool, ActivationError> {
        use std::os::unix::fs::MetadataExt;
        let p = self.path(guest);
        let m = fs::symlink_metadata(&p).at(guest, "read metadata")?;
        if m.uid() == uid && m.gid() == gid {
            return Ok(false);
        }
        if !self.dry_run {
            own(&p, uid, gid).at(guest, "change owner")?;
        }
        Ok(true)
    }
}

/// Changes the owner; a non-root caller (a test) may only keep its own.
fn own(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    match std::os::unix::fs::lchown(p, Some(uid), Some(gid)) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && !is_root() => Ok(()),
        other => other,
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn tmp_name(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.fruix-new"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_stay_inside_the_root() {
        let r = GuestRoot::new("/tmp/g");
        assert_eq!(
            r.path("/frx/var/current-system"),
            Path::new("/tmp/g/frx/var/current-system")
        );
        assert_eq!(r.path("etc"), Path::new("/tmp/g/etc"));
    }

    #[test]
    fn changes_are_reported_once_and_dry_runs_touch_nothing() {
        let t = tempfile::tempdir().unwrap();
        let r = GuestRoot::new(t.path());
        let dry = r.clone().dry_run();
        assert!(dry.write_if_changed("/etc/a", b"x", 0o644, None).unwrap());
        assert!(!t.path().join("etc/a").exists(), "dry run wrote nothing");
        assert!(r.write_if_changed("/etc/a", b"x", 0o644, None).unwrap());
        assert!(!r.write_if_changed("/etc/a", b"x", 0o644, None).unwrap());
        assert!(
            r.write_if_changed("/etc/a", b"x", 0o600, None).unwrap(),
            "mode counts"
        );
        assert!(
            r.symlink_if_changed("/run/current-system", "/frx/store/a")
                .unwrap()
        );
        assert!(
            !r.symlink_if_changed("/run/current-system", "/frx/store/a")
                .unwrap()
        );
        assert!(
            dry.symlink_if_changed("/run/current-system", "/frx/store/b")
                .unwrap()
        );
        assert_eq!(
            fs::read_link(t.path().join("run/current-system")).unwrap(),
            Path::new("/frx/store/a")
        );
        assert!(r.ensure_dir("/tmp", 0o1777).unwrap());
        assert!(!r.ensure_dir("/tmp", 0o1777).unwrap());
        assert_eq!(
            fs::metadata(t.path().join("tmp"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o1777
        );
        let leftovers: Vec<_> = fs::read_dir(t.path().join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["a"], "no temporary names left");
    }
}
