//! `fruix-agent run` and `fruix-agent status`, as processes, against a
//! guest root holding a real store: activation first, then the daemon, its
//! markers, its socket, SIGHUP and SIGTERM; and a damaged store.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{Daemon, agent, guest, write};

fn lines(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_sound_system_is_ready_and_says_so_everywhere() {
    let t = tempfile::tempdir().unwrap();
    let system = guest(t.path(), "exit 0");
    let mut d = Daemon::start(t.path(), &system);
    let root = t.path().to_str().unwrap();
    let o = agent(&["status", "--root", root, "--wait", "30"]);
    assert_eq!(o.status.code(), Some(0), "{}", lines(&o));
    let out = lines(&o);
    assert!(
        out.starts_with("ready_marker=ready\nboot_mode=rc-shepherd\n"),
        "{out}"
    );
    for want in [
        "store_verify=ok\n",
        "activation=ok\n",
        "compat_prefix_shims=absent\n",
        "native_runtime_ready=ok\n",
        "native_base_store_count=1\n",
        "host_base_store_count=0\n",
        "smoke=ok\n",
    ] {
        assert!(out.contains(want), "{want} in {out}");
    }
    assert!(!out.lines().any(|l| l.starts_with("reason=")), "{out}");
    let ready = fs::read_to_string(t.path().join("run/fruix/ready")).unwrap();
    assert!(ready.starts_with("ready_marker=ready\n"));
    let console = fs::read_to_string(t.path().join("console")).unwrap();
    // The host keys activation made, in cloud-init's blocks, then the
    // ready line, whose fingerprints are the blocks' (the host reads
    // both with fruix_system's readers).
    let mut keys = fruix_system::HostKeyWatch::default();
    console.lines().for_each(|l| keys.feed(l));
    let keys = keys.keys().expect("a whole key block on the console");
    assert_eq!(
        keys.iter()
            .map(|k| k.algorithm.as_str())
            .collect::<Vec<_>>(),
        ["ssh-ed25519", "ecdsa-sha2-nistp256"]
    );
    let mut console_lines = console.lines();
    assert_eq!(
        console_lines.next(),
        Some("-----BEGIN SSH HOST KEY FINGERPRINTS-----")
    );
    let ready = console_lines.nth(7).unwrap_or_default();
    assert!(
        ready.starts_with("fruix-ready: ready_marker=ready boot_mode=rc-shepherd "),
        "{console}"
    );
    for k in keys {
        let field = format!("{}={}", k.report_key().unwrap(), k.fingerprint());
        assert!(ready.split(' ').any(|w| w == field), "{field} in {ready}");
        assert!(out.contains(&format!("{field}\n")), "{field} in {out}");
    }
    assert_eq!(
        console_lines.next(),
        None,
        "one announcement per final outcome"
    );
    // JSON, from the daemon.
    let o = agent(&["status", "--root", root, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["ready_marker"].as_str(), v["source"].as_str()),
        (Some("ready"), Some("daemon"))
    );
    // SIGHUP: a new round, announced again.
    d.signal("HUP");
    let o = agent(&["status", "--root", root, "--wait", "30"]);
    assert_eq!(o.status.code(), Some(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_to_string(t.path().join("console"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("fruix-ready: "))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "no second announcement after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Only root may open the socket.
    let mode = fs::metadata(t.path().join("run/fruix/agent.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // SIGTERM: a clean exit; status then reads the last report.
    d.signal("TERM");
    let st = d.0.wait().unwrap();
    assert!(st.success(), "{st}");
    assert!(!t.path().join("run/fruix/agent.sock").exists());
    let o = agent(&["status", "--root", root]);
    assert_eq!(o.status.code(), Some(0));
    assert!(lines(&o).ends_with("agent=not-running\n"));
}

#[test]
fn a_changed_byte_fails_the_system_and_names_the_file() {
    let t = tempfile::tempdir().unwrap();
    let system = guest(t.path(), "exit 0");
    let rt = fs::read_dir(t.path().join("frx/store"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-native-runtime-test"))
        .unwrap();
    let file = rt.join("usr/bin/tool");
    fs::set_permissions(rt.join("usr/bin"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(&file).unwrap();
    write(&file, "a TOOL of some size", 0o555);
    let _d = Daemon::start(t.path(), &system);
    let o = agent(&[
        "status",
        "--root",
        t.path().to_str().unwrap(),
        "--wait",
        "30",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = lines(&o);
    assert!(out.starts_with("ready_marker=failed\n"), "{out}");
    assert!(out.contains("store_verify=failed\n"));
    assert!(
        out.contains(&format!(
            "reason=content-changed {} sha256=",
            file.display()
        )),
        "{out}"
    );
    assert!(!t.path().join("run/fruix/ready").exists(), "no ready file");
    // The reasons come first on the console, then the ready line.
    let console = fs::read_to_string(t.path().join("console")).unwrap();
    let lines: Vec<&str> = console.lines().collect();
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("fruix-ready: ready_marker=failed "),
        "{console}"
    );
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .any(|l| l.starts_with(&format!("fruix-reason: content-changed {}", file.display()))),
        "{console}"
    );
}

#[test]
fn wait_names_pending_checks_then_a_failing_gating_probe_fails_the_system() {
    let t = tempfile::tempdir().unwrap();
    let system = guest(t.path(), "sleep 3; exit 1");
    let _d = Daemon::start(t.path(), &system);
    let root = t.path().to_str().unwrap();
    let o = agent(&["status", "--root", root, "--wait", "1"]);
    assert_eq!(o.status.code(), Some(1), "still pending after 1 s");
    let out = lines(&o);
    assert!(
        out.starts_with("ready_marker=pending\n") && out.ends_with("pending=smoke\n"),
        "{out}"
    );
    let o = agent(&["status", "--root", root, "--wait", "30"]);
    let out = lines(&o);
    assert!(
        out.starts_with("ready_marker=failed\n"),
        "the probe gates here: {out}"
    );
    assert!(
        out.contains("reason=probe smoke exited with exit status: 1: \n")
            || out.contains("reason=probe smoke exited with exit status: 1: "),
        "{out}"
    );
}

#[test]
fn status_without_an_agent_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let o = agent(&["status", "--root", t.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("fruix-agent: cannot reach the agent at /run/fruix/agent.sock"),
        "{err}"
    );
}
