//! The fault cases: each boots a guest with one thing wrong and asserts
//! the exact outcome and reasons the agent reports.

use crate::support::{
    Guest, Verdict, copy_image, debugfs, declaration, fields, image, out, saw_all, system_config,
};

/// One byte changed in a runtime file inside the image: the guest says
/// failed, names the file, and writes no ready file.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
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
    let runtime = system_config(&system).runtime;
    let file = format!("/frx/store/{runtime}/etc/debian_version");
    let bmap = debugfs(&img.path, false, &format!("bmap {file} 0\n"));
    // debugfs echoes each command before its answer.
    let block: u64 = bmap
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("bmap: {bmap}"));
    let at = (129u64 << 20) + block * 4096;
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
/// ready, and the sshd check's reasons are exactly those of an sshd that
/// never came up (no pid file, nothing listening), not those of, say, a
/// runtime without `/usr/sbin/sshd`.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
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
    // The sshd check's two reasons (agent/src/checks/sshd.rs), in full:
    // `sshd has no pid file`, since sshd exits on unloadable host keys
    // before it writes its PidFile, and `port {port}: {io error}` with the
    // declared port (examples/pid1.toml's `port = 22`) and the error
    // of a connection refused on loopback, nothing listening there.
    for want in [
        "sshd has no pid file",
        "port 22: Connection refused (os error 111)",
    ] {
        v.check(
            reasons.iter().any(|r| r == want),
            format!("no reason '{want}': {reasons:?}"),
        );
    }
    // And sshd is there to start: the runtime holds /usr/sbin/sshd.
    v.expect(&console, "native_runtime_ready", "ok");
    saw_all(&mut v, &console);
    v.saw("reasons", format!("{reasons:?}"));
    let _ = std::fs::remove_file(&img);
    v.finish();
}

/// A `host-path` item declared: counted by the guest.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
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
    // A host-path item is counted, not refused: the guest is still ready.
    v.check(code == 0, format!("fruix query exited {code}, expected 0"));
    v.expect(&f, "ready_marker", "ready");
    v.expect(&f, "host_base_store_count", "1");
    v.expect(&f, "native_base_store_count", "3");
    saw_all(&mut v, &f);
    v.finish();
}

/// A legacy compatibility shim planted in the image: activation removes
/// and reports it, and the guest is still ready.
#[test]
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
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
#[ignore = "boots QEMU guests for minutes as root: scripts/test runs it with --include-ignored"]
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
