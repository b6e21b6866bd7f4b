//! The `[services]` section: the SSH daemon's port and root's keys.

use super::text::{check_key, key_problem};
use crate::declaration::Services;
use crate::declaration::error::{DeclError, Locator};

/// Checks `[services.sshd]`: the port, each key, and that each key file
/// can be read (relative to the declaration's directory) and holds only
/// keys (blank lines and `#` comments aside), as the build copies them.
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
        check_key(
            at,
            &k.span(),
            "services.sshd.root-authorized-keys",
            k.get_ref(),
        )?;
    }
    for f in &sshd.root_authorized_keys_files {
        let path = at
            .file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(f.get_ref());
        let field = "services.sshd.root-authorized-keys-files";
        let text = std::fs::read_to_string(&path).map_err(|e| {
            at.error(
                &f.span(),
                format!("`{field}`: cannot read {}: {e}", path.display()),
            )
        })?;
        // The same lines the build copies (realize/system.rs).
        for (n, l) in text.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if let Some(why) = key_problem(l) {
                return Err(at.error(
                    &f.span(),
                    format!("`{field}`: {} line {}: {why}", path.display(), n + 1),
                ));
            }
        }
    }
    Ok(())
}
