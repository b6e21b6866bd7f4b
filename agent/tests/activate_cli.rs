//! `fruix-agent activate` as the rc scripts and `init` call it: exit
//! statuses, the plan of a dry run, and one-line errors.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::{Command, Output};

/// A system item's name (a digest and a package name).
const SYSTEM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-system-x";

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

/// `--system` names one item of the store: a path that climbs out of it,
/// or has extra slashes, is refused before anything is read.
#[test]
fn a_system_path_that_is_not_one_item_name_is_refused() {
    for (system, name, why) in [
        (
            format!("/frx/store/{SYSTEM}/../../../etc"),
            format!("{SYSTEM}/../../../etc"),
            "has a byte outside A-Z a-z 0-9 + . _ -",
        ),
        (
            format!("/frx/store//{SYSTEM}"),
            format!("/{SYSTEM}"),
            "does not start with 64 lowercase hex digits",
        ),
        (
            "/frx/store/../../tmp/evil-system".to_owned(),
            "../../tmp/evil-system".to_owned(),
            "is shorter than a digest, '-' and a name",
        ),
    ] {
        for args in [
            ["activate", "--root", "/nonexistent", "--system", &system].as_slice(),
            ["probe", "x", "--root", "/nonexistent", "--system", &system].as_slice(),
        ] {
            let o = agent(args);
            assert_eq!(o.status.code(), Some(2), "{args:?}");
            assert_eq!(
                String::from_utf8_lossy(&o.stderr),
                format!(
                    "fruix-agent: --system: '{system}': invalid item name '{name}': it {why}\n"
                ),
                "{args:?}"
            );
        }
    }
}

#[test]
fn a_broken_system_item_is_a_failed_activation() {
    let t = tempfile::tempdir().unwrap();
    let o = agent(&[
        "activate",
        "--root",
        t.path().to_str().unwrap(),
        "--system",
        &format!("/frx/store/{SYSTEM}"),
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
    let sys = t.path().join(format!("frx/store/{SYSTEM}/etc/fruix"));
    fs::create_dir_all(&sys).unwrap();
    fs::write(sys.join("system.toml"), "host-name = \"x\"\nboot-mode = \"shepherd-pid1\"\nstore-verify = \"none\"\ngate = []\nruntime = \"r-native-runtime\"\nagent = \"a\"\n").unwrap();
    let o = agent(&[
        "activate",
        "--root",
        t.path().to_str().unwrap(),
        "--system",
        &format!("/frx/store/{SYSTEM}"),
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
        out.contains(&format!(
            "  would: link /run/current-system -> /frx/store/{SYSTEM}\n"
        )),
        "{out}"
    );
    assert!(
        !t.path().join("etc").exists() && !t.path().join("run").exists(),
        "nothing written"
    );
}
