//! Real components: a Debian trixie world built by mmdebstrap, cut into the
//! runtime and boot slices; the staged Shepherd and Guile extension
//! prefixes made from Debian's packages (tests/fixtures/make-staged-prefixes)
//! and materialized into the store; and the materialized Shepherd and Guile
//! modules run from the store, inside a chroot of the runtime, with nothing
//! at the old /tmp prefixes.
//!
//! These tests need root (mmdebstrap in root mode, chroot, mounts) and
//! Debian's archive, so only the root tier builds them (`--features
//! root-tests`, see tests/README.md). They fail with the reason when
//! either is missing.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::fruix;

const WORLD: &str = r#"host-name = "debtest"
init = "shepherd-pid1"
kernel = "native-boot"
bootloader = "native-boot"
base-packages = ["native-runtime", "guile-extra", "shepherd"]

[packages.native-world]
version = "trixie"
source = { type = "debian", suite = "trixie", packages = [
  "linux-image-cloud-amd64", "initramfs-tools", "systemd-standalone-sysusers",
  "sysvinit-core", "guile-3.0", "guile-3.0-libs", "libgnutls30t64",
  "openssh-server", "procps", "iproute2", "ifupdown", "kmod", "systemd-boot-efi",
] }

[packages.native-runtime]
version = "trixie"
from = "native-world"
prune = ["boot", "usr/include", "usr/share/doc", "usr/share/examples", "usr/share/info",
         "usr/share/man", "usr/share/mk", "usr/tests", "usr/lib/modules", "usr/lib/systemd/boot"]

[packages.native-boot]
version = "trixie"
from = "native-world"
keep = ["boot/vmlinuz-*", "boot/initrd.img-*", "usr/lib/modules", "usr/lib/systemd/boot/efi"]

[packages.guile-extra]
version = "1.3.1"
source = { type = "dir", path = "/tmp/guile-gnutls-freebsd-validate-install" }
materialize = { prefix = "/tmp/guile-gnutls-freebsd-validate-install", rules = ["guile-extra"], compile-with = "native-world" }

[packages.shepherd]
version = "1.0.3"
source = { type = "dir", path = "/tmp/shepherd-freebsd-validate-install" }
materialize = { prefix = "/tmp/shepherd-freebsd-validate-install", rules = ["shepherd"], compile-with = "native-world" }
"#;

fn need_root() {
    assert!(
        fruix_store::root::running_as_root(),
        "these tests run mmdebstrap in root mode, chroot and mount: run them as root (the README's test command does)"
    );
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

struct Built {
    _dir: tempfile::TempDir,
    out: PathBuf,
    report: serde_json::Value,
}

/// Runs `fruix system build --json` on `text` in a fresh directory, with
/// a stand-in agent binary.
fn run_build(text: &str) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let decl = dir.path().join("world.toml");
    fs::write(&decl, text).unwrap();
    fs::write(dir.path().join("agent"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(
        dir.path().join("agent"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = fruix(&[
        "system",
        "build",
        decl.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--agent",
        dir.path().join("agent").to_str().unwrap(),
        "--json",
    ]);
    (dir, out, o)
}

/// Builds the world declaration in a fresh directory.
fn build_world() -> Built {
    let (dir, out, o) = run_build(WORLD);
    assert!(
        o.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report = serde_json::from_slice(&o.stdout).unwrap();
    Built {
        _dir: dir,
        out,
        report,
    }
}

/// Makes the staged prefixes, then builds the world declaration once for
/// all tests of this file.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        need_root();
        let st = Command::new(repo().join("tests/fixtures/make-staged-prefixes"))
            .status()
            .unwrap();
        assert!(st.success(), "tests/fixtures/make-staged-prefixes failed");
        build_world()
    })
}

fn item(b: &Built, package: &str) -> PathBuf {
    let p = b.report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["package"] == package)
        .unwrap();
    PathBuf::from(p["path"].as_str().unwrap())
}

#[test]
fn the_world_is_cut_into_runtime_and_boot() {
    let b = built();
    let runtime = item(b, "native-runtime");
    assert!(runtime.join("usr/bin/guile-3.0").is_file());
    assert!(runtime.join("usr/sbin/sshd").is_file());
    assert!(!runtime.join("boot").exists(), "no boot/ in the runtime");
    assert!(
        !runtime.join("usr/include").exists(),
        "no usr/include in the runtime"
    );
    assert!(
        !runtime.join("etc/ssh/ssh_host_ed25519_key").exists(),
        "host keys are never in an item"
    );
    let boot = item(b, "native-boot");
    let names: Vec<String> = fs::read_dir(boot.join("boot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("vmlinuz-")), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("initrd.img-")),
        "{names:?}"
    );
    assert!(
        boot.join("usr/lib/systemd/boot/efi/systemd-bootx64.efi")
            .is_file()
    );
    assert!(!boot.join("usr/bin").exists());
    let o = fruix(&[
        "store",
        "verify",
        "--root",
        b.out.join("frx").to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn a_second_build_from_the_deb_cache_gives_the_same_items() {
    let b = built();
    let again = build_world();
    assert_eq!(
        again.report["system"], b.report["system"],
        "two builds of the same declaration give the same system"
    );
}

/// A chroot of the runtime with the store at /frx/store and nothing else:
/// no /tmp prefixes, no Debian Shepherd or Guile extensions.
struct Chroot {
    dir: tempfile::TempDir,
}

impl Chroot {
    fn new(b: &Built) -> Chroot {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path();
        let runtime = item(b, "native-runtime");
        for d in ["frx/store", "proc", "tmp", "dev", "etc", "root"] {
            fs::create_dir_all(c.join(d)).unwrap();
        }
        let rt = format!(
            "/frx/store/{}",
            runtime.file_name().unwrap().to_str().unwrap()
        );
        std::os::unix::fs::symlink(format!("{rt}/usr"), c.join("usr")).unwrap();
        for l in ["bin", "lib", "lib64", "sbin"] {
            std::os::unix::fs::symlink(format!("usr/{l}"), c.join(l)).unwrap();
        }
        // What activation does for /etc: the runtime's etc (alternatives
        // such as /usr/bin/guile -> /etc/alternatives/guile among it).
        let st = Command::new("cp")
            .arg("-a")
            .arg(runtime.join("etc/."))
            .arg(c.join("etc"))
            .status()
            .unwrap();
        assert!(st.success());
        let st = Command::new("mount")
            .arg("--bind")
            .arg(b.out.join("frx/store"))
            .arg(c.join("frx/store"))
            .status()
            .unwrap();
        assert!(st.success());
        Chroot { dir }
    }

    fn run(&self, env: &[(&str, String)], args: &[&str]) -> Output {
        let mut cmd = Command::new("chroot");
        cmd.arg(self.dir.path())
            .arg("/usr/bin/env")
            .arg("-i")
            .arg("PATH=/usr/bin:/usr/sbin")
            .arg("HOME=/root");
        for (k, v) in env {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.args(args).output().unwrap()
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(self.dir.path().join("frx/store"))
            .status();
    }
}

#[test]
fn materialized_guile_modules_and_shepherd_run_from_the_store_with_no_shim() {
    let b = built();
    let extra = format!(
        "/frx/store/{}",
        item(b, "guile-extra")
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    );
    let shepherd = format!(
        "/frx/store/{}",
        item(b, "shepherd").file_name().unwrap().to_str().unwrap()
    );
    let c = Chroot::new(b);
    assert!(
        !c.dir
            .path()
            .join("tmp/shepherd-freebsd-validate-install")
            .exists()
    );
    let env = [
        (
            "GUILE_LOAD_PATH",
            format!("{extra}/share/guile/site/3.0:{shepherd}/share/guile/site/3.0"),
        ),
        (
            "GUILE_LOAD_COMPILED_PATH",
            format!("{extra}/lib/guile/3.0/site-ccache:{shepherd}/lib/guile/3.0/site-ccache"),
        ),
        (
            "GUILE_EXTENSIONS_PATH",
            format!("{extra}/lib/guile/3.0/extensions"),
        ),
        ("GUILE_AUTO_COMPILE", "0".to_owned()),
    ];
    // The Guile module smoke test of the example systems.
    let o = c.run(&env, &["guile", "-c", "(use-modules (fibers config) (gnutls) (shepherd config)) (display (list 'ok %sysconfdir %runstatedir))"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "(ok /etc /run)",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The rewritten modules were compiled again by the world's Guile: with
    // no source on the load path, their compiled files alone load, and
    // hold the guest's paths.
    let compiled_only: Vec<(&str, String)> = env
        .iter()
        .filter(|(k, _)| *k != "GUILE_LOAD_PATH")
        .cloned()
        .collect();
    let o = c.run(&compiled_only, &["guile", "-c", "(use-modules (fibers config) (gnutls) (shepherd config)) (display (list 'compiled %sysconfdir %runstatedir (extension-library \"fibers-epoll\")))"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "(compiled /etc /run fibers-epoll)",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for (pkg, lines) in [
        (
            "guile-extra",
            "compiled lib/guile/3.0/site-ccache/fibers/config.go\ncompiled lib/guile/3.0/site-ccache/gnutls.go\n",
        ),
        (
            "shepherd",
            "compiled lib/guile/3.0/site-ccache/shepherd/config.go\n",
        ),
    ] {
        let rec = fs::read_to_string(item(b, pkg).join("share/fruix/materialized")).unwrap();
        assert!(
            rec.starts_with("prefix-parent /tmp/\n")
                && rec.contains("\nrevision 3\n")
                && rec.ends_with(lines)
                && !rec.contains("\ndeleted "),
            "{pkg}: {rec}"
        );
    }
    // Shepherd's own script finds its modules from its place in the store.
    let o = c.run(&env, &[&format!("{shepherd}/bin/shepherd"), "--version"]);
    let version = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{version}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        version.lines().next(),
        Some("shepherd (GNU Shepherd) 1.0.3"),
        "{version}"
    );
    // Nothing of the old prefixes is left in the items.
    for (pkg, prefix) in [
        ("guile-extra", "/tmp/guile-gnutls-freebsd-validate-install"),
        ("shepherd", "/tmp/shepherd-freebsd-validate-install"),
    ] {
        let o = fruix(&[
            "scan-prefixes",
            item(b, pkg).to_str().unwrap(),
            "--prefix",
            prefix,
        ]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{pkg}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

#[test]
fn a_failing_mmdebstrap_is_reported_with_its_last_lines() {
    need_root();
    let text = WORLD.replace("\"kmod\", ", "\"kmod\", \"no-such-package-fruix\", ");
    // --json keeps progress off stderr, which then holds only the error.
    let (_dir, out, o) = run_build(&text);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    // src/realize: `package '{name}': {tool} failed (whole log: {log}):
    // {tail}`, the log in the build's work directory and the tail its last
    // 8 lines joined with ` | `.
    let log = out.join(".fruix-build/work/mmdebstrap-native-world.log");
    let prefix = format!(
        "fruix: package 'native-world': mmdebstrap failed (whole log: {}): ",
        log.display()
    );
    let tail = err
        .strip_prefix(&prefix)
        .and_then(|t| t.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not '{prefix}TAIL': {err}"));
    let logged = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = logged.lines().collect();
    assert_eq!(
        tail,
        lines[lines.len().saturating_sub(8)..].join(" | "),
        "the tail is the log's last 8 lines"
    );
    // ... and names the problem, in apt's words.
    assert!(
        tail.split(" | ")
            .any(|l| l == "E: Unable to locate package no-such-package-fruix"),
        "{tail}"
    );
    let store = out.join("frx/store");
    let items: Vec<String> = fs::read_dir(&store)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        items.iter().all(|i| !i.contains("native-world")),
        "no world item: {items:?}"
    );
}
