//! `fruix system vm`: boots an image under QEMU and waits for the agent's
//! ready line on the serial console.
//!
//! KVM when it can run a guest here, TCG otherwise (with `-cpu
//! qemu64,-cx16`: QEMU 7.2's TCG crashes guests at random with the
//! default CPU's cmpxchg16b). UEFI boots OVMF, which loads systemd-boot
//! from the ESP; direct boot hands QEMU the kernel, initrd and command
//! line of the ESP's loader entry, which saves the firmware's seconds.
//! The disk is opened with `-snapshot`, so the image stays as built,
//! unless `persistent`: then the guest writes its image (deploys, boot
//! entries, systemd-boot's try counters) and reboots stay in QEMU under
//! UEFI, where systemd-boot picks the entry; a direct boot is started
//! again by the runner with the ESP's new default entry.
//! User-mode networking forwards 127.0.0.1:PORT to the guest's port 22,
//! and nothing else. QEMU dies with us (the platform's parent-death
//! signal), and is killed on timeout, on SIGINT/SIGTERM and when asked to
//! stop once ready. The command line itself is `qemu.rs`: paths escaped,
//! the disk's format read from its header.
//!
//! What fails on the host (no QEMU, KVM refused, no OVMF, QEMU exiting
//! with an error) is a [`VmError`]; a guest that booted and did not
//! report ready is a [`VmReport`] with a failure.

mod direct;
mod error;
pub mod known_hosts;
pub mod qemu;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::declaration::Firmware;
use crate::platform;
pub use error::VmError;
use fruix_system::report::{ConsoleWatch, Report};
use qemu::{Boot, DiskFormat, Spec};

/// The accelerator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when usable here, else TCG.
    Auto,
    /// KVM.
    Kvm,
    /// QEMU's emulator.
    Tcg,
}

/// What to boot, and how.
#[derive(Clone, Debug)]
pub struct VmOptions {
    /// The disk image (raw, qcow2 or vhd).
    pub image: PathBuf,
    /// Accelerator.
    pub accel: Accel,
    /// Firmware.
    pub firmware: Firmware,
    /// Memory in MiB.
    pub memory: u64,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Host port forwarded to the guest's port 22 (0: a free one).
    pub ssh_port: u16,
    /// How long to wait for the ready line.
    pub timeout: Duration,
    /// Extra kernel parameters (direct boot only).
    pub append: Vec<String>,
    /// Where the serial console is written.
    pub console_log: PathBuf,
    /// Write to the image (no `-snapshot`), and let the guest reboot.
    pub persistent: bool,
}

/// How a boot went.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VmReport {
    /// The agent's report from the console, when its line came.
    pub report: Option<Report>,
    /// Why there is no usable report (timeout, QEMU's exit), if so.
    pub failure: Option<String>,
    /// The console's last lines, for a failure.
    pub console_tail: Vec<String>,
    /// The serial console's file.
    pub console_log: PathBuf,
    /// The host port forwarded to the guest's sshd.
    pub ssh_port: u16,
    /// `kvm` or `tcg`.
    pub accel: &'static str,
    /// `uefi` or `direct`.
    pub firmware: &'static str,
    /// Seconds from QEMU's start to the ready line (or the failure).
    pub seconds: f64,
    /// Boots it took (more than one when a guest kernel panicked and
    /// `--retries` allowed another).
    pub attempts: u32,
    /// The guest's SSH host keys, from the agent's key block on the
    /// console.
    #[serde(skip)]
    pub host_keys: Vec<fruix_system::HostKey>,
    /// Why the console's key block was not taken, if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_keys_error: Option<String>,
    /// The known_hosts file that pins them (see [`known_hosts`]), once
    /// written.
    pub known_hosts: Option<PathBuf>,
    /// The loader entry a direct boot started (the ESP's default; direct
    /// boot counts no tries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_entry: Option<String>,
}

impl VmReport {
    /// True when the guest reported ready or degraded.
    pub fn is_ready(&self) -> bool {
        self.report.as_ref().is_some_and(|r| r.outcome.is_usable())
    }

    /// True when the guest's kernel panicked before the agent reported.
    pub fn kernel_panicked(&self) -> bool {
        self.report.is_none()
            && self
                .console_tail
                .iter()
                .any(|l| l.contains("Kernel panic - not syncing"))
    }
}

/// QEMU, killed and reaped when dropped.
pub struct Qemu {
    child: Child,
}

impl Qemu {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running; its exit status when not.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops it now (the disk is a snapshot: nothing to flush).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGINT, SIGTERM and SIGHUP, noted rather than obeyed, so that QEMU is
/// stopped before we exit.
pub fn stop_signals() -> Result<Arc<AtomicBool>, VmError> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .map_err(|e| VmError::Io(PathBuf::from("signal handler"), e))?;
    }
    Ok(flag)
}

fn free_port() -> Result<u16, VmError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| VmError::Io(PathBuf::from("127.0.0.1:0"), e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| VmError::Io(PathBuf::from("127.0.0.1:0"), e))
}

/// The first of `paths` that exists.
fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Starts QEMU for `opts`, with its work files (OVMF's variables, the
/// kernel and initrd of a direct boot) in `work`; returns it with what the
/// report needs.
pub fn start(
    opts: &VmOptions,
    work: &Path,
) -> Result<(Qemu, u16, &'static str, Option<String>), VmError> {
    if !opts.image.is_file() {
        return Err(VmError::NoImage(opts.image.clone()));
    }
    let binary = qemu::find_qemu(std::env::var_os("PATH").as_deref())?;
    let accel = qemu::choose_accel(
        opts.accel,
        match opts.accel {
            Accel::Tcg => None,
            Accel::Kvm | Accel::Auto => platform::kvm_unusable(),
        },
    )?;
    let format = qemu::detect_format(&opts.image)?;
    let log = opts.console_log.with_extension("tools.log");
    let port = if opts.ssh_port == 0 {
        free_port()?
    } else {
        opts.ssh_port
    };
    let mut entry = None;
    let boot = match opts.firmware {
        Firmware::Direct => {
            if format != DiskFormat::Raw {
                return Err(VmError::DirectNeedsRaw(opts.image.clone()));
            }
            let (kernel, initrd, mut cmdline, name) = direct::boot_files(&opts.image, work, &log)?;
            entry = Some(name);
            for a in &opts.append {
                cmdline.push(' ');
                cmdline.push_str(a);
            }
            Boot::Direct {
                kernel,
                initrd,
                cmdline,
            }
        }
        Firmware::Uefi => {
            if !opts.append.is_empty() {
                return Err(VmError::AppendNeedsDirect);
            }
            let code = first_existing(&[
                "/usr/share/OVMF/OVMF_CODE_4M.fd",
                "/usr/share/OVMF/OVMF_CODE.fd",
                "/usr/share/qemu/OVMF_CODE.fd",
            ])
            .ok_or(VmError::NoOvmf("firmware"))?;
            let vars_src = first_existing(&[
                "/usr/share/OVMF/OVMF_VARS_4M.fd",
                "/usr/share/OVMF/OVMF_VARS.fd",
            ])
            .ok_or(VmError::NoOvmf("variable store"))?;
            let vars = work.join("OVMF_VARS.fd");
            fs::copy(&vars_src, &vars).map_err(|e| VmError::Io(vars_src.clone(), e))?;
            Boot::Uefi { code, vars }
        }
    };
    let mut cmd = qemu::command(&Spec {
        qemu: binary,
        accel,
        memory: opts.memory,
        cpus: opts.cpus,
        boot,
        image: opts.image.clone(),
        format,
        port,
        console_log: opts.console_log.clone(),
        persistent: opts.persistent,
    });
    // A persistent guest's console goes on across its boots (QEMU
    // appends), and its host keys stay on its disk.
    if !opts.persistent {
        let _ = fs::remove_file(&opts.console_log);
        // Every boot makes new host keys (the disk is a snapshot): the keys
        // pinned for an earlier boot are not this guest's.
        let _ = fs::remove_file(known_hosts::path_for(&opts.console_log));
    }
    let qemu_log = opts.console_log.with_extension("qemu.log");
    let err = fs::File::create(&qemu_log).map_err(|e| VmError::Io(qemu_log.clone(), e))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
    platform::kill_with_parent(&mut cmd);
    let child = cmd.spawn().map_err(VmError::Qemu)?;
    Ok((Qemu { child }, port, accel, entry))
}

/// Waits for the ready line. Returns the report; QEMU is still running
/// unless it exited or the wait failed. QEMU exiting with an error status
/// (it could not start the machine: KVM refused, a bad drive) is an error
/// on the host, not a report: with `-no-reboot` a guest that stops or
/// panics makes QEMU exit with status 0.
pub fn wait_ready(
    qemu: &mut Qemu,
    opts: &VmOptions,
    port: u16,
    accel: &'static str,
    stop: &AtomicBool,
) -> Result<VmReport, VmError> {
    let t = Instant::now();
    let mut watch = ConsoleWatch::default();
    let firmware = match opts.firmware {
        Firmware::Uefi => "uefi",
        Firmware::Direct => "direct",
    };
    let finish = |watch: &ConsoleWatch, report: Option<Report>, failure: Option<String>| VmReport {
        report,
        failure,
        console_tail: watch.tail().to_vec(),
        console_log: opts.console_log.clone(),
        ssh_port: port,
        accel,
        firmware,
        seconds: (t.elapsed().as_millis() as f64) / 1000.0,
        attempts: 1,
        host_keys: watch.host_keys().map(<[_]>::to_vec).unwrap_or_default(),
        host_keys_error: watch.host_keys_error().map(str::to_owned),
        known_hosts: None,
        boot_entry: None,
    };
    loop {
        if let Some(r) = watch.poll(&opts.console_log) {
            let failure = (!r.outcome.is_usable()).then(|| {
                format!(
                    "the agent reported ready_marker={}",
                    r.get("ready_marker").unwrap_or("?")
                )
            });
            return Ok(finish(&watch, Some(r), failure));
        }
        // First: Ctrl-C reaches QEMU too (one process group), which then
        // exits, and that is our interruption, not QEMU's failure.
        if stop.load(Ordering::Relaxed) {
            qemu.stop();
            return Ok(finish(&watch, None, Some("interrupted".into())));
        }
        if let Some(status) = qemu.exited() {
            // The last lines it wrote before exiting.
            let _ = watch.poll(&opts.console_log);
            let qemu_log = opts.console_log.with_extension("qemu.log");
            let qemu_err = fs::read_to_string(&qemu_log).unwrap_or_default();
            let why = qemu_err.lines().last().map(str::trim).unwrap_or("");
            // A signal that came after the check above is ours too.
            if stop.load(Ordering::Relaxed) {
                return Ok(finish(&watch, None, Some("interrupted".into())));
            }
            if !status.success() {
                return Err(VmError::QemuFailed {
                    status,
                    why: why.to_owned(),
                    log: qemu_log,
                });
            }
            return Ok(finish(
                &watch,
                None,
                Some(format!(
                    "QEMU exited ({status}) before the agent's ready line{}",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(": {why}")
                    }
                )),
            ));
        }
        if t.elapsed() >= opts.timeout {
            qemu.stop();
            return Ok(finish(
                &watch,
                None,
                Some(format!(
                    "no ready line within {} s ({accel}, {firmware})",
                    opts.timeout.as_secs()
                )),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn a_panic_before_the_report_is_told_apart() {
        let mut r = VmReport {
            report: None,
            failure: Some("QEMU exited".into()),
            console_tail: vec![
                "[    5.77] RIP: 0010:sched_clock_cpu+0x9/0x1d0".into(),
                "[    5.77] Kernel panic - not syncing: Fatal exception in interrupt".into(),
            ],
            console_log: PathBuf::from("c.log"),
            ssh_port: 1,
            accel: "tcg",
            firmware: "direct",
            seconds: 5.8,
            attempts: 1,
            host_keys: vec![],
            host_keys_error: None,
            known_hosts: None,
            boot_entry: None,
        };
        assert!(r.kernel_panicked());
        r.console_tail.pop();
        assert!(!r.kernel_panicked(), "a timeout is not a panic");
    }

    fn options(dir: &Path) -> VmOptions {
        VmOptions {
            image: dir.join("x.raw"),
            accel: Accel::Tcg,
            firmware: Firmware::Uefi,
            memory: 64,
            cpus: 1,
            ssh_port: 1,
            timeout: Duration::from_secs(30),
            append: Vec::new(),
            console_log: dir.join("x.console.log"),
            persistent: false,
        }
    }

    /// A stand-in for QEMU: `sh -c SCRIPT`, its stderr in the qemu log as
    /// `start` sets it up.
    fn stand_in(opts: &VmOptions, script: &str) -> Qemu {
        let err = fs::File::create(opts.console_log.with_extension("qemu.log")).unwrap();
        let child = Command::new("/bin/sh")
            .args(["-c", script])
            .stderr(err)
            .spawn()
            .unwrap();
        Qemu { child }
    }

    /// QEMU refusing to start the machine (here KVM) is a failure on the
    /// host, named with QEMU's own last line, not a guest that is not
    /// ready.
    #[test]
    fn qemu_exiting_with_an_error_is_a_host_failure() {
        let t = tempfile::tempdir().unwrap();
        let opts = options(t.path());
        let mut q = stand_in(
            &opts,
            "echo 'qemu-system-x86_64: -accel kvm: Could not access KVM kernel module: Permission denied' >&2; exit 1",
        );
        let e = wait_ready(&mut q, &opts, 1, "kvm", &AtomicBool::new(false)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "QEMU failed (exit status: 1): qemu-system-x86_64: -accel kvm: Could not access KVM kernel module: Permission denied (log: {})",
                t.path().join("x.console.qemu.log").display()
            )
        );
    }

    /// With -no-reboot a guest that stops makes QEMU exit 0: the guest
    /// booted and is not ready, a report with a failure (exit 1).
    #[test]
    fn a_guest_that_stops_is_a_report_not_an_error() {
        let t = tempfile::tempdir().unwrap();
        let opts = options(t.path());
        fs::write(&opts.console_log, "Booting\nreboot: Power down\n").unwrap();
        let mut q = stand_in(&opts, "exit 0");
        let r = wait_ready(&mut q, &opts, 1, "tcg", &AtomicBool::new(false)).unwrap();
        assert!(!r.is_ready());
        assert_eq!(
            r.failure.as_deref(),
            Some("QEMU exited (exit status: 0) before the agent's ready line")
        );
        assert_eq!(r.console_tail, ["Booting", "reboot: Power down"]);
    }
}
