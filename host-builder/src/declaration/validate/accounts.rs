//! The `[[groups]]` and `[[users]]` sections: names, ids, primary groups,
//! homes, shells, comments and keys. Homes, shells and comments become
//! fields of `/etc/passwd`, which `:` separates and a newline ends.

use std::collections::BTreeMap;

use toml::Spanned;

use super::text::{check_key, check_text};
use crate::declaration::error::{DeclError, Locator};
use crate::declaration::{Group, User};

/// Groups every system has; users may name them without declaring them.
pub const BASE_GROUPS: &[(&str, i64)] = &[("root", 0), ("users", 100)];

/// Checks the groups, then the users (whose primary group must be a base
/// group or a declared one).
pub(super) fn check(at: &Locator<'_>, groups: &[Group], users: &[User]) -> Result<(), DeclError> {
    let known = check_groups(at, groups)?;
    check_users(at, users, &known)
}

/// Checks each group's name and gid; returns every group's gid by name,
/// the base groups included.
fn check_groups(
    at: &Locator<'_>,
    decl_groups: &[Group],
) -> Result<BTreeMap<String, i64>, DeclError> {
    let mut groups: BTreeMap<String, i64> = BASE_GROUPS
        .iter()
        .map(|(n, g)| ((*n).to_owned(), *g))
        .collect();
    for g in decl_groups {
        if !valid_account_name(g.name.get_ref()) {
            return Err(at.error(
                &g.name.span(),
                format!(
                    "`groups.name`: '{}' is not a group name (lower-case letters, digits, '_' and '-', starting with a letter or '_', at most 32)",
                    g.name.get_ref()
                ),
            ));
        }
        let gid = *g.gid.get_ref();
        if !(1..=65533).contains(&gid) {
            return Err(at.error(
                &g.gid.span(),
                format!("`groups.gid`: {gid} is outside 1 to 65533"),
            ));
        }
        if groups.contains_key(g.name.get_ref()) {
            return Err(at.error(
                &g.name.span(),
                format!(
                    "`groups.name`: group '{}' is declared twice or is a base group",
                    g.name.get_ref()
                ),
            ));
        }
        if let Some((other, _)) = groups.iter().find(|(_, v)| **v == gid) {
            return Err(at.error(
                &g.gid.span(),
                format!("`groups.gid`: {gid} is already the gid of '{other}'"),
            ));
        }
        groups.insert(g.name.get_ref().clone(), gid);
    }
    Ok(groups)
}

/// Checks each user's name, uid, primary group, home, shell, comment and
/// keys.
fn check_users(
    at: &Locator<'_>,
    decl_users: &[User],
    groups: &BTreeMap<String, i64>,
) -> Result<(), DeclError> {
    let mut users: BTreeMap<&str, i64> = BTreeMap::new();
    for u in decl_users {
        let name = u.name.get_ref();
        if !valid_account_name(name) {
            return Err(at.error(
                &u.name.span(),
                format!(
                    "`users.name`: '{name}' is not a user name (lower-case letters, digits, '_' and '-', starting with a letter or '_', at most 32)"
                ),
            ));
        }
        if name == "root" || users.contains_key(name.as_str()) {
            return Err(at.error(
                &u.name.span(),
                format!("`users.name`: user '{name}' is declared twice or is root"),
            ));
        }
        let uid = *u.uid.get_ref();
        if !(1..=65533).contains(&uid) {
            return Err(at.error(
                &u.uid.span(),
                format!("`users.uid`: {uid} is outside 1 to 65533"),
            ));
        }
        if let Some((other, _)) = users.iter().find(|(_, v)| **v == uid) {
            return Err(at.error(
                &u.uid.span(),
                format!("`users.uid`: {uid} is already the uid of '{other}'"),
            ));
        }
        if !groups.contains_key(u.group.get_ref()) {
            return Err(at.error(
                &u.group.span(),
                format!(
                    "`users.group`: group '{}' is not declared",
                    u.group.get_ref()
                ),
            ));
        }
        if let Some(h) = &u.home {
            check_home(at, h)?;
        }
        check_shell(at, &u.shell)?;
        check_passwd_field(at, &u.comment, "users.comment")?;
        for k in &u.authorized_keys {
            check_key(at, &k.span(), "users.authorized-keys", k.get_ref())?;
        }
        users.insert(name, uid);
    }
    Ok(())
}

/// Checks a home: absolute, without `.` or `..`, and none of the places
/// activation must not hand to a user: `/`, the system's trees (`/etc`,
/// `/frx`, `/usr`, ... and below), `/tmp`, and the directories that hold
/// homes (`/home`, `/var`, ...) themselves.
fn check_home(at: &Locator<'_>, h: &Spanned<String>) -> Result<(), DeclError> {
    check_passwd_field(at, h, "users.home")?;
    let home = h.get_ref();
    let parts: Vec<&str> = home.split('/').filter(|c| !c.is_empty()).collect();
    if !home.starts_with('/') || parts.iter().any(|c| *c == "." || *c == "..") {
        return Err(at.error(
            &h.span(),
            format!("`users.home`: '{home}' is not an absolute path without '.' or '..'"),
        ));
    }
    // Activation makes the home and gives it to its user: a directory the
    // system needs (or a world-writable one, where others can plant
    // links) must never be one.
    let system_dir = match parts.as_slice() {
        [] => true,
        [top, ..] if SYSTEM_TREES.contains(top) => true,
        [one] => SYSTEM_DIRS.contains(one),
        // /var's own directories (log, lib, empty, ...) are the system's.
        [a, _] => *a == "var",
        [a, b, ..] => *a == "var" && matches!(*b, "tmp" | "run" | "lock"),
    };
    if system_dir {
        return Err(at.error(
            &h.span(),
            format!(
                "`users.home`: '{home}' is a system directory (a home goes under /home, \
                 /srv, /opt or a directory of /var such as /var/lib)"
            ),
        ));
    }
    Ok(())
}

/// Trees no home may be in: the system's, and world-writable `/tmp`.
const SYSTEM_TREES: &[&str] = &[
    "etc", "frx", "usr", "bin", "sbin", "lib", "lib32", "lib64", "libexec", "boot", "dev", "proc",
    "sys", "run", "tmp", "rescue",
];

/// Directories that may hold homes but are not one themselves.
/// `/root` is root's, and no declared user is root.
const SYSTEM_DIRS: &[&str] = &["home", "var", "srv", "opt", "mnt", "media", "root"];

/// Checks a shell: an absolute path without `..`.
fn check_shell(at: &Locator<'_>, s: &Spanned<String>) -> Result<(), DeclError> {
    check_passwd_field(at, s, "users.shell")?;
    let shell = s.get_ref();
    if !shell.starts_with('/') || shell.len() < 2 || shell.split('/').any(|c| c == "..") {
        return Err(at.error(
            &s.span(),
            format!("`users.shell`: '{shell}' is not an absolute path without '..'"),
        ));
    }
    Ok(())
}

/// Checks a string that becomes a field of `/etc/passwd`: no `:` (the
/// field separator) and no control character (a newline ends the entry).
fn check_passwd_field(at: &Locator<'_>, v: &Spanned<String>, field: &str) -> Result<(), DeclError> {
    check_text(at, &v.span(), field, v.get_ref())?;
    if v.get_ref().contains(':') {
        return Err(at.error(
            &v.span(),
            format!(
                "`{field}`: '{}' has a ':', which separates the fields of /etc/passwd",
                v.get_ref()
            ),
        ));
    }
    Ok(())
}

fn valid_account_name(n: &str) -> bool {
    let b = n.as_bytes();
    (1..=32).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}
