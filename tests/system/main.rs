//! Boot-to-ready system tests: the example systems built from Debian
//! trixie packages, written to disk images, booted under QEMU (KVM when it
//! can run a guest here, TCG otherwise) with UEFI and with direct kernel
//! boot, in both boot modes, and asked over SSH with `fruix query`; then
//! one test per fault. Each prints `PASS <name>` or `FAIL <name>: reason`
//! and the metadata it saw.
//!
//! They take minutes and need root, QEMU and Debian's archive, so they are
//! ignored by a plain `cargo test`; `scripts/test` runs them with
//! `--include-ignored`, two at a time (each guest runs TCG on one host
//! thread, so two keep a 2-core machine busy). Every guest has its own
//! port, image copy and console log; `fruix` serialises the builds into
//! the shared output directory itself (its build lock), and files two
//! tests share are written through a rename (`support::write_atomic`). At the end of the run the boot attempts of every guest are
//! totalled, and the run fails when more boots were retried after a guest
//! kernel panic than [`support::RETRIED_BOOTS_BUDGET`] allows.

// Test helpers panic on a broken test machine: that is their report.
#![allow(clippy::unwrap_used)]

#[path = "bootcount.rs"]
mod bootcount;
#[path = "deploy.rs"]
mod deploy;
#[path = "faults.rs"]
mod faults;
#[path = "../../host-builder/tests/common/freebsd.rs"]
mod freebsd_world;
#[path = "helper_guest.rs"]
mod helper_guest;
#[path = "powercut.rs"]
mod powercut;
#[path = "support.rs"]
mod support;
#[path = "../../host-builder/tests/ufs2/mod.rs"]
mod ufs2;
#[path = "ufs_reader.rs"]
mod ufs_reader;

use std::process::Command;

use fruix_system::Role;
use support::{
    Guest, Verdict, closure, debugfs, declaration, fields, fruix, image, native_base_count, out,
    saw_all, system_config,
};

/// Boots an example in a firmware mode and checks the readiness report
/// from the console and over SSH.
fn boot_to_ready(example: &str, firmware: &str) {
    let name = format!("{}-{firmware}", example.trim_end_matches(".toml"));
    let decl = declaration(example, &name, &[]);
    let img = image(&decl);
    let system = img.report["system"].as_str().unwrap().to_owned();
    let pid1 = example == "pid1.toml";
    // The UEFI guests keep what they write (a copy of the image): their
    // reboots are systemd-boot's to count.
    let copy =
        (firmware == "uefi").then(|| support::copy_image(&img.path, &format!("{name}-persistent")));
    let guest = match &copy {
        Some(copy) => Guest::boot_with(copy, firmware, &[], &["--persistent"]),
        None => Guest::boot(&img.path, firmware, &[]),
    };
    let mut v = Verdict::new(&format!("boot-to-ready {name}"));
    v.saw("accel", guest.vm["accel"].as_str().unwrap_or(""));
    v.saw("firmware", firmware);
    v.saw(
        "seconds_to_ready_line",
        guest.vm["seconds"].as_f64().unwrap_or(0.0),
    );
    v.saw("boot_attempts", guest.vm["attempts"].as_u64().unwrap_or(0));
    let console = guest.console();
    v.expect(&console, "ready_marker", "ready");
    let (code, report) = guest.query();
    let f = fields(&report);
    v.check(code == 0, format!("fruix query exited {code}"));
    for (k, want) in [
        ("ready_marker", "ready"),
        ("sshd_status", "running"),
        ("shepherd_status", "running"),
        ("compat_prefix_shims", "absent"),
        ("guile_module_smoke", "ok"),
        ("web", "ready"),
        ("host_base_store_count", "0"),
        ("native_runtime_ready", "ok"),
        ("store_verify", "ok"),
        ("activation", "ok"),
        ("generation", "1"),
        ("booted_generation", "1"),
        ("boot_entry", "blessed"),
        ("boot_fallback_from", "none"),
        ("boot_tries_failed", "0"),
        ("switch", "none"),
        ("switch_reason", "none"),
        (
            "boot_mode",
            if pid1 { "shepherd-pid1" } else { "rc-shepherd" },
        ),
        ("system", system.as_str()),
    ] {
        v.expect(&f, k, want);
    }
    v.expect(
        &f,
        "native_base_store_count",
        &native_base_count(&system).to_string(),
    );
    let sp = f.get("shepherd_pid").cloned().unwrap_or_default();
    if pid1 {
        v.check(sp == "1", format!("shepherd_pid={sp}, expected 1"));
    } else {
        v.check(
            sp != "1" && sp.parse::<u32>().is_ok(),
            format!("shepherd_pid={sp}, expected a pid other than 1"),
        );
    }
    let (_, modes) =
        guest.ssh("stat -c '%a %U %n' /run/setuid-programs/passwd /run/setuid-programs/su");
    v.check(
        modes.contains("4755 root /run/setuid-programs/passwd")
            && modes.contains("4755 root /run/setuid-programs/su"),
        format!("declared setuid programs: {}", modes.trim()),
    );
    let (rc, ready) = guest.ssh("cat /run/fruix/ready");
    v.check(
        rc == 0 && ready.contains("ready_marker=ready"),
        "no /run/fruix/ready with ready_marker=ready",
    );
    host_keys_are_pinned(&mut v, &guest, &f);
    saw_all(&mut v, &f);
    // The life after the first boot, on the direct-boot guests: every
    // case in shepherd-pid1 mode, a committed switch in rc-shepherd mode.
    // Boot counting on the UEFI guests; power cuts on the rc-shepherd one.
    match &copy {
        None => deploy::cases(&mut v, &guest, example, &system, pid1),
        Some(copy) => {
            bootcount::cases(&mut v, &guest, example, pid1);
            if !pid1 {
                drop(powercut::cases(&mut v, guest, copy, example));
            }
        }
    }
    v.finish();
}

/// The keys `fruix system vm` pinned from the console are those the
/// report's fingerprints name, and a guest that answers with another key
/// than the pinned one is refused at once (exit 2), not retried until
/// `--wait` runs out.
fn host_keys_are_pinned(
    v: &mut Verdict,
    guest: &Guest,
    f: &std::collections::BTreeMap<String, String>,
) {
    let pinned = std::fs::read_to_string(guest.pinned()).unwrap();
    let prefix = format!("[127.0.0.1]:{} ", guest.port);
    let keys: Vec<fruix_system::HostKey> = pinned
        .lines()
        .map(|l| {
            let key = l.strip_prefix(&prefix).unwrap_or_else(|| panic!("{l}"));
            fruix_system::HostKey::parse(key, "known_hosts").unwrap()
        })
        .collect();
    let types: Vec<_> = keys.iter().map(|k| k.algorithm.as_str()).collect();
    v.check(
        types == ["ssh-ed25519", "ecdsa-sha2-nistp256"],
        format!("pinned key types {types:?}"),
    );
    for k in &keys {
        v.expect(f, &k.report_key().unwrap(), &k.fingerprint());
    }
    // Another guest's key, pinned for this guest's address.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(made.success(), "ssh-keygen failed");
    let public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let wrong = dir.path().join("wrong.known_hosts");
    std::fs::write(&wrong, format!("{prefix}{public}")).unwrap();
    let (out, took) = guest.query_pinned(&wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    v.saw("wrong_key_query_seconds", took.as_secs_f64());
    v.check(
        out.status.code() == Some(2)
            && stderr
                == format!(
                    "fruix: refused: host key of [127.0.0.1]:{} does not match the one pinned in {}\n",
                    guest.port,
                    wrong.display()
                )
            && out.stdout.is_empty(),
        format!(
            "a wrong pinned key: exit {:?}, stderr '{}'",
            out.status.code(),
            stderr.trim_end()
        ),
    );
    v.check(
        took < std::time::Duration::from_secs(20),
        format!("a wrong pinned key took {took:?} to be refused (--wait 120)"),
    );
}

#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
fn pid1_direct() {
    boot_to_ready("pid1.toml", "direct");
}

#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
fn pid1_uefi() {
    boot_to_ready("pid1.toml", "uefi");
}

#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
fn rc_direct() {
    boot_to_ready("rc.toml", "direct");
}

#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
fn rc_uefi() {
    boot_to_ready("rc.toml", "uefi");
}

/// From the host: the runtime has no boot files or headers, the boot item
/// has what the boot loader needs, and the broad world is neither in the
/// closure nor in the image.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
fn slices_and_closure() {
    let decl = declaration("pid1.toml", "pid1-direct", &[]);
    let img = image(&decl);
    let system = img.report["system"].as_str().unwrap().to_owned();
    let store = out().join("frx/store");
    let mut v = Verdict::new("slices-and-closure");
    let items = closure(&system);
    let runtime = system_config(&system).runtime;
    let rt = store.join(&runtime);
    v.check(!rt.join("boot").exists(), "the runtime item has boot/");
    v.check(
        !rt.join("usr/include").exists(),
        "the runtime item has usr/include",
    );
    let boot = items
        .iter()
        .find(|c| c.has(Role::Bootloader))
        .map(|c| store.join(c.item.as_str()))
        .unwrap();
    let has = |glob_dir: &str, prefix: &str| {
        std::fs::read_dir(boot.join(glob_dir))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
            })
            .unwrap_or(false)
    };
    v.check(
        has("boot", "vmlinuz-"),
        "the boot item has no boot/vmlinuz-*",
    );
    v.check(
        has("boot", "initrd.img-"),
        "the boot item has no boot/initrd.img-*",
    );
    v.check(
        boot.join("usr/lib/systemd/boot/efi/systemd-bootx64.efi")
            .is_file(),
        "the boot item has no systemd-bootx64.efi",
    );
    v.check(
        !items
            .iter()
            .any(|c| c.item.as_str().ends_with("-native-world-trixie")),
        "the world package is in the closure",
    );
    let listing = debugfs(&img.path, false, "ls -l /frx/store\n");
    v.check(
        !listing.contains("native-world"),
        "the world package is in the image's store",
    );
    v.check(
        listing.contains(&runtime),
        "the runtime is not in the image's store",
    );
    v.saw("closure_items", items.len());
    v.saw("runtime", &runtime);
    v.finish();
}

/// `qemu-img` on an image, as it runs; (exit status, stderr).
fn qemu_img(args: &[&str], image: &std::path::Path) -> (Option<i32>, String) {
    let o = Command::new("qemu-img")
        .args(args)
        .arg(image)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).trim().to_owned(),
    )
}

/// The qcow2 and the VHD (whose footers fruix rewrites after qemu-img,
/// src/image/vhd.rs) beside `STEM.raw` are sound and hold the raw image:
/// `qemu-img check` exits 0 on each, and `qemu-img compare` finds them
/// identical to the raw image. QEMU 7.2 has no check for VHD (`vpc`): it
/// exits 63 with "This image format does not support checks", accepted
/// for that format alone; its `compare` still opens the VHD, which fails
/// on a footer whose checksum is wrong ("Incorrect header checksum").
fn qemu_img_checks(stem: &std::path::Path) {
    let raw = stem.with_extension("raw");
    for (ext, format) in [("qcow2", "qcow2"), ("vhd", "vpc")] {
        let image = stem.with_extension(ext);
        let (code, err) = qemu_img(&["check", "-f", format], &image);
        let unsupported = format == "vpc"
            && code == Some(63)
            && err == "qemu-img: This image format does not support checks";
        assert!(
            code == Some(0) || unsupported,
            "qemu-img check -f {format} {}: exit {code:?}: {err}",
            image.display()
        );
        let o = Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", format])
            .arg(&raw)
            .arg(&image)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "qemu-img compare -f raw -F {format} {} {}: {}{}",
            raw.display(),
            image.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Two builds of one declaration give byte-identical raw, qcow2 and VHD
/// images, which `qemu-img` checks and finds to hold the raw image.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
fn images_are_reproducible() {
    let decl = declaration(
        "pid1.toml",
        "repro",
        &[
            ("host-name = \"fruix-pid1\"", "host-name = \"fruix-repro\""),
            ("capacity = \"12g\"", "capacity = \"1g\""),
            ("root-size = \"10g\"", "root-size = \"800m\""),
        ],
    );
    let build = || -> Vec<(String, String)> {
        // Stage the root tree anew each time: it is part of what must
        // come out the same.
        let _ = std::fs::remove_dir_all(out().join(".fruix-build/image-root"));
        let st = Command::new(fruix())
            .args(["system", "image"])
            .arg(&decl)
            .arg("--out")
            .arg(out())
            .args([
                "--format", "raw", "--format", "qcow2", "--format", "vhd", "-q",
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        qemu_img_checks(&out().join("fruix-repro"));
        ["raw", "qcow2", "vhd"]
            .iter()
            .map(|ext| {
                let p = out().join(format!("fruix-repro.{ext}"));
                let o = Command::new("sha256sum").arg(&p).output().unwrap();
                let sum = String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_owned();
                std::fs::remove_file(&p).unwrap();
                ((*ext).to_owned(), sum)
            })
            .collect()
    };
    let (a, b) = {
        let _alone = support::images_exclusive();
        (build(), build())
    };
    let mut v = Verdict::new("images-are-reproducible");
    for ((ext, x), (_, y)) in a.iter().zip(&b) {
        v.check(x == y, format!("{ext}: {x} then {y}"));
        v.saw(&format!("sha256_{ext}"), x);
    }
    v.finish();
}

/// A failing step (here qemu-img, replaced by one that fails) leaves no
/// image and no temporary behind.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
fn failed_image_leaves_nothing() {
    let decl = declaration(
        "pid1.toml",
        "nofmt",
        &[("host-name = \"fruix-pid1\"", "host-name = \"fruix-nofmt\"")],
    );
    let fake = out().join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let qemu_img = fake.join("qemu-img");
    std::fs::write(
        &qemu_img,
        "#!/bin/sh\necho 'qemu-img: simulated failure' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&qemu_img, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = {
        let _alone = support::images_exclusive();
        Command::new(fruix())
            .args(["system", "image"])
            .arg(&decl)
            .arg("--out")
            .arg(out())
            .args(["--format", "raw", "--format", "qcow2", "-q"])
            .env("PATH", path)
            .output()
            .unwrap()
    };
    let err = String::from_utf8_lossy(&o.stderr);
    let mut v = Verdict::new("failed-image-leaves-nothing");
    v.check(
        o.status.code() == Some(2),
        format!("exit {:?}", o.status.code()),
    );
    v.check(
        err.contains("qemu-img failed") && err.contains("simulated failure"),
        format!("stderr: {err}"),
    );
    v.check(err.trim().lines().count() == 1, "the error is one line");
    let left: Vec<String> = std::fs::read_dir(out())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("fruix-nofmt"))
        .collect();
    v.check(left.is_empty(), format!("left behind: {left:?}"));
    v.saw("error", err.trim());
    v.finish();
}

/// QEMU processes whose command line mentions `needle`.
fn qemus_with(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("qemu-system") && c.contains(needle))
        .count()
}

/// `fruix system vm` stops its QEMU on timeout and on SIGTERM.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
fn vm_leaves_no_qemu_behind() {
    let decl = declaration("pid1.toml", "pid1-direct", &[]);
    let img = image(&decl);
    let mut v = Verdict::new("vm-leaves-no-qemu-behind");
    let log = out().join("orphan-timeout.console.log");
    let o = Command::new(fruix())
        .args(["system", "vm"])
        .arg(&img.path)
        .args(["--firmware", "direct", "--timeout", "3", "--console-log"])
        .arg(&log)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    v.check(
        o.status.code() == Some(1),
        format!("timeout: exit {:?}", o.status.code()),
    );
    v.check(
        err.contains("no ready line within 3 s"),
        format!("timeout: {err}"),
    );
    v.check(
        err.contains("last console lines"),
        "timeout: no console lines shown",
    );
    v.check(
        qemus_with(&log.display().to_string()) == 0,
        "QEMU left after the timeout",
    );

    let log = out().join("orphan-term.console.log");
    let mut child = Command::new(fruix())
        .args(["system", "vm"])
        .arg(&img.path)
        .args([
            "--firmware",
            "direct",
            "--timeout",
            "300",
            "-q",
            "--console-log",
        ])
        .arg(&log)
        .spawn()
        .unwrap();
    let needle = log.display().to_string();
    let t = std::time::Instant::now();
    while qemus_with(&needle) == 0 && t.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    v.check(qemus_with(&needle) == 1, "QEMU did not start");
    // SAFETY: our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let st = child.wait().unwrap();
    v.check(qemus_with(&needle) == 0, "QEMU left after SIGTERM");
    v.saw("sigterm_exit", format!("{st}"));
    v.finish();
}

/// The run's boot accounting (support.rs), which fails a run whose
/// retries hide guest kernel panics: the total, the tests that retried,
/// and the budget. No guest is booted.
#[test]
fn boot_attempts_are_totalled_against_the_budget() {
    let boots = |a: &[(&str, u64)]| -> Vec<(String, u64)> {
        a.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    };
    assert_eq!(
        support::boot_summary(&boots(&[("pid1_direct", 1), ("rc_uefi", 1)])),
        (
            "system tests: 2 guest boots, 2 boot attempts, 0 retried".to_owned(),
            true
        )
    );
    assert_eq!(
        support::boot_summary(&boots(&[("pid1_direct", 2), ("rc_uefi", 1), ("rc_direct", 2)])),
        (
            "system tests: 3 guest boots, 5 boot attempts, 2 retried: pid1_direct (2 attempts), rc_direct (2 attempts)".to_owned(),
            true
        )
    );
    let (s, within) = support::boot_summary(&boots(&[
        ("pid1_direct", 2),
        ("pid1_uefi", 2),
        ("rc_direct", 1),
        ("fault_digest_mismatch", 2),
    ]));
    assert!(!within);
    assert_eq!(
        s,
        "system tests: 4 guest boots, 7 boot attempts, 3 retried: pid1_direct (2 attempts), pid1_uefi (2 attempts), fault_digest_mismatch (2 attempts)\n\
         FAIL boot-attempts: 3 boots retried after a guest kernel panic, more than the 2 a run may retry: the retries hide panics (their consoles are kept as *.panic-N.log beside each console log)"
    );
}
