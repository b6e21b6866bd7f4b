//! What the daemon tests share: a guest root holding a real store,
//! activated, and the daemon run against it as a process.
#![allow(clippy::unwrap_used, dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fruix_store::{ImportOptions, StoreRoot, import_dir};

pub fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fruix-agent"))
        .args(args)
        .output()
        .unwrap()
}

pub fn write(p: &Path, text: &str, mode: u32) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A guest root with runtime and system items; the system declares a
/// command probe and full verification. Returns the system's guest path.
pub fn guest(t: &Path, probe: &str) -> String {
    guest_with(t, probe, "")
}

/// [`guest`], with `extra` appended to the system's `system.toml`.
pub fn guest_with(t: &Path, probe: &str, extra: &str) -> String {
    let store = StoreRoot::new(t.join("frx"));
    let src = t.join("src");
    write(&src.join("rt/usr/bin/tool"), "a tool of some size", 0o755);
    write(
        &src.join("rt/etc/passwd"),
        "root:x:0:0::/root:/bin/sh\n",
        0o644,
    );
    write(&src.join("rt/etc/group"), "root:x:0:\n", 0o644);
    let opts = ImportOptions::default();
    let rt = import_dir(&store, "native-runtime-test", &src.join("rt"), &opts).unwrap();
    let sys = src.join("sys");
    write(
        &sys.join("closure"),
        &format!("{} base native\n", rt.name),
        0o444,
    );
    fs::create_dir_all(sys.join("manifests")).unwrap();
    fs::copy(
        store.manifest_path(&rt.name),
        sys.join("manifests").join(format!("{}.mtree", rt.name)),
    )
    .unwrap();
    write(
        &sys.join("etc/fruix/system.toml"),
        &format!(
            "host-name = \"t\"\nboot-mode = \"rc-shepherd\"\nstore-verify = \"full\"\ngate = [\"store\", \"smoke\"]\nruntime = \"{}\"\nagent = \"a\"\n\n[[probes]]\nname = \"smoke\"\ncommand = [\"/bin/sh\", \"-c\", \"{probe}\"]\ntimeout = 10\n{extra}",
            rt.name
        ),
        0o444,
    );
    let s = import_dir(&store, "system-t", &sys, &opts).unwrap();
    // Host keys come from the host's ssh-keygen (activation's Linux platform).
    let system = format!("/frx/store/{}", s.name);
    let o = agent(&[
        "activate",
        "--root",
        t.to_str().unwrap(),
        "--system",
        &system,
    ]);
    assert!(
        o.status.success(),
        "activation: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    write(&t.join("console"), "", 0o644);
    system
}

pub struct Daemon(pub Child);

impl Daemon {
    pub fn start(t: &Path, system: &str) -> Daemon {
        Daemon::start_with(t, system, &[])
    }

    /// [`Daemon::start`] with more arguments.
    pub fn start_with(t: &Path, system: &str, more: &[&str]) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_fruix-agent"))
            .args([
                "run",
                "--root",
                t.to_str().unwrap(),
                "--system",
                system,
                "--console",
                "/console",
            ])
            .args(more)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // The socket appears once the daemon listens.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !t.join("run/fruix/agent.sock").exists() {
            assert!(Instant::now() < deadline, "the daemon never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon(child)
    }

    pub fn signal(&self, sig: &str) {
        assert!(
            Command::new("kill")
                .args(["-s", sig, &self.0.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
