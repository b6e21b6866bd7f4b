//! QEMU's command line: the binary, the accelerator, the disk's format
//! read from its header, and every path escaped for QEMU's option syntax.
//!
//! QEMU splits an option's value at commas (`file=X,format=raw`), and a
//! doubled comma is a literal one: a path with a comma, unescaped, would
//! add options of its own (`file=/tmp/a,format=qcow2,...`). Every path
//! goes through [`opt_path`]; the serial console is a `-chardev file` for
//! the same reason (the `-serial file:PATH` shorthand takes no escapes).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Accel, VmError};

/// The QEMU binary `fruix system vm` runs, looked up in `PATH`.
pub const QEMU: &str = "qemu-system-x86_64";

/// A disk image's format, as QEMU names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    /// A raw disk.
    Raw,
    /// qcow2.
    Qcow2,
    /// VHD, QEMU's `vpc`.
    Vpc,
}

impl DiskFormat {
    /// QEMU's name for it (`format=`).
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vpc => "vpc",
        }
    }
}

/// The format of the image at `path`, from its bytes, not its name: the
/// qcow2 magic `QFI\xfb` at the start; the VHD footer's cookie `conectix`
/// at the start (a dynamic VHD's copy of its footer) or 512 bytes before
/// the end (a fixed VHD's footer); else raw.
pub fn detect_format(path: &Path) -> Result<DiskFormat, VmError> {
    let io = |e| VmError::Io(path.to_owned(), e);
    let mut f = File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut head = [0u8; 8];
    let n = read_up_to(&mut f, &mut head).map_err(io)?;
    if n >= 4 && head[..4] == *b"QFI\xfb" {
        return Ok(DiskFormat::Qcow2);
    }
    if n == 8 && head == *b"conectix" {
        return Ok(DiskFormat::Vpc);
    }
    if len >= 512 {
        let mut foot = [0u8; 8];
        f.seek(SeekFrom::Start(len - 512)).map_err(io)?;
        if read_up_to(&mut f, &mut foot).map_err(io)? == 8 && foot == *b"conectix" {
            return Ok(DiskFormat::Vpc);
        }
    }
    Ok(DiskFormat::Raw)
}

/// Reads into `buf` until it is full or the file ends; the bytes read.
fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The QEMU binary: the first executable `qemu-system-x86_64` in `path`
/// (the `PATH` variable), found before anything else is done so that a
/// missing QEMU is said as such.
pub fn find_qemu(path: Option<&OsStr>) -> Result<PathBuf, VmError> {
    std::env::split_paths(path.unwrap_or_default())
        .map(|d| d.join(QEMU))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or(VmError::NoQemu)
}

/// The accelerator for `asked`, given why KVM cannot run a guest here
/// (None when it can): `--accel kvm` where KVM is refused is an error on
/// the host, not a guest that never reports.
pub fn choose_accel(asked: Accel, kvm_unusable: Option<String>) -> Result<&'static str, VmError> {
    match (asked, kvm_unusable) {
        (Accel::Tcg, _) | (Accel::Auto, Some(_)) => Ok("tcg"),
        (Accel::Kvm | Accel::Auto, None) => Ok("kvm"),
        (Accel::Kvm, Some(why)) => Err(VmError::KvmRefused(why)),
    }
}

/// `value` with each comma doubled, as QEMU's option parser reads it back.
pub fn escape(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// An option value `HEAD` + the escaped `path` + `TAIL`, e.g.
/// `file=` + `/tmp/a,,b.raw` + `,format=raw,if=virtio`.
/// The path is made absolute first: QEMU reads a relative `file=` value
/// with a `:` before its first `/` (`a:b.raw`, `json:...`) as a protocol.
pub fn opt_path(head: &str, path: &Path, tail: &str) -> OsString {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut s = OsString::from(head);
    s.push(escape(path.as_os_str()));
    s.push(tail);
    s
}

/// How the guest boots.
#[derive(Clone, Debug)]
pub enum Boot {
    /// QEMU loads the kernel and initrd (taken as they are: `-kernel`,
    /// `-initrd` and `-append` are not split at commas).
    Direct {
        /// The kernel.
        kernel: PathBuf,
        /// The initrd.
        initrd: PathBuf,
        /// The kernel command line.
        cmdline: String,
    },
    /// OVMF: its code (read-only) and a copy of its variable store.
    Uefi {
        /// The firmware's code.
        code: PathBuf,
        /// The copy of the variable store.
        vars: PathBuf,
    },
}

/// Everything the command line says, resolved.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// `kvm` or `tcg`.
    pub accel: &'static str,
    /// Memory in MiB.
    pub memory: u64,
    /// Virtual CPUs.
    pub cpus: u32,
    /// How it boots.
    pub boot: Boot,
    /// The disk image.
    pub image: PathBuf,
    /// Its format.
    pub format: DiskFormat,
    /// Host port forwarded to the guest's port 22.
    pub port: u16,
    /// Where the serial console is written.
    pub console_log: PathBuf,
    /// Write to the image, and reboot in QEMU under UEFI.
    pub persistent: bool,
}

/// QEMU's command for `spec` (stdio and the parent-death signal are the
/// caller's).
pub fn command(spec: &Spec) -> Command {
    let mut cmd = Command::new(&spec.qemu);
    // TCG runs the vCPUs on one host thread: with one thread per vCPU,
    // the guest kernel's live code patching (a static key flipped when the
    // clocksource watchdog marks the TSC unstable, seconds into the boot)
    // crashed it in `sched_clock_cpu` now and then (docs/reliability.md).
    let accel = if spec.accel == "tcg" {
        "tcg,thread=single"
    } else {
        spec.accel
    };
    cmd.args(["-name", "fruix", "-accel", accel]);
    cmd.args([
        "-cpu",
        if spec.accel == "kvm" {
            "host"
        } else {
            "qemu64,-cx16"
        },
    ]);
    cmd.args(["-m", &spec.memory.to_string()]);
    cmd.args(["-smp", &spec.cpus.to_string()]);
    // A guest that reboots makes QEMU exit, except a persistent UEFI
    // guest: its reboots are systemd-boot's to count.
    if !(spec.persistent && matches!(spec.boot, Boot::Uefi { .. })) {
        cmd.arg("-no-reboot");
    }
    cmd.args(["-nographic", "-display", "none", "-monitor", "none"]);
    match &spec.boot {
        Boot::Direct {
            kernel,
            initrd,
            cmdline,
        } => {
            cmd.arg("-kernel").arg(kernel);
            cmd.arg("-initrd").arg(initrd);
            cmd.arg("-append").arg(cmdline);
        }
        Boot::Uefi { code, vars } => {
            cmd.arg("-drive")
                .arg(opt_path("if=pflash,format=raw,readonly=on,file=", code, ""));
            cmd.arg("-drive")
                .arg(opt_path("if=pflash,format=raw,file=", vars, ""));
        }
    }
    cmd.arg("-drive").arg(opt_path(
        "file=",
        &spec.image,
        &format!(",format={},if=virtio", spec.format.as_str()),
    ));
    if !spec.persistent {
        cmd.arg("-snapshot");
    }
    cmd.arg("-netdev").arg(format!(
        "user,id=n0,hostfwd=tcp:127.0.0.1:{}-:22",
        spec.port
    ));
    cmd.args(["-device", "virtio-net-pci,netdev=n0"]);
    // Entropy from the host: without it the guest's random pool takes tens
    // of seconds to fill under TCG, and ssh-keygen and sshd wait for it.
    cmd.args(["-device", "virtio-rng-pci"]);
    cmd.arg("-chardev").arg(opt_path(
        "file,id=console,path=",
        &spec.console_log,
        if spec.persistent { ",append=on" } else { "" },
    ));
    cmd.args(["-serial", "chardev:console"]);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn spec(dir: &Path) -> Spec {
        Spec {
            qemu: PathBuf::from("/usr/bin/qemu-system-x86_64"),
            accel: "tcg",
            memory: 1024,
            cpus: 2,
            boot: Boot::Uefi {
                code: PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd"),
                vars: dir.join("OVMF_VARS.fd"),
            },
            image: dir.join("a,format=qcow2,file=/etc/shadow.raw"),
            format: DiskFormat::Raw,
            port: 2222,
            console_log: dir.join("c,append=x.log"),
            persistent: false,
        }
    }

    /// A comma in a path stays in the path: doubled, so that QEMU reads no
    /// option of the path's own.
    #[test]
    fn a_comma_in_a_path_is_doubled() {
        let a = args(&command(&spec(Path::new("/w,d"))));
        let i = a.iter().position(|x| x == "-snapshot").unwrap();
        assert_eq!(
            a[i - 1],
            "file=/w,,d/a,,format=qcow2,,file=/etc/shadow.raw,format=raw,if=virtio"
        );
        assert!(a.contains(&"if=pflash,format=raw,file=/w,,d/OVMF_VARS.fd".to_owned()));
        assert!(a.contains(&"file,id=console,path=/w,,d/c,,append=x.log".to_owned()));
        assert_eq!(a[a.len() - 2..], ["-serial", "chardev:console"]);
        assert_eq!(escape(OsStr::new(",a,,b,")), OsString::from(",,a,,,,b,,"));
    }

    /// TCG on one host thread (MTTCG crashed guests patching their own
    /// code, see `command`); KVM as it is.
    #[test]
    fn tcg_runs_its_vcpus_on_one_thread() {
        let mut s = spec(Path::new("/w"));
        let a = args(&command(&s));
        assert_eq!(
            a[..6],
            [
                "-name",
                "fruix",
                "-accel",
                "tcg,thread=single",
                "-cpu",
                "qemu64,-cx16"
            ]
        );
        s.accel = "kvm";
        let a = args(&command(&s));
        assert_eq!(a[2..6], ["-accel", "kvm", "-cpu", "host"]);
    }

    #[test]
    fn direct_boot_takes_its_files_as_they_are() {
        let mut s = spec(Path::new("/w"));
        s.boot = Boot::Direct {
            kernel: PathBuf::from("/w,x/vmlinuz"),
            initrd: PathBuf::from("/w,x/initrd.img"),
            cmdline: "console=ttyS0 fruix.system=/frx/store/x".into(),
        };
        let a = args(&command(&s));
        let k = a.iter().position(|x| x == "-kernel").unwrap();
        assert_eq!(
            a[k..k + 6],
            [
                "-kernel",
                "/w,x/vmlinuz",
                "-initrd",
                "/w,x/initrd.img",
                "-append",
                "console=ttyS0 fruix.system=/frx/store/x"
            ]
        );
    }

    /// The format comes from the bytes: each format under a name that says
    /// another.
    #[test]
    fn the_disk_format_is_read_from_the_header() {
        let t = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = t.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let mut qcow2 = b"QFI\xfb\0\0\0\x03".to_vec();
        qcow2.resize(4096, 0);
        assert_eq!(
            detect_format(&write("q.raw", &qcow2)).unwrap(),
            DiskFormat::Qcow2
        );
        // A dynamic VHD: a copy of the footer first.
        let mut dynamic = b"conectix".to_vec();
        dynamic.resize(4096, 0);
        assert_eq!(
            detect_format(&write("d.qcow2", &dynamic)).unwrap(),
            DiskFormat::Vpc
        );
        // A fixed VHD: the disk, then the 512-byte footer.
        let mut fixed = vec![0u8; 4096];
        fixed.extend_from_slice(b"conectix");
        fixed.resize(4096 + 512, 0);
        assert_eq!(
            detect_format(&write("f.img", &fixed)).unwrap(),
            DiskFormat::Vpc
        );
        assert_eq!(
            detect_format(&write("r.vhd", &[0u8; 4096])).unwrap(),
            DiskFormat::Raw
        );
        assert_eq!(
            detect_format(&write("short.qcow2", b"QF")).unwrap(),
            DiskFormat::Raw
        );
        assert_eq!(
            detect_format(&write("empty", b"")).unwrap(),
            DiskFormat::Raw
        );
    }

    #[test]
    fn qemu_is_looked_up_in_path() {
        let t = tempfile::tempdir().unwrap();
        assert!(matches!(
            find_qemu(Some(t.path().as_os_str())),
            Err(VmError::NoQemu)
        ));
        let q = t.path().join(QEMU);
        std::fs::write(&q, "#!/bin/sh\n").unwrap();
        assert!(
            matches!(find_qemu(Some(t.path().as_os_str())), Err(VmError::NoQemu)),
            "not executable"
        );
        std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), t.path()]).unwrap();
        assert_eq!(find_qemu(Some(&path)).unwrap(), q);
    }

    #[test]
    fn kvm_asked_for_where_it_is_refused_is_an_error() {
        let why = || Some("/dev/kvm: Permission denied (os error 13)".to_owned());
        assert_eq!(
            choose_accel(Accel::Kvm, why()).unwrap_err().to_string(),
            "--accel kvm: KVM cannot run a guest here: /dev/kvm: Permission denied (os error 13)"
        );
        assert_eq!(choose_accel(Accel::Auto, why()).unwrap(), "tcg");
        assert_eq!(choose_accel(Accel::Tcg, None).unwrap(), "tcg");
        assert_eq!(choose_accel(Accel::Auto, None).unwrap(), "kvm");
        assert_eq!(choose_accel(Accel::Kvm, None).unwrap(), "kvm");
    }

    #[test]
    fn a_relative_path_is_made_absolute_so_no_colon_names_a_protocol() {
        let v = opt_path("file=", Path::new("json:{x}.raw"), ",format=raw");
        let cwd = std::env::current_dir().unwrap();
        let mut want = OsString::from("file=");
        want.push(escape(cwd.join("json:{x}.raw").as_os_str()));
        want.push(",format=raw");
        assert_eq!(v, want);
    }
}
