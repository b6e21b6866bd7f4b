//! What the system tests share: the `fruix` binaries, one output directory
//! whose store every declaration builds into (so the Debian world is made
//! once), the SSH key the examples authorize, images built once per
//! declaration, and guests booted with `fruix system vm` and asked with
//! `fruix query`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fruix_system::{ClosureEntry, Origin, Role, SystemConfig};

/// The repository.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The `fruix` under test.
pub fn fruix() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fruix"))
}

/// Everything the tests build lives here, kept between runs so that the
/// store's records make a second run fast.
pub fn out() -> PathBuf {
    repo().join("target/system-tests")
}

/// Fails with the reason when the machine cannot run these tests.
fn preflight() {
    assert!(
        nix_is_root(),
        "the system tests build Debian trees with mmdebstrap in root mode and must run as root"
    );
    let agent = fruix().with_file_name("fruix-agent");
    assert!(
        agent.is_file(),
        "{}: missing; run the system tests through `cargo test --workspace` or scripts/test, which build it",
        agent.display()
    );
    for tool in [
        "qemu-system-x86_64",
        "qemu-img",
        "mke2fs",
        "debugfs",
        "mkfs.vfat",
        "mcopy",
        "mdir",
        "fsck.fat",
        "sfdisk",
        "mmdebstrap",
        "ssh",
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(found, "{tool}: not installed (scripts/setup installs it)");
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The key pair the test declarations authorize for root.
pub fn key() -> PathBuf {
    out().join("id_ed25519")
}

static SETUP: OnceLock<()> = OnceLock::new();

/// Checks the machine, makes the staged prefixes the examples import and
/// the SSH key; once per test process.
pub fn setup() {
    SETUP.get_or_init(|| {
        preflight();
        std::fs::create_dir_all(out()).unwrap();
        let st = Command::new(repo().join("tests/fixtures/make-staged-prefixes"))
            .status()
            .unwrap();
        assert!(st.success(), "make-staged-prefixes failed");
        if !key().is_file() {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(key())
                .status()
                .unwrap();
            assert!(st.success());
        }
    });
}

/// A declaration derived from an example: its text with `edits` applied
/// (each `(from, to)` must match), the key file pointing at the tests'
/// key, written to `OUT/NAME.toml`.
pub fn declaration(example: &str, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    setup();
    let mut text = std::fs::read_to_string(repo().join("examples").join(example)).unwrap();
    let mut all = vec![(
        "\"../target/fruix-demo/id_ed25519.pub\"".to_owned(),
        format!("\"{}.pub\"", key().display()),
    )];
    all.extend(
        edits
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned())),
    );
    for (from, to) in all {
        assert!(text.contains(&from), "{example}: no '{from}' to replace");
        text = text.replacen(&from, &to, 1);
    }
    let p = out().join(format!("{name}.toml"));
    write_atomic(&p, text.as_bytes(), 0o644);
    p
}

/// Writes a file through a temporary of its own and a rename, mode set
/// first: two tests run at a time, and some write the same file (with the
/// same bytes) while the other may be reading it.
pub fn write_atomic(p: &Path, bytes: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::NamedTempFile::new_in(p.parent().unwrap()).unwrap();
    std::fs::write(tmp.path(), bytes).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    tmp.persist(p).unwrap();
}

/// A built image.
#[derive(Clone, Debug)]
pub struct Image {
    /// The raw image.
    pub path: PathBuf,
    /// `fruix system image --json`'s report.
    pub report: serde_json::Value,
}

static IMAGES: Mutex<BTreeMap<PathBuf, Image>> = Mutex::new(BTreeMap::new());

/// Holds off every other image build of this process, for a test that
/// builds images itself and removes what they share (the staged roots
/// under `OUT/.fruix-build`). Builds from other tests still run beside
/// it; `fruix` itself serialises builds into one output directory (its
/// build lock).
pub fn images_exclusive() -> std::sync::MutexGuard<'static, BTreeMap<PathBuf, Image>> {
    IMAGES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds the raw image of a declaration, once per test process.
pub fn image(decl: &Path) -> Image {
    let mut images = images_exclusive();
    if let Some(i) = images.get(decl) {
        return i.clone();
    }
    let made = Command::new(fruix())
        .args(["system", "image"])
        .arg(decl)
        .arg("--out")
        .arg(out())
        .args(["--format", "raw", "--json"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "fruix system image {} failed",
        decl.display()
    );
    let report: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    let path = PathBuf::from(report["images"][0]["path"].as_str().unwrap());
    let i = Image { path, report };
    images.insert(decl.to_owned(), i.clone());
    i
}

/// A sparse copy of an image, to plant a fault in.
pub fn copy_image(image: &Path, name: &str) -> PathBuf {
    let to = out().join(format!("{name}.raw"));
    let st = Command::new("cp")
        .arg("--sparse=always")
        .arg(image)
        .arg(&to)
        .status()
        .unwrap();
    assert!(st.success());
    to
}

/// The root file system of an image, as debugfs names it.
pub fn root_fs(image: &Path) -> String {
    // fruix images put the root right after the 128 MiB ESP at 1 MiB.
    format!("{}?offset={}", image.display(), 129u64 << 20)
}

/// Runs debugfs commands on an image's root file system; returns stdout.
pub fn debugfs(image: &Path, write: bool, cmds: &str) -> String {
    // A file of its own: two tests run at a time.
    let f = tempfile::Builder::new()
        .prefix("debugfs-")
        .suffix(".cmd")
        .tempfile_in(out())
        .unwrap();
    std::fs::write(f.path(), cmds).unwrap();
    let mut c = Command::new("debugfs");
    if write {
        c.arg("-w");
    }
    let out = c
        .arg("-f")
        .arg(f.path())
        .arg(root_fs(image))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debugfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Boots retried in one run (each a guest kernel that panicked before the
/// agent reported, `--retries 1` booting again) past which the run fails:
/// with a host thread per vCPU about one boot in thirty panicked under
/// QEMU 7.2's TCG (now run on one thread: docs/reliability.md); more than
/// two in a run's ten boots is a kernel or image that panics, which the
/// retries would otherwise hide.
pub const RETRIED_BOOTS_BUDGET: u64 = 2;

/// The guests booted in this run: (test, boot attempts), in order.
static BOOTS: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());
static AT_EXIT: OnceLock<()> = OnceLock::new();

/// Records the boot attempts of one `fruix system vm` call, by the test
/// that made it (libtest names each test's thread after the test).
fn count_boot(attempts: u64) {
    AT_EXIT.get_or_init(|| {
        // SAFETY: registers a plain `extern "C"` function with no
        // arguments; it runs once, when the test process exits.
        let rc = unsafe { libc::atexit(boot_budget_at_exit) };
        assert_eq!(rc, 0, "atexit failed");
    });
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_owned();
    BOOTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((test, attempts));
}

/// What [`boot_budget_at_exit`] prints, and whether the run is within
/// the budget.
pub fn boot_summary(boots: &[(String, u64)]) -> (String, bool) {
    let attempts: u64 = boots.iter().map(|(_, a)| a).sum();
    let retried: Vec<String> = boots
        .iter()
        .filter(|(_, a)| *a > 1)
        .map(|(t, a)| format!("{t} ({a} attempts)"))
        .collect();
    let extra = attempts.saturating_sub(boots.len() as u64);
    let mut s = format!(
        "system tests: {} guest boots, {attempts} boot attempts, {extra} retried",
        boots.len()
    );
    if !retried.is_empty() {
        s.push_str(&format!(": {}", retried.join(", ")));
    }
    let within = extra <= RETRIED_BOOTS_BUDGET;
    if !within {
        s.push_str(&format!(
            "\nFAIL boot-attempts: {extra} boots retried after a guest kernel panic, more than the {RETRIED_BOOTS_BUDGET} a run may retry: the retries hide panics (their consoles are kept as *.panic-N.log beside each console log)"
        ));
    }
    (s, within)
}

/// At the end of the run: prints the total of boot attempts, and fails
/// the run (exit 1) when more boots were retried than the budget allows.
extern "C" fn boot_budget_at_exit() {
    let boots = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let (summary, within) = boot_summary(&boots);
    // Nothing may panic here (an `extern "C"` function): errors writing
    // are ignored.
    let _ = writeln!(std::io::stdout(), "{summary}");
    let _ = std::io::stdout().flush();
    if !within {
        // SAFETY: _exit ends the process at once, which is what is meant:
        // exit() may not be called again from an atexit handler.
        unsafe { libc::_exit(1) };
    }
}

/// A guest booted by `fruix system vm`, stopped when dropped.
pub struct Guest {
    child: Child,
    /// `fruix system vm --json`'s report.
    pub vm: serde_json::Value,
    /// The forwarded SSH port.
    pub port: u16,
    /// The known_hosts file `fruix system vm` wrote from the console's
    /// key block, when it wrote one.
    pub known_hosts: Option<PathBuf>,
}

impl Guest {
    /// Boots `image` and waits for the agent's ready line. The guest keeps
    /// running (for `query`) until dropped.
    pub fn boot(image: &Path, firmware: &str, append: &[&str]) -> Guest {
        Guest::boot_with(image, firmware, append, &[])
    }

    /// As [`Guest::boot`], with more arguments for `fruix system vm`
    /// (`--persistent`).
    pub fn boot_with(image: &Path, firmware: &str, append: &[&str], extra: &[&str]) -> Guest {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(fruix());
        cmd.args(["system", "vm"])
            .arg(image)
            .args(["--firmware", firmware, "--json", "--timeout", "600"])
            // A guest kernel that panics before the agent reports (QEMU
            // 7.2's TCG did, docs/reliability.md) is booted once more, and
            // the run counts it.
            .args(["--retries", "1"])
            .args(["--ssh-port", &port.to_string()]);
        for a in append {
            cmd.args(["--append", a]);
        }
        cmd.args(extra);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let vm: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("fruix system vm printed no report ({e}): '{line}'"));
        count_boot(vm["attempts"].as_u64().unwrap_or(1));
        let known_hosts = vm["known_hosts"].as_str().map(PathBuf::from);
        Guest {
            child,
            vm,
            port,
            known_hosts,
        }
    }

    /// The console's report as a map.
    pub fn console(&self) -> BTreeMap<String, String> {
        self.vm["report"]["fields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|kv| {
                        (
                            kv[0].as_str().unwrap().to_owned(),
                            kv[1].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The reasons printed on the console before the ready line.
    pub fn console_reasons(&self) -> Vec<String> {
        self.vm["report"]["reasons"]
            .as_array()
            .map(|a| a.iter().map(|r| r.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    /// The pinned known_hosts file; a guest booted without one cannot be
    /// asked.
    pub fn pinned(&self) -> &Path {
        self.known_hosts.as_deref().unwrap_or_else(|| {
            // The console's lines from the key block on, to tell a block
            // never printed from one the host could not read.
            let log = self.vm["console_log"].as_str().unwrap_or_default();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            // No block at all: the last 4 KiB before the ready line.
            let ready = text.find("fruix-ready:").unwrap_or(text.len());
            let from = text
                .find("-----BEGIN SSH HOST KEY")
                .unwrap_or_else(|| {
                    (ready.saturating_sub(4096)..=ready)
                        .find(|i| text.is_char_boundary(*i))
                        .unwrap_or(ready)
                });
            let end = text[from..].find("fruix-ready:").map_or(text.len(), |i| from + i);
            panic!(
                "fruix system vm pinned no host keys: {}; console {log} from the key block to the ready line:\n{}",
                self.vm["host_keys_error"],
                &text[from..end]
            )
        })
    }

    /// `fruix query` against the guest with host keys pinned in
    /// `known_hosts`: its output, and how long it took.
    pub fn query_pinned(&self, known_hosts: &Path) -> (Output, Duration) {
        let t = Instant::now();
        let out = Command::new(fruix())
            .args(["query", "--ssh"])
            .arg(format!("root@127.0.0.1:{}", self.port))
            .arg("-i")
            .arg(key())
            .arg("--known-hosts")
            .arg(known_hosts)
            .args(["--wait", "120", "--json"])
            .output()
            .unwrap();
        (out, t.elapsed())
    }

    /// `fruix query --json` against the guest, its host keys pinned in
    /// the file `fruix system vm` wrote: exit status and report.
    pub fn query(&self) -> (i32, serde_json::Value) {
        let (out, _) = self.query_pinned(self.pinned());
        let code = out.status.code().unwrap_or(-1);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "fruix query exited {code} without JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, v)
    }

    /// Runs a shell command in the guest over SSH; returns its exit
    /// status and output.
    pub fn ssh(&self, command: &str) -> (i32, String) {
        let out = Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.pinned().display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg("-i")
            .arg(key())
            .args(["-p", &self.port.to_string(), "root@127.0.0.1", command])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // fruix system vm stops its QEMU on SIGTERM.
        // SAFETY: kill with the pid of our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// Collects what a test checks and prints `PASS name` with the metadata
/// it saw, or `FAIL name: reasons` and fails.
pub struct Verdict {
    name: String,
    failures: Vec<String>,
    seen: Vec<(String, String)>,
}

impl Verdict {
    /// A verdict for test `name`.
    pub fn new(name: &str) -> Verdict {
        Verdict {
            name: name.to_owned(),
            failures: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Records metadata to print.
    pub fn saw(&mut self, key: &str, value: impl ToString) {
        self.seen.push((key.to_owned(), value.to_string()));
    }

    /// Checks a condition.
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }

    /// Checks that `map[key] == want`.
    pub fn expect(&mut self, map: &BTreeMap<String, String>, key: &str, want: &str) {
        let got = map.get(key).map(String::as_str).unwrap_or("<missing>");
        self.check(got == want, format!("{key}={got}, expected {want}"));
    }

    /// Prints the verdict; panics on failure.
    pub fn finish(self) {
        let meta: String = self
            .seen
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        if self.failures.is_empty() {
            println!("PASS {}\n{meta}", self.name);
        } else {
            println!("FAIL {}: {}\n{meta}", self.name, self.failures.join("; "));
            panic!("FAIL {}: {}", self.name, self.failures.join("; "));
        }
    }
}

/// A JSON report (`fruix query --json`, `fruix-agent status --json`) as a
/// map of its string fields.
pub fn fields(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The system item's `closure`, read with the agent's own reader.
pub fn closure(system: &str) -> Vec<ClosureEntry> {
    let text =
        std::fs::read_to_string(out().join("frx/store").join(system).join("closure")).unwrap();
    fruix_system::closure::parse(&text, "closure").unwrap()
}

/// How many native base items the builder put in the system.
pub fn native_base_count(system: &str) -> usize {
    closure(system)
        .iter()
        .filter(|c| c.has(Role::Base) && c.origin == Origin::Native)
        .count()
}

/// The system item's `etc/fruix/system.toml`, read as the agent reads it.
pub fn system_config(system: &str) -> SystemConfig {
    SystemConfig::load(&out().join("frx/store").join(system)).unwrap()
}

pub fn saw_all(v: &mut Verdict, map: &BTreeMap<String, String>) {
    for (k, val) in map {
        v.saw(k, val);
    }
}
