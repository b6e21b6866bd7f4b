//! The account database a system wants: the runtime's system accounts, root,
//! and the declared groups and users. Passwords already set on the guest are
//! kept; ids are those declared or already in use, so they stay stable
//! across generations.

use std::collections::BTreeMap;

use crate::config::DeclaredAccounts;

/// One user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// GECOS.
    pub gecos: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
    /// Password hash, `*` for none (key logins only, not locked).
    pub password: String,
    /// Declared in the system (its home is made by activation).
    pub declared: bool,
}

/// One group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Member names.
    pub members: Vec<String>,
}

/// Users and groups, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountDb {
    /// Users.
    pub users: Vec<User>,
    /// Groups.
    pub groups: Vec<Group>,
}

/// Parses `passwd(5)` lines; malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() != 7 {
                return None;
            }
            Some(User {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                gecos: f[4].to_owned(),
                home: f[5].to_owned(),
                shell: f[6].to_owned(),
                password: "*".to_owned(),
                declared: false,
            })
        })
        .collect()
}

/// Parses `group(5)` lines; malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() != 4 {
                return None;
            }
            Some(Group {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// Password hashes by user, from `shadow(5)` (or FreeBSD's master.passwd,
/// whose second field is the hash too).
pub fn parse_hashes(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .filter(|(n, _)| !n.is_empty())
        .collect()
}

/// The database a system wants: `base_passwd`/`base_group` from the
/// runtime (its system accounts), the declared ones on top, root always,
/// and the hashes in `existing` kept.
pub fn merge(
    base_passwd: &str,
    base_group: &str,
    declared: &DeclaredAccounts,
    existing: &BTreeMap<String, String>,
) -> AccountDb {
    let mut users = parse_passwd(base_passwd);
    let mut groups = parse_group(base_group);
    if !groups.iter().any(|g| g.name == "root") {
        groups.insert(
            0,
            Group {
                name: "root".into(),
                gid: 0,
                members: vec![],
            },
        );
    }
    if !users.iter().any(|u| u.name == "root") {
        users.insert(
            0,
            User {
                name: "root".into(),
                uid: 0,
                gid: 0,
                gecos: "root".into(),
                home: "/root".into(),
                shell: "/bin/sh".into(),
                password: "*".into(),
                declared: false,
            },
        );
    }
    for g in &declared.groups {
        groups.retain(|x| x.name != g.name);
        groups.push(Group {
            name: g.name.clone(),
            gid: g.gid,
            members: vec![],
        });
    }
    for u in &declared.users {
        let gid = groups
            .iter()
            .find(|g| g.name == u.group)
            .map_or(100, |g| g.gid);
        users.retain(|x| x.name != u.name);
        users.push(User {
            name: u.name.clone(),
            uid: u.uid,
            gid,
            gecos: u.comment.clone(),
            home: u.home.clone(),
            shell: u.shell.clone(),
            password: "*".into(),
            declared: true,
        });
    }
    for u in &mut users {
        if let Some(h) = existing.get(&u.name) {
            // A lock ("!") set by hand is kept too: it is the admin's say.
            u.password = h.clone();
        }
    }
    AccountDb { users, groups }
}

impl AccountDb {
    /// `/etc/passwd`.
    pub fn passwd(&self) -> String {
        self.users
            .iter()
            .map(|u| {
                format!(
                    "{}:x:{}:{}:{}:{}:{}\n",
                    u.name, u.uid, u.gid, u.gecos, u.home, u.shell
                )
            })
            .collect()
    }

    /// `/etc/group`.
    pub fn group(&self) -> String {
        self.groups
            .iter()
            .map(|g| format!("{}:x:{}:{}\n", g.name, g.gid, g.members.join(",")))
            .collect()
    }

    /// `/etc/shadow` (no ageing).
    pub fn shadow(&self) -> String {
        self.users
            .iter()
            .map(|u| format!("{}:{}::0:99999:7:::\n", u.name, u.password))
            .collect()
    }

    /// `/etc/gshadow`.
    pub fn gshadow(&self) -> String {
        self.groups
            .iter()
            .map(|g| format!("{}:*::{}\n", g.name, g.members.join(",")))
            .collect()
    }

    /// FreeBSD's `/etc/master.passwd`: name:hash:uid:gid:class:change:expire:gecos:home:shell.
    pub fn master_passwd(&self) -> String {
        self.users
            .iter()
            .map(|u| {
                format!(
                    "{}:{}:{}:{}::0:0:{}:{}:{}\n",
                    u.name, u.password, u.uid, u.gid, u.gecos, u.home, u.shell
                )
            })
            .collect()
    }

    /// The id of a group, by name.
    pub fn gid_of(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.name == name).map(|g| g.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeclaredGroup, DeclaredUser};

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nusers:x:100:\n";

    fn declared() -> DeclaredAccounts {
        DeclaredAccounts {
            groups: vec![DeclaredGroup {
                name: "fruix".into(),
                gid: 1000,
            }],
            users: vec![DeclaredUser {
                name: "fruix".into(),
                uid: 1000,
                group: "fruix".into(),
                home: "/home/fruix".into(),
                shell: "/bin/sh".into(),
                comment: "Demo".into(),
            }],
        }
    }

    #[test]
    fn base_accounts_plus_declared_ones() {
        let db = merge(PASSWD, GROUP, &declared(), &BTreeMap::new());
        assert_eq!(
            db.passwd(),
            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nfruix:x:1000:1000:Demo:/home/fruix:/bin/sh\n"
        );
        assert_eq!(
            db.group(),
            "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nusers:x:100:\nfruix:x:1000:\n"
        );
        assert!(
            db.shadow().starts_with("root:*::0:99999:7:::\n"),
            "key logins work: not locked"
        );
    }

    #[test]
    fn existing_passwords_are_kept() {
        let existing =
            parse_hashes("root:$6$salt$hash:19000:0:99999:7:::\nfruix:$y$j9T$x:19000::::::\n");
        let db = merge(PASSWD, GROUP, &declared(), &existing);
        let shadow = db.shadow();
        assert!(
            shadow.contains("root:$6$salt$hash::0:99999:7:::\n"),
            "{shadow}"
        );
        assert!(
            shadow.contains("fruix:$y$j9T$x::0:99999:7:::\n"),
            "{shadow}"
        );
        assert!(shadow.contains("daemon:*::"), "{shadow}");
    }

    #[test]
    fn root_is_always_there_and_freebsd_format() {
        let db = merge("", "", &DeclaredAccounts::default(), &BTreeMap::new());
        assert_eq!(db.passwd(), "root:x:0:0:root:/root:/bin/sh\n");
        assert_eq!(db.master_passwd(), "root:*:0:0::0:0:root:/root:/bin/sh\n");
    }
}
