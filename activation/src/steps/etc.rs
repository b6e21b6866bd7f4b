//! The `etc` step: `/etc` as real directories and links into the store,
//! from the runtime's `etc` and the system item's generated one, with what
//! an earlier generation linked and this one lacks removed.
//!
//! A directory that only one of the two trees has, and that nothing in
//! the guest writes into, is one link to that tree's directory (folded,
//! as GNU Stow folds trees): `/etc/alternatives -> RUNTIME/etc/alternatives`
//! rather than a real directory of links. The example system's `/etc` is
//! then about 100 links instead of about 380, and a live switch changes a
//! folded directory with one atomic rename. Where both trees meet
//! (`/etc/ssh`), where the guest writes (the host keys in `/etc/ssh`), and
//! where a real directory holds anything but our links into the store (an
//! administrator's file), the directory stays real.

use std::collections::{BTreeMap, HashSet};
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

/// Directories the guest writes into (the host keys): never folded.
const WRITTEN: &[&str] = &["ssh"];

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
    // What an earlier generation linked.
    let old = fs::read_to_string(root.path(MANAGED_LIST)).unwrap_or_default();
    let managed: HashSet<&str> = old.lines().collect();
    let runtime_dir = format!("{runtime}/etc");
    let system_dir = format!("{system}/etc");
    // Folded: a directory of one tree only, with no folded parent.
    let mut folded: Vec<(String, String)> = Vec::new();
    for (tree, mine, other) in [
        (&runtime_dir, &want, &generated),
        (&system_dir, &generated, &want),
    ] {
        for (rel, e) in mine {
            if matches!(e, EtcEntry::Dir)
                && !folded.iter().any(|(f, _)| is_under(rel, f))
                && foldable(root, rel, other, &managed)
            {
                folded.push((rel.clone(), format!("{tree}/{rel}")));
            }
        }
    }
    for (k, v) in generated {
        // A generated file replaces a runtime directory of the same name too.
        if matches!(v, EtcEntry::Link(_)) {
            let prefix = format!("{k}/");
            want.retain(|w, _| !w.starts_with(&prefix));
        }
        want.insert(k, v);
    }
    for (dir, target) in folded {
        // Only where the merge kept the directory: a generated file at a
        // parent (or at the directory itself) replaced it.
        if !matches!(want.get(&dir), Some(EtcEntry::Dir)) {
            continue;
        }
        let prefix = format!("{dir}/");
        want.retain(|w, _| !w.starts_with(&prefix));
        want.insert(dir, EtcEntry::Link(target));
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
    // Deepest first, so that a directory is empty when its turn comes.
    // An entry now under a folded directory is not there to remove: its
    // path leads into the store.
    let mut stale: Vec<&str> = old
        .lines()
        .filter(|l| !l.is_empty() && !want.contains_key(*l))
        .filter(|l| {
            !want
                .iter()
                .any(|(k, e)| matches!(e, EtcEntry::Link(_)) && is_under(l, k))
        })
        .collect();
    stale.sort_unstable_by(|a, b| b.cmp(a));
    for rel in stale {
        let guest = format!("/etc/{rel}");
        let p = root.path(&guest);
        // A link of ours goes whatever it points at (a folded directory's
        // link points at a full store directory); a real directory only
        // when empty, so that nothing of anyone else's goes with it.
        let ours = match fs::symlink_metadata(&p) {
            Ok(m) if m.is_symlink() => {
                fs::read_link(&p).is_ok_and(|t| t.starts_with("/frx/store/"))
            }
            Ok(m) if m.is_dir() => fs::read_dir(&p).is_ok_and(|mut d| d.next().is_none()),
            _ => false,
        };
        if ours && root.remove(&guest)? {
            changes.push(format!("removed {guest}"));
        }
    }
    let list: String = want.keys().map(|k| format!("{k}\n")).collect();
    root.write_if_changed(MANAGED_LIST, list.as_bytes(), 0o644, None)?;
    Ok(changes)
}

/// Whether `rel` is strictly inside the directory `dir`.
fn is_under(rel: &str, dir: &str) -> bool {
    rel.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Whether the directory `rel` of one tree can be one link: the other
/// tree has nothing at or under it, the guest writes nothing there, and
/// what stands at `/etc/REL` now is nothing, a link, or a directory of
/// our own entries only (`managed`: what an earlier generation linked).
fn foldable(
    root: &GuestRoot,
    rel: &str,
    other: &BTreeMap<String, EtcEntry>,
    managed: &HashSet<&str>,
) -> bool {
    if WRITTEN
        .iter()
        .any(|w| *w == rel || is_under(w, rel) || is_under(rel, w))
    {
        return false;
    }
    let prefix = format!("{rel}/");
    if other.contains_key(rel)
        || other
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    {
        return false;
    }
    only_ours(root, rel, managed)
}

/// True when `/etc/REL` is absent, a link, or a real directory holding
/// only links we made (listed in `managed`, or into the store) and
/// directories of the same kind: removing it loses nothing of anyone's.
fn only_ours(root: &GuestRoot, rel: &str, managed: &HashSet<&str>) -> bool {
    let p = root.path(&format!("/etc/{rel}"));
    match fs::symlink_metadata(&p) {
        Err(_) => true,
        Ok(m) if m.is_symlink() => true,
        Ok(m) if m.is_dir() => fs::read_dir(&p).is_ok_and(|rd| {
            rd.into_iter().all(|e| {
                e.is_ok_and(|e| {
                    let child = format!("{rel}/{}", e.file_name().to_string_lossy());
                    match fs::symlink_metadata(e.path()) {
                        Ok(m) if m.is_symlink() => {
                            managed.contains(child.as_str())
                                || fs::read_link(e.path())
                                    .is_ok_and(|t| t.starts_with("/frx/store/"))
                        }
                        Ok(m) if m.is_dir() => only_ours(root, &child, managed),
                        _ => false,
                    }
                })
            })
        }),
        Ok(_) => false,
    }
}
