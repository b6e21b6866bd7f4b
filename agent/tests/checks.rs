//! The readiness checks against a store made with the store library: a
//! runtime item, a Shepherd item and a system item with its closure and
//! manifest copies.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use fruix_activation::GuestRoot;
use fruix_agent::checks::{CheckStatus, command, local, sshd, store};
use fruix_agent::system::SystemView;
use fruix_store::{ImportOptions, StoreRoot, import_dir};

fn write(p: &Path, text: &str, mode: u32) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

struct Guest {
    t: tempfile::TempDir,
    view: SystemView,
    runtime: String,
}

/// A guest root holding a store with runtime, shepherd and system items.
fn guest(origin_of_shepherd: &str) -> Guest {
    let t = tempfile::tempdir().unwrap();
    let store = StoreRoot::new(t.path().join("frx"));
    let src = t.path().join("src");
    write(&src.join("rt/usr/sbin/sshd"), "sshd binary", 0o755);
    write(&src.join("rt/usr/bin/guile-3.0"), "guile binary", 0o755);
    write(
        &src.join("rt/usr/lib/libc.so"),
        "a library of some size",
        0o644,
    );
    write(
        &src.join("rt/etc/passwd"),
        "root:x:0:0::/root:/bin/sh\n",
        0o644,
    );
    write(
        &src.join("sh/bin/shepherd"),
        "#!/usr/bin/guile-3.0 --no-auto-compile\n!#\n",
        0o755,
    );
    let opts = ImportOptions::default();
    let rt = import_dir(&store, "native-runtime-test", &src.join("rt"), &opts).unwrap();
    let sh = import_dir(&store, "shepherd-1.0.3", &src.join("sh"), &opts).unwrap();
    let sys = src.join("sys");
    write(
        &sys.join("closure"),
        &format!(
            "{} base native\n{} base {origin_of_shepherd}\n",
            rt.name, sh.name
        ),
        0o444,
    );
    for i in [&rt, &sh] {
        fs::create_dir_all(sys.join("manifests")).unwrap();
        fs::copy(
            store.manifest_path(&i.name),
            sys.join("manifests").join(format!("{}.mtree", i.name)),
        )
        .unwrap();
    }
    write(
        &sys.join("etc/fruix/system.toml"),
        &format!(
            "host-name = \"x\"\nboot-mode = \"shepherd-pid1\"\nstore-verify = \"full\"\ngate = [\"sshd\", \"store\"]\nruntime = \"{}\"\nagent = \"a\"\nshepherd = \"{}\"\nguile-extensions = [\"ext-1\"]\n\n[sshd]\nport = 22\n",
            rt.name, sh.name
        ),
        0o444,
    );
    let s = import_dir(&store, "system-x", &sys, &opts).unwrap();
    let view =
        SystemView::load(&GuestRoot::new(t.path()), &format!("/frx/store/{}", s.name)).unwrap();
    Guest {
        t,
        view,
        runtime: rt.name.to_string(),
    }
}

/// Changes a store file in place, keeping its size and mode.
fn corrupt(p: &Path, text: &str) {
    let dir = p.parent().unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let mode = fs::metadata(p).unwrap().permissions().mode();
    fs::remove_file(p).unwrap();
    write(p, text, mode & 0o777);
    fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
}

#[test]
fn a_sound_store_passes_from_one_hash() {
    let g = guest("native");
    let digest = g.view.item.digest().to_hex();
    for policy in ["metadata", "full"] {
        let c = store::check(&g.view, policy, Some(&digest));
        assert_eq!(
            (c.status, c.value.as_str()),
            (CheckStatus::Ok, "ok"),
            "{policy}: {:?}",
            c.reasons
        );
    }
    assert_eq!(
        store::check(&g.view, "none", None).status,
        CheckStatus::Skipped
    );
}

#[test]
fn a_changed_byte_in_the_runtime_is_named() {
    let g = guest("native");
    let file =
        g.t.path()
            .join("frx/store")
            .join(&g.runtime)
            .join("usr/lib/libc.so");
    corrupt(&file, "a library of SOME size");
    let c = store::check(&g.view, "full", None);
    assert_eq!(c.status, CheckStatus::Failed);
    assert_eq!(c.reasons.len(), 1, "{:?}", c.reasons);
    assert!(
        c.reasons[0].starts_with(&format!("content-changed {}", file.display())),
        "{:?}",
        c.reasons
    );
    // Same size: metadata verification cannot see it.
    assert_eq!(
        store::check(&g.view, "metadata", None).status,
        CheckStatus::Ok
    );
}

#[test]
fn a_system_digest_that_does_not_match_the_boot_line_fails() {
    let g = guest("native");
    let c = store::check(&g.view, "metadata", Some(&"0".repeat(64)));
    assert_eq!(c.status, CheckStatus::Failed);
    assert_eq!(
        c.reasons,
        [format!(
            "system item {} does not match the digest on the boot line ({})",
            g.view.item,
            "0".repeat(64)
        )]
    );
}

#[test]
fn a_tampered_manifest_copy_is_caught_by_the_system_digest() {
    let g = guest("native");
    let copy =
        g.t.path()
            .join("frx/store")
            .join(g.view.item.as_str())
            .join("manifests")
            .join(format!("{}.mtree", g.runtime));
    let text = fs::read_to_string(&copy).unwrap();
    corrupt(&copy, &text.replace("size=11", "size=12"));
    // The copy keeps its size, so metadata verification of the system item
    // cannot see the change; the copy no longer hashing to its item's name
    // can.
    let c = store::check(&g.view, "metadata", None);
    assert_eq!(c.status, CheckStatus::Failed);
    let want = format!(
        "manifest of {} in the system item does not hash to its name",
        g.runtime
    );
    assert_eq!(c.reasons, std::slice::from_ref(&want));
    // Full verification also names the changed file of the system item.
    let c = store::check(&g.view, "full", None);
    assert!(
        c.reasons.iter().any(|r| r.starts_with("content-changed ")
            && r.contains(&format!("manifests/{}.mtree", g.runtime))),
        "{:?}",
        c.reasons
    );
    assert!(c.reasons.contains(&want));
}

#[test]
fn base_items_are_counted_by_origin() {
    assert_eq!(guest("native").view.base_counts(), (2, 0));
    assert_eq!(guest("host").view.base_counts(), (1, 1));
}

#[test]
fn the_runtime_slice_check() {
    let g = guest("native");
    assert_eq!(local::runtime_slice(&g.view).status, CheckStatus::Ok);
    let rt = g.t.path().join("frx/store").join(&g.runtime);
    fs::set_permissions(&rt, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(rt.join("boot")).unwrap();
    fs::set_permissions(rt.join("usr/sbin"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(rt.join("usr/sbin/sshd")).unwrap();
    let c = local::runtime_slice(&g.view);
    assert_eq!(
        c.reasons,
        [
            "runtime item has boot/",
            "runtime item lacks /usr/sbin/sshd"
        ]
    );
}

#[test]
fn compatibility_shims_and_the_activation_ledger() {
    let g = guest("native");
    let root = GuestRoot::new(g.t.path());
    assert_eq!(local::compat_shims(&root).value, "absent");
    fs::create_dir_all(g.t.path().join("tmp/shepherd-freebsd-validate-install")).unwrap();
    let c = local::compat_shims(&root);
    assert_eq!(
        (c.value.as_str(), c.reasons.as_slice()),
        (
            "present",
            ["compatibility shim /tmp/shepherd-freebsd-validate-install is present".to_owned()]
                .as_slice()
        )
    );
    assert_eq!(
        local::activation(&root).reasons,
        ["no activation ledger at /run/fruix/activation.json"]
    );
    write(
        &g.t.path().join("run/fruix/activation.json"),
        r#"{"system":"/frx/store/x-system-h","generation":1,"dry_run":false,"steps":[{"step":"etc","status":"changed","changes":[],"ms":1},{"step":"host-keys","status":"failed","changes":[],"ms":2,"error":"ssh-keygen failed"}]}"#,
        0o644,
    );
    assert_eq!(
        local::activation(&root).reasons,
        ["activation step host-keys failed: ssh-keygen failed"]
    );
}

#[test]
fn the_guile_environment_points_into_the_store() {
    let g = guest("native");
    let env = g.view.guile_env();
    let sh = &g.view.config.shepherd;
    assert_eq!(
        env[0],
        (
            "GUILE_LOAD_PATH".into(),
            format!("/frx/store/ext-1/share/guile/site/3.0:/frx/store/{sh}/share/guile/site/3.0")
        )
    );
    assert_eq!(
        env[2],
        (
            "GUILE_EXTENSIONS_PATH".into(),
            "/frx/store/ext-1/lib/guile/3.0/extensions".into()
        )
    );
}

#[test]
fn sshd_needs_its_pid_and_an_ssh_banner() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for banner in [
            "SSH-2.0-OpenSSH_10.0p2 Debian-7\r\n",
            "HTTP/1.1 400 Bad Request\r\n",
        ] {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(banner.as_bytes()).unwrap();
        }
    });
    let t = Duration::from_secs(2);
    assert_eq!(sshd::check(Some(42), |_| true, port, t).value, "running");
    let c = sshd::check(Some(42), |_| true, port, t);
    assert_eq!(
        c.reasons,
        [format!(
            "port {port} answers 'HTTP/1.1 400 Bad Request', not an SSH banner"
        )]
    );
    server.join().unwrap();
    let c = sshd::check(Some(42), |_| false, port, t);
    assert_eq!(c.value, "stopped");
    assert_eq!(c.reasons[0], "sshd pid 42 is not running");
    assert!(
        c.reasons[1].starts_with(&format!("port {port}: ")),
        "nothing listens any more: {:?}",
        c.reasons
    );
    assert_eq!(
        sshd::check(None, |_| true, port, t).reasons[0],
        "sshd has no pid file"
    );
}

#[test]
fn command_probes_pass_fail_and_time_out() {
    let argv = |s: &str| vec!["/bin/sh".to_owned(), "-c".to_owned(), s.to_owned()];
    let env = vec![("PROBE_WORD".to_owned(), "hello".to_owned())];
    assert_eq!(
        command::run(
            "p",
            &argv("test \"$PROBE_WORD\" = hello"),
            &env,
            Duration::from_secs(5)
        )
        .value,
        "ok"
    );
    let c = command::run(
        "p",
        &argv("echo boom >&2; exit 3"),
        &env,
        Duration::from_secs(5),
    );
    assert_eq!(c.reasons, ["probe p exited with exit status: 3: boom"]);
    let start = Instant::now();
    let c = command::run("slow", &argv("sleep 30"), &env, Duration::from_secs(1));
    assert_eq!(c.reasons, ["probe slow did not finish within 1 s"]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the probe was killed at its timeout"
    );
    let c = command::run(
        "missing",
        &["/nonexistent/prog".to_owned()],
        &env,
        Duration::from_secs(1),
    );
    assert!(
        c.reasons[0].starts_with("probe missing: cannot run /nonexistent/prog: "),
        "{:?}",
        c.reasons
    );
}

/// A descendant in a session of its own (`setsid`) keeps the probe's
/// pipes open after the probe's process group is killed or has ended: the
/// probe still ends at its timeout, or when its own process does.
#[test]
fn a_setsid_descendant_holding_the_pipes_does_not_hold_the_probe() {
    let argv = |s: &str| vec!["/bin/sh".to_owned(), "-c".to_owned(), s.to_owned()];
    let start = Instant::now();
    let c = command::run(
        "held",
        &argv("setsid sleep 30 & sleep 30"),
        &[],
        Duration::from_secs(1),
    );
    let took = start.elapsed();
    assert_eq!(c.reasons, ["probe held did not finish within 1 s"]);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // Ending by itself while the descendant lives on: its status counts,
    // and its last line is kept.
    let start = Instant::now();
    let c = command::run(
        "quick",
        &argv("setsid sleep 30 & echo bad >&2; exit 3"),
        &[],
        Duration::from_secs(20),
    );
    let took = start.elapsed();
    assert_eq!(c.reasons, ["probe quick exited with exit status: 3: bad"]);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let start = Instant::now();
    let c = command::run(
        "fine",
        &argv("setsid sleep 30 & exit 0"),
        &[],
        Duration::from_secs(20),
    );
    assert_eq!((c.value.as_str(), c.reasons.len()), ("ok", 0));
    assert!(start.elapsed() < Duration::from_secs(3));
}

/// A probe that writes more than a pipe holds is read as it writes: its
/// end is kept (the last line of its standard output, as before), and
/// the probe is not stuck on a full pipe.
#[test]
fn a_probe_with_much_output_keeps_its_last_line() {
    let argv = |s: &str| vec!["/bin/sh".to_owned(), "-c".to_owned(), s.to_owned()];
    let c = command::run(
        "chatty",
        &argv("i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done; exit 1"),
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(
        c.reasons,
        ["probe chatty exited with exit status: 1: line 19999"]
    );
}

/// A port that sends an endless first line: the banner is cut at 256
/// bytes and the connection dropped, not read to its end.
#[test]
fn an_endless_banner_is_cut() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let chunk = [b'x'; 65536];
        let mut sent = 0usize;
        // Until the reader hangs up, or 64 MiB.
        while sent < 64 << 20 && s.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        sent
    });
    let c = sshd::check(Some(42), |_| true, port, Duration::from_secs(5));
    assert_eq!(
        c.reasons,
        [format!(
            "port {port} answers '{}', not an SSH banner",
            "x".repeat(40)
        )]
    );
    let sent = server.join().unwrap();
    assert!(sent < 16 << 20, "the reader took {sent} bytes");
}
