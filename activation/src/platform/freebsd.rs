//! FreeBSD: `/etc/master.passwd` and `/etc/group`, then `pwd_mkdb`, which
//! writes `/etc/passwd` and the databases `getpwnam(3)` reads; and the
//! root file system grown to its partition at first boot with `growfs`.

use std::path::Path;
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

    fn grows_root(&self) -> bool {
        true
    }

    fn grow_root(&self, root: &GuestRoot) -> Result<Vec<String>, ActivationError> {
        // Only the running system's own root, never a directory standing
        // in for it.
        if root.as_path() != Path::new("/") || root.is_dry_run() {
            return Ok(Vec::new());
        }
        if root.path(ROOT_GROWN).exists() {
            return Ok(Vec::new());
        }
        // growfs grows a mounted file system (write-suspending it) to the
        // size of its partition; the partition table is left as declared.
        let out = Command::new("/sbin/growfs")
            .args(["-y", "/"])
            .output()
            .map_err(|e| ActivationError::Tool {
                tool: "growfs".into(),
                message: e.to_string(),
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // It refuses a size equal to the file system's: nothing to grow.
        if !out.status.success() && !stderr.contains("is equal to the current") {
            return Err(ActivationError::Tool {
                tool: "growfs".into(),
                message: stderr.trim().to_owned(),
            });
        }
        root.write_if_changed(
            ROOT_GROWN,
            b"the root file system fills its partition\n",
            0o444,
            Some((0, 0)),
        )?;
        Ok(if out.status.success() {
            vec!["grew / to its partition (growfs)".to_owned()]
        } else {
            Vec::new()
        })
    }
}

/// Written once `/` fills its partition, so that later activations do not
/// run growfs again.
const ROOT_GROWN: &str = "/frx/var/db/fruix/root-grown";
