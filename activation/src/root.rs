//! The guest's file system as activation sees it: every absolute guest path
//! is taken from an injected root (`/` in a guest, a temporary directory in
//! tests), and every change is atomic and reports whether it changed
//! anything. In dry-run mode the same calls report what they would change
//! and touch nothing, so the plan and the run are the same code.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{ActivationError, At};

/// Per directory, its stale temporaries not yet removed: (target name,
/// file name).
type StaleTemporaries = HashMap<PathBuf, Vec<(String, String)>>;

/// The file system a guest is activated into.
#[derive(Clone, Debug)]
pub struct GuestRoot {
    root: PathBuf,
    dry_run: bool,
    /// A guest directory read from elsewhere (dry runs only): the system
    /// item of a preview, which the guest has not received.
    overlay: Option<(String, PathBuf)>,
    /// The stale temporaries of each directory this root (and its clones:
    /// one activation) has written in, listed at its first write there and
    /// removed name by name: listing the directory at every write was
    /// quadratic in `/etc`'s hundreds of entries.
    swept: Arc<Mutex<StaleTemporaries>>,
}

impl GuestRoot {
    /// A guest root at `root` that changes things.
    pub fn new(root: impl Into<PathBuf>) -> GuestRoot {
        GuestRoot {
            root: root.into(),
            dry_run: false,
            overlay: None,
            swept: Arc::default(),
        }
    }

    /// The same root, reporting instead of changing.
    pub fn dry_run(mut self) -> GuestRoot {
        self.dry_run = true;
        self
    }

    /// The same root in dry-run mode, with the guest directory `guest` (a
    /// store item the guest lacks) read from `dir`: the preview of a
    /// switch to a system not yet sent. Only a dry run may have one, so
    /// that nothing is ever written through it.
    pub fn dry_run_with(mut self, guest: &str, dir: PathBuf) -> GuestRoot {
        self.dry_run = true;
        self.overlay = Some((guest.trim_end_matches('/').to_owned(), dir));
        self
    }

    /// True when nothing is changed.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Maps an absolute guest path (such as `/frx/var/current-system`) into
    /// this root.
    pub fn path(&self, guest_path: &str) -> PathBuf {
        if let Some((guest, dir)) = &self.overlay
            && let Some(rest) = guest_path.strip_prefix(guest.as_str())
        {
            if rest.is_empty() {
                return dir.clone();
            }
            if let Some(rest) = rest.strip_prefix('/') {
                return dir.join(rest);
            }
        }
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
                    chmod_dir(&p, mode).at(guest, "set mode")?;
                }
                Ok(true)
            }
            Ok(_) => {
                // Something else stands where a directory must be.
                if !self.dry_run {
                    fs::remove_file(&p).at(guest, "remove")?;
                    fs::create_dir_all(&p).at(guest, "create directory")?;
                    chmod_dir(&p, mode).at(guest, "set mode")?;
                }
                Ok(true)
            }
            Err(_) => {
                if !self.dry_run {
                    fs::create_dir_all(&p).at(guest, "create directory")?;
                    chmod_dir(&p, mode).at(guest, "set mode")?;
                }
                Ok(true)
            }
        }
    }

    /// Writes a file when its content, mode or owner differ. The new file
    /// is made beside the target under a random name (`O_EXCL`, so nothing
    /// planted there is written through) at the private mode 0600, written
    /// and synced, given its owner and then its mode (setuid bits last:
    /// chown clears them), and renamed over the target, which replaces a
    /// link planted there rather than writing through it; the directory is
    /// synced. A setuid file is never visible partly written, nor under a
    /// name anyone could guess. True when changed.
    pub fn write_if_changed(
        &self,
        guest: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<bool, ActivationError> {
        let p = self.path(guest);
        if is_already(&p, bytes, mode, owner) {
            return Ok(false);
        }
        if self.dry_run {
            return Ok(true);
        }
        let parent = p.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).at(guest, "create parent directory")?;
        self.sweep_for(parent, &file_name(&p))
            .at(guest, "remove stale temporary")?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", file_name(&p)))
            .suffix(".fruix-new")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(parent)
            .at(guest, "create temporary file")?;
        let f = tmp.as_file_mut();
        (|| -> io::Result<()> {
            f.write_all(bytes)?;
            f.sync_all()?;
            if let Some((u, g)) = owner {
                own_fd(f, u, g)?;
            }
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.sync_all()
        })()
        .at(guest, "write")?;
        // On failure the temporary is removed when `tmp` is dropped.
        tmp.persist(&p)
            .map_err(|e| e.error)
            .at(guest, "rename into place")?;
        sync_dir(parent).at(guest, "sync directory")?;
        Ok(true)
    }

    /// Points the symbolic link `guest` at `target` (a new link under a
    /// random name renamed over the old one, so the link is never missing).
    /// True when changed.
    pub fn symlink_if_changed(&self, guest: &str, target: &str) -> Result<bool, ActivationError> {
        let p = self.path(guest);
        if fs::read_link(&p).is_ok_and(|t| t == Path::new(target)) {
            return Ok(false);
        }
        if self.dry_run {
            return Ok(true);
        }
        let parent = p.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).at(guest, "create parent directory")?;
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            // A directory cannot be renamed over; it was not ours to keep.
            fruix_store::root::remove_tree(&p).at(guest, "remove directory")?;
        }
        self.sweep_for(parent, &file_name(&p))
            .at(guest, "remove stale temporary")?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", file_name(&p)))
            .suffix(".fruix-new")
            .make_in(parent, |t| symlink(target, t))
            .at(guest, "create link")?;
        tmp.persist(&p)
            .map_err(|e| e.error)
            .at(guest, "rename link into place")?;
        Ok(true)
    }

    /// Removes a file, link or tree, never following a link: a link is
    /// removed as a link, whatever it points at (activation removes the
    /// compatibility shims in world-writable `/tmp`). True when something
    /// was there.
    pub fn remove(&self, guest: &str) -> Result<bool, ActivationError> {
        let p = self.path(guest);
        if fs::symlink_metadata(&p).is_err() {
            return Ok(false);
        }
        if !self.dry_run {
            fruix_store::root::remove_tree(&p).at(guest, "remove")?;
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

/// Sets a directory's mode through a descriptor opened without following
/// a link: a link swapped in for the directory since it was looked at
/// fails (ELOOP/ENOTDIR) instead of handing its target the mode.
/// Opening for reading needs read permission, which root always has (the
/// agent and activation run as root; tests as another user keep their
/// directories readable).
fn chmod_dir(p: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(p)?;
    f.set_permissions(fs::Permissions::from_mode(mode))
}

/// Changes the owner of a path (never following a link); a non-root
/// caller (a test) may only keep its own.
fn own(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    tolerate_non_root(std::os::unix::fs::lchown(p, Some(uid), Some(gid)))
}

/// [`own`] through an open file.
fn own_fd(f: &fs::File, uid: u32, gid: u32) -> io::Result<()> {
    tolerate_non_root(std::os::unix::fs::fchown(f, Some(uid), Some(gid)))
}

fn tolerate_non_root(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e)
            if e.kind() == io::ErrorKind::PermissionDenied
                && !fruix_store::root::running_as_root() =>
        {
            Ok(())
        }
        other => other,
    }
}

/// True when `p` already is a regular file (not a link: it is opened with
/// `O_NOFOLLOW`) with this content, mode and owner.
fn is_already(p: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> bool {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let Ok(mut f) = fruix_store::root::open_nofollow(p) else {
        return false;
    };
    let Ok(m) = f.metadata() else {
        return false;
    };
    if !m.is_file()
        || m.mode() & 0o7777 != mode
        || m.len() != bytes.len() as u64
        || owner.is_some_and(|(u, g)| m.uid() != u || m.gid() != g)
    {
        return false;
    }
    let mut old = Vec::with_capacity(bytes.len());
    f.read_to_end(&mut old).is_ok() && old == bytes
}

/// Length of tempfile's random part in our temporaries' names.
const TEMP_RANDOM_LEN: usize = 6;

impl GuestRoot {
    /// Removes the temporaries a killed run left for `name` in `dir`
    /// (`.NAME.XXXXXX.fruix-new`), so that this write finishes the
    /// interrupted one without leftovers. The directory is listed once per
    /// activation ([`stale_temporaries`]); only `name`'s are removed, so
    /// that another process writing another file there (the early probes
    /// share a directory) keeps its own in-flight temporary. A leftover of
    /// a file that no later activation writes again stays (it is inert:
    /// a private-named file nobody reads).
    fn sweep_for(&self, dir: &Path, name: &str) -> io::Result<()> {
        let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
        if !swept.contains_key(dir) {
            swept.insert(dir.to_owned(), stale_temporaries(dir)?);
        }
        let stale = swept.get_mut(dir).expect("listed above");
        let (ours, rest): (Vec<_>, Vec<_>) = std::mem::take(stale)
            .into_iter()
            .partition(|(n, _)| n == name);
        *stale = rest;
        for (_, file) in ours {
            match fs::remove_file(dir.join(file)) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The target name of one of our temporaries, `.NAME.XXXXXX.fruix-new`
/// with a random part of tempfile's length; `None` for any other name.
fn temporary_of(n: &str) -> Option<&str> {
    n.strip_prefix('.')
        .and_then(|r| r.strip_suffix(".fruix-new"))
        .and_then(|r| r.rsplit_once('.'))
        .filter(|(name, random)| {
            !name.is_empty()
                && random.len() == TEMP_RANDOM_LEN
                && random.bytes().all(|b| b.is_ascii_alphanumeric())
        })
        .map(|(name, _)| name)
}

/// Our temporaries in `dir` that are not directories, as (target name,
/// file name); empty when `dir` does not exist.
fn stale_temporaries(dir: &Path) -> io::Result<Vec<(String, String)>> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        r => r?,
    };
    let mut found = Vec::new();
    for e in entries {
        let e = e?;
        let n = e.file_name();
        let Some(n) = n.to_str() else { continue };
        let Some(target) = temporary_of(n) else {
            continue;
        };
        // Another process may have renamed its temporary since the listing.
        match e.file_type() {
            Ok(t) if t.is_dir() => {}
            Ok(_) => found.push((target.to_owned(), n.to_owned())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(found)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Makes a rename in `dir` survive a power cut.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
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
    fn an_overlay_maps_its_directory_only_and_makes_a_dry_run() {
        let r = GuestRoot::new("/tmp/g").dry_run_with("/frx/store/s", "/tmp/new/s".into());
        assert!(r.is_dry_run());
        assert_eq!(r.path("/frx/store/s"), Path::new("/tmp/new/s"));
        assert_eq!(
            r.path("/frx/store/s/etc/motd"),
            Path::new("/tmp/new/s/etc/motd")
        );
        assert_eq!(
            r.path("/frx/store/s2/etc"),
            Path::new("/tmp/g/frx/store/s2/etc")
        );
        assert_eq!(r.path("/etc/motd"), Path::new("/tmp/g/etc/motd"));
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

    #[test]
    fn writing_never_goes_through_a_planted_link() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::write(&outside, "secret").unwrap();
        let g = t.path().join("g");
        fs::create_dir_all(g.join("etc")).unwrap();
        // At the target itself and at the name the temporary once had.
        symlink(&outside, g.join("etc/shadow")).unwrap();
        symlink(&outside, g.join("etc/.passwd.fruix-new")).unwrap();
        let r = GuestRoot::new(&g);
        assert!(
            r.write_if_changed("/etc/shadow", b"new", 0o640, None)
                .unwrap()
        );
        assert!(
            r.write_if_changed("/etc/passwd", b"pw", 0o644, None)
                .unwrap()
        );
        assert_eq!(fs::read_to_string(&outside).unwrap(), "secret");
        for (name, text, mode) in [("shadow", "new", 0o640), ("passwd", "pw", 0o644)] {
            let m = fs::symlink_metadata(g.join("etc").join(name)).unwrap();
            assert!(m.is_file(), "{name} is a regular file");
            assert_eq!(m.permissions().mode() & 0o7777, mode, "{name}");
            assert_eq!(fs::read_to_string(g.join("etc").join(name)).unwrap(), text);
        }
        let mut left: Vec<_> = fs::read_dir(g.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // The planted link is left alone; no temporary of ours remains.
        assert_eq!(left, [".passwd.fruix-new", "passwd", "shadow"]);
        // A temporary a killed run left is removed by the next write of
        // its file; another file's (another process's, in flight) is left
        // until that file is written.
        fs::write(g.join("etc/.shadow.Ab3dE9.fruix-new"), "half").unwrap();
        fs::write(g.join("etc/.ld.so.conf.x1Y2z3.fruix-new"), "half").unwrap();
        fs::write(g.join("etc/.keep.toolong.fruix-new"), "not ours").unwrap();
        let r = GuestRoot::new(&g);
        assert!(
            r.write_if_changed("/etc/shadow", b"newer", 0o640, None)
                .unwrap()
        );
        assert!(!g.join("etc/.shadow.Ab3dE9.fruix-new").exists());
        assert!(g.join("etc/.ld.so.conf.x1Y2z3.fruix-new").exists());
        assert!(
            r.write_if_changed("/etc/ld.so.conf", b"x", 0o644, None)
                .unwrap()
        );
        assert!(!g.join("etc/.ld.so.conf.x1Y2z3.fruix-new").exists());
        assert!(g.join("etc/.keep.toolong.fruix-new").exists());
        assert_eq!(temporary_of(".a.b.Ab3dE9.fruix-new"), Some("a.b"));
        assert_eq!(temporary_of("..Ab3dE9.fruix-new"), None, "no name");
        assert_eq!(
            temporary_of(".a.Ab3d-9.fruix-new"),
            None,
            "not alphanumeric"
        );
        // The same for links.
        symlink(&outside, g.join(".current.fruix-new")).unwrap();
        assert!(r.symlink_if_changed("/current", "/frx/store/a").unwrap());
        assert_eq!(fs::read_to_string(&outside).unwrap(), "secret");
        assert_eq!(
            fs::read_link(g.join("current")).unwrap(),
            Path::new("/frx/store/a")
        );
    }

    #[test]
    fn removing_a_link_to_a_directory_removes_the_link_only() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("f"), "f").unwrap();
        let g = t.path().join("g");
        fs::create_dir(&g).unwrap();
        symlink(&target, g.join("shim")).unwrap();
        let r = GuestRoot::new(&g);
        assert!(r.remove("/shim").unwrap());
        assert!(fs::symlink_metadata(g.join("shim")).is_err());
        assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "f");
    }

    #[test]
    #[cfg_attr(
        not(feature = "root-tests"),
        ignore = "needs root to give a file away (the root tier: --features root-tests)"
    )]
    fn an_owned_setuid_file_keeps_its_setuid_bit() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let r = GuestRoot::new(t.path());
        assert!(
            r.write_if_changed("/run/su", b"su", 0o4755, Some((1234, 2345)))
                .unwrap()
        );
        let m = fs::symlink_metadata(t.path().join("run/su")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o4755, 1234, 2345));
        assert!(
            !r.write_if_changed("/run/su", b"su", 0o4755, Some((1234, 2345)))
                .unwrap()
        );
    }
}
