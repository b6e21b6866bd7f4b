//! The watchdog of a trial boot: a boot whose entry is still counted
//! (`trying`) must reach an outcome (`ready`, `degraded` or `failed`)
//! within its system's declared deadline, counted from the kernel's start,
//! or the machine is reset; systemd-boot then counts the try as spent (on
//! FreeBSD the loader has spent `nextboot.conf` already: the committed
//! generation boots).
//! The daemon arms it when it starts on such a boot and disarms it at the
//! first outcome. Blessed entries are never watched: a reset would start
//! the same entry again, and a hang would loop.

use std::path::PathBuf;

use fruix_activation::GuestRoot;
use fruix_system::Role;
use fruix_system::config::BootPolicy;

use crate::bootfacts::BootFacts;
use crate::platform::Watchdog;
use crate::system::SystemView;

/// Arms the watchdog when this boot is a trial with a deadline and has no
/// outcome yet; `since_boot_s` is the time since the kernel started. Says
/// what it did on stderr and on `console`; None when nothing was armed.
pub fn arm_for_trial(
    view: &SystemView,
    facts: &BootFacts,
    assessed: bool,
    since_boot_s: u64,
    console: Option<&str>,
) -> Option<Watchdog> {
    let secs = remaining(&view.config.boot, facts, assessed, since_boot_s)?;
    let modules: Option<PathBuf> = view
        .closure
        .iter()
        .find(|c| c.roles.contains(&Role::Kernel))
        .map(|c| view.root.path(&format!("/frx/store/{}/usr", c.item)));
    let line = match crate::platform::watchdog_arm(secs, modules.as_deref()) {
        Ok(w) => {
            let line = format!(
                "fruix-agent: watchdog: {} armed: this trial boot is reset in {} s unless it reaches an outcome",
                w.name, w.timeout
            );
            say(&view.root, &line, console);
            return Some(w);
        }
        Err(e) => format!("fruix-agent: watchdog: not armed: {e}"),
    };
    say(&view.root, &line, console);
    None
}

/// Disarms `w`, saying so when it fails (the trial would then be reset
/// although it has an outcome).
pub fn disarm(root: &GuestRoot, w: Watchdog, console: Option<&str>) {
    let name = w.name.clone();
    match crate::platform::watchdog_disarm(w) {
        Ok(()) => eprintln!("fruix-agent: watchdog: {name} disarmed"),
        Err(e) => say(
            root,
            &format!("fruix-agent: watchdog: {name} could not be disarmed: {e}"),
            console,
        ),
    }
}

/// Seconds the watchdog gets, or None when it is not to be armed: not a
/// trial, assessed already, or no deadline. A deadline already past gets
/// one second: the policy is to reset such a boot.
fn remaining(
    policy: &BootPolicy,
    facts: &BootFacts,
    assessed: bool,
    since_boot_s: u64,
) -> Option<u64> {
    if facts.entry != "trying" || assessed || policy.deadline == 0 {
        return None;
    }
    Some(policy.deadline.saturating_sub(since_boot_s).max(1))
}

fn say(root: &GuestRoot, line: &str, console: Option<&str>) {
    eprintln!("{line}");
    if let Some(c) = console {
        crate::markers::console_line(root, c, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trial_without_an_outcome_is_watched() {
        let policy = BootPolicy {
            deadline: 120,
            ..BootPolicy::default()
        };
        let trying = BootFacts {
            entry: "trying".into(),
            ..BootFacts::default()
        };
        assert_eq!(remaining(&policy, &trying, false, 20), Some(100));
        assert_eq!(remaining(&policy, &trying, false, 500), Some(1));
        assert_eq!(remaining(&policy, &trying, true, 20), None);
        for entry in ["blessed", "bad", "none", "unknown"] {
            let f = BootFacts {
                entry: entry.into(),
                ..BootFacts::default()
            };
            assert_eq!(remaining(&policy, &f, false, 20), None, "{entry}");
        }
        let none = BootPolicy {
            deadline: 0,
            ..BootPolicy::default()
        };
        assert_eq!(remaining(&none, &trying, false, 20), None);
    }
}
