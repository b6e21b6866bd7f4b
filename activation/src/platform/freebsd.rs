//! FreeBSD: `/etc/master.passwd` and `/etc/group`, then `pwd_mkdb`, which
//! writes `/etc/passwd` and the databases `getpwnam(3)` reads.

use std::process::Command;

use super::Platform;
use crate::accounts::AccountDb;
use crate::error::ActivationError;
use crate::root::GuestRoot;

/// The FreeBSD platform.
pub struct FreeBsd;

impl Platform for FreeBsd {
    fn write_accounts(
        &self,
        root: &GuestRoot,
        db: &AccountDb,
    ) -> Result<Vec<String>, ActivationError> {
        let mut changed = Vec::new();
        if root.write_if_changed("/etc/group", db.group().as_bytes(), 0o644, Some((0, 0)))? {
            changed.push("/etc/group".to_owned());
        }
        if root.write_if_changed(
            "/etc/master.passwd",
            db.master_passwd().as_bytes(),
            0o600,
            Some((0, 0)),
        )? {
            changed.push("/etc/master.passwd".to_owned());
            let etc = root.path("/etc");
            let out = Command::new("pwd_mkdb")
                .arg("-p")
                .arg("-d")
                .arg(&etc)
                .arg(etc.join("master.passwd"))
                .output()
                .map_err(|e| ActivationError::Tool {
                    tool: "pwd_mkdb".into(),
                    message: e.to_string(),
                })?;
            if !out.status.success() {
                return Err(ActivationError::Tool {
                    tool: "pwd_mkdb".into(),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                });
            }
        }
        Ok(changed)
    }

    fn generate_host_key(&self, root: &GuestRoot, key_type: &str) -> Result<(), ActivationError> {
        super::ssh_keygen(root, key_type)
    }
}
