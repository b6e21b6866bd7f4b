//! `fruix system build` on local sources: the package split, the closure,
//! the system item, no-change rebuilds and what a changed input rebuilds.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fruix;

fn write(p: &Path, text: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

const PREFIX: &str = "/tmp/shepherd-fruix-test-validate-install";

/// Inputs: a small "world", a staged Shepherd prefix, a host path, an
/// agent binary; and a declaration using them.
fn setup(dir: &Path, extra: &str) -> PathBuf {
    let w = dir.join("world");
    write(&w.join("boot/vmlinuz-6.12"), "kernel");
    write(&w.join("boot/initrd.img-6.12"), "initrd");
    write(&w.join("boot/config-6.12"), "config");
    write(
        &w.join("usr/lib/modules/6.12/kernel/virtio_blk.ko"),
        "module",
    );
    write(&w.join("usr/include/stdio.h"), "int printf();");
    write(&w.join("usr/share/doc/guile/copyright"), "GPL");
    write(&w.join("usr/bin/guile"), "#!/bin/sh\n");
    fs::set_permissions(w.join("usr/bin/guile"), fs::Permissions::from_mode(0o755)).unwrap();
    write(&w.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
    let s = dir.join("staged");
    write(
        &s.join("bin/shepherd"),
        &format!(
            "#!/usr/bin/guile \\\n-s\n!#\n(set! %load-path (cons \"{PREFIX}/share/guile/site/3.0\" %load-path))\n"
        ),
    );
    write(
        &s.join("share/guile/site/3.0/shepherd/config.scm"),
        &format!("(define %sysconfdir \"{PREFIX}/etc\")\n"),
    );
    write(
        &s.join("lib/guile/3.0/site-ccache/shepherd/config.go"),
        "\0stale",
    );
    write(&dir.join("agent"), "#!/bin/sh\necho agent\n");
    fs::set_permissions(dir.join("agent"), fs::Permissions::from_mode(0o755)).unwrap();
    write(
        &dir.join("keys/id.pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFruixTestKeyOnly demo@host\n",
    );
    let decl = dir.join("system.toml");
    write(
        &decl,
        &format!(
            r#"host-name = "testbox"
init = "shepherd-pid1"
kernel = "native-boot"
bootloader = "native-boot"
base-packages = ["native-runtime", "shepherd"{extra_base}]

[packages.native-world]
version = "test"
source = {{ type = "dir", path = "world" }}

[packages.native-runtime]
version = "test"
from = "native-world"
prune = ["boot", "usr/include", "usr/share/doc", "usr/lib/modules"]

[packages.native-boot]
version = "test"
from = "native-world"
keep = ["boot/vmlinuz-*", "boot/initrd.img-*", "usr/lib/modules"]

[packages.native-dev]
from = "native-world"
keep = ["usr/include"]

[packages.shepherd]
version = "1.0.3"
source = {{ type = "dir", path = "staged" }}
materialize = {{ prefix = "{PREFIX}", rules = ["shepherd"] }}
{extra}
[services.sshd]
root-authorized-keys-files = ["keys/id.pub"]
"#,
            extra_base = if extra.is_empty() {
                ""
            } else {
                ", \"hostpkg\""
            },
        ),
    );
    decl
}

fn build(decl: &Path, out: &Path, agent: &Path) -> serde_json::Value {
    let o = fruix(&[
        "system",
        "build",
        decl.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--agent",
        agent.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        o.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn package<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["package"] == name)
        .unwrap()
}

fn store_count(out: &Path) -> usize {
    fs::read_dir(out.join("frx/store")).unwrap().count()
}

#[test]
fn builds_the_split_and_the_system_item() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "");
    let out = t.path().join("out");
    let v = build(&decl, &out, &t.path().join("agent"));
    let sys = PathBuf::from(v["system_path"].as_str().unwrap());
    assert!(
        sys.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("-system-testbox")
    );

    let path_of = |name: &str| PathBuf::from(package(&v, name)["path"].as_str().unwrap());
    let runtime = path_of("native-runtime");
    assert!(runtime.join("usr/bin/guile").is_file());
    assert!(!runtime.join("boot").exists(), "the runtime has no boot/");
    assert!(
        !runtime.join("usr/include").exists(),
        "the runtime has no usr/include"
    );
    let boot = path_of("native-boot");
    assert!(
        boot.join("boot/vmlinuz-6.12").is_file() && boot.join("boot/initrd.img-6.12").is_file()
    );
    assert!(
        boot.join("usr/lib/modules/6.12/kernel/virtio_blk.ko")
            .is_file()
    );
    assert!(
        !boot.join("boot/config-6.12").exists() && !boot.join("usr/bin").exists(),
        "boot holds only what booting needs"
    );
    assert!(path_of("native-dev").join("usr/include/stdio.h").is_file());

    // The closure: kernel+bootloader, base packages and the agent; not the world.
    let closure = fs::read_to_string(sys.join("closure")).unwrap();
    let mut roles: Vec<String> = closure
        .lines()
        .map(|l| l.split(' ').skip(1).collect::<Vec<_>>().join(" "))
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            "agent native",
            "base native",
            "base native",
            "kernel,bootloader native"
        ]
    );
    let world = package(&v, "native-world")["item"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !closure.contains(&world),
        "the broad world is not in the closure"
    );
    for line in closure.lines() {
        let item = line.split(' ').next().unwrap();
        let copy = fs::read(sys.join("manifests").join(format!("{item}.mtree"))).unwrap();
        assert_eq!(
            copy,
            fs::read(
                out.join("frx/var/db/fruix/manifests")
                    .join(format!("{item}.mtree"))
            )
            .unwrap()
        );
    }

    // The materialized Shepherd: no prefix left in what was rewritten; the
    // stale compiled file is gone.
    let shep = path_of("shepherd");
    let config = fs::read_to_string(shep.join("share/guile/site/3.0/shepherd/config.scm")).unwrap();
    assert_eq!(config, "(define %sysconfdir \"/etc\")\n");
    assert!(
        !shep
            .join("lib/guile/3.0/site-ccache/shepherd/config.go")
            .exists()
    );
    let scan = fruix(&["scan-prefixes", shep.to_str().unwrap(), "--prefix", PREFIX]);
    assert_eq!(
        scan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&scan.stdout)
    );
    assert_eq!(scan.stdout, b"");
    // The staged source itself still names it.
    let scan = fruix(&[
        "scan-prefixes",
        t.path().join("staged").to_str().unwrap(),
        "--prefix",
        PREFIX,
        "--json",
    ]);
    assert_eq!(scan.status.code(), Some(1));
    let hits: serde_json::Value = serde_json::from_slice(&scan.stdout).unwrap();
    let files: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        ["bin/shepherd", "share/guile/site/3.0/shepherd/config.scm"]
    );

    // Generated configuration.
    let agent_cfg = fs::read_to_string(sys.join("etc/fruix/system.toml")).unwrap();
    assert!(
        agent_cfg.contains("boot-mode = \"shepherd-pid1\""),
        "{agent_cfg}"
    );
    assert!(
        agent_cfg.contains(&format!(
            "shepherd = \"{}\"",
            package(&v, "shepherd")["item"].as_str().unwrap()
        )),
        "{agent_cfg}"
    );
    assert!(
        fs::read_to_string(sys.join("etc/shepherd.scm"))
            .unwrap()
            .contains("(start-in-the-background '(fruix-agent sshd))")
    );
    assert!(
        fs::read_to_string(sys.join("etc/shepherd/services/network.scm"))
            .unwrap()
            .contains("(eqv? 0 (status:exit-val (apply system* args)))"),
        "a command ended by a signal must not throw"
    );
    assert_eq!(
        fs::read_to_string(sys.join("etc/ssh/authorized_keys/root")).unwrap(),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFruixTestKeyOnly demo@host\n"
    );
    assert!(
        !sys.join("etc/init.d").exists(),
        "no rc scripts in pid1 mode"
    );

    let o = fruix(&[
        "store",
        "verify",
        "--root",
        out.join("frx").to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn a_second_build_copies_nothing_and_a_change_rebuilds_only_its_dependents() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "");
    let out = t.path().join("out");
    let agent = t.path().join("agent");
    let first = build(&decl, &out, &agent);
    let n = store_count(&out);
    let second = build(&decl, &out, &agent);
    assert_eq!(second["system"], first["system"]);
    assert_eq!(second["system_existed"], true);
    assert!(
        second["packages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["reused"] == true)
    );
    assert_eq!(store_count(&out), n, "nothing new in the store");

    // Change the staged Shepherd: it and the system are rebuilt, nothing else.
    fs::write(t.path().join("staged/bin/herd"), "#!/usr/bin/guile\n").unwrap();
    let third = build(&decl, &out, &agent);
    let rebuilt: Vec<&str> = third["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["reused"] == false)
        .map(|p| p["package"].as_str().unwrap())
        .collect();
    assert_eq!(rebuilt, ["shepherd"]);
    assert_ne!(third["system"], first["system"]);
    assert_eq!(
        store_count(&out),
        n + 2,
        "a new shepherd item and a new system item"
    );

    // Change the world: everything cut from it is rebuilt.
    fs::write(t.path().join("world/usr/bin/extra"), "x").unwrap();
    let fourth = build(&decl, &out, &agent);
    let mut rebuilt: Vec<&str> = fourth["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["reused"] == false)
        .map(|p| p["package"].as_str().unwrap())
        .collect();
    rebuilt.sort();
    assert_eq!(
        rebuilt,
        [
            "native-boot",
            "native-dev",
            "native-runtime",
            "native-world"
        ]
    );
    assert_eq!(
        package(&fourth, "native-boot")["item"],
        package(&third, "native-boot")["item"],
        "same content, same item"
    );
}

#[test]
fn a_host_path_package_has_origin_host() {
    let t = tempfile::tempdir().unwrap();
    let host = t.path().join("host-tree");
    write(&host.join("bin/tool"), "tool");
    let extra = format!(
        "\n[packages.hostpkg]\nsource = {{ type = \"host-path\", path = \"{}\" }}\n",
        host.display()
    );
    let decl = setup(t.path(), &extra);
    let out = t.path().join("out");
    let v = build(&decl, &out, &t.path().join("agent"));
    let sys = PathBuf::from(v["system_path"].as_str().unwrap());
    let closure = fs::read_to_string(sys.join("closure")).unwrap();
    let hostpkg = package(&v, "hostpkg")["item"].as_str().unwrap().to_owned();
    assert!(
        closure.lines().any(|l| l == format!("{hostpkg} base host")),
        "{closure}"
    );
    assert_eq!(package(&v, "hostpkg")["origin"], "host");
}

#[test]
fn a_bad_declaration_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "");
    let text = fs::read_to_string(&decl).unwrap().replace(
        "from = \"native-world\"\nprune",
        "from = \"native-wrld\"\nprune",
    );
    fs::write(&decl, text).unwrap();
    let out = t.path().join("out");
    let o = fruix(&[
        "system",
        "build",
        decl.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--agent",
        t.path().join("agent").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err,
        format!(
            "fruix: {}:13:8: `packages.native-runtime.from`: names package 'native-wrld', which is not declared\n",
            decl.display()
        )
    );
    assert!(!out.exists(), "nothing was written");
}

#[test]
fn an_agent_that_cannot_be_executed_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "");
    let agent = t.path().join("agent");
    fs::set_permissions(&agent, fs::Permissions::from_mode(0o644)).unwrap();
    let out = t.path().join("out");
    let o = fruix(&[
        "system",
        "build",
        decl.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--agent",
        agent.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "fruix: {}: not executable (mode 644): the fruix-agent binary must be executable\n",
            agent.display()
        )
    );
}

#[test]
fn a_failing_build_says_which_package_and_file_once() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "");
    // A FIFO is no file type an item may hold: the import of the world
    // refuses it, and the message names the package and the file once.
    let fifo = t.path().join("world/usr/bin/pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let out = t.path().join("out");
    let o = fruix(&[
        "system",
        "build",
        decl.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--agent",
        t.path().join("agent").to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "fruix: package 'native-world': {}: entry 'usr/bin/pipe' is a fifo, which a store item cannot hold\n",
            t.path().join("world").display()
        )
    );
    assert_eq!(store_count(&out), 0, "no item was left");
}

#[test]
fn rc_mode_adds_the_rc_scripts() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "");
    let text = fs::read_to_string(&decl)
        .unwrap()
        .replace("init = \"shepherd-pid1\"", "init = \"rc-shepherd\"");
    fs::write(&decl, text).unwrap();
    let out = t.path().join("out");
    let v = build(&decl, &out, &t.path().join("agent"));
    let sys = PathBuf::from(v["system_path"].as_str().unwrap());
    for s in ["fruix-activate", "fruix-shepherd", "fruix-agent"] {
        let p = sys.join("etc/init.d").join(s);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o555,
            "{s}"
        );
        assert!(
            fs::read_to_string(&p)
                .unwrap()
                .contains(&format!("# Provides:          {s}"))
        );
    }
    let shepherd = fs::read_to_string(sys.join("etc/shepherd.scm")).unwrap();
    assert!(
        !shepherd.contains("fruix-agent"),
        "the rc scripts start the agent in rc mode"
    );
}

#[test]
fn a_tar_source_gives_the_same_items_as_the_directory() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "");
    let st = Command::new("tar")
        .arg("-C")
        .arg(t.path().join("world"))
        .args(["-cJf"])
        .arg(t.path().join("world.txz"))
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let from_dir = build(&decl, &t.path().join("out-dir"), &t.path().join("agent"));
    let text = fs::read_to_string(&decl).unwrap().replace(
        "source = { type = \"dir\", path = \"world\" }",
        "source = { type = \"tar\", path = \"world.txz\" }",
    );
    fs::write(&decl, text).unwrap();
    let from_tar = build(&decl, &t.path().join("out-tar"), &t.path().join("agent"));
    for p in ["native-world", "native-runtime", "native-boot"] {
        assert_eq!(
            package(&from_tar, p)["item"],
            package(&from_dir, p)["item"],
            "{p}"
        );
    }
    assert_eq!(from_tar["system"], from_dir["system"]);
}

#[test]
fn a_build_waits_for_another_build_into_the_same_directory_and_says_so() {
    use std::io::{BufRead, BufReader};
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "");
    let out = t.path().join("out");
    let agent = t.path().join("agent");
    let first = build(&decl, &out, &agent);
    // Another build holds the output directory's lock.
    let held = fs::File::open(out.join(".fruix-build/lock")).unwrap();
    held.lock().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fruix"))
        .args(["system", "build", decl.to_str().unwrap(), "--out"])
        .arg(&out)
        .arg("--agent")
        .arg(&agent)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first_line = lines.next().unwrap().unwrap();
    assert_eq!(
        first_line,
        format!("fruix: waiting for another build in {}", out.display())
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "it waits while the lock is held"
    );
    drop(held);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(
        stdout.trim_end(),
        format!(
            "{}",
            out.join("frx/store")
                .join(first["system"].as_str().unwrap())
                .display()
        )
    );
}

#[test]
fn a_compiler_that_cannot_run_falls_back_to_deletion_says_why_and_is_not_recorded() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "");
    let text = fs::read_to_string(&decl).unwrap().replace(
        "rules = [\"shepherd\"] }",
        "rules = [\"shepherd\"], compile-with = \"native-world\" }",
    );
    fs::write(&decl, text).unwrap();
    let out = t.path().join("out");
    let agent = t.path().join("agent");
    let run = || {
        fruix(&[
            "system",
            "build",
            decl.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--agent",
            agent.to_str().unwrap(),
        ])
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let world = fs::read_dir(out.join("frx/store"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-native-world-test"))
        .unwrap();
    // The test world has no /tmp: the first reason the probe finds.
    let why = format!(
        "fruix: {PREFIX}: the compile-with Guile cannot run here ({}: no /tmp directory): stale compiled modules are deleted",
        world.display()
    );
    for o in [&first, &run()] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines.contains(&why.as_str()), "{err}");
        // Realized again by the second build: the fallback is not recorded.
        assert!(lines.contains(&"fruix: shepherd: realizing"), "{err}");
        let done = format!(
            "fruix: materialized {PREFIX}: 2 file(s) rewritten, 0 module(s) compiled, 1 compiled file(s) deleted"
        );
        assert!(lines.contains(&done.as_str()), "{err}");
    }
}
