//! The `etc` step: `/etc` as real directories and links into the store,
//! from the runtime's `etc` and the system item's generated one, with what
//! an earlier generation linked and this one lacks removed.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::error::{ActivationError, At};
use crate::root::GuestRoot;

/// The list of `/etc` entries activation manages, so that it can remove
/// the ones a new generation no longer has.
const MANAGED_LIST: &str = "/etc/.fruix-managed";

/// Account files that activation writes itself instead of linking, and the
/// lock file the account tools open for writing.
const ACCOUNT_FILES: &[&str] = &[
    "passwd",
    "passwd-",
    "group",
    "group-",
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "master.passwd",
    "pwd.db",
    "spwd.db",
    ".pwd.lock",
];

enum EtcEntry {
    Dir,
    Link(String),
}

/// Collects `dir` (the `etc` of an item at guest path `guest`) into `out`.
fn collect_etc(
    dir: &Path,
    guest: &str,
    rel: &str,
    skip_accounts: bool,
    out: &mut BTreeMap<String, EtcEntry>,
) -> Result<(), ActivationError> {
    let here = if rel.is_empty() {
        dir.to_owned()
    } else {
        dir.join(rel)
    };
    let rd = match fs::read_dir(&here) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(ActivationError::Io {
                path: format!("{guest}/{rel}"),
                action: "read directory",
                source: e,
            });
        }
    };
    for e in rd {
        let e = e.at(guest, "read directory")?;
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if skip_accounts && rel.is_empty() && ACCOUNT_FILES.contains(&name.as_str()) {
            continue;
        }
        let ft = e.file_type().at(guest, "read directory")?;
        if ft.is_dir() {
            out.insert(r.clone(), EtcEntry::Dir);
            collect_etc(dir, guest, &r, skip_accounts, out)?;
        } else if ft.is_symlink() {
            // A link in an item's etc (Debian's alternatives) is copied as it is.
            let t = fs::read_link(e.path()).at(guest, "read link")?;
            out.insert(r, EtcEntry::Link(t.to_string_lossy().into_owned()));
        } else {
            out.insert(r.clone(), EtcEntry::Link(format!("{guest}/{r}")));
        }
    }
    Ok(())
}

/// `/etc` from the runtime's `etc` and the system item's generated `etc`
/// (which wins): real directories, and links into the store for files.
pub(crate) fn etc(
    root: &GuestRoot,
    runtime: &str,
    system: &str,
) -> Result<Vec<String>, ActivationError> {
    let mut want = BTreeMap::new();
    collect_etc(
        &root.path(&format!("{runtime}/etc")),
        &format!("{runtime}/etc"),
        "",
        true,
        &mut want,
    )?;
    let mut generated = BTreeMap::new();
    collect_etc(
        &root.path(&format!("{system}/etc")),
        &format!("{system}/etc"),
        "",
        false,
        &mut generated,
    )?;
    for (k, v) in generated {
        // A generated file replaces a runtime directory of the same name too.
        if matches!(v, EtcEntry::Link(_)) {
            let prefix = format!("{k}/");
            want.retain(|w, _| !w.starts_with(&prefix));
        }
        want.insert(k, v);
    }
    let mut changes = Vec::new();
    for (rel, e) in &want {
        let guest = format!("/etc/{rel}");
        match e {
            EtcEntry::Dir => {
                if root.ensure_dir(&guest, 0o755)? {
                    changes.push(format!("directory {guest}"));
                }
            }
            EtcEntry::Link(target) => {
                if root.symlink_if_changed(&guest, target)? {
                    changes.push(format!("link {guest} -> {target}"));
                }
            }
        }
    }
    // What an earlier generation linked and this one does not have.
    let old = fs::read_to_string(root.path(MANAGED_LIST)).unwrap_or_default();
    // Deepest first, so that a directory is empty when its turn comes.
    let mut stale: Vec<&str> = old
        .lines()
        .filter(|l| !l.is_empty() && !want.contains_key(*l))
        .collect();
    stale.sort_unstable_by(|a, b| b.cmp(a));
    for rel in stale {
        let guest = format!("/etc/{rel}");
        let p = root.path(&guest);
        let ours = fs::read_link(&p).is_ok_and(|t| t.starts_with("/frx/store/"))
            || fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
        if ours
            && fs::read_dir(&p).map_or(true, |mut d| d.next().is_none())
            && root.remove(&guest)?
        {
            changes.push(format!("removed {guest}"));
        }
    }
    let list: String = want.keys().map(|k| format!("{k}\n")).collect();
    root.write_if_changed(MANAGED_LIST, list.as_bytes(), 0o644, None)?;
    Ok(changes)
}
