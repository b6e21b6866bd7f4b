//! Checks of free-form strings that reach generated files (`passwd`,
//! `authorized_keys`, `system.toml`, records of the build): the one helper
//! every section uses for them, so that no string escapes the rule.

use std::ops::Range;

use crate::declaration::error::{DeclError, Locator};

/// Refuses a control character (C0, DEL and C1) in `value`: a newline or
/// a carriage return would start a new line in a line-based file, and an
/// escape sequence would reach the console of whoever reads it.
pub(super) fn check_text(
    at: &Locator<'_>,
    span: &Range<usize>,
    field: &str,
    value: &str,
) -> Result<(), DeclError> {
    match control_problem(value) {
        None => Ok(()),
        Some(why) => Err(at.error(span, format!("`{field}`: {why}"))),
    }
}

/// What is wrong with `value` if it has a control character: the value
/// quoted with its escapes (so that the message stays one line) and the
/// character's code point.
fn control_problem(value: &str) -> Option<String> {
    value
        .chars()
        .find(|c| c.is_control())
        .map(|c| format!("{value:?} has a control character (U+{:04X})", c as u32))
}

/// The OpenSSH public key types `authorized_keys` may name.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Checks that `k` is one `authorized_keys` line: `TYPE BASE64 [COMMENT]`
/// with a known type, base64 data and no control character (so no second
/// line and no options before the type).
pub(super) fn check_key(
    at: &Locator<'_>,
    span: &Range<usize>,
    field: &str,
    k: &str,
) -> Result<(), DeclError> {
    match key_problem(k) {
        None => Ok(()),
        Some(why) => Err(at.error(span, format!("`{field}`: {why}"))),
    }
}

/// What is wrong with `k` as an `authorized_keys` line, if anything.
pub(super) fn key_problem(k: &str) -> Option<String> {
    if let Some(why) = control_problem(k) {
        return Some(why);
    }
    let mut parts = k.split_whitespace();
    let (ty, data) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let ok = KEY_TYPES.contains(&ty)
        && data.len() >= 16
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    (!ok).then(|| "not an OpenSSH public key ('TYPE BASE64 [COMMENT]')".to_owned())
}
