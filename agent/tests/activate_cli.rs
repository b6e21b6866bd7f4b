//! `fruix-agent activate` as the rc scripts and `init` call it: exit
//! statuses, the plan of a dry run, and one-line errors.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fruix-agent"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_system_outside_the_store_is_refused() {
    let o = agent(&["activate", "--root", "/nonexistent", "--system", "/etc"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "fruix-agent: --system: '/etc' is not a store item under /frx/store\n"
    );
}

#[test]
fn a_broken_system_item_is_a_failed_activation() {
    let t = tempfile::tempdir().unwrap();
    let o = agent(&[
        "activate",
        "--root",
        t.path().to_str().unwrap(),
        "--system",
        "/frx/store/abc-system-x",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "activation ran and failed");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["steps"][0]["step"], "system");
    assert_eq!(v["steps"][0]["status"], "failed");
    // The ledger is left for the agent's status report.
    assert!(t.path().join("run/fruix/activation.json").is_file());
}

#[test]
fn a_dry_run_prints_the_plan_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let rt = t.path().join("frx/store/r-native-runtime/etc");
    fs::create_dir_all(&rt).unwrap();
    fs::write(rt.join("motd"), "hi\n").unwrap();
    let sys = t.path().join("frx/store/s-system-x/etc/fruix");
    fs::create_dir_all(&sys).unwrap();
    fs::write(sys.join("system.toml"), "host-name = \"x\"\nboot-mode = \"shepherd-pid1\"\nstore-verify = \"none\"\ngate = []\nruntime = \"r-native-runtime\"\nagent = \"a\"\n").unwrap();
    let o = agent(&[
        "activate",
        "--root",
        t.path().to_str().unwrap(),
        "--system",
        "/frx/store/s-system-x",
        "--dry-run",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("  would: link /etc/motd -> /frx/store/r-native-runtime/etc/motd\n"),
        "{out}"
    );
    assert!(
        out.contains("  would: link /run/current-system -> /frx/store/s-system-x\n"),
        "{out}"
    );
    assert!(
        !t.path().join("etc").exists() && !t.path().join("run").exists(),
        "nothing written"
    );
}
