//! Activation against a temporary guest root: what the first run makes,
//! that a second run changes nothing, generations, stale /etc entries,
//! compatibility shims, dry runs, kept passwords and failures.
#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use fruix_activation::accounts::AccountDb;
use fruix_activation::platform::Platform;
use fruix_activation::{ActivationError, GuestRoot, StepStatus, activate};

/// The OS part only: accounts written as on Linux (without changing
/// owners), host keys as stub files.
#[derive(Default)]
struct FakeOs {
    keygen_calls: Cell<u32>,
    fail_keys: bool,
    /// Stands for FreeBSD, whose images' root grows at first boot: the
    /// outcome of each growth, in turn.
    grow: Option<Cell<Vec<GrowOutcome>>>,
}

/// What one growth of the root gives: its changes, or a tool's message.
type GrowOutcome = Result<Vec<String>, String>;

impl Platform for FakeOs {
    fn write_accounts(
        &self,
        root: &GuestRoot,
        db: &AccountDb,
    ) -> Result<Vec<String>, ActivationError> {
        let mut c = Vec::new();
        for (p, t, m) in [
            ("/etc/passwd", db.passwd(), 0o644),
            ("/etc/group", db.group(), 0o644),
            ("/etc/shadow", db.shadow(), 0o640),
        ] {
            if root.write_if_changed(p, t.as_bytes(), m, None)? {
                c.push(p.to_owned());
            }
        }
        Ok(c)
    }

    fn generate_host_key(&self, root: &GuestRoot, key_type: &str) -> Result<(), ActivationError> {
        self.keygen_calls.set(self.keygen_calls.get() + 1);
        if self.fail_keys {
            return Err(ActivationError::Tool {
                tool: "ssh-keygen".into(),
                message: "exit status: 1".into(),
            });
        }
        root.write_if_changed(
            &format!("/etc/ssh/ssh_host_{key_type}_key"),
            b"KEY",
            0o600,
            None,
        )?;
        Ok(())
    }

    fn grows_root(&self) -> bool {
        self.grow.is_some()
    }

    fn grow_root(&self, _: &GuestRoot) -> Result<Vec<String>, ActivationError> {
        let outcomes = self.grow.as_ref().unwrap();
        let mut v = outcomes.take();
        let next = v.remove(0);
        outcomes.set(v);
        next.map_err(|message| ActivationError::Tool {
            tool: "growfs".into(),
            message,
        })
    }
}

const RUNTIME: &str =
    "1111111111111111111111111111111111111111111111111111111111111111-native-runtime-test";

fn write(p: &Path, text: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// A guest root with a runtime item and a system item named `system-NAME`
/// whose generated etc holds `files`.
fn guest(t: &Path) {
    let rt = t.join("frx/store").join(RUNTIME);
    write(&rt.join("usr/bin/sh"), "sh");
    symlink("usr/bin", rt.join("bin")).unwrap();
    write(
        &rt.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n",
    );
    write(
        &rt.join("etc/group"),
        "root:x:0:\nshadow:x:42:\nusers:x:100:\n",
    );
    write(&rt.join("etc/ssh/moduli"), "moduli");
    write(&rt.join("etc/hostname"), "debian\n");
    fs::create_dir_all(rt.join("etc/alternatives")).unwrap();
    symlink("/usr/bin/guile-3.0", rt.join("etc/alternatives/guile")).unwrap();
    write(&rt.join("etc/ld.so.conf.d/x.conf"), "/usr/local/lib\n");
}

fn system(t: &Path, name: &str, files: &[(&str, &str)]) -> String {
    let item = format!("{}-system-{name}", "2".repeat(64));
    let s = t.join("frx/store").join(&item);
    write(
        &s.join("etc/fruix/system.toml"),
        &format!(
            "host-name = \"{name}\"\nboot-mode = \"shepherd-pid1\"\nstore-verify = \"metadata\"\ngate = [\"sshd\"]\nruntime = \"{RUNTIME}\"\nagent = \"x-fruix-agent-0.1.0\"\n\n[sshd]\nport = 22\n"
        ),
    );
    write(
        &s.join("etc/fruix/accounts.toml"),
        "[[groups]]\nname = \"fruix\"\ngid = 1000\n\n[[users]]\nname = \"fruix\"\nuid = 1000\ngroup = \"fruix\"\nhome = \"/home/fruix\"\nshell = \"/bin/sh\"\ncomment = \"Demo\"\n",
    );
    write(&s.join("etc/hostname"), &format!("{name}\n"));
    for (rel, text) in files {
        write(&s.join(rel), text);
    }
    format!("/frx/store/{item}")
}

fn link(t: &Path, guest: &str) -> String {
    fs::read_link(t.join(guest.trim_start_matches('/')))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn statuses(l: &fruix_activation::Ledger) -> Vec<(String, StepStatus)> {
    l.steps.iter().map(|s| (s.step.clone(), s.status)).collect()
}

#[test]
fn a_first_activation_makes_the_guest() {
    let t = tempfile::tempdir().unwrap();
    let root = GuestRoot::new(t.path());
    guest(t.path());
    let sys = system(t.path(), "box", &[("etc/ssh/sshd_config", "Port 22\n")]);
    let os = FakeOs::default();
    let l = activate(&root, &sys, &os);
    assert!(l.ok(), "{l:#?}");
    assert_eq!(l.generation, Some(1));
    let rt = format!("/frx/store/{RUNTIME}");
    // /etc: generated files win, runtime files are linked, links copied.
    assert_eq!(
        link(t.path(), "/etc/hostname"),
        format!("{sys}/etc/hostname")
    );
    assert_eq!(
        link(t.path(), "/etc/ssh/moduli"),
        format!("{rt}/etc/ssh/moduli")
    );
    assert_eq!(
        link(t.path(), "/etc/ssh/sshd_config"),
        format!("{sys}/etc/ssh/sshd_config")
    );
    // A directory of one tree only is one link to it (folded); /etc/ssh,
    // where the host keys are written, stays a real directory.
    assert_eq!(
        link(t.path(), "/etc/alternatives"),
        format!("{rt}/etc/alternatives")
    );
    assert_eq!(
        link(t.path(), "/etc/ld.so.conf.d"),
        format!("{rt}/etc/ld.so.conf.d")
    );
    assert_eq!(link(t.path(), "/etc/fruix"), format!("{sys}/etc/fruix"));
    assert!(t.path().join("etc/ssh").is_dir() && !t.path().join("etc/ssh").is_symlink());
    let managed = fs::read_to_string(t.path().join("etc/.fruix-managed")).unwrap();
    assert_eq!(
        managed,
        "alternatives\nfruix\nhostname\nld.so.conf.d\nssh\nssh/moduli\nssh/sshd_config\n"
    );
    // Accounts are real files: base accounts plus the declared ones.
    let passwd = fs::read_to_string(t.path().join("etc/passwd")).unwrap();
    assert_eq!(
        passwd,
        "root:x:0:0:root:/root:/bin/bash\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nfruix:x:1000:1000:Demo:/home/fruix:/bin/sh\n"
    );
    assert!(!t.path().join("etc/passwd").is_symlink());
    assert!(t.path().join("home/fruix").is_dir());
    // Top-level links into the runtime.
    assert_eq!(link(t.path(), "/usr"), format!("{rt}/usr"));
    assert_eq!(link(t.path(), "/bin"), "usr/bin");
    // Generations and current-system links.
    assert_eq!(link(t.path(), "/frx/var/profiles/system-1"), sys);
    assert_eq!(link(t.path(), "/frx/var/profiles/system"), "system-1");
    assert_eq!(link(t.path(), "/frx/var/current-system"), sys);
    assert_eq!(link(t.path(), "/run/current-system"), sys);
    assert_eq!(os.keygen_calls.get(), 2, "one call per key type");
    // The ledger.
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(t.path().join("run/fruix/activation.json")).unwrap())
            .unwrap();
    assert_eq!(json["generation"], 1);
    let steps: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "directories",
            "top-level",
            "etc",
            "accounts",
            "setuid-programs",
            "host-keys",
            "compat-shims",
            "generation"
        ]
    );
    assert!(
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["ms"].is_u64())
    );
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root for chown of account files (the root tier: --features root-tests)"
)]
fn a_second_activation_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = GuestRoot::new(t.path());
    guest(t.path());
    let sys = system(t.path(), "box", &[]);
    let os = FakeOs::default();
    assert!(activate(&root, &sys, &os).changed());
    let again = activate(&root, &sys, &os);
    assert!(again.ok());
    assert!(
        statuses(&again)
            .iter()
            .all(|(_, s)| *s == StepStatus::Unchanged),
        "{:?}",
        statuses(&again)
    );
    assert_eq!(again.generation, Some(1));
    assert_eq!(os.keygen_calls.get(), 2, "host keys are made once");
}

#[test]
fn a_new_system_is_a_new_generation_and_stale_etc_entries_go() {
    let t = tempfile::tempdir().unwrap();
    let root = GuestRoot::new(t.path());
    guest(t.path());
    let os = FakeOs::default();
    let first = system(t.path(), "one", &[("etc/motd.d/old", "old\n")]);
    assert_eq!(activate(&root, &first, &os).generation, Some(1));
    assert_eq!(link(t.path(), "/etc/motd.d"), format!("{first}/etc/motd.d"));
    let second = system(t.path(), "two", &[]);
    let l = activate(&root, &second, &os);
    assert_eq!(l.generation, Some(2));
    assert!(
        !t.path().join("etc/motd.d/old").exists(),
        "the old generation's file is gone"
    );
    assert!(
        !t.path().join("etc/motd.d").exists(),
        "and its now empty directory"
    );
    assert_eq!(link(t.path(), "/frx/var/profiles/system-1"), first);
    assert_eq!(link(t.path(), "/frx/var/profiles/system"), "system-2");
    assert_eq!(link(t.path(), "/run/current-system"), second);
    // Going back to the first system makes it generation 1 again: a
    // system keeps its number (a reboot into the image's system after a
    // live switch makes no new generation), and a third system is 3.
    assert_eq!(activate(&root, &first, &os).generation, Some(1));
    assert_eq!(link(t.path(), "/frx/var/profiles/system"), "system-1");
    let third = system(t.path(), "three", &[]);
    assert_eq!(activate(&root, &third, &os).generation, Some(3));
}

#[test]
fn compatibility_shims_are_removed_and_reported() {
    let t = tempfile::tempdir().unwrap();
    let root = GuestRoot::new(t.path());
    guest(t.path());
    let sys = system(t.path(), "box", &[]);
    write(
        &t.path()
            .join("tmp/shepherd-freebsd-validate-install/bin/shepherd"),
        "old",
    );
    fs::create_dir_all(t.path().join("tmp")).unwrap();
    symlink(
        "/frx/store/x",
        t.path().join("tmp/guile-freebsd-validate-install"),
    )
    .unwrap();
    let l = activate(&root, &sys, &FakeOs::default());
    let shims = l.steps.iter().find(|s| s.step == "compat-shims").unwrap();
    assert_eq!(shims.status, StepStatus::Changed);
    assert_eq!(
        shims.changes,
        [
            "removed compatibility shim /tmp/guile-freebsd-validate-install",
            "removed compatibility shim /tmp/shepherd-freebsd-validate-install"
        ]
    );
    assert!(
        !t.path()
            .join("tmp/shepherd-freebsd-validate-install")
            .exists()
    );
}

#[test]
fn a_shim_planted_as_a_link_to_a_directory_is_removed_as_a_link() {
    let t = tempfile::tempdir().unwrap();
    let root = GuestRoot::new(t.path());
    guest(t.path());
    let sys = system(t.path(), "box", &[]);
    // Anyone may plant this in /tmp; its target must survive.
    let target = t.path().join("precious");
    write(&target.join("bin/shepherd"), "keep");
    write(&target.join("sub/deep/f"), "keep too");
    fs::create_dir_all(t.path().join("tmp")).unwrap();
    let shim = t.path().join("tmp/shepherd-freebsd-validate-install");
    symlink(&target, &shim).unwrap();
    let l = activate(&root, &sys, &FakeOs::default());
    let shims = l.steps.iter().find(|s| s.step == "compat-shims").unwrap();
    assert_eq!(
        shims.changes,
        ["removed compatibility shim /tmp/shepherd-freebsd-validate-install"]
    );
    assert!(fs::symlink_metadata(&shim).is_err(), "the link is gone");
    assert_eq!(
        fs::read_to_string(target.join("bin/shepherd")).unwrap(),
        "keep"
    );
    assert_eq!(
        fs::read_to_string(target.join("sub/deep/f")).unwrap(),
        "keep too"
    );
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    fn walk(d: &Path, base: &Path, v: &mut Vec<String>) {
        for e in fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            v.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(&p, base, v);
            }
        }
    }
    walk(dir, dir, &mut v);
    v.sort();
    v
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root for chown of account files (the root tier: --features root-tests)"
)]
fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    guest(t.path());
    let sys = system(t.path(), "box", &[]);
    let before = listing(t.path());
    let os = FakeOs::default();
    let plan = activate(&GuestRoot::new(t.path()).dry_run(), &sys, &os);
    assert!(plan.dry_run && plan.ok());
    assert_eq!(listing(t.path()), before, "nothing was written");
    assert_eq!(os.keygen_calls.get(), 0);
    let etc = plan.steps.iter().find(|s| s.step == "etc").unwrap();
    assert!(
        etc.changes
            .contains(&format!("link /etc/hostname -> {sys}/etc/hostname")),
        "{:?}",
        etc.changes
    );
    let generation = plan.steps.iter().find(|s| s.step == "generation").unwrap();
    assert_eq!(
        generation.changes[0],
        format!("link /frx/var/profiles/system-1 -> {sys}")
    );
    // After the real run, the plan is empty.
    activate(&GuestRoot::new(t.path()), &sys, &os);
    let plan = activate(&GuestRoot::new(t.path()).dry_run(), &sys, &os);
    assert!(!plan.changed(), "{:?}", statuses(&plan));
}

#[test]
fn existing_passwords_are_kept() {
    let t = tempfile::tempdir().unwrap();
    guest(t.path());
    let sys = system(t.path(), "box", &[]);
    write(
        &t.path().join("etc/shadow"),
        "root:$6$salt$hash:19000:0:99999:7:::\n",
    );
    activate(&GuestRoot::new(t.path()), &sys, &FakeOs::default());
    let shadow = fs::read_to_string(t.path().join("etc/shadow")).unwrap();
    assert!(shadow.starts_with("root:$6$salt$hash:"), "{shadow}");
    assert!(shadow.contains("fruix:*:"), "{shadow}");
}

#[test]
fn a_failed_step_is_recorded_and_a_rerun_completes() {
    let t = tempfile::tempdir().unwrap();
    guest(t.path());
    let sys = system(t.path(), "box", &[]);
    let broken = FakeOs {
        fail_keys: true,
        ..FakeOs::default()
    };
    let l = activate(&GuestRoot::new(t.path()), &sys, &broken);
    assert!(!l.ok());
    let keys = l.steps.iter().find(|s| s.step == "host-keys").unwrap();
    assert_eq!(
        (keys.status, keys.error.as_deref()),
        (
            StepStatus::Failed,
            Some("ssh-keygen failed: exit status: 1")
        )
    );
    assert_eq!(l.generation, Some(1), "the other steps still ran");
    // Half-done state, as a kill between steps leaves it: a link gone.
    fs::remove_file(t.path().join("run/current-system")).unwrap();
    let again = activate(&GuestRoot::new(t.path()), &sys, &FakeOs::default());
    assert!(again.ok());
    assert_eq!(link(t.path(), "/run/current-system"), sys);
    assert!(t.path().join("etc/ssh/ssh_host_ed25519_key").exists());
}

#[test]
fn a_platform_whose_root_grows_gets_a_grow_root_step_after_directories() {
    let t = tempfile::tempdir().unwrap();
    guest(t.path());
    let sys = system(t.path(), "box", &[]);
    let os = FakeOs {
        grow: Some(Cell::new(vec![
            Err("operation not permitted".into()),
            Ok(vec!["grew / to its partition (growfs)".into()]),
            Ok(Vec::new()),
        ])),
        ..FakeOs::default()
    };
    let root = GuestRoot::new(t.path());
    let names = |l: &fruix_activation::Ledger| -> Vec<String> {
        l.steps.iter().map(|s| s.step.clone()).collect()
    };
    let first = activate(&root, &sys, &os);
    assert_eq!(
        names(&first)[..3],
        ["directories", "grow-root", "top-level"]
    );
    let grow = &first.steps[1];
    assert_eq!(grow.status, StepStatus::Failed);
    assert_eq!(
        grow.error.as_deref(),
        Some("growfs failed: operation not permitted")
    );
    assert_eq!(first.generation, Some(1), "a root left small stops nothing");
    let second = activate(&root, &sys, &os);
    assert_eq!(second.steps[1].status, StepStatus::Changed);
    assert_eq!(
        second.steps[1].changes,
        ["grew / to its partition (growfs)"]
    );
    let third = activate(&root, &sys, &os);
    assert_eq!(third.steps[1].status, StepStatus::Unchanged);
    // A platform whose images' root fills its partition has no such step.
    let plain = activate(&root, &sys, &FakeOs::default());
    assert!(!names(&plain).iter().any(|n| n == "grow-root"));
}

#[test]
fn a_system_item_without_its_configuration_fails_clearly() {
    let t = tempfile::tempdir().unwrap();
    guest(t.path());
    let l = activate(
        &GuestRoot::new(t.path()),
        "/frx/store/nope-system-x",
        &FakeOs::default(),
    );
    assert!(!l.ok());
    assert_eq!(l.steps.len(), 1);
    let e = l.steps[0].error.as_deref().unwrap();
    assert!(
        e.contains("frx/store/nope-system-x/etc/fruix/system.toml") && e.contains("No such file"),
        "{e}"
    );
    assert_eq!(e.matches("No such file").count(), 1, "the cause once: {e}");
}

#[test]
fn an_io_error_names_the_path_and_what_failed_and_keeps_its_cause_as_a_source() {
    use std::error::Error;
    let t = tempfile::tempdir().unwrap();
    let root = GuestRoot::new(t.path());
    let e = fruix_activation::top_level_links(&root, "/frx/store/nope").unwrap_err();
    assert_eq!(e.to_string(), "/frx/store/nope: cannot read directory");
    assert_eq!(
        e.source().map(ToString::to_string).as_deref(),
        Some("No such file or directory (os error 2)")
    );
    // The ledger has one string per step: the whole chain, the cause once.
    let sys = system(t.path(), "box", &[]);
    let l = activate(&root, &sys, &FakeOs::default());
    let top = l.steps.iter().find(|s| s.step == "top-level").unwrap();
    assert_eq!(
        (top.status, top.error.clone()),
        (
            StepStatus::Failed,
            Some(format!(
                "/frx/store/{RUNTIME}: cannot read directory: No such file or directory (os error 2)"
            ))
        )
    );
}

#[test]
fn the_ledger_is_written_as_pretty_json_byte_for_byte() {
    let t = tempfile::tempdir().unwrap();
    let root = GuestRoot::new(t.path());
    let mut l = fruix_activation::Ledger {
        system: "/frx/store/x-system-a".into(),
        generation: Some(3),
        dry_run: false,
        steps: Vec::new(),
    };
    l.push(
        "etc",
        StepStatus::Changed,
        vec!["link /etc/a -> /x".into()],
        4,
        None,
    );
    l.push(
        "host-keys",
        StepStatus::Failed,
        Vec::new(),
        0,
        Some("ssh-keygen failed: exit status: 1".into()),
    );
    fruix_activation::write_ledger(&l, &root).unwrap();
    let path = t
        .path()
        .join(fruix_activation::LEDGER_PATH.trim_start_matches('/'));
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        r#"{
  "system": "/frx/store/x-system-a",
  "generation": 3,
  "dry_run": false,
  "steps": [
    {
      "step": "etc",
      "status": "changed",
      "changes": [
        "link /etc/a -> /x"
      ],
      "ms": 4
    },
    {
      "step": "host-keys",
      "status": "failed",
      "changes": [],
      "ms": 0,
      "error": "ssh-keygen failed: exit status: 1"
    }
  ]
}"#
    );
}

/// A guest whose system declares `programs` as setuid programs of a
/// runtime imported for real (its name is its manifest's digest, and the
/// system item holds that manifest in `manifests/`). Returns the system,
/// the runtime item's name and the system.toml file.
fn setuid_guest(t: &Path, programs: &str) -> (String, String, std::path::PathBuf) {
    use fruix_store::{ImportOptions, StoreRoot, import_dir};
    guest(t);
    let src = t.join("src-runtime");
    write(&src.join("usr/bin/passwd"), "passwd program");
    write(&src.join("usr/bin/sh"), "sh");
    write(&src.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    write(&src.join("etc/group"), "root:x:0:\n");
    let store = StoreRoot::new(t.join("frx"));
    let rt = import_dir(&store, "runtime-test", &src, &ImportOptions::default()).unwrap();
    let sys = system(t, "box", &[]);
    let sys_dir = t.join(sys.trim_start_matches('/'));
    let copy = sys_dir.join(format!("manifests/{}.mtree", rt.name.as_str()));
    fs::create_dir_all(copy.parent().unwrap()).unwrap();
    fs::copy(store.manifest_path(&rt.name), copy).unwrap();
    let toml = sys_dir.join("etc/fruix/system.toml");
    let text = fs::read_to_string(&toml)
        .unwrap()
        .replace(RUNTIME, rt.name.as_str())
        .replace(
            "[sshd]",
            &format!("setuid-programs = [{programs}]\n\n[sshd]"),
        );
    fs::write(&toml, text).unwrap();
    (sys, rt.name.as_str().to_owned(), toml)
}

fn step<'l>(l: &'l fruix_activation::Ledger, name: &str) -> &'l fruix_activation::StepRecord {
    l.steps.iter().find(|s| s.step == name).unwrap()
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root for setuid root copies (the root tier: --features root-tests)"
)]
fn declared_setuid_programs_are_copied_setuid_and_withdrawn() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let root = GuestRoot::new(t.path());
    let (sys, _, toml) = setuid_guest(t.path(), "\"/usr/bin/passwd\", \"/usr/bin/sh\"");
    let os = FakeOs::default();
    let l = activate(&root, &sys, &os);
    assert!(l.ok(), "{l:#?}");
    let copy = t.path().join("run/setuid-programs/passwd");
    assert_eq!(fs::read_to_string(&copy).unwrap(), "passwd program");
    assert_eq!(
        fs::metadata(&copy).unwrap().permissions().mode() & 0o7777,
        0o4755
    );
    assert!(t.path().join("run/setuid-programs/sh").is_file());
    assert_eq!(step(&l, "setuid-programs").status, StepStatus::Changed);

    // Unchanged the second time; a program no longer declared goes.
    let again = activate(&root, &sys, &os);
    assert_eq!(
        step(&again, "setuid-programs").status,
        StepStatus::Unchanged,
        "{again:#?}"
    );
    let text = fs::read_to_string(&toml)
        .unwrap()
        .replace(", \"/usr/bin/sh\"", "");
    fs::write(&toml, text).unwrap();
    let l = activate(&root, &sys, &os);
    assert!(!t.path().join("run/setuid-programs/sh").exists());
    assert!(copy.is_file());
    let step = step(&l, "setuid-programs");
    assert!(
        step.changes
            .iter()
            .any(|c| c == "removed /run/setuid-programs/sh"),
        "{step:?}"
    );
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root to change a store item and for setuid root copies (the root tier: --features root-tests)"
)]
fn a_setuid_source_that_differs_from_its_manifest_is_refused_and_not_installed() {
    let t = tempfile::tempdir().unwrap();
    let root = GuestRoot::new(t.path());
    let (sys, rt, _) = setuid_guest(
        t.path(),
        "\"/usr/bin/passwd\", \"/usr/bin/sh\", \"/usr/bin/nope\"",
    );
    let bin = t.path().join("frx/store").join(&rt).join("usr/bin");
    // Tampered after the item was made (root writes through mode 0444).
    fs::write(bin.join("passwd"), "evil program").unwrap();
    let l = activate(&root, &sys, &FakeOs::default());
    let s = step(&l, "setuid-programs");
    assert_eq!(s.status, StepStatus::Failed);
    assert_eq!(
        s.error.as_deref(),
        Some(
            format!(
                "setuid program /usr/bin/passwd of {rt}: the source differs from the item's manifest"
            )
            .as_str()
        )
    );
    let dir = t.path().join("run/setuid-programs");
    assert!(!dir.join("passwd").exists(), "nothing installed for it");
    assert!(!dir.join("nope").exists());
    assert!(dir.join("sh").is_file(), "the others are installed");

    // A source swapped for a link is refused too, and its copy withdrawn;
    // a program the manifest lacks is named.
    fs::write(bin.join("passwd"), "passwd program").unwrap();
    fs::remove_file(bin.join("sh")).unwrap();
    symlink("passwd", bin.join("sh")).unwrap();
    let l = activate(&root, &sys, &FakeOs::default());
    assert_eq!(
        step(&l, "setuid-programs").error.as_deref(),
        Some(format!("setuid program /usr/bin/sh of {rt}: the source is a symbolic link").as_str())
    );
    assert!(dir.join("passwd").is_file());
    assert!(!dir.join("sh").exists(), "the earlier copy is withdrawn");
    fs::remove_file(bin.join("sh")).unwrap();
    fs::write(bin.join("sh"), "sh").unwrap();
    let l = activate(&root, &sys, &FakeOs::default());
    assert_eq!(
        step(&l, "setuid-programs").error.as_deref(),
        Some(
            format!(
                "setuid program /usr/bin/nope of {rt}: not a regular file in the item's manifest"
            )
            .as_str()
        )
    );
    assert!(!dir.join("nope").exists());

    // A manifest copy that does not hash to the item's name refuses every
    // program, and the copies of earlier runs are withdrawn.
    let copy = t
        .path()
        .join(sys.trim_start_matches('/'))
        .join(format!("manifests/{rt}.mtree"));
    let mut text = fs::read(&copy).unwrap();
    text.extend_from_slice(b"# planted\n");
    fs::write(&copy, text).unwrap();
    let l = activate(&root, &sys, &FakeOs::default());
    let s = step(&l, "setuid-programs");
    assert_eq!(s.status, StepStatus::Failed);
    assert_eq!(
        s.error,
        Some(format!(
            "{sys}/manifests/{rt}.mtree: does not hash to the name of {rt}"
        ))
    );
    assert!(
        !dir.join("passwd").exists(),
        "the earlier copy is withdrawn"
    );
    assert!(!dir.join("sh").exists());
}

#[test]
fn a_directory_holding_a_file_of_its_own_stays_real_and_one_of_our_links_is_folded() {
    let t = tempfile::tempdir().unwrap();
    let root = GuestRoot::new(t.path());
    guest(t.path());
    let sys = system(t.path(), "box", &[]);
    let rt = format!("/frx/store/{RUNTIME}");
    // An administrator's file where the runtime has a directory.
    write(&t.path().join("etc/ld.so.conf.d/local.conf"), "/opt/lib\n");
    // The per-file layout of an earlier activation: a real directory of
    // the links it listed as its own.
    fs::create_dir_all(t.path().join("etc/alternatives")).unwrap();
    symlink(
        "/usr/bin/guile-3.0",
        t.path().join("etc/alternatives/guile"),
    )
    .unwrap();
    write(
        &t.path().join("etc/.fruix-managed"),
        "alternatives\nalternatives/guile\n",
    );
    let l = activate(&root, &sys, &FakeOs::default());
    assert!(l.ok(), "{l:#?}");
    let conf = t.path().join("etc/ld.so.conf.d");
    assert!(conf.is_dir() && !conf.is_symlink());
    assert_eq!(
        fs::read_to_string(conf.join("local.conf")).unwrap(),
        "/opt/lib\n"
    );
    assert_eq!(
        link(t.path(), "/etc/ld.so.conf.d/x.conf"),
        format!("{rt}/etc/ld.so.conf.d/x.conf")
    );
    assert_eq!(
        link(t.path(), "/etc/alternatives"),
        format!("{rt}/etc/alternatives")
    );
    let etc = l.steps.iter().find(|s| s.step == "etc").unwrap();
    assert!(
        etc.changes
            .contains(&format!("link /etc/alternatives -> {rt}/etc/alternatives")),
        "{:?}",
        etc.changes
    );
}

#[test]
fn a_generated_file_over_a_runtime_directory_tree_wins_over_its_folds() {
    let t = tempfile::tempdir().unwrap();
    let root = GuestRoot::new(t.path());
    guest(t.path());
    let rt = t.path().join("frx/store").join(RUNTIME);
    write(&rt.join("etc/xdg/autostart/x.desktop"), "[Desktop Entry]\n");
    let sys = system(t.path(), "box", &[("etc/xdg", "a file\n")]);
    let l = activate(&root, &sys, &FakeOs::default());
    assert!(l.ok(), "{l:#?}");
    assert_eq!(link(t.path(), "/etc/xdg"), format!("{sys}/etc/xdg"));
    let managed = fs::read_to_string(t.path().join("etc/.fruix-managed")).unwrap();
    assert!(managed.lines().all(|l| !l.starts_with("xdg/")), "{managed}");
}
