//! `fruix-agent store missing` and `store receive` as the deploy runs
//! them: the builder's stream on a pipe, whole or cut, into a store root.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use fruix_store::transfer::{self, MANIFEST_COPIES};
use fruix_store::{ImportOptions, ItemName, StoreRoot, import_dir};

fn agent(args: &[&str], stdin: &[u8]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fruix-agent"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = c.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    // The agent may stop reading early (a refused stream): a broken pipe
    // is then the writer's news, not the test's.
    let w = std::thread::spawn(move || {
        let _ = pipe.write_all(&bytes);
    });
    let o = c.wait_with_output().unwrap();
    w.join().unwrap();
    o
}

fn import(root: &StoreRoot, package: &str, src: &Path) -> ItemName {
    import_dir(root, package, src, &ImportOptions { jobs: 1 })
        .unwrap()
        .name
}

/// Bytes zstd cannot shrink, so that a cut in the compressed stream
/// falls inside this file. The decoder hands out bytes only once they
/// are a window (2 MiB at the builder's level) behind what it has read,
/// so the file is larger than that.
const NOISE: usize = 6 << 20;

fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A host store with a system item over `big` (6 MiB of noise) and
/// `tool` (an executable and a link), in the closure format the builder
/// writes.
fn host(t: &Path) -> (StoreRoot, ItemName, ItemName, ItemName) {
    let root = StoreRoot::new(t.join("host"));
    let big = t.join("src/big");
    fs::create_dir_all(big.join("lib")).unwrap();
    fs::write(big.join("lib/noise"), noise(NOISE)).unwrap();
    let tool = t.join("src/tool");
    fs::create_dir_all(tool.join("bin")).unwrap();
    fs::write(tool.join("bin/tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(tool.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("tool", tool.join("bin/t")).unwrap();
    let (big, tool) = (import(&root, "big-1", &big), import(&root, "tool-1", &tool));
    let sys = t.join("src/system");
    fs::create_dir_all(sys.join(MANIFEST_COPIES)).unwrap();
    let mut closure = String::new();
    for n in [&big, &tool] {
        closure.push_str(&format!("{n} base native\n"));
        fs::copy(
            root.manifest_path(n),
            sys.join(MANIFEST_COPIES).join(format!("{n}.mtree")),
        )
        .unwrap();
    }
    fs::write(sys.join("closure"), closure).unwrap();
    let system = import(&root, "system-guest", &sys);
    (root, system, big, tool)
}

fn stream(root: &StoreRoot, items: &[ItemName]) -> Vec<u8> {
    let mut out = Vec::new();
    transfer::send_compressed(root, items, &mut out, &mut |_, _| {}).unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn missing_then_receive_then_nothing_missing() {
    let t = tempfile::tempdir().unwrap();
    let (host, system, big, tool) = host(t.path());
    let guest = t.path().join("guest");
    let g = guest.to_str().unwrap();
    let s = system.as_str();

    // The system is absent: the host names its closure.
    let o = agent(
        &[
            "store",
            "missing",
            "--system",
            s,
            "--root",
            g,
            big.as_str(),
            tool.as_str(),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), format!("{system}\n{big}\n{tool}\n"));

    let items = [system.clone(), big.clone(), tool.clone()];
    let z = stream(&host, &items);
    let o = agent(&["store", "receive", "--system", s, "--root", g], &z);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let sys_bytes = host.read_manifest(&system).unwrap().content_size();
    assert_eq!(
        text(&o.stdout),
        format!(
            "received {system} files=3 bytes={sys_bytes}\n\
             received {big} files=1 bytes={NOISE}\n\
             received {tool} files=1 bytes=10\n\
             summary items=3 received=3 present=0 bytes={}\n",
            sys_bytes + NOISE as u64 + 10
        )
    );
    assert_eq!(text(&o.stderr), "");

    // The system is whole: its closure is read from the guest's store.
    let o = agent(
        &[
            "store",
            "missing",
            "--system",
            &format!("/frx/store/{s}"),
            "--root",
            g,
            "--json",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        format!("{{\"missing\":[],\"system\":\"{s}\",\"system_present\":true}}\n")
    );
    let o = agent(&["verify", "--root", g], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));

    // The same stream again: every item read and dropped.
    let o = agent(
        &["store", "receive", "--system", s, "--root", g, "--json"],
        &z,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["received"].as_u64(), v["present"].as_u64()),
        (Some(0), Some(3))
    );
}

/// What the guest root holds: items, manifests and work directories.
fn left(guest: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for d in ["store", "var/db/fruix/manifests", "var/db/fruix/tmp"] {
        if let Ok(rd) = fs::read_dir(guest.join(d)) {
            for e in rd {
                v.push(format!("{d}/{}", e.unwrap().file_name().to_string_lossy()));
            }
        }
    }
    v
}

#[test]
fn a_cut_or_bad_pipe_is_exit_2_naming_the_item_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (host, system, big, tool) = host(t.path());
    let guest = t.path().join("guest");
    let g = guest.to_str().unwrap();
    let s = system.as_str();
    let z = stream(&host, &[system.clone(), big.clone(), tool.clone()]);

    // Three quarters of the compressed bytes: the reader is inside the
    // noise (more than a window behind) when the pipe ends.
    let o = agent(
        &["store", "receive", "--system", s, "--root", g],
        &z[..z.len() / 4 * 3],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        format!("fruix-agent: item {big}: stream truncated\n")
    );
    assert_eq!(left(&guest), Vec::<String>::new());

    let o = agent(&["store", "receive", "--system", s, "--root", g], b"");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "fruix-agent: stream truncated before the first item\n"
    );

    // An item the system does not hold.
    let z = stream(&host, &[system.clone(), tool.clone(), tool.clone()]);
    let o = agent(&["store", "receive", "--system", s, "--root", g], &z);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        format!("fruix-agent: item {tool}: sent twice\n")
    );
    let z = stream(&host, &[system.clone(), tool.clone()]);
    let o = agent(&["store", "receive", "--system", s, "--root", g], &z);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        format!(
            "fruix-agent: item {big}: in the closure of {system} but neither in the store nor in the stream\n"
        )
    );
    assert_eq!(left(&guest), Vec::<String>::new());

    let o = agent(&["store", "receive", "--system", "/etc", "--root", g], b"");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "fruix-agent: --system: '/etc' is not a store item under /frx/store\n"
    );
}
