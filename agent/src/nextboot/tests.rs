//! The nextboot decisions against a fake root: a trial committed, a trial
//! failed and fallen back from, a loader that could not rewrite the file.

use std::fs;

use fruix_activation::GuestRoot;
use fruix_system::generations::GenState;
use fruix_system::nextboot::{self as files, LOADER_CONF, LOADER_CONF_LOCAL, NEXTBOOT_CONF};

use super::*;

const S1: &str = "aaa-system-one";
const S2: &str = "bbb-system-two";

/// A root with the image's loader.conf (generation 1), profile links
/// for generations 1 and 2 and their records.
fn fake_root(t: &std::path::Path) -> GuestRoot {
    let root = GuestRoot::new(t);
    fs::create_dir_all(t.join("boot")).unwrap();
    fs::write(
        t.join("boot/loader.conf"),
        format!(
            "autoboot_delay=\"0\"\n{}",
            files::system_vars(S1, None, Some(1))
        ),
    )
    .unwrap();
    let profiles = t.join("frx/var/profiles");
    fs::create_dir_all(&profiles).unwrap();
    for (n, s) in [(1, S1), (2, S2)] {
        std::os::unix::fs::symlink(
            format!("/frx/store/{s}"),
            profiles.join(format!("system-{n}")),
        )
        .unwrap();
    }
    crate::generations::set_state(&root, 1, GenState::Committed).unwrap();
    crate::generations::set_state(&root, 2, GenState::BootPending).unwrap();
    root
}

fn gens(root: &GuestRoot, current: u64) -> Vec<LoaderGen> {
    let r = crate::generations::records(root).unwrap();
    [(1, S1), (2, S2)]
        .into_iter()
        .map(|(n, s)| LoaderGen {
            number: n,
            state: r.get(n).unwrap().state,
            current: n == current,
            system: s.into(),
            pid1_agent: None,
        })
        .collect()
}

/// What the loader does with an enabled nextboot.conf as it reads it.
fn loader_reads(root: &GuestRoot) {
    let p = root.path(NEXTBOOT_CONF);
    let t = fs::read_to_string(&p).unwrap();
    fs::write(&p, t.replacen(files::NEXTBOOT_YES, files::NEXTBOOT_NO, 1)).unwrap();
}

fn text(root: &GuestRoot, p: &str) -> Option<String> {
    fs::read_to_string(root.path(p)).ok()
}

fn state(root: &GuestRoot, n: u64) -> GenState {
    crate::generations::records(root)
        .unwrap()
        .get(n)
        .unwrap()
        .state
}

#[test]
fn a_ready_trial_is_committed_and_boots_by_default() {
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    // switch --boot 2 while 1 runs.
    let c = sync(&root, &gens(&root, 1)).unwrap();
    assert_eq!(
        c,
        [
            "wrote /boot/loader.conf.local: generation 1 boots by default",
            "wrote /boot/nextboot.conf: generation 2 is tried once at the next boot",
        ]
    );
    assert_eq!(
        text(&root, NEXTBOOT_CONF).unwrap(),
        files::nextboot_text(&files::system_vars(S2, None, Some(2)))
    );
    assert_eq!(sync(&root, &gens(&root, 1)).unwrap(), Vec::<String>::new());
    assert_eq!(
        listing(&root).unwrap(),
        (
            vec![
                "/boot/nextboot.conf (generation 2)".to_owned(),
                "/boot/loader.conf.local (generation 1)".to_owned(),
                "/boot/loader.conf (generation 1)".to_owned(),
            ],
            Some("/boot/nextboot.conf (generation 2)".to_owned())
        )
    );
    assert_eq!(facts(&root, Some(1)).unwrap().entry, "blessed");
    // The trial boot.
    loader_reads(&root);
    let f = facts(&root, Some(2)).unwrap();
    assert_eq!(
        (f.entry.as_str(), f.fallback_from, f.tries_failed),
        ("trying", None, 0)
    );
    assert_eq!(
        listing(&root).unwrap().1.as_deref(),
        Some("/boot/loader.conf.local (generation 1)")
    );
    assert_eq!(
        listing(&root).unwrap().0[0],
        "/boot/nextboot.conf (generation 2) spent"
    );
    // A sync during the trial (a deletion, a live switch) keeps the
    // committed generation the default, and the spent file.
    assert_eq!(sync(&root, &gens(&root, 2)).unwrap(), Vec::<String>::new());
    let (c, v) = assess(&root, || Ok(gens(&root, 2)), &f, true, true).unwrap();
    assert_eq!(v, Verdict::Stay);
    assert_eq!(
        c,
        [
            "generation 2 ready in its trial boot: committed",
            "wrote /boot/loader.conf.local: generation 2 boots by default",
            "removed /boot/nextboot.conf",
        ]
    );
    assert_eq!(state(&root, 2), GenState::Committed);
    assert_eq!(
        text(&root, LOADER_CONF_LOCAL).unwrap(),
        files::local_text(&files::system_vars(S2, None, Some(2)))
    );
    assert!(text(&root, NEXTBOOT_CONF).is_none());
    assert!(text(&root, LOADER_CONF).is_some());
    assert_eq!(facts(&root, Some(2)).unwrap().entry, "blessed");
}

#[test]
fn a_failed_trial_reboots_and_the_fallback_says_so() {
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    sync(&root, &gens(&root, 1)).unwrap();
    loader_reads(&root);
    let f = facts(&root, Some(2)).unwrap();
    let (c, v) = assess(&root, || Ok(gens(&root, 2)), &f, false, true).unwrap();
    assert_eq!(v, Verdict::Reboot);
    assert_eq!(
        c,
        ["generation 2 failed its trial boot: recorded boot-failed"]
    );
    assert_eq!(state(&root, 2), GenState::BootFailed);
    // The loader boots loader.conf.local's generation 1 next.
    let f = facts(&root, Some(1)).unwrap();
    assert_eq!(
        (f.entry.as_str(), f.fallback_from, f.tries_failed),
        ("blessed", Some(2), 1)
    );
    let (c, v) = assess(&root, || Ok(gens(&root, 1)), &f, true, true).unwrap();
    assert_eq!(v, Verdict::Stay);
    assert_eq!(
        c,
        [
            "generation 2 failed 1 tries at boot: recorded boot-failed",
            "removed /boot/nextboot.conf",
        ]
    );
    let f = facts(&root, Some(1)).unwrap();
    assert_eq!((f.entry.as_str(), f.fallback_from), ("blessed", None));
    // on-failed-boot = "stay": no reboot.
    crate::generations::set_state(&root, 2, GenState::BootPending).unwrap();
    sync(&root, &gens(&root, 1)).unwrap();
    loader_reads(&root);
    let f = facts(&root, Some(2)).unwrap();
    let (_, v) = assess(&root, || Ok(gens(&root, 2)), &f, false, false).unwrap();
    assert_eq!(v, Verdict::Stay);
}

#[test]
fn a_trial_the_loader_could_not_spend_is_disabled_when_it_fails() {
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    sync(&root, &gens(&root, 1)).unwrap();
    // Booted generation 2 with the file still enabled.
    let f = facts(&root, Some(2)).unwrap();
    assert_eq!(f.entry, "trying");
    let (c, v) = assess(&root, || Ok(gens(&root, 2)), &f, false, true).unwrap();
    assert_eq!(v, Verdict::Reboot);
    assert_eq!(
        c[1],
        "/boot/nextboot.conf: disabled (the loader had not: a loader that cannot write /boot)"
    );
    let n = files::parse(&text(&root, NEXTBOOT_CONF).unwrap());
    assert!(!n.enabled());
    // The boot after it is generation 1's, a fallback from 2.
    let f = facts(&root, Some(1)).unwrap();
    assert_eq!((f.fallback_from, f.tries_failed), (Some(2), 1));
}

#[test]
fn a_generation_staged_again_after_a_hung_trial_is_tried_again() {
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    sync(&root, &gens(&root, 1)).unwrap();
    loader_reads(&root);
    // The trial hung and was reset: no outcome, its record still pending.
    let f = facts(&root, Some(1)).unwrap();
    assert_eq!((f.fallback_from, f.tries_failed), (Some(2), 1));
    assert!(!restage(&root, 1).unwrap(), "no file of generation 1");
    assert!(restage(&root, 2).unwrap());
    assert_eq!(
        sync(&root, &gens(&root, 1)).unwrap(),
        ["wrote /boot/nextboot.conf: generation 2 is tried once at the next boot"]
    );
    assert!(files::parse(&text(&root, NEXTBOOT_CONF).unwrap()).enabled());
    assert!(!restage(&root, 2).unwrap(), "an enabled file stays");
}
