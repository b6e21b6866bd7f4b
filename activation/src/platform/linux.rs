//! Linux: `/etc/passwd`, `/etc/group`, `/etc/shadow`, `/etc/gshadow`, the
//! way glibc and shadow-utils read them.

use super::Platform;
use crate::accounts::AccountDb;
use crate::error::ActivationError;
use crate::root::GuestRoot;

/// The Linux platform.
pub struct Linux;

impl Platform for Linux {
    fn write_accounts(
        &self,
        root: &GuestRoot,
        db: &AccountDb,
    ) -> Result<Vec<String>, ActivationError> {
        // shadow(5) files are readable by group shadow where it exists.
        let shadow_gid = db.gid_of("shadow").unwrap_or(0);
        let files = [
            ("/etc/passwd", db.passwd(), 0o644, 0),
            ("/etc/group", db.group(), 0o644, 0),
            ("/etc/shadow", db.shadow(), 0o640, shadow_gid),
            ("/etc/gshadow", db.gshadow(), 0o640, shadow_gid),
        ];
        let mut changed = Vec::new();
        for (path, text, mode, gid) in files {
            if root.write_if_changed(path, text.as_bytes(), mode, Some((0, gid)))? {
                changed.push(path.to_owned());
            }
        }
        Ok(changed)
    }

    fn generate_host_key(&self, root: &GuestRoot, key_type: &str) -> Result<(), ActivationError> {
        super::ssh_keygen(root, key_type)
    }
}
