//! Points where the agent stops on purpose, so that the power-cut tests
//! can kill the machine at a known step: when `/run/fruix/hold` (a regular
//! file owned by root, not a link; `/run` is gone at the next boot) names
//! a point, the agent says so on the kernel's log and sleeps there
//! forever. Points: `esp-rename` (an ESP file written under its temporary
//! name and on the disk, not yet renamed), `switch-PHASE` (a live switch
//! whose state file says PHASE, e.g. `switch-checking`).

use std::os::unix::fs::MetadataExt;

/// The file naming the point to hold at.
pub const HOLD_FILE: &str = "/run/fruix/hold";

/// Whether the agent is to hold at `name` (see the module doc).
pub fn wanted(name: &str) -> bool {
    let p = std::path::Path::new(HOLD_FILE);
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_file() && m.uid() == 0 => {
            std::fs::read_to_string(p).is_ok_and(|t| t.trim() == name)
        }
        _ => false,
    }
}

/// Holds here forever when asked to (see [`wanted`]); `before` runs
/// first (what must be on the disk when the machine is killed).
pub fn point(name: &str, before: impl FnOnce()) {
    if !wanted(name) {
        return;
    }
    before();
    let line = format!("fruix-agent: holding at {name} (asked by {HOLD_FILE})");
    eprintln!("{line}");
    crate::platform::kernel_log(&line);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
