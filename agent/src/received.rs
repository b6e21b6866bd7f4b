//! Holds on received systems: `store receive` marks the system it
//! receives before it takes the store's lock, so that a gc run between the
//! receive and the switch (which then records the system as a generation)
//! does not collect items no generation names yet. The switch releases the
//! hold when it ends; a hold older than [`MAX_AGE`] (a deploy abandoned
//! after its receive) is dropped by the next gc.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fruix_store::ItemName;

/// The holds' directory, under the store root (`/frx`): one empty file per
/// held system item, named after it, its time the receive's.
pub const DIR: &str = "var/fruix/received";

/// How long a hold keeps its system's items without a switch.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

fn dir(frx: &Path) -> PathBuf {
    frx.join(DIR)
}

/// Marks `system` as received now (before its items are), so that gc
/// keeps its closure.
pub fn hold(frx: &Path, system: &ItemName) -> io::Result<()> {
    let d = dir(frx);
    fs::create_dir_all(&d)?;
    let p = d.join(system.as_str());
    // Never through a link planted at the hold's name.
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&p)?;
    f.set_modified(SystemTime::now())?;
    f.sync_all()
}

/// Drops the hold on `system` (a switch to it has ended); none is fine.
pub fn release(frx: &Path, system: &str) -> io::Result<()> {
    match fs::remove_file(dir(frx).join(system)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The held systems younger than `max_age`, by name; with `drop_stale`,
/// the older holds are removed. Names that are not item names are
/// ignored.
pub fn held(frx: &Path, max_age: Duration, drop_stale: bool) -> io::Result<Vec<String>> {
    let d = dir(frx);
    let rd = match fs::read_dir(&d) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut v = Vec::new();
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = e.metadata()?;
        if ItemName::parse(&name).is_err() || !meta.is_file() {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age <= max_age {
            v.push(name);
        } else if drop_stale {
            release(frx, &name)?;
        }
    }
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS: &str =
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-fruix-system-x";

    #[test]
    fn a_hold_is_listed_until_released_or_stale() {
        let t = tempfile::tempdir().unwrap();
        let name = ItemName::parse(SYS).unwrap();
        assert_eq!(held(t.path(), MAX_AGE, true).unwrap(), Vec::<String>::new());
        hold(t.path(), &name).unwrap();
        assert_eq!(held(t.path(), MAX_AGE, true).unwrap(), vec![SYS.to_owned()]);
        // Stale: listed no more, and dropped only when asked.
        let old = SystemTime::now() - Duration::from_secs(25 * 3600);
        let f = OpenOptions::new()
            .write(true)
            .open(t.path().join(DIR).join(SYS))
            .unwrap();
        f.set_modified(old).unwrap();
        assert!(held(t.path(), MAX_AGE, false).unwrap().is_empty());
        assert!(t.path().join(DIR).join(SYS).exists());
        assert!(held(t.path(), MAX_AGE, true).unwrap().is_empty());
        assert!(!t.path().join(DIR).join(SYS).exists());
        hold(t.path(), &name).unwrap();
        release(t.path(), SYS).unwrap();
        release(t.path(), SYS).unwrap();
        assert!(held(t.path(), MAX_AGE, true).unwrap().is_empty());
    }

    #[test]
    fn a_link_at_the_holds_name_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join(DIR);
        fs::create_dir_all(&d).unwrap();
        let target = t.path().join("elsewhere");
        fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, d.join(SYS)).unwrap();
        let e = hold(t.path(), &ItemName::parse(SYS).unwrap()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        // Nor listed: it is not a file.
        assert!(held(t.path(), MAX_AGE, true).unwrap().is_empty());
    }
}
