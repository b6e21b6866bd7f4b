//! `fruix store import|verify|list` as a user runs them: output, exit
//! status, one-line errors, and what a killed import leaves.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::fruix;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A source tree: the contract's example.
fn tree(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("bin/hi"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("bin/hi"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("hi", src.join("bin/hello")).unwrap();
    fs::write(src.join("etc/a file"), b"x\n").unwrap();
    src
}

/// The digest of the contract's example manifest (a fixture of the store crate).
fn contract_digest() -> String {
    let o = Command::new("sha256sum")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../store/tests/fixtures/contract-example.mtree"
        ))
        .output()
        .unwrap();
    stdout(&o)[..64].to_owned()
}

#[test]
fn import_prints_the_item_path_and_verify_is_silent_when_clean() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let src = tree(t.path());
    let o = fruix(&[
        "store",
        "import",
        "--root",
        s(&root),
        "--name",
        "example",
        s(&src),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = format!("{}/store/{}-example\n", root.display(), contract_digest());
    assert_eq!(stdout(&o), want);
    assert_eq!(stderr(&o), "");
    let o = fruix(&["store", "verify", "--root", s(&root)]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "");
    let o = fruix(&[
        "store",
        "verify",
        "--root",
        s(&root),
        "--metadata-only",
        "--jobs",
        "1",
        want.trim(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn verify_reports_findings_with_exit_1_and_json() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let src = tree(t.path());
    let o = fruix(&[
        "store",
        "import",
        "--root",
        s(&root),
        "--name",
        "example",
        s(&src),
    ]);
    let item = PathBuf::from(stdout(&o).trim());
    fs::set_permissions(item.join("etc"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(item.join("etc/a file")).unwrap();
    fs::write(item.join("etc/a file"), b"y\n").unwrap();
    fs::set_permissions(item.join("etc/a file"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::set_permissions(item.join("etc"), fs::Permissions::from_mode(0o555)).unwrap();
    let o = fruix(&["store", "verify", "--root", s(&root)]);
    assert_eq!(o.status.code(), Some(1));
    let lines: Vec<String> = stdout(&o)
        .lines()
        .map(|l| l.replace(s(&item), "ITEM"))
        .collect();
    assert_eq!(
        lines,
        [
            "item-differs ITEM -> 1 finding",
            "content-changed ITEM/etc/a\\040file sha256=73cb3858a687a8494ca3323053016282f3dad39d42cf62ca4e79dda2aac7d9ac -> sha256=3bb2abb69ebb27fbfe63c7639624c6ec5e331b841a5bc8c3ebc10b9285e90877",
        ]
    );
    let o = fruix(&["store", "verify", "--root", s(&root), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["clean"], false);
    assert_eq!(v["items"], 1);
    assert_eq!(v["findings"][1]["kind"], "content-changed");
    assert_eq!(
        v["findings"][1]["path"],
        format!("{}/etc/a\\040file", item.display())
    );
    // Metadata-only verification does not read the file.
    let o = fruix(&["store", "verify", "--root", s(&root), "--metadata-only"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn list_shows_items_with_sizes() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let src = tree(t.path());
    fruix(&[
        "store",
        "import",
        "--root",
        s(&root),
        "--name",
        "example",
        s(&src),
    ]);
    let o = fruix(&["store", "list", "--root", s(&root)]);
    assert!(o.status.success());
    let line = stdout(&o);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[..2], ["20", "6"], "{line}");
    let o = fruix(&["store", "list", "--root", s(&root), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["size"], 20);
    assert_eq!(v[0]["name"], format!("{}-example", contract_digest()));
}

#[test]
fn import_json_lists_dropped_bits() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let src = tree(t.path());
    fs::set_permissions(src.join("bin/hi"), fs::Permissions::from_mode(0o4755)).unwrap();
    let o = fruix(&[
        "store",
        "import",
        "--root",
        s(&root),
        "--name",
        "example",
        "--json",
        s(&src),
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["existed"], false);
    assert_eq!(v["dropped"][0]["entry"], "bin/hi");
    assert_eq!(
        stderr(&o),
        "fruix: dropped setuid/setgid/sticky bits of 'bin/hi' (mode 4755)\n"
    );
}

/// Bad input: exit 2, exactly the line `want` on stderr (the whole of it,
/// so that a cause printed twice or a second line fails), nothing on
/// stdout.
fn bad(args: &[&str], want: &str) {
    let o = fruix(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    assert_eq!(stderr(&o), format!("{want}\n"), "{args:?}");
    assert_eq!(stdout(&o), "");
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let r = s(&root);
    let src = tree(t.path());
    let missing = t.path().join("nope");
    bad(
        &["store", "import", "--root", r, "--name", "x", s(&missing)],
        &format!(
            "fruix: {}: No such file or directory (os error 2)",
            missing.display()
        ),
    );
    bad(
        &[
            "store",
            "import",
            "--root",
            r,
            "--name",
            "bad name",
            s(&src),
        ],
        "fruix: invalid package name 'bad name': it has a byte outside A-Z a-z 0-9 + . _ -",
    );
    bad(
        &[
            "store",
            "import",
            "--root",
            r,
            "--name",
            "x",
            "--jobs",
            "0",
            s(&src),
        ],
        "fruix: --jobs: must be at least 1",
    );
    let junk = t.path().join("junk.tar");
    fs::write(&junk, b"not a tar").unwrap();
    bad(
        &["store", "import", "--root", r, "--name", "x", s(&junk)],
        &format!(
            "fruix: {}: is not a tar archive (plain, gzip, xz or zstd)",
            junk.display()
        ),
    );
    assert!(!root.join("store").exists() || fs::read_dir(root.join("store")).unwrap().count() == 0);
    bad(
        &["store", "verify", "--root", s(&missing)],
        &format!(
            "fruix: {}/store: cannot read directory: No such file or directory (os error 2)",
            missing.display()
        ),
    );
    bad(
        &["store", "verify", "--root", r, "notanitem"],
        "fruix: invalid item name 'notanitem': it is shorter than a digest, '-' and a name",
    );
    bad(
        &["store", "list", "--root", s(&missing)],
        &format!(
            "fruix: {}/store: cannot read directory: No such file or directory (os error 2)",
            missing.display()
        ),
    );
    // Usage errors are clap's: exit 2 and its usual message, whose first
    // line is checked whole (the rest is clap's usage text).
    let o = fruix(&["store", "import", "--root", r]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).lines().next(),
        Some("error: the following required arguments were not provided:")
    );
}

/// An import that fails inside the store library (the root cannot be made
/// under a file): one line, the root's directory named once with what
/// failed, the OS error once.
#[test]
fn a_failing_import_prints_the_path_what_failed_and_the_cause_once() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("file");
    fs::write(&file, b"").unwrap();
    let root = file.join("root");
    let src = tree(t.path());
    bad(
        &[
            "store",
            "import",
            "--root",
            s(&root),
            "--name",
            "x",
            s(&src),
        ],
        &format!(
            "fruix: {}/store: cannot create directory: Not a directory (os error 20)",
            root.display()
        ),
    );
}

/// `fruix store verify` of a root that is not there: exit 2 and exactly one
/// line, with the OS error once.
#[test]
fn verify_of_a_missing_root_prints_one_line_with_the_cause_once() {
    assert!(!Path::new("/nope").exists(), "the test needs /nope absent");
    bad(
        &["store", "verify", "--root", "/nope"],
        "fruix: /nope/store: cannot read directory: No such file or directory (os error 2)",
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["store", "--help"],
        &["store", "import", "--help"],
        &["store", "verify", "--help"],
        &["store", "list", "--help"],
    ] {
        let o = fruix(args);
        assert!(o.status.success(), "{args:?}");
        assert!(stdout(&o).contains("Usage: fruix"), "{args:?}");
    }
}

#[test]
fn an_import_killed_mid_entry_leaves_no_item_and_the_next_import_sweeps() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let fifo = t.path().join("stream.tar");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_fruix"))
        .args([
            "store",
            "import",
            "--root",
            s(&root),
            "--name",
            "killed",
            s(&fifo),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A tar header for a 100 kB file and the first 1000 bytes of it; the
    // writer then holds the pipe open, so the import blocks inside the entry.
    let mut h = tar::Header::new_gnu();
    h.set_path("usr/lib/big").unwrap();
    h.set_size(100_000);
    h.set_mode(0o644);
    h.set_cksum();
    let mut w = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let mut chunk = h.as_bytes().to_vec();
    chunk.extend_from_slice(&[0x5a; 1000]);
    w.write_all(&chunk).unwrap();
    w.flush().unwrap();
    let tmp = root.join("var/db/fruix/tmp");
    let deadline = Instant::now() + Duration::from_secs(20);
    let partial = loop {
        let found = fs::read_dir(&tmp).ok().and_then(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path().join("item/usr/lib/big"))
                .find(|p| p.exists())
        });
        if let Some(p) = found {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the import never started writing"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(9), "killed mid-import, not finished");
    drop(w);
    assert!(partial.exists(), "a work directory is what a kill leaves");
    assert_eq!(
        fs::read_dir(root.join("store")).unwrap().count(),
        0,
        "no item"
    );
    assert_eq!(
        fs::read_dir(root.join("var/db/fruix/manifests"))
            .unwrap()
            .count(),
        0,
        "no manifest"
    );
    let verify = fruix(&["store", "verify", "--root", s(&root)]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "a root with only a stale work dir is clean"
    );
    let src = tree(t.path());
    let o = fruix(&[
        "store",
        "import",
        "--root",
        s(&root),
        "--name",
        "next",
        s(&src),
    ]);
    assert!(o.status.success());
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "the next import swept the leftovers"
    );
}
