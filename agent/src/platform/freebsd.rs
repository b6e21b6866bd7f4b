//! FreeBSD: the boot arguments are the loader's environment (kenv), which
//! carries `fruix.system` and `fruix.digest` from loader.conf.

use std::process::Command;

/// The boot arguments, as `key=value` words.
pub fn boot_args() -> Option<String> {
    let out = Command::new("/bin/kenv").output().ok()?;
    if !out.status.success() {
        return None;
    }
    // kenv prints key="value" lines.
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .map(|l| l.replace('"', ""))
            .collect::<Vec<_>>()
            .join(" "),
    )
}
