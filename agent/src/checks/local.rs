//! Checks of the guest's own files: compatibility shims, the runtime slice,
//! the activation ledger.

use std::fs;

use fruix_activation::{COMPAT_SHIMS, GuestRoot, LEDGER_PATH, Ledger};

use super::Check;
use crate::system::SystemView;

/// No legacy compatibility-prefix shim exists.
pub fn compat_shims(root: &GuestRoot) -> Check {
    let present: Vec<String> = COMPAT_SHIMS
        .iter()
        .filter(|s| fs::symlink_metadata(root.path(s)).is_ok())
        .map(|s| format!("compatibility shim {s} is present"))
        .collect();
    if present.is_empty() {
        Check::ok("compat-shims", "absent")
    } else {
        Check::failed("compat-shims", "present", present)
    }
}

/// The runtime item is a runtime slice (no `boot/`, no `usr/include`) and
/// holds what the system needs to come up: sshd when declared, and the
/// interpreter of Shepherd's script.
pub fn runtime_slice(view: &SystemView) -> Check {
    let rt = view.item_dir(&view.config.runtime);
    let mut reasons = Vec::new();
    if !rt.is_dir() {
        return Check::failed(
            "runtime-slice",
            "failed",
            vec![format!("runtime item {} is missing", view.config.runtime)],
        );
    }
    for d in ["boot", "usr/include"] {
        if rt.join(d).exists() {
            reasons.push(format!("runtime item has {d}/"));
        }
    }
    let mut needed: Vec<String> = Vec::new();
    if view.config.sshd.is_some() {
        needed.push("/usr/sbin/sshd".into());
    }
    if !view.config.shepherd.is_empty() {
        let script = view.item_dir(&view.config.shepherd).join("bin/shepherd");
        if let Some(interp) = fs::read_to_string(&script).ok().and_then(|t| {
            t.lines()
                .next()
                .and_then(|l| l.strip_prefix("#!"))
                .and_then(|l| l.split_whitespace().next())
                .map(str::to_owned)
        }) {
            needed.push(interp);
        }
    }
    for n in needed {
        let rel = n.trim_start_matches('/');
        // A merged-/usr runtime holds /bin/x as usr/bin/x.
        let alt = rel
            .strip_prefix("bin/")
            .or(rel.strip_prefix("sbin/"))
            .map(|r| {
                format!(
                    "usr/{}/{r}",
                    if rel.starts_with("bin/") {
                        "bin"
                    } else {
                        "sbin"
                    }
                )
            });
        if !rt.join(rel).exists() && !alt.is_some_and(|a| rt.join(a).exists()) {
            reasons.push(format!("runtime item lacks {n}"));
        }
    }
    if reasons.is_empty() {
        Check::ok("runtime-slice", "ok")
    } else {
        Check::failed("runtime-slice", "failed", reasons)
    }
}

/// The last activation succeeded, according to its ledger (read with
/// the ledger's own reader).
pub fn activation(root: &GuestRoot) -> Check {
    let p = root.path(LEDGER_PATH);
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::failed(
                "activation",
                "missing",
                vec![format!("no activation ledger at {LEDGER_PATH}")],
            );
        }
        Err(e) => {
            return Check::failed(
                "activation",
                "failed",
                vec![format!("{LEDGER_PATH}: cannot read: {e}")],
            );
        }
    };
    let ledger = match Ledger::parse(&bytes, LEDGER_PATH) {
        Ok(l) => l,
        Err(e) => return Check::failed("activation", "failed", vec![e.to_string()]),
    };
    let failed: Vec<String> = ledger
        .failed()
        .map(|s| {
            format!(
                "activation step {} failed: {}",
                s.step,
                s.error.as_deref().unwrap_or("")
            )
        })
        .collect();
    if failed.is_empty() {
        Check::ok("activation", "ok")
    } else {
        Check::failed("activation", "failed", failed)
    }
}
