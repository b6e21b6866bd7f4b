//! `fruix system image` of a FreeBSD declaration: GPT with `loader.efi` on
//! the ESP and a UFS2 root written by `makefs -t ffs`, whose `/boot`
//! holds a `loader.conf` naming the system. No FreeBSD world can be had
//! here, so the packages are small trees laid out as FreeBSD's
//! distribution sets are (`common/freebsd.rs`); what is tested is the
//! image writer, which only copies them. The agent is a stand-in script,
//! but in `freebsd_image_carries_the_real_freebsd_agent`: the FreeBSD ELF
//! `scripts/build-freebsd-agent` links. The root is read back with the
//! UFS2 reader in `ufs2/`, and by Linux's `ufs` driver in the system test
//! `ufs_reader`.
#![allow(clippy::unwrap_used)]

mod ufs2;

mod common;

#[path = "common/freebsd.rs"]
mod freebsd_world;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ufs2::{S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, Ufs};

use common::fruix;
use freebsd_world::{partitions, pattern, setup, write};

fn image(decl: &Path, out: &Path, agent: &Path) -> Output {
    fruix(&[
        "system",
        "image",
        decl.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--agent",
        agent.to_str().unwrap(),
        "--json",
        "--format",
        "raw",
    ])
}

fn image_ok(decl: &Path, out: &Path, agent: &Path) -> serde_json::Value {
    let o = image(decl, out, agent);
    assert!(
        o.status.success(),
        "image failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The name of the item in `OUT/frx/store` whose name ends with `suffix`.
fn store_item(out: &Path, suffix: &str) -> String {
    fs::read_dir(out.join("frx/store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(suffix))
        .unwrap_or_else(|| panic!("no item *{suffix} in {}", out.display()))
}

/// The repository.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn read_range(p: &Path, start: u64, len: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(p).unwrap();
    let mut b = vec![0u8; len as usize];
    f.read_exact_at(&mut b, start).unwrap();
    b
}

#[test]
fn freebsd_image_has_loader_efi_and_a_ufs2_root_naming_the_system() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "shepherd-pid1", "uefi");
    let out = t.path().join("out");
    let v = image_ok(&decl, &out, &t.path().join("agent"));
    let system = v["system"].as_str().unwrap().to_owned();
    let raw = PathBuf::from(v["images"][0]["path"].as_str().unwrap());
    let cmdline = v["cmdline"].as_str().unwrap();
    let system_word = format!("fruix.system=/frx/store/{system}");
    assert!(
        cmdline.split(' ').any(|w| w == system_word),
        "{system_word} not a word of: {cmdline}"
    );
    let (kernel_item, boot_item, runtime_item, agent_item) = (
        store_item(&out, "-freebsd-kernel-14.3"),
        store_item(&out, "-freebsd-boot-14.3"),
        store_item(&out, "-freebsd-runtime-14.3"),
        store_item(&out, "-fruix-agent-0.1.0"),
    );

    let parts = partitions(&raw);
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0].0, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    assert_eq!(
        parts[1].0, "516E7CB6-6ECF-11D6-8FF8-00022D09712B",
        "freebsd-ufs"
    );
    assert_eq!(parts[1].3, "fruix-root", "the GPT label loader.conf names");
    assert_eq!(parts[1].2, 96 << 20);

    // The ESP: FreeBSD's loader as the fallback loader, nothing of Linux.
    let esp = format!("{}@@{}", raw.display(), parts[0].1);
    let got = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &esp, "::/EFI/BOOT/BOOTX64.EFI"])
        .output()
        .unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, pattern(70_000, 9));
    let entry = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &esp, "::/loader/entries/fruix.conf"])
        .output()
        .unwrap();
    assert!(
        !entry.status.success(),
        "a FreeBSD ESP has no systemd-boot entry"
    );

    // The root, read back.
    let bytes = read_range(&raw, parts[1].1, parts[1].2);
    let fs = Ufs::new(&bytes).unwrap();
    let ino = |p: &str| {
        fs.lookup(p)
            .unwrap_or_else(|| panic!("{p} is not in the root"))
    };

    let conf = String::from_utf8(fs.read(ino("/boot/loader.conf"))).unwrap();
    let digest = system.split('-').next().unwrap();
    for line in [
        format!("fruix.system=\"/frx/store/{system}\""),
        format!("fruix.digest=\"{digest}\""),
        "fruix.generation=\"1\"".into(),
        format!("init_path=\"/frx/store/{agent_item}/bin/fruix-agent\""),
        "vfs.root.mountfrom=\"ufs:/dev/gpt/fruix-root\"".into(),
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} not in:\n{conf}");
    }
    assert_eq!(fs.mode(ino("/boot/kernel")) & S_IFMT, S_IFLNK);
    assert_eq!(
        fs.readlink(ino("/boot/kernel")),
        format!("/frx/store/{kernel_item}/boot/kernel")
    );
    assert_eq!(
        fs.readlink(ino("/boot/lua")),
        format!("/frx/store/{boot_item}/boot/lua")
    );
    let kernel = ino(&format!("/frx/store/{kernel_item}/boot/kernel/kernel"));
    assert_eq!(fs.mode(kernel) & S_IFMT, S_IFREG);
    assert_eq!(fs.read(kernel), pattern(1_300_000, 7), "the kernel's bytes");
    assert_eq!(fs.mode(kernel) & 0o7777, 0o555);
    assert_eq!(fs.mtime(kernel), 1, "store times");
    for p in ["/", "/frx/store", "/boot/loader.conf"] {
        assert_eq!(
            fs.times(ino(p)),
            [1, 1, 1, 1],
            "{p}: atime, mtime, ctime, birthtime"
        );
    }
    assert_eq!(
        fs.readlink(ino("/bin")),
        format!("/frx/store/{runtime_item}/bin"),
        "top-level links into the runtime"
    );
    assert_eq!(fs.mode(ino("/etc")) & S_IFMT, S_IFDIR);
    assert!(fs.list(ino("/etc")).is_empty(), "activation fills /etc");
    assert_eq!(fs.mode(ino("/tmp")) & 0o7777, 0o1777);
    let fstab = String::from_utf8(fs.read(ino(&format!("/frx/store/{system}/etc/fstab")))).unwrap();
    // Read-write, pass 0: the loader mounts the root read-write (src/target.rs).
    assert_eq!(
        fstab,
        "# Generated by `fruix system build`.\n/dev/gpt/fruix-root\t/\tufs\trw\t0\t0\n"
    );
    let manifest = ino(&format!("/frx/var/db/fruix/manifests/{kernel_item}.mtree"));
    assert_eq!(
        fs.read(manifest),
        fs::read(out.join(format!("frx/var/db/fruix/manifests/{kernel_item}.mtree"))).unwrap()
    );
}

#[test]
fn freebsd_rc_mode_activates_from_the_loaders_init_script() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "rc-shepherd", "uefi");
    let out = t.path().join("out");
    let v = image_ok(&decl, &out, &t.path().join("agent"));
    let system = v["system"].as_str().unwrap().to_owned();
    let raw = PathBuf::from(v["images"][0]["path"].as_str().unwrap());
    let parts = partitions(&raw);
    let bytes = read_range(&raw, parts[1].1, parts[1].2);
    let fs = Ufs::new(&bytes).unwrap();
    let conf = String::from_utf8(fs.read(fs.lookup("/boot/loader.conf").unwrap())).unwrap();
    let script = format!("/frx/store/{system}/libexec/fruix-first-activation");
    assert!(
        conf.lines()
            .any(|l| l == format!("init_script=\"{script}\"")),
        "{conf}"
    );
    // FreeBSD's own init, named: the loader's files add up, and a later
    // generation's must override a shepherd-pid1 one's init_path.
    assert_eq!(
        conf.lines()
            .filter(|l| l.starts_with("init_path="))
            .collect::<Vec<_>>(),
        ["init_path=\"/sbin/init\""],
        "{conf}"
    );
    let s = fs.lookup(&script).unwrap();
    assert_eq!(fs.mode(s) & 0o777, 0o555);
    let agent_item = store_item(&out, "-fruix-agent-0.1.0");
    let text = String::from_utf8(fs.read(s)).unwrap();
    let exec =
        format!("exec /frx/store/{agent_item}/bin/fruix-agent activate --system \"$system\"");
    assert_eq!(text.lines().last(), Some(exec.as_str()), "{text}");
    assert!(
        text.lines()
            .any(|l| l == "system=$(/bin/kenv -q fruix.system)"),
        "{text}"
    );
    for name in ["fruix_activate", "fruix_shepherd", "fruix_agent"] {
        // The rc.d scripts as the repository has them.
        let rc = fs
            .lookup(&format!("/frx/store/{system}/etc/rc.d/{name}"))
            .unwrap();
        assert_eq!(
            String::from_utf8(fs.read(rc)).unwrap(),
            fs::read_to_string(repo().join("rc.d").join(name)).unwrap(),
            "etc/rc.d/{name}"
        );
        let enable = fs
            .lookup(&format!("/frx/store/{system}/etc/rc.conf.d/{name}"))
            .unwrap();
        assert_eq!(
            String::from_utf8(fs.read(enable)).unwrap(),
            format!("# Generated by `fruix system build`.\n{name}_enable=\"YES\"\n")
        );
    }
    // Not pre-activated: FreeBSD's accounts need its pwd_mkdb.
    assert!(fs.list(fs.lookup("/etc").unwrap()).is_empty());
}

#[test]
fn freebsd_images_are_reproducible() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "shepherd-pid1", "uefi");
    let agent = t.path().join("agent");
    let a = image_ok(&decl, &t.path().join("a"), &agent);
    // Another second: anything taken from the clock would differ.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = image_ok(&decl, &t.path().join("b"), &agent);
    let (ra, rb) = (
        fs::read(a["images"][0]["path"].as_str().unwrap()).unwrap(),
        fs::read(b["images"][0]["path"].as_str().unwrap()).unwrap(),
    );
    assert_eq!(ra.len(), rb.len());
    let diff = ra.iter().zip(&rb).position(|(x, y)| x != y);
    assert_eq!(diff, None, "the two images differ first at byte {diff:?}");
}

#[test]
fn a_linux_agent_in_a_freebsd_system_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "shepherd-pid1", "uefi");
    let out = t.path().join("out");
    // A real Linux ELF executable.
    let o = image(&decl, &out, Path::new("/bin/true"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(
        err,
        "fruix: /bin/true: the agent is built for linux, the declaration's os is freebsd: pass --agent with a fruix-agent built for freebsd\n"
    );
    assert!(
        !out.join("fruix-bsd.raw").exists(),
        "no image after a refused build"
    );
}

#[test]
fn a_freebsd_declaration_with_direct_boot_is_refused_at_its_os_line() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "shepherd-pid1", "direct");
    let o = image(&decl, &t.path().join("out"), &t.path().join("agent"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    // Line 2, column 6: the value of `os = "freebsd"`.
    assert_eq!(
        err,
        format!(
            "fruix: {}:2:6: `os`: a FreeBSD system boots through loader.efi: set `image.firmware = \"uefi\"`\n",
            decl.display()
        )
    );
}

/// Exit 2, stderr the one line `fruix: {message}`, and no image left.
fn refused_with(o: &Output, out: &Path, message: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err, format!("fruix: {message}\n"));
    no_image_left(out);
}

/// No image, whole or partial, in `out`.
fn no_image_left(out: &Path) {
    let left: Vec<_> = fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("fruix-bsd."))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_kernel_or_loader_missing_from_its_package_is_named() {
    // src/image/freebsd.rs names the file missing from its item.
    for (missing, item, what) in [
        (
            "boot/kernel/kernel",
            "-freebsd-kernel-14.3",
            "the kernel item",
        ),
        (
            "boot/loader.efi",
            "-freebsd-boot-14.3",
            "the boot-loader item",
        ),
    ] {
        let t = tempfile::tempdir().unwrap();
        let decl = setup(t.path(), "shepherd-pid1", "uefi");
        fs::remove_file(t.path().join("world").join(missing)).unwrap();
        let out = t.path().join("out");
        let o = image(&decl, &out, &t.path().join("agent"));
        let path = out
            .join("frx/store")
            .join(store_item(&out, item))
            .join(missing);
        refused_with(
            &o,
            &out,
            &format!(
                "{}: {what} of a FreeBSD system has no {missing}",
                path.display()
            ),
        );
    }
}

#[test]
fn a_root_larger_than_its_partition_is_refused_naming_the_declaration() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "shepherd-pid1", "uefi");
    // More than the declared 96m root once makefs adds its tenth free.
    write(
        &t.path().join("world/usr/lib/big"),
        &pattern(100 << 20, 3),
        0o444,
    );
    let out = t.path().join("out");
    let o = image(&decl, &out, &t.path().join("agent"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    // src/image/freebsd.rs: `{decl}: `image.root-size` is {declared} MiB,
    // less than the {needed} MiB the root file system needs`, the needed
    // size being makefs's (over 100 MiB of content, plus its tenth free).
    let prefix = format!(
        "fruix: {}: `image.root-size` is 96 MiB, less than the ",
        decl.display()
    );
    let needed = err
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix(" MiB the root file system needs\n"))
        .unwrap_or_else(|| panic!("not '{prefix}N MiB the root file system needs': {err}"));
    let needed: u64 = needed
        .parse()
        .unwrap_or_else(|_| panic!("'{needed}' is not a size in MiB: {err}"));
    assert!((110..=130).contains(&needed), "{needed} MiB needed: {err}");
    no_image_left(&out);
}

#[test]
fn direct_boot_of_a_freebsd_image_is_refused_before_qemu_starts() {
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "shepherd-pid1", "uefi");
    let out = t.path().join("out");
    let v = image_ok(&decl, &out, &t.path().join("agent"));
    let raw = v["images"][0]["path"].as_str().unwrap().to_owned();
    let o = fruix(&[
        "system",
        "vm",
        &raw,
        "--firmware",
        "direct",
        "--accel",
        "tcg",
        "--timeout",
        "5",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "fruix: {raw}: no Linux loader entry on its EFI system partition: direct boot is for Linux images, boot this one with --firmware uefi\n"
        )
    );
}

/// The real FreeBSD agent, linked by `scripts/build-freebsd-agent` and
/// named by `FRUIX_FREEBSD_AGENT`: taken for a FreeBSD system, and the
/// init path `loader.conf` names holds exactly its bytes, executable.
#[test]
#[ignore = "needs the FreeBSD agent ELF that scripts/build-freebsd-agent links (minutes, as root): scripts/test runs it with FRUIX_FREEBSD_AGENT set"]
fn freebsd_image_carries_the_real_freebsd_agent() {
    let agent = std::env::var_os("FRUIX_FREEBSD_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "FRUIX_FREEBSD_AGENT is not set: run scripts/build-freebsd-agent and set it to the ELF it prints"
            )
        });
    let elf = fs::read(&agent).unwrap_or_else(|e| panic!("{}: {e}", agent.display()));
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[7], 9, "OS/ABI FreeBSD");
    let t = tempfile::tempdir().unwrap();
    let decl = setup(t.path(), "shepherd-pid1", "uefi");
    let out = t.path().join("out");
    let v = image_ok(&decl, &out, &agent);
    let raw = PathBuf::from(v["images"][0]["path"].as_str().unwrap());
    let agent_item = store_item(&out, "-fruix-agent-0.1.0");
    let parts = partitions(&raw);
    let bytes = read_range(&raw, parts[1].1, parts[1].2);
    let fs = Ufs::new(&bytes).unwrap();
    let conf = String::from_utf8(fs.read(fs.lookup("/boot/loader.conf").unwrap())).unwrap();
    let init = format!("/frx/store/{agent_item}/bin/fruix-agent");
    assert!(
        conf.lines().any(|l| l == format!("init_path=\"{init}\"")),
        "init_path is not {init}:\n{conf}"
    );
    let ino = fs.lookup(&init).unwrap();
    assert_eq!(fs.mode(ino) & S_IFMT, S_IFREG);
    assert_eq!(fs.mode(ino) & 0o7777, 0o555);
    assert_eq!(fs.owner(ino), (0, 0));
    assert!(fs.read(ino) == elf, "the agent in the image is not the ELF");
}
