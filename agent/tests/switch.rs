//! `fruix-agent switch`, `generations`, `rollback`, `delete-generations`
//! and `gc` as processes against a guest root of real store items: a
//! committed switch, one rolled back because its gating probe fails, a
//! worker killed mid-switch and finished by `--recover`, a rollback, and
//! a gc that leaves verification clean. No Shepherd here (the systems
//! declare no services): the QEMU system tests cover Shepherd's part.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent, guest, write};
use fruix_store::{ImportOptions, StoreRoot, import_dir};

/// Another system item in the guest's store, on the same runtime, whose
/// gating probe runs `probe`.
fn system(t: &Path, host: &str, probe: &str) -> String {
    system_into(t, &StoreRoot::new(t.join("frx")), host, probe)
}

/// [`system`], imported into `store` (the guest's, or a host's).
fn system_into(t: &Path, store: &StoreRoot, host: &str, probe: &str) -> String {
    let current = fs::read_link(t.join("frx/var/current-system")).unwrap();
    let cur = t.join(current.strip_prefix("/").unwrap());
    let closure = fs::read_to_string(cur.join("closure")).unwrap();
    let rt = closure.split_whitespace().next().unwrap().to_owned();
    let sys = t.join(format!("src/sys-{host}"));
    write(&sys.join("closure"), &closure, 0o444);
    fs::create_dir_all(sys.join("manifests")).unwrap();
    fs::copy(
        cur.join("manifests").join(format!("{rt}.mtree")),
        sys.join("manifests").join(format!("{rt}.mtree")),
    )
    .unwrap();
    write(
        &sys.join("etc/fruix/system.toml"),
        &format!(
            "host-name = \"{host}\"\nboot-mode = \"rc-shepherd\"\nstore-verify = \"full\"\ngate = [\"store\", \"smoke\"]\nruntime = \"{rt}\"\nagent = \"a\"\n\n[[probes]]\nname = \"smoke\"\ncommand = [\"/bin/sh\", \"-c\", \"{probe}\"]\ntimeout = 10\n"
        ),
        0o444,
    );
    write(&sys.join("etc/motd"), &format!("{host}\n"), 0o444);
    let s = import_dir(
        store,
        &format!("system-{host}"),
        &sys,
        &ImportOptions::default(),
    )
    .unwrap();
    format!("/frx/store/{}", s.name)
}

/// A system `b` in a host's store beside the guest root `t`, with the
/// builder's compressed stream of that one item.
fn streamed(t: &Path) -> (String, fruix_store::ItemName, Vec<u8>) {
    let host = StoreRoot::new(t.join("host"));
    let b = system_into(t, &host, "b", "true");
    let name = fruix_store::ItemName::parse(b.strip_prefix("/frx/store/").unwrap()).unwrap();
    let mut bytes = Vec::new();
    fruix_store::transfer::send_compressed(
        &host,
        std::slice::from_ref(&name),
        &mut bytes,
        &mut |_, _| {},
    )
    .unwrap();
    (b, name, bytes)
}

/// `fruix-agent ARGS` with `env` set and `input` on its standard input
/// (fed from a thread: it may stop reading early).
fn fed(args: &[&str], env: &[(&str, &Path)], input: &[u8]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fruix-agent"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut c = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = c.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut w, &input);
    });
    let o = c.wait_with_output().unwrap();
    feeder.join().unwrap();
    o
}

fn run(t: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--root", t.to_str().unwrap()]);
    let o = agent(&a);
    (
        o.status.code().unwrap_or(-1),
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn current(t: &Path) -> String {
    fs::read_link(t.join("frx/var/current-system"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_switch_commits_rolls_back_recovers_and_gc_leaves_the_store_clean() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let a = guest(root, "true");
    let b = system(root, "b", "true");
    let c = system(root, "c", "echo no such page; exit 3");

    // The current system again: nothing to change.
    let (code, j, err) = run(root, &["switch", "--json", &a]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (j["phase"].as_str(), j["outcome"].as_str()),
        (Some("committed"), Some("unchanged"))
    );

    // A new system, ready: committed as generation 2.
    let (code, j, err) = run(root, &["switch", "--json", "--confirm-timeout", "60", &b]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(j["phase"], "committed");
    assert_eq!(j["generation"], 2);
    assert_eq!(j["from_generation"], 1);
    assert_eq!(j["outcome"], "ready");
    assert_eq!(current(root), b);
    assert_eq!(
        fs::read_link(root.join("etc/motd")).unwrap(),
        Path::new(&b).join("etc/motd")
    );
    assert!(err.starts_with("switch "), "{err}");

    // A system whose gating probe fails: rolled back, exit 1.
    let (code, j, err) = run(root, &["switch", "--json", "--confirm-timeout", "60", &c]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(j["phase"], "rolled-back");
    assert_eq!(j["generation"], 3);
    assert_eq!(
        j["failed_checks"],
        serde_json::json!(["smoke: probe smoke exited with exit status: 3: no such page"])
    );
    assert_eq!(
        j["reason"],
        "not ready: smoke: probe smoke exited with exit status: 3: no such page"
    );
    assert_eq!(j["outcome"], "ready");
    assert_eq!(current(root), b);
    assert_eq!(
        fs::read_link(root.join("etc/motd")).unwrap(),
        Path::new(&b).join("etc/motd")
    );
    assert_eq!(
        fs::read_link(root.join("frx/var/profiles/system"))
            .unwrap()
            .to_str(),
        Some("system-2")
    );

    let (code, j, _) = run(root, &["generations", "--json"]);
    assert_eq!(code, 0);
    let states: Vec<(u64, &str, bool)> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["number"].as_u64().unwrap(),
                g["state"].as_str().unwrap(),
                g["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (1, "committed", false),
            (2, "committed", true),
            (3, "rolled-back", false)
        ]
    );

    // The worker killed while it waits for a slow probe: the next start
    // (`--recover`) rolls the switch back.
    let slow = system(root, "slow", "sleep 30");
    let mut follower = Command::new(env!("CARGO_BIN_EXE_fruix-agent"))
        .args(["switch", "--json", "--root", root.to_str().unwrap(), &slow])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = root.join("frx/var/fruix/switch.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = fs::read_to_string(&state).unwrap_or_default();
        if s.contains(&slow) && s.contains("\"phase\": \"checking\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the switch never reached checking: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", &format!("switch --worker .* {slow}")])
        .status()
        .unwrap();
    assert!(killed.success());
    let code = follower.wait().unwrap().code();
    assert_eq!(code, Some(2), "the follower of a killed worker exits 2");
    // The next agent start (the daemon) finds it unfinished, its lock
    // free, and rolls it back in a worker of its own.
    let daemon = common::Daemon::start(root, &b);
    let deadline = Instant::now() + Duration::from_secs(60);
    let end = loop {
        let s = fs::read_to_string(&state).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
        if v["phase"] == "rolled-back" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon's start never finished the switch: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(daemon);
    assert_eq!(end["reason"], "interrupted in phase checking");
    assert_eq!(end["generation"], 4);
    assert_eq!(current(root), b);
    let (_, gens, _) = run(root, &["generations", "--json"]);
    assert_eq!(gens[3]["state"], "rolled-back");
    let (code, _, _) = run(root, &["switch", "--recover", "--json"]);
    assert_eq!(code, 0, "nothing left to recover");

    // Rollback: to the newest committed generation before the current.
    let (code, j, err) = run(root, &["rollback", "--json", "--confirm-timeout", "60"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (j["phase"].as_str(), j["generation"].as_u64()),
        (Some("committed"), Some(1))
    );
    assert_eq!(current(root), a);

    // Keep only the current generation, then collect: b, c and slow go,
    // the kept generation's items stay, verification is clean.
    let (code, j, err) = run(root, &["delete-generations", "--keep", "0", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(j["deleted"], serde_json::json!([2, 3, 4]));
    let store = StoreRoot::new(root.join("frx"));
    let sizes: u64 = [&b, &c, &slow]
        .iter()
        .map(|s| {
            let n = fruix_store::ItemName::parse(s.strip_prefix("/frx/store/").unwrap()).unwrap();
            store.read_manifest(&n).unwrap().content_size()
        })
        .sum();
    let (code, dry, _) = run(root, &["gc", "--dry-run", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(dry["freed_bytes"], sizes);
    assert!(
        root.join(b.trim_start_matches('/')).exists(),
        "a dry run removed nothing"
    );
    let (code, j, _) = run(root, &["gc", "--json"]);
    assert_eq!(code, 0);
    let mut removed: Vec<String> = j["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect();
    removed.sort();
    let mut want: Vec<String> = [&b, &c, &slow]
        .iter()
        .map(|s| s.trim_start_matches("/frx/store/").to_owned())
        .collect();
    want.sort();
    assert_eq!(removed, want);
    assert_eq!(j["freed_bytes"], sizes);
    let v = agent(&["verify", "--root", root.join("frx").to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    assert!(root.join(a.trim_start_matches('/')).exists());
}

#[test]
fn a_gc_killed_between_its_renames_leaves_verification_clean() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    guest(root, "true");
    let b = system(root, "b", "true");
    let store = StoreRoot::new(root.join("frx"));
    let name = fruix_store::ItemName::parse(b.strip_prefix("/frx/store/").unwrap()).unwrap();
    // What gc does first, then stops: the item renamed out, the manifest
    // still there.
    fs::rename(
        store.item_path(&name),
        store.tmp_dir().join(format!("gc-{name}")),
    )
    .unwrap();
    let v = agent(&["verify", "--root", root.join("frx").to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    // The next gc finishes it: the store's lock sweeps both.
    let (code, j, err) = run(root, &["gc", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(j["removed"], serde_json::json!([]));
    assert!(!store.manifest_path(&name).exists());
    assert!(!store.tmp_dir().join(format!("gc-{name}")).exists());
    let v = agent(&["verify", "--root", root.join("frx").to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn a_gc_between_a_receive_and_its_switch_keeps_what_was_received() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    guest(root, "true");
    // The new system in a host's store, streamed as a deploy does.
    let (b, name, bytes) = streamed(root);
    let frx = root.join("frx");
    let o = fed(
        &[
            "store",
            "receive",
            "--json",
            "--root",
            frx.to_str().unwrap(),
            "--system",
            &b,
        ],
        &[],
        &bytes,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hold = frx.join("var/fruix/received").join(name.as_str());
    assert!(hold.is_file(), "the receive holds its system");

    // No generation names it yet; gc keeps it all the same.
    let (code, j, err) = run(root, &["gc", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(j["removed"], serde_json::json!([]));
    assert!(root.join(b.trim_start_matches('/')).is_dir());

    // The switch records it and drops the hold; gc still keeps it, now
    // as generation 2.
    let (code, j, err) = run(root, &["switch", "--json", "--confirm-timeout", "60", &b]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (j["phase"].as_str(), j["generation"].as_u64()),
        (Some("committed"), Some(2))
    );
    assert!(!hold.exists(), "the switch released the hold");
    let (code, j, err) = run(root, &["gc", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(j["removed"], serde_json::json!([]));
    assert!(root.join(b.trim_start_matches('/')).is_dir());
}

#[test]
fn a_dry_run_previews_a_system_the_guest_lacks_from_its_stream_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let a = guest(root, "true");
    let (b, _, bytes) = streamed(root);
    let tmp = root.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let preview = |input: &[u8]| {
        fed(
            &[
                "switch",
                "--dry-run",
                "--from-stdin",
                "--json",
                "--root",
                root.to_str().unwrap(),
                &b,
            ],
            &[("TMPDIR", tmp.as_path())],
            input,
        )
    };
    let o = preview(&bytes);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let link = |from: &str, to: &str| format!("link {from} -> {to}");
    assert_eq!(
        j["activation"],
        serde_json::json!([
            [
                "etc",
                // Only the system has /etc/fruix: one link, switched
                // with one rename.
                link("/etc/fruix", &format!("{b}/etc/fruix"))
            ],
            ["etc", link("/etc/motd", &format!("{b}/etc/motd"))],
            ["generation", link("/frx/var/profiles/system-2", &b)],
            ["generation", link("/frx/var/profiles/system", "system-2")],
            ["generation", link("/frx/var/current-system", &b)],
            ["generation", link("/run/current-system", &b)],
        ])
    );
    assert_eq!(
        (j["from"].as_str(), j["to"].as_str()),
        (Some(a.as_str()), Some(b.as_str()))
    );
    assert!(
        !root.join(b.trim_start_matches('/')).exists(),
        "the store was not written"
    );
    assert_eq!(current(root), a);
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "the temporary directory is gone"
    );

    // A corrupted stream: refused, exit 2, nothing left.
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let o = preview(&bad);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let head = format!(
        "fruix-agent: preview stream: item {}: digest mismatch (stream has sha256 ",
        b.trim_start_matches("/frx/store/")
    );
    assert!(
        err.starts_with(&head) && err.ends_with(")\n") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn a_failed_receive_leaves_no_hold_and_gc_runs_past_a_hold_on_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    guest(root, "true");
    let (b, name, bytes) = streamed(root);
    let frx = root.join("frx");
    let args = [
        "store",
        "receive",
        "--json",
        "--root",
        frx.to_str().unwrap(),
        "--system",
        &b,
    ];
    let o = fed(&args, &[], &bytes[..bytes.len() / 2]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let hold = frx.join("var/fruix/received").join(name.as_str());
    assert!(
        !hold.exists(),
        "a receive that brought nothing holds nothing"
    );
    // A hold whose system is not whole (a receive waiting for the store's
    // lock) does not stop gc, and stays.
    fs::create_dir_all(hold.parent().unwrap()).unwrap();
    fs::write(&hold, "").unwrap();
    let (code, j, err) = run(root, &["gc", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(j["removed"], serde_json::json!([]));
    assert!(hold.exists());
}
