//! `fruix-agent init`: the shepherd-pid1 boot path. As PID 1, it mounts
//! the pseudo file systems that are missing, removes compatibility shims,
//! activates the system, starts the declared probes early (`early.rs`)
//! before making the host keys, and execs the system's Shepherd (from the
//! store, with the Guile environment that finds its modules and
//! extensions there), so that Shepherd becomes PID 1. A failed activation
//! is recorded in the ledger and Shepherd still starts; if Shepherd cannot
//! be exec'd, a shell is, and if that fails too, PID 1 waits: never a
//! kernel panic.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use fruix_activation::{GuestRoot, StepStatus};

use crate::early;
use crate::platform::{self, EARLY_MOUNTS, mount_fs};
use crate::system::SystemView;

/// True when `p` is a mount point: it is on another device than its
/// parent (or it is the root).
fn is_mount_point(p: &Path) -> bool {
    let (Ok(m), Some(parent)) = (std::fs::metadata(p), p.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|pm| pm.dev() != m.dev())
}

/// Mounts what is missing; returns what it did, one line each, and errors.
pub fn early_mounts(root: &GuestRoot) -> (Vec<String>, Vec<String>) {
    let (mut done, mut errors) = (Vec::new(), Vec::new());
    for m in EARLY_MOUNTS {
        let p = root.path(m.target);
        if is_mount_point(&p) {
            continue;
        }
        if let Err(e) = root.ensure_dir(m.target, m.mode) {
            errors.push(crate::error::chain(&e));
            continue;
        }
        match mount_fs(m, &p) {
            Ok(()) => done.push(format!("mounted {} on {}", m.fstype, m.target)),
            Err(e) => errors.push(format!("mount {} on {}: {e}", m.fstype, m.target)),
        }
    }
    (done, errors)
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Runs the boot path. Returns only if no program could be exec'd.
pub fn run(root: &GuestRoot, system: Option<String>) -> String {
    let console = |msg: &str| {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .open(root.path("/dev/console"))
        {
            use std::io::Write;
            let _ = writeln!(f, "fruix-agent init: {msg}");
        }
        eprintln!("fruix-agent init: {msg}");
    };
    let t = Instant::now();
    let (mounted, mount_errors) = early_mounts(root);
    let mount_ms = t.elapsed().as_millis() as u64;
    for e in &mount_errors {
        console(e);
    }
    let system = system.or_else(|| platform::boot_arg(platform::SYSTEM_KEY));
    let mut shepherd_item = String::new();
    let mut env: Vec<(String, String)> = Vec::new();
    match &system {
        None => console("no fruix.system= on the boot line: nothing to activate"),
        Some(system) => {
            // Shims go first, so that no probe started early can lean on
            // one. The probes start once /etc is in place (Debian's guile
            // is a link through /etc/alternatives) and run while the host
            // keys are made and Shepherd starts (see early.rs).
            let shims = fruix_activation::remove_compat_shims(root);
            let platform_impl = fruix_activation::platform::native();
            let mut ledger = fruix_activation::activate_with(
                root,
                system,
                platform_impl.as_ref(),
                fruix_activation::ActivateOptions { host_keys: false },
            );
            // Read once: for the early probes now, for Shepherd below.
            let view = SystemView::load(root, system);
            if let Ok(v) = &view
                && !v.config.probes.is_empty()
            {
                let agent = std::env::current_exe()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| format!("/frx/store/{}/bin/fruix-agent", v.config.agent));
                let names: Vec<String> = v.config.probes.iter().map(|p| p.name.clone()).collect();
                for e in early::spawn(root, &agent, system, &names) {
                    console(&e);
                }
            }
            fruix_activation::add_host_keys(root, platform_impl.as_ref(), &mut ledger);
            if let Some(step) = ledger.steps.iter_mut().find(|s| s.step == "compat-shims") {
                match shims {
                    Ok(removed) if !removed.is_empty() => {
                        step.status = StepStatus::Changed;
                        step.changes = removed;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        step.status = StepStatus::Failed;
                        step.error = Some(crate::error::chain(&e));
                    }
                }
            }
            let status = if mount_errors.is_empty() {
                StepStatus::Done
            } else {
                StepStatus::Failed
            };
            ledger.steps.insert(
                0,
                fruix_activation::StepRecord {
                    step: "mounts".into(),
                    status,
                    changes: mounted,
                    ms: mount_ms,
                    error: mount_errors.first().cloned(),
                },
            );
            let _ = fruix_activation::write_ledger(&ledger, root);
            if !ledger.ok() {
                console(
                    "activation failed; starting Shepherd anyway (see /run/fruix/activation.json)",
                );
            }
            match view {
                Ok(v) => {
                    shepherd_item = v.config.shepherd.clone();
                    env = v.guile_env();
                }
                Err(e) => console(&format!(
                    "cannot read the system item: {}",
                    crate::error::chain(&e)
                )),
            }
        }
    }
    env.push(("PATH".into(), "/usr/bin:/usr/sbin:/bin:/sbin".into()));
    env.push(("LANG".into(), "C.UTF-8".into()));
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| cstring(&format!("{k}={v}")))
        .collect();
    if !shepherd_item.is_empty() {
        let prog = format!("/frx/store/{shepherd_item}/bin/shepherd");
        let argv = [
            prog.as_str(),
            "--config=/etc/shepherd.scm",
            "--logfile=/var/log/shepherd.log",
        ]
        .map(cstring);
        let err = nix::unistd::execve(&cstring(&prog), &argv, &envp).err();
        console(&format!(
            "cannot exec {prog}: {}",
            err.map_or_else(String::new, |e| e.to_string())
        ));
    }
    let sh = cstring("/bin/sh");
    let err = nix::unistd::execve(&sh, std::slice::from_ref(&sh), &envp).err();
    let msg = format!(
        "cannot exec /bin/sh: {}; PID 1 waits",
        err.map_or_else(String::new, |e| e.to_string())
    );
    console(&msg);
    msg
}
