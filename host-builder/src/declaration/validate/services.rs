//! The `[services]` section: the SSH daemon's port and root's keys.

use toml::Spanned;

use crate::declaration::Services;
use crate::declaration::error::{DeclError, Locator};

/// Checks `[services.sshd]`: the port, each key, and that each key file
/// can be read (relative to the declaration's directory).
pub(super) fn check(at: &Locator<'_>, services: &Services) -> Result<(), DeclError> {
    let Some(sshd) = &services.sshd else {
        return Ok(());
    };
    let p = *sshd.port.get_ref();
    if !(1..=65535).contains(&p) {
        return Err(at.error(
            &sshd.port.span(),
            format!("`services.sshd.port`: {p} is not a TCP port (1 to 65535)"),
        ));
    }
    for k in &sshd.root_authorized_keys {
        check_key(at, k, "services.sshd.root-authorized-keys")?;
    }
    for f in &sshd.root_authorized_keys_files {
        let path = at
            .file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(f.get_ref());
        if let Err(e) = std::fs::read_to_string(&path) {
            return Err(at.error(
                &f.span(),
                format!(
                    "`services.sshd.root-authorized-keys-files`: cannot read {}: {e}",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that `k` looks like an OpenSSH public key: a known type and
/// base64 data, then an optional comment.
fn check_key(at: &Locator<'_>, k: &Spanned<String>, field: &str) -> Result<(), DeclError> {
    let parts: Vec<&str> = k.get_ref().split_whitespace().collect();
    let known = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let ok = parts.len() >= 2
        && known.contains(&parts[0])
        && parts[1].len() >= 16
        && parts[1]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(at.error(
            &k.span(),
            format!("`{field}`: not an OpenSSH public key ('TYPE BASE64 [COMMENT]')"),
        ))
    }
}
