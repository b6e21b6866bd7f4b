//! Bad input to `fruix query`, `fruix system vm` and `fruix system build`,
//! and a host that cannot run QEMU: exit 2 and one line
//! naming the input, before anything is started; and `fruix query`'s
//! retries of a guest it cannot reach, counted at a stand-in `ssh`.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn fruix(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_fruix"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn query_refuses_a_bad_target_and_a_missing_key() {
    let (code, err) = fruix(&["query", "--ssh", "root@host:notaport"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim(),
        "fruix: --ssh: 'root@host:notaport': 'notaport' is not a port"
    );
    let (code, err) = fruix(&["query", "--ssh", "host", "-i", "/nonexistent/key"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim(), "fruix: -i: /nonexistent/key: no such key file");
    // A name ssh would split or expand is refused, not handed over.
    let t = tempfile::tempdir().unwrap();
    let odd = t.path().join("my hosts%d");
    std::fs::write(&odd, "").unwrap();
    let odd = odd.to_str().unwrap();
    let (code, err) = fruix(&["query", "--ssh", "host", "--known-hosts", odd]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "fruix: --known-hosts: {odd}: ssh cannot be given a file name with ' ' in it \
             as it is; move or link the file elsewhere"
        )
    );
}

#[test]
fn vm_refuses_a_missing_image_and_a_declaration_without_out() {
    let (code, err) = fruix(&["system", "vm", "/nonexistent/disk.raw"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim(), "fruix: /nonexistent/disk.raw: no such image");
    let (code, err) = fruix(&["system", "vm", "/nonexistent/system.toml"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim(),
        "fruix: --out: needed to build /nonexistent/system.toml"
    );
}

/// A stand-in for `ssh` in `dir/bin` (run by name, through PATH:
/// src/query.rs) that appends its arguments to `dir/calls`, prints
/// `said` on stderr and exits 255, as ssh does when it fails. Returns the
/// PATH to run `fruix` with and the calls file.
fn fake_ssh(dir: &std::path::Path, said: &str) -> (String, std::path::PathBuf) {
    let calls = dir.join("calls");
    let said_file = dir.join("said");
    std::fs::write(&said_file, format!("{said}\n")).unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let ssh = bin.join("ssh");
    std::fs::write(
        &ssh,
        format!(
            "#!/bin/sh\necho \"$*\" >>'{}'\ncat '{}' >&2\nexit 255\n",
            calls.display(),
            said_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, calls)
}

/// `fruix query --wait 3` against a guest that cannot be reached: `ssh`
/// (run by name, through PATH: src/query.rs) is a stand-in that counts its
/// calls and fails as ssh does for a refused connection. The backoff of
/// src/query.rs (sleep min(backoff, time left), backoff 0.5 s doubling up
/// to 5 s, one last try once the time is up) gives calls at 0, 0.5, 1.5
/// and 3 s: 4 calls when the first three take less than 1.5 s together
/// (the stand-in returns at once), 3 on a machine so loaded that they do
/// not; never fewer (the first and the last are always made), never more.
#[test]
fn query_retries_an_unreachable_guest_with_backoff_until_the_deadline() {
    let t = tempfile::tempdir().unwrap();
    let (path, calls) = fake_ssh(
        t.path(),
        "ssh: connect to host 127.0.0.1 port 2222: Connection refused",
    );
    let o = Command::new(env!("CARGO_BIN_EXE_fruix"))
        .args(["query", "--ssh", "root@127.0.0.1:2222", "--wait", "3"])
        .env("PATH", path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(
        err,
        "fruix: not reachable: ssh root@[127.0.0.1]:2222: ssh: connect to host 127.0.0.1 port 2222: Connection refused\n"
    );
    let calls = std::fs::read_to_string(&calls).unwrap();
    let n = calls.lines().count();
    assert!((3..=4).contains(&n), "{n} ssh calls:\n{calls}");
    for c in calls.lines() {
        assert!(
            c.starts_with("-o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=")
                && c.contains(" -p 2222 ")
                && c.contains(" -o StrictHostKeyChecking=yes ")
                && c.contains(" -- root@127.0.0.1 /run/current-system/bin/fruix-agent status"),
            "ssh called as: {c}"
        );
    }
}

/// A host key that is not the pinned one (as OpenSSH 9.2 says it) and a
/// refused login are final: exit 2 after one ssh call, however long
/// `--wait` is.
#[test]
fn query_refuses_a_wrong_host_key_or_login_at_once() {
    for (said, want) in [
        (
            "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
             @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
             Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.\n\
             Host key verification failed.",
            "fruix: refused: host key of [127.0.0.1]:2222 does not match the one pinned in KH\n",
        ),
        (
            "root@127.0.0.1: Permission denied (publickey).",
            "fruix: refused: ssh root@[127.0.0.1]:2222: authentication refused: \
             root@127.0.0.1: Permission denied (publickey).\n",
        ),
    ] {
        let t = tempfile::tempdir().unwrap();
        let (path, calls) = fake_ssh(t.path(), said);
        let kh = t.path().join("guest.known_hosts");
        std::fs::write(&kh, "").unwrap();
        let started = std::time::Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_fruix"))
            .args(["query", "--ssh", "root@127.0.0.1:2222", "--wait", "60"])
            .arg("--known-hosts")
            .arg(&kh)
            .env("PATH", path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err, want.replace("KH", &kh.display().to_string()));
        let calls = std::fs::read_to_string(&calls).unwrap();
        assert_eq!(calls.lines().count(), 1, "one ssh call: {calls}");
        assert!(
            calls.contains(&format!(" -o UserKnownHostsFile={} ", kh.display())),
            "{calls}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}

/// QEMU that will not start is a failure on the host: exit 2 and one line,
/// before anything is started (here no qemu-system-x86_64 in PATH).
#[test]
fn vm_without_qemu_is_a_host_failure() {
    let t = tempfile::tempdir().unwrap();
    let image = t.path().join("disk.raw");
    std::fs::write(&image, vec![0u8; 4096]).unwrap();
    let empty = t.path().join("bin");
    std::fs::create_dir(&empty).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_fruix"))
        .args(["system", "vm", image.to_str().unwrap(), "--accel", "tcg"])
        .env("PATH", &empty)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(
        err,
        "fruix: cannot run qemu-system-x86_64: not found in PATH (scripts/setup installs it)\n"
    );
    assert!(
        !t.path().join("disk.console.log").exists() && !t.path().join("disk.qemu.log").exists(),
        "nothing written"
    );
}

/// A declaration refused by a check (here a home of `/`) is exit 2, one
/// `FILE:LINE:COL: message` line, and nothing written: no OUT at all.
#[test]
fn a_refused_declaration_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("world")).unwrap();
    let decl = t.path().join("system.toml");
    std::fs::write(
        &decl,
        "host-name = \"box\"\ninit = \"shepherd-pid1\"\nkernel = \"w\"\nbootloader = \"w\"\nbase-packages = [\"w\"]\n\n\
         [packages.w]\nsource = { type = \"dir\", path = \"world\" }\n\n\
         [[users]]\nname = \"alice\"\nuid = 1000\ngroup = \"users\"\nhome = \"/\"\n",
    )
    .unwrap();
    let out = t.path().join("out");
    let (code, err) = fruix(&[
        "system",
        "build",
        decl.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "fruix: {}:14:8: `users.home`: '/' is a system directory (a home goes under /home, /srv, /opt or a directory of /var such as /var/lib)\n",
            decl.display()
        )
    );
    assert!(!out.exists(), "nothing written");
}
