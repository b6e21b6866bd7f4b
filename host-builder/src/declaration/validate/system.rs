//! Top-level settings of the system: `host-name` and `setuid-programs`.

use std::collections::HashSet;

use toml::Spanned;

use super::text::check_text;
use crate::declaration::error::{DeclError, Locator};

/// Checks `host-name`: letters, digits and '-', 1 to 63 characters, no
/// '-' at either end.
pub(super) fn check_host_name(at: &Locator<'_>, host: &Spanned<String>) -> Result<(), DeclError> {
    if !valid_host_name(host.get_ref()) {
        return Err(at.error(
            &host.span(),
            format!(
                "`host-name`: '{}' is not a host name (letters, digits and '-', 1 to 63 characters, no '-' at either end)",
                host.get_ref()
            ),
        ));
    }
    Ok(())
}

/// Checks `setuid-programs`: absolute paths without `.` or `..`, whose
/// file names differ (each becomes `/run/setuid-programs/NAME`).
pub(super) fn check_setuid_programs(
    at: &Locator<'_>,
    programs: &[Spanned<String>],
) -> Result<(), DeclError> {
    let mut setuid_names = HashSet::new();
    for p in programs {
        let path = p.get_ref();
        check_text(at, &p.span(), "setuid-programs", path)?;
        let name = path.rsplit('/').next().unwrap_or("");
        if !path.starts_with('/')
            || name.is_empty()
            || path.split('/').any(|c| c == ".." || c == ".")
        {
            return Err(at.error(
                &p.span(),
                format!(
                    "`setuid-programs`: '{path}' is not an absolute path to a file of the runtime"
                ),
            ));
        }
        if !setuid_names.insert(name) {
            return Err(at.error(
                &p.span(),
                format!("`setuid-programs`: two programs are named '{name}'"),
            ));
        }
    }
    Ok(())
}

fn valid_host_name(h: &str) -> bool {
    (1..=63).contains(&h.len())
        && !h.starts_with('-')
        && !h.ends_with('-')
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
