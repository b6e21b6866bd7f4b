//! `fruix-agent init`: the shepherd-pid1 boot path. As PID 1, it mounts
//! the pseudo file systems that are missing, removes compatibility shims,
//! activates the system, starts the declared probes early (`early.rs`)
//! before making the host keys, and execs the system's Shepherd (from the
//! store, with the Guile environment that finds its modules and
//! extensions there), so that Shepherd becomes PID 1. A failed activation
//! is recorded in the ledger and Shepherd still starts; if Shepherd cannot
//! be exec'd, a shell is, and if that fails too, PID 1 waits: never a
//! kernel panic. A panic in the boot path's work is caught: a
//! `fruix-reason:` line says so on the console and the shell is exec'd.

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

/// A program init execs, with its arguments and environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    /// The program.
    pub prog: String,
    /// Its arguments, its name first.
    pub argv: Vec<String>,
    /// Its environment.
    pub env: Vec<(String, String)>,
}

/// The programs to exec, in order: the system's Shepherd (if known), then
/// the shell.
fn plan(shepherd_item: &str, mut env: Vec<(String, String)>) -> Vec<Exec> {
    env.push(("PATH".into(), "/usr/bin:/usr/sbin:/bin:/sbin".into()));
    env.push(("LANG".into(), "C.UTF-8".into()));
    let mut execs = Vec::new();
    if !shepherd_item.is_empty() {
        let prog = format!("/frx/store/{shepherd_item}/bin/shepherd");
        execs.push(Exec {
            argv: vec![
                prog.clone(),
                "--config=/etc/shepherd.scm".into(),
                "--logfile=/var/log/shepherd.log".into(),
            ],
            prog,
            env: env.clone(),
        });
    }
    execs.push(Exec {
        prog: "/bin/sh".into(),
        argv: vec!["/bin/sh".into()],
        env,
    });
    execs
}

/// One line on the console (and on stderr).
fn console_line(root: &GuestRoot, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .open(root.path("/dev/console"))
    {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
    eprintln!("{line}");
}

/// Runs `work`, the boot path's work, which says what to exec. If it
/// panics, the panic is caught (PID 1 unwinding out of `main` would be a
/// kernel panic): a `fruix-reason:` line names it on the console, and the
/// shell is what is exec'd.
pub fn guarded(root: &GuestRoot, work: impl FnOnce() -> Vec<Exec>) -> Vec<Exec> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(execs) => execs,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            console_line(
                root,
                &format!(
                    "{}fruix-agent init panicked: {}",
                    fruix_system::report::REASON_PREFIX,
                    what.replace('\n', " ")
                ),
            );
            console_line(
                root,
                "fruix-agent init: starting /bin/sh instead of Shepherd",
            );
            plan("", Vec::new())
        }
    }
}

/// Runs the boot path. Returns only if no program could be exec'd.
pub fn run(root: &GuestRoot, system: Option<String>) -> String {
    let console = |msg: &str| console_line(root, &format!("fruix-agent init: {msg}"));
    let execs = guarded(root, || prepare(root, system, &console));
    for e in &execs {
        let argv: Vec<CString> = e.argv.iter().map(|a| cstring(a)).collect();
        let envp: Vec<CString> = e
            .env
            .iter()
            .map(|(k, v)| cstring(&format!("{k}={v}")))
            .collect();
        let err = nix::unistd::execve(&cstring(&e.prog), &argv, &envp).err();
        console(&format!(
            "cannot exec {}: {}",
            e.prog,
            err.map_or_else(String::new, |e| e.to_string())
        ));
    }
    let msg = "no program could be exec'd; PID 1 waits".to_owned();
    console(&msg);
    msg
}

/// The boot path's work: mounts, shims, activation, early probes, host
/// keys, the ledger. Returns what to exec.
/// The boot line's system, read as `--system` is: one item directly
/// under /frx/store, or nothing is activated (and the shell follows).
fn checked_system(system: Option<String>, console: &dyn Fn(&str)) -> Option<String> {
    system.filter(|s| match crate::system::parse_system_path(s) {
        Ok(_) => true,
        Err(e) => {
            console(&format!("fruix.system: {}", crate::error::chain(&e)));
            false
        }
    })
}

fn prepare(root: &GuestRoot, system: Option<String>, console: &dyn Fn(&str)) -> Vec<Exec> {
    let t = Instant::now();
    let (mounted, mount_errors) = early_mounts(root);
    let mount_ms = t.elapsed().as_millis() as u64;
    for e in &mount_errors {
        console(e);
    }
    let system = checked_system(
        system.or_else(|| platform::boot_arg(platform::SYSTEM_KEY)),
        console,
    );
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
                fruix_activation::ActivateOptions {
                    host_keys: false,
                    ..Default::default()
                },
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
    plan(&shepherd_item, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_the_boot_path_is_a_reason_line_and_the_shell() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("dev")).unwrap();
        std::fs::write(t.path().join("dev/console"), "").unwrap();
        let root = GuestRoot::new(t.path());
        let execs = guarded(&root, || panic!("activation went {}", "wrong"));
        assert_eq!(
            execs,
            [Exec {
                prog: "/bin/sh".into(),
                argv: vec!["/bin/sh".into()],
                env: vec![
                    ("PATH".into(), "/usr/bin:/usr/sbin:/bin:/sbin".into()),
                    ("LANG".into(), "C.UTF-8".into()),
                ],
            }]
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("dev/console")).unwrap(),
            "fruix-reason: fruix-agent init panicked: activation went wrong\n\
             fruix-agent init: starting /bin/sh instead of Shepherd\n"
        );
        // Without a panic, what the work says.
        let execs = guarded(&root, || plan("abc-shepherd-1.0", Vec::new()));
        assert_eq!(
            execs.iter().map(|e| e.prog.as_str()).collect::<Vec<_>>(),
            ["/frx/store/abc-shepherd-1.0/bin/shepherd", "/bin/sh"]
        );
    }

    #[test]
    fn a_boot_line_system_outside_the_store_is_not_activated() {
        let said = std::cell::RefCell::new(Vec::new());
        let console = |m: &str| said.borrow_mut().push(m.to_owned());
        let good = format!("/frx/store/{}-system-x", "0".repeat(64));
        assert_eq!(
            checked_system(Some(good.clone()), &console),
            Some(good.clone())
        );
        assert_eq!(
            checked_system(Some(format!("{good}/../../../tmp/evil")), &console),
            None
        );
        assert_eq!(checked_system(Some("/tmp/evil".into()), &console), None);
        let said = said.borrow();
        assert_eq!(said.len(), 2);
        let evil = format!("{good}/../../../tmp/evil");
        let name = evil.trim_start_matches("/frx/store/");
        assert_eq!(
            said[0],
            format!(
                "fruix.system: {evil}: invalid item name '{name}': \
                 it has a byte outside A-Z a-z 0-9 + . _ -"
            )
        );
    }
}
