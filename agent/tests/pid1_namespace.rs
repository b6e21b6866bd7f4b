//! The shepherd-pid1 boot path without a VM: `fruix-agent init` runs as
//! PID 1 of new PID, mount, network, UTS and IPC namespaces, chrooted into
//! a root holding the system built from examples/pid1.toml (Debian trixie
//! packages, the materialized Shepherd and Guile extensions). It mounts,
//! activates and execs the store's Shepherd, which becomes that PID 1 and
//! starts sshd and the agent's daemon; the ready marker is then asked for
//! from inside, as `fruix query` asks a VM over SSH.
//!
//! The network namespace matters: the system's network service configures
//! eth0, which must never be the host's. Needs root and Debian's archive,
//! so only the root tier builds it (`--features root-tests`, see
//! tests/README.md); fails with the reason when either is missing.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fruix-agent"))
}

/// `fruix`, built beside the agent by `cargo test --workspace`.
fn fruix_bin() -> PathBuf {
    let p = agent_bin().with_file_name("fruix");
    assert!(
        p.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace; the README's test command does)",
        p.display()
    );
    p
}

fn sh(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

struct Guest {
    _dir: tempfile::TempDir,
    root: PathBuf,
    system: String,
    agent: String,
    ns: Option<Child>,
}

impl Guest {
    /// Builds examples/pid1.toml and lays out a root the way an image does:
    /// /frx, the top-level links into the runtime, empty /etc, /var, /run.
    fn new() -> Guest {
        assert!(
            fruix_store::root::running_as_root(),
            "this test needs root (namespaces, chroot, mounts, mmdebstrap); the README's test command runs as root"
        );
        sh(&mut Command::new(
            repo().join("tests/fixtures/make-staged-prefixes"),
        ));
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(t.join("id")));
        let text = fs::read_to_string(repo().join("examples/pid1.toml"))
            .unwrap()
            .replace(
                "../target/fruix-demo/id_ed25519.pub",
                &t.join("id.pub").display().to_string(),
            );
        fs::write(t.join("pid1.toml"), text).unwrap();
        let o = sh(Command::new(fruix_bin())
            .arg("system")
            .arg("build")
            .arg(t.join("pid1.toml"))
            .arg("--out")
            .arg(t.join("out"))
            .arg("--agent")
            .arg(agent_bin())
            .args(["--quiet", "--json"]));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let system = format!("/frx/store/{}", v["system"].as_str().unwrap());
        let item = |pkg: &str| {
            v["closure"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["package"] == pkg)
                .unwrap()["item"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let runtime = item("native-runtime");
        let agent = item("fruix-agent");
        let root = t.join("guest");
        for d in [
            "frx", "etc", "var", "tmp", "run", "proc", "sys", "dev", "root",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        sh(Command::new("mount")
            .arg("--bind")
            .arg(t.join("out/frx"))
            .arg(root.join("frx")));
        let rt = t.join("out/frx/store").join(&runtime);
        symlink(format!("/frx/store/{runtime}/usr"), root.join("usr")).unwrap();
        for l in ["bin", "lib", "lib64", "sbin"] {
            symlink(fs::read_link(rt.join(l)).unwrap(), root.join(l)).unwrap();
        }
        Guest {
            _dir: dir,
            root,
            system,
            agent,
            ns: None,
        }
    }

    /// Starts `fruix-agent init` as PID 1 of new namespaces; returns the
    /// host pid of that PID 1.
    fn boot(&mut self) -> u32 {
        let log = fs::File::create(self.root.with_file_name("init.log")).unwrap();
        let child = Command::new("unshare")
            .args([
                "--pid", "--fork", "--mount", "--net", "--uts", "--ipc", "chroot",
            ])
            .arg(&self.root)
            .arg(format!("/frx/store/{}/bin/fruix-agent", self.agent))
            .args(["init", "--system", &self.system])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let unshare = child.id();
        self.ns = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let kids = fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
                .unwrap_or_default();
            if let Some(p) = kids.split_whitespace().next() {
                return p.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "unshare started no PID 1");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a command inside the guest's namespaces and root.
    fn inside(&self, pid1: u32, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args([
                "-t",
                &pid1.to_string(),
                "-m",
                "-p",
                "-n",
                "-u",
                "-i",
                "chroot",
            ])
            .arg(&self.root)
            .args(args)
            .output()
            .unwrap()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.root.with_file_name("init.log")).unwrap_or_default()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut c) = self.ns.take() {
            // Killing the namespace's PID 1 ends every process in it.
            if let Some(p) = fs::read_to_string(format!("/proc/{0}/task/{0}/children", c.id()))
                .ok()
                .and_then(|k| k.split_whitespace().next().map(str::to_owned))
            {
                let _ = Command::new("kill").args(["-9", &p]).status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Only the kill test binds /dev from outside; either may be absent.
        for m in ["dev", "frx"] {
            let _ = Command::new("umount")
                .arg(self.root.join(m))
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn init_activates_and_execs_shepherd_as_pid_1_and_the_system_comes_up_ready() {
    let mut g = Guest::new();
    let pid1 = g.boot();
    // Ask from inside until the agent's daemon answers, then wait for its
    // final outcome.
    let agent = format!("/frx/store/{}/bin/fruix-agent", g.agent);
    let deadline = Instant::now() + Duration::from_secs(120);
    let report = loop {
        let o = g.inside(pid1, &[&agent, "status", "--wait", "60"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        if o.status.code() != Some(2) && !out.starts_with("ready_marker=pending") {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "no final report in time; init log:\n{}\nstatus: {out}{}",
            g.log(),
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for want in [
        "ready_marker=ready",
        "boot_mode=shepherd-pid1",
        "shepherd_pid=1",
        "shepherd_status=running",
        "sshd_status=running",
        "compat_prefix_shims=absent",
        "guile_module_smoke=ok",
        "native_base_store_count=3",
        "host_base_store_count=0",
        "native_runtime_ready=ok",
        "store_verify=ok",
        "activation=ok",
    ] {
        assert!(
            report.lines().any(|l| l == want),
            "{want} missing from:\n{report}\ninit log:\n{}",
            g.log()
        );
    }
    // PID 1 of the namespace is the store's Shepherd, not Debian's.
    let o = g.inside(pid1, &["/bin/sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"]);
    let cmdline = String::from_utf8_lossy(&o.stdout);
    assert!(
        cmdline.contains("-shepherd-1.0.3/bin/shepherd --config=/etc/shepherd.scm"),
        "{cmdline}"
    );
    assert!(
        !g.root.join("usr/bin/shepherd").exists(),
        "there is no Debian shepherd in the runtime"
    );
    // The ready file, from inside.
    let o = g.inside(pid1, &["/bin/cat", "/run/fruix/ready"]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ready_marker=ready\n"));
}

/// Files a killed write may leave: `.NAME.fruix-new` beside its target.
fn leftovers(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().ends_with(".fruix-new") {
            out.push(p.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) && !p.starts_with(dir.join("frx/store")) {
            leftovers(&p, out);
        }
    }
}

/// Empties what activation fills, so that the next run has all to do.
fn reset(root: &Path) {
    for d in ["etc", "run", "var", "home", "root", "tmp", "frx/var"] {
        let p = root.join(d);
        let _ = fruix_store::root::remove_tree(&p);
        fs::create_dir_all(&p).unwrap();
    }
}

#[test]
fn activation_killed_at_any_point_is_completed_by_the_next_run() {
    let g = Guest::new();
    let agent = format!("/frx/store/{}/bin/fruix-agent", g.agent);
    let activate = || {
        Command::new("chroot")
            .arg(&g.root)
            .args([&agent, "activate", "--system", &g.system, "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // A real guest always has /dev (ssh-keygen opens /dev/null).
    sh(Command::new("mount")
        .arg("--bind")
        .arg("/dev")
        .arg(g.root.join("dev")));
    // The fastest of three full runs: key generation takes a random time,
    // and kill delays longer than a run would kill nothing.
    let mut full = Duration::MAX;
    for _ in 0..3 {
        reset(&g.root);
        let t = Instant::now();
        let first = activate().wait_with_output().unwrap();
        full = full.min(t.elapsed());
        assert!(
            first.status.success(),
            "{}",
            String::from_utf8_lossy(&first.stdout)
        );
    }
    // Each attempt starts from an empty guest and is killed at another
    // tenth of a full run, so the kills land in every step. Runs speed up
    // and slow down with what else the machine does, so a run that
    // finished before its kill is tried again with half the delay: every
    // attempt ends with a run that was really cut short.
    for k in 0..10u32 {
        let mut delay = full * k / 10;
        let mut finished = Vec::new();
        loop {
            reset(&g.root);
            let mut c = activate();
            std::thread::sleep(delay);
            let ended = c.try_wait().unwrap().is_some();
            let _ = c.kill();
            let _ = c.wait();
            if !ended {
                break;
            }
            finished.push(delay);
            assert!(
                finished.len() < 8,
                "runs finished before every kill at {finished:?} (a full run takes {full:?})"
            );
            delay /= 2;
        }
        let done = activate().wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "after a kill at {k}/10: {}",
            String::from_utf8_lossy(&done.stdout)
        );
        let again = activate().wait_with_output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
        let statuses: Vec<&str> = v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"].as_str().unwrap())
            .collect();
        assert!(
            statuses.iter().all(|s| *s == "unchanged"),
            "after a kill at {k}/10, the completing run left work: {statuses:?}"
        );
        assert_eq!(v["generation"], 1, "after a kill at {k}/10");
        let mut left = Vec::new();
        leftovers(&g.root, &mut left);
        assert_eq!(
            left,
            Vec::<PathBuf>::new(),
            "after a kill at {k}/10, a half-written file is left"
        );
        assert!(
            fs::read_to_string(g.root.join("etc/passwd"))
                .unwrap()
                .contains("\nfruix:x:1000:1000:")
        );
    }
}
