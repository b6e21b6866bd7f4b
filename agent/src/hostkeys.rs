//! The guest's SSH host keys as activation made them
//! (`/etc/ssh/ssh_host_TYPE_key.pub`): read for the report's fingerprint
//! fields and for the console's key block, whose format is
//! `fruix_system::hostkeys`'s.

use fruix_activation::GuestRoot;
use fruix_system::hostkeys::{self, HostKey, KEY_TYPES};

/// The public keys of [`KEY_TYPES`] that exist and read as keys, in
/// that order. A key file that is not a regular file (a link planted in
/// its place) or does not parse is left out: the report then says
/// `none` for it and the host pins nothing for it.
pub fn read(root: &GuestRoot) -> Vec<HostKey> {
    KEY_TYPES
        .iter()
        .filter_map(|t| {
            let guest = format!("/etc/ssh/ssh_host_{t}_key.pub");
            let p = root.path(&guest);
            let m = std::fs::symlink_metadata(&p).ok()?;
            if !m.is_file() {
                return None;
            }
            let text = std::fs::read_to_string(&p).ok()?;
            HostKey::parse(text.trim(), &guest).ok()
        })
        .collect()
}

/// The report's `ssh_host_key_TYPE` fields for `keys`.
pub fn fingerprints(keys: &[HostKey]) -> Vec<(String, String)> {
    keys.iter()
        .filter_map(|k| Some((k.report_key()?, k.fingerprint())))
        .collect()
}

/// The console's fingerprint and key blocks for the guest's keys, with
/// `root@HOSTNAME` where `ssh-keygen -l` shows a comment; empty when the
/// guest has no key yet.
pub fn console_block(root: &GuestRoot) -> String {
    let keys = read(root);
    if keys.is_empty() {
        return String::new();
    }
    let host = std::fs::read_to_string(root.path("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    hostkeys::console_block(&keys, &format!("root@{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEOB2N+37FzU+spOOcsTWo6nCX5sEdojXO4y4Qmq8vEJ root@guest\n";

    #[test]
    fn keys_are_read_from_etc_ssh_and_links_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let root = GuestRoot::new(t.path());
        std::fs::create_dir_all(t.path().join("etc/ssh")).unwrap();
        assert_eq!(console_block(&root), "");
        std::fs::write(t.path().join("etc/ssh/ssh_host_ed25519_key.pub"), ED).unwrap();
        std::fs::write(t.path().join("elsewhere.pub"), ED).unwrap();
        std::os::unix::fs::symlink(
            t.path().join("elsewhere.pub"),
            t.path().join("etc/ssh/ssh_host_ecdsa_key.pub"),
        )
        .unwrap();
        std::fs::write(t.path().join("etc/hostname"), "guest\n").unwrap();
        let keys = read(&root);
        assert_eq!(
            fingerprints(&keys),
            [(
                "ssh_host_key_ed25519".to_owned(),
                "SHA256:3GG+7T8TFHpUGjaC2RPRGJbv9TE+moNWGxySnNXfNZI".to_owned()
            )]
        );
        assert_eq!(
            console_block(&root),
            format!(
                "-----BEGIN SSH HOST KEY FINGERPRINTS-----\n\
                 256 SHA256:3GG+7T8TFHpUGjaC2RPRGJbv9TE+moNWGxySnNXfNZI root@guest (ED25519)\n\
                 -----END SSH HOST KEY FINGERPRINTS-----\n\
                 -----BEGIN SSH HOST KEY KEYS-----\n\
                 {ED}-----END SSH HOST KEY KEYS-----\n"
            )
        );
    }
}
