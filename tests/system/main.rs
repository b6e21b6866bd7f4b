//! Boot-to-ready system tests: the example systems built from Debian
//! trixie packages, written to disk images, booted under QEMU (KVM when it
//! can run a guest here, TCG otherwise) with UEFI and with direct kernel
//! boot, in both boot modes, and asked over SSH with `fruix query`; then
//! one test per fault. Each prints `PASS <name>` or `FAIL <name>: reason`
//! and the metadata it saw.
//!
//! They take minutes and need root, QEMU and Debian's archive, so they are
//! ignored by a plain `cargo test`; `scripts/test` runs them with
//! `--ignored`, one at a time (each guest has the machine's cores).

// Test helpers panic on a broken test machine: that is their report.
#![allow(clippy::unwrap_used)]

#[path = "support.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::Command;

use support::{Guest, Verdict, copy_image, debugfs, declaration, fields, fruix, image, out};

/// The system item's `closure` file: (item, roles, origin) per line.
fn closure(system: &str) -> Vec<(String, String, String)> {
    let text =
        std::fs::read_to_string(out().join("frx/store").join(system).join("closure")).unwrap();
    text.lines()
        .map(|l| {
            let mut w = l.split(' ');
            (
                w.next().unwrap().to_owned(),
                w.next().unwrap_or("").to_owned(),
                w.next().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// How many native base items the builder put in the system.
fn native_base_count(system: &str) -> usize {
    closure(system)
        .iter()
        .filter(|(_, roles, origin)| roles.split(',').any(|r| r == "base") && origin == "native")
        .count()
}

/// A value of the system item's `etc/fruix/system.toml`.
fn system_config(system: &str, key: &str) -> String {
    let text = std::fs::read_to_string(
        out()
            .join("frx/store")
            .join(system)
            .join("etc/fruix/system.toml"),
    )
    .unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    v[key].as_str().unwrap().to_owned()
}

fn saw_all(v: &mut Verdict, map: &BTreeMap<String, String>) {
    for (k, val) in map {
        v.saw(k, val);
    }
}

/// Boots an example in a firmware mode and checks the readiness report
/// from the console and over SSH.
fn boot_to_ready(example: &str, firmware: &str) {
    let name = format!("{}-{firmware}", example.trim_end_matches(".toml"));
    let decl = declaration(example, &name, &[]);
    let img = image(&decl);
    let system = img.report["system"].as_str().unwrap().to_owned();
    let pid1 = example == "pid1.toml";
    let guest = Guest::boot(&img.path, firmware, &[]);
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
        ("host_base_store_count", "0"),
        ("native_runtime_ready", "ok"),
        ("store_verify", "ok"),
        ("activation", "ok"),
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
    saw_all(&mut v, &f);
    v.finish();
}

#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
fn pid1_direct() {
    boot_to_ready("pid1.toml", "direct");
}

#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
fn pid1_uefi() {
    boot_to_ready("pid1.toml", "uefi");
}

#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
fn rc_direct() {
    boot_to_ready("rc.toml", "direct");
}

#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
fn rc_uefi() {
    boot_to_ready("rc.toml", "uefi");
}

/// From the host: the runtime has no boot files or headers, the boot item
/// has what the boot loader needs, and the broad world is neither in the
/// closure nor in the image.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
fn slices_and_closure() {
    let decl = declaration("pid1.toml", "pid1-direct", &[]);
    let img = image(&decl);
    let system = img.report["system"].as_str().unwrap().to_owned();
    let store = out().join("frx/store");
    let mut v = Verdict::new("slices-and-closure");
    let items = closure(&system);
    let runtime = system_config(&system, "runtime");
    let rt = store.join(&runtime);
    v.check(!rt.join("boot").exists(), "the runtime item has boot/");
    v.check(
        !rt.join("usr/include").exists(),
        "the runtime item has usr/include",
    );
    let boot = items
        .iter()
        .find(|(_, roles, _)| roles.split(',').any(|r| r == "bootloader"))
        .map(|(i, _, _)| store.join(i))
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
            .any(|(i, _, _)| i.ends_with("-native-world-trixie")),
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

/// Two builds of one declaration give byte-identical raw, qcow2 and VHD
/// images.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
fn images_are_reproducible() {
    let decl = declaration(
        "pid1.toml",
        "repro",
        &[
            ("host-name = \"fruix-pid1\"", "host-name = \"fruix-repro\""),
            ("capacity = \"12g\"", "capacity = \"1g\""),
            ("root-size = \"10g\"", "root-size = \"900m\""),
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
    let a = build();
    let b = build();
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
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
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
    let o = Command::new(fruix())
        .args(["system", "image"])
        .arg(&decl)
        .arg("--out")
        .arg(out())
        .args(["--format", "raw", "--format", "qcow2", "-q"])
        .env("PATH", path)
        .output()
        .unwrap();
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
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
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

/// One byte changed in a runtime file inside the image: the guest says
/// failed, names the file, and writes no ready file.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
fn fault_runtime_byte_changed() {
    let decl = declaration(
        "pid1.toml",
        "fault-byte",
        &[
            (
                "host-name = \"fruix-pid1\"",
                "host-name = \"fruix-fault-byte\"",
            ),
            ("store-verify = \"metadata\"", "store-verify = \"full\""),
        ],
    );
    let img = image(&decl);
    let system = img.report["system"].as_str().unwrap().to_owned();
    let runtime = system_config(&system, "runtime");
    let file = format!("/frx/store/{runtime}/etc/debian_version");
    let bmap = debugfs(&img.path, false, &format!("bmap {file} 0\n"));
    // debugfs echoes each command before its answer.
    let block: u64 = bmap
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("bmap: {bmap}"));
    let at = (65u64 << 20) + block * 4096;
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&img.path)
            .unwrap();
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(at)).unwrap();
        f.read_exact(&mut b).unwrap();
        b[0] ^= 0x01;
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&b).unwrap();
    }
    let guest = Guest::boot(&img.path, "direct", &[]);
    let mut v = Verdict::new("fault-runtime-byte-changed");
    let console = guest.console();
    v.expect(&console, "ready_marker", "failed");
    v.check(
        guest.console_reasons().iter().any(|r| r.contains(&file)),
        format!(
            "no console reason names {file}: {:?}",
            guest.console_reasons()
        ),
    );
    let (code, report) = guest.query();
    v.check(code == 1, format!("fruix query exited {code}, expected 1"));
    let reasons = report["reasons"].to_string();
    v.check(
        reasons.contains(&file),
        format!("reasons do not name {file}: {reasons}"),
    );
    v.expect(&fields(&report), "store_verify", "failed");
    let (rc, _) = guest.ssh("test -e /run/fruix/ready");
    v.check(rc == 1, "a ready file exists");
    v.saw("reasons", reasons);
    v.finish();
}

/// sshd kept from starting (its host keys replaced with garbage): not
/// ready, and the reason names sshd.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
fn fault_sshd_kept_from_starting() {
    let decl = declaration("pid1.toml", "pid1-direct", &[]);
    let img = copy_image(&image(&decl).path, "fault-sshd");
    let junk = out().join("junk-key");
    std::fs::write(&junk, "not a key\n").unwrap();
    debugfs(
        &img,
        true,
        &format!(
            "mkdir /etc/ssh\nwrite {j} /etc/ssh/ssh_host_ed25519_key\nwrite {j} /etc/ssh/ssh_host_ecdsa_key\n",
            j = junk.display()
        ),
    );
    let guest = Guest::boot(&img, "direct", &[]);
    let mut v = Verdict::new("fault-sshd-kept-from-starting");
    let console = guest.console();
    v.expect(&console, "ready_marker", "failed");
    v.check(
        console.get("sshd_status").is_some_and(|s| s != "running"),
        format!("sshd_status={:?}", console.get("sshd_status")),
    );
    let reasons = guest.console_reasons();
    v.check(
        reasons.iter().any(|r| r.contains("sshd")),
        format!("no reason names sshd: {reasons:?}"),
    );
    saw_all(&mut v, &console);
    v.saw("reasons", format!("{reasons:?}"));
    let _ = std::fs::remove_file(&img);
    v.finish();
}

/// A `host-path` item declared: counted by the guest.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
fn fault_host_path_item() {
    let host_dir = out().join("host-files");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("hello.txt"), "from the build host\n").unwrap();
    let decl = declaration(
        "pid1.toml",
        "fault-host-path",
        &[
            (
                "host-name = \"fruix-pid1\"",
                "host-name = \"fruix-fault-host\"",
            ),
            (
                "base-packages = [\"native-runtime\", \"guile-extra\", \"shepherd\"]",
                "base-packages = [\"native-runtime\", \"guile-extra\", \"shepherd\", \"host-files\"]",
            ),
            (
                "[services.sshd]",
                &format!(
                    "[packages.host-files]\nversion = \"1\"\nsource = {{ type = \"host-path\", path = \"{}\" }}\n\n[services.sshd]",
                    host_dir.display()
                ),
            ),
        ],
    );
    let img = image(&decl);
    let guest = Guest::boot(&img.path, "direct", &[]);
    let mut v = Verdict::new("fault-host-path-item");
    let (code, report) = guest.query();
    let f = fields(&report);
    v.expect(&f, "host_base_store_count", "1");
    v.expect(&f, "native_base_store_count", "3");
    v.saw("query_exit", code);
    saw_all(&mut v, &f);
    v.finish();
}

/// A legacy compatibility shim planted in the image: activation removes
/// and reports it, and the guest is still ready.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
fn fault_legacy_shim_planted() {
    let decl = declaration("pid1.toml", "pid1-direct", &[]);
    let img = copy_image(&image(&decl).path, "fault-shim");
    let shim = "/tmp/shepherd-freebsd-validate-install";
    debugfs(&img, true, &format!("mkdir {shim}\nmkdir {shim}/bin\n"));
    let listing = debugfs(&img, false, "ls /tmp\n");
    assert!(
        listing.contains("shepherd-freebsd-validate-install"),
        "not planted: {listing}"
    );
    let guest = Guest::boot(&img, "direct", &[]);
    let mut v = Verdict::new("fault-legacy-shim-planted");
    let (code, report) = guest.query();
    let f = fields(&report);
    v.check(code == 0, format!("fruix query exited {code}"));
    v.expect(&f, "ready_marker", "ready");
    v.expect(&f, "compat_prefix_shims", "absent");
    let (rc, _) = guest.ssh(&format!("test -e {shim}"));
    v.check(rc == 1, "the shim is still there");
    let (_, ledger) = guest.ssh("cat /run/fruix/activation.json");
    v.check(
        ledger.contains(&format!("removed compatibility shim {shim}")),
        "the activation ledger does not report the removal",
    );
    saw_all(&mut v, &f);
    let _ = std::fs::remove_file(&img);
    v.finish();
}

/// A system digest on the kernel line that does not match the system
/// item: failed, and the reason says so.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --ignored"]
fn fault_digest_mismatch() {
    let decl = declaration("pid1.toml", "pid1-direct", &[]);
    let img = image(&decl);
    let wrong = "0".repeat(64);
    let guest = Guest::boot(&img.path, "direct", &[&format!("fruix.digest={wrong}")]);
    let mut v = Verdict::new("fault-digest-mismatch");
    let console = guest.console();
    v.expect(&console, "ready_marker", "failed");
    v.expect(&console, "store_verify", "failed");
    let reasons = guest.console_reasons();
    v.check(
        reasons.iter().any(|r| {
            r.contains("does not match the digest on the boot line") && r.contains(&wrong)
        }),
        format!("no reason about the boot line's digest: {reasons:?}"),
    );
    v.saw("reasons", format!("{reasons:?}"));
    v.finish();
}
