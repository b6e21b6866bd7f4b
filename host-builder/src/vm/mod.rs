//! `fruix system vm`: boots an image under QEMU and waits for the agent's
//! ready line on the serial console.
//!
//! KVM when it can run a guest here, TCG otherwise (with `-cpu
//! qemu64,-cx16`: QEMU 7.2's TCG crashes guests at random with the
//! default CPU's cmpxchg16b). UEFI boots OVMF, which loads systemd-boot
//! from the ESP; direct boot hands QEMU the kernel, initrd and command
//! line of the ESP's loader entry, which saves the firmware's seconds.
//! The disk is opened with `-snapshot`, so the image stays as built.
//! User-mode networking forwards 127.0.0.1:PORT to the guest's port 22,
//! and nothing else. QEMU dies with us (the platform's parent-death
//! signal), and is killed on timeout, on SIGINT/SIGTERM and when asked to
//! stop once ready.

mod error;
pub mod known_hosts;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::declaration::Firmware;
use crate::error::TempTree;
use crate::image::esp_paths;
use crate::platform;
use crate::tools;
use crate::tools::ToolError;
use crate::tools::{mtools, mtools_image};
pub use error::VmError;
use fruix_system::report::{ConsoleWatch, Report};

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

/// The ESP's byte offset in a raw GPT disk, from `sfdisk --json`.
fn esp_offset(image: &Path, log: &Path) -> Result<u64, VmError> {
    let out = tools::run(Command::new("sfdisk").arg("--json").arg(image), None, log)?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| VmError::Sfdisk(image.to_owned(), e))?;
    let parts = v["partitiontable"]["partitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sector = v["partitiontable"]["sectorsize"].as_u64().unwrap_or(512);
    parts
        .iter()
        .find(|p| {
            p["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"))
        })
        .and_then(|p| p["start"].as_u64())
        .map(|s| s * sector)
        .ok_or_else(|| VmError::NoEsp(image.to_owned()))
}

/// The kernel, initrd and command line of the image's loader entry, for
/// direct boot.
fn direct_boot_files(
    image: &Path,
    dir: &Path,
    log: &Path,
) -> Result<(PathBuf, PathBuf, String), VmError> {
    let offset = esp_offset(image, log)?;
    let img = mtools_image(image, offset);
    // The loader entry first: a FreeBSD image has none (its loader reads
    // loader.conf from the root), and QEMU cannot load its kernel.
    let entry = tools::run(
        mtools("mtype").args(["-i", &img, esp_paths::ENTRY]),
        None,
        log,
    )
    .map_err(|e| match e {
        // mtype ran and found no entry; any other error (mtools missing)
        // is itself.
        ToolError::Failed { .. } => VmError::NoLoaderEntry(image.to_owned()),
        other => VmError::Tool(other),
    })?;
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.img");
    for (src, dst) in [(esp_paths::KERNEL, &kernel), (esp_paths::INITRD, &initrd)] {
        tools::run(
            mtools("mcopy").args(["-n", "-i", &img, src]).arg(dst),
            None,
            log,
        )?;
    }
    let cmdline = entry
        .lines()
        .find_map(|l| l.strip_prefix("options "))
        .ok_or_else(|| VmError::NoOptions(image.to_owned()))?
        .trim()
        .to_owned();
    Ok((kernel, initrd, cmdline))
}

/// The disk format QEMU is told, from the file name.
fn disk_format(image: &Path) -> &'static str {
    match image.extension().and_then(|e| e.to_str()) {
        Some("qcow2") => "qcow2",
        Some("vhd") => "vpc",
        _ => "raw",
    }
}

/// Starts QEMU for `opts`; returns it with what the report needs.
pub fn start(opts: &VmOptions, work: &TempTree) -> Result<(Qemu, u16, &'static str), VmError> {
    if !opts.image.is_file() {
        return Err(VmError::NoImage(opts.image.clone()));
    }
    let log = opts.console_log.with_extension("tools.log");
    let accel = match opts.accel {
        Accel::Tcg => "tcg",
        Accel::Kvm => "kvm",
        Accel::Auto => match platform::kvm_unusable() {
            None => "kvm",
            Some(_) => "tcg",
        },
    };
    let port = if opts.ssh_port == 0 {
        free_port()?
    } else {
        opts.ssh_port
    };
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-name", "fruix", "-accel", accel]);
    cmd.args([
        "-cpu",
        if accel == "kvm" {
            "host"
        } else {
            "qemu64,-cx16"
        },
    ]);
    cmd.args([
        "-m",
        &opts.memory.to_string(),
        "-smp",
        &opts.cpus.to_string(),
    ]);
    cmd.args([
        "-nographic",
        "-no-reboot",
        "-display",
        "none",
        "-monitor",
        "none",
    ]);
    match opts.firmware {
        Firmware::Direct => {
            if disk_format(&opts.image) != "raw" {
                return Err(VmError::DirectNeedsRaw(opts.image.clone()));
            }
            let (kernel, initrd, mut cmdline) = direct_boot_files(&opts.image, work.path(), &log)?;
            for a in &opts.append {
                cmdline.push(' ');
                cmdline.push_str(a);
            }
            cmd.arg("-kernel").arg(kernel);
            cmd.arg("-initrd").arg(initrd);
            cmd.arg("-append").arg(cmdline);
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
            let vars = work.path().join("OVMF_VARS.fd");
            fs::copy(&vars_src, &vars).map_err(|e| VmError::Io(vars_src.clone(), e))?;
            cmd.arg("-drive").arg(format!(
                "if=pflash,format=raw,readonly=on,file={}",
                code.display()
            ));
            cmd.arg("-drive")
                .arg(format!("if=pflash,format=raw,file={}", vars.display()));
        }
    }
    cmd.arg("-drive").arg(format!(
        "file={},format={},if=virtio",
        opts.image.display(),
        disk_format(&opts.image)
    ));
    cmd.arg("-snapshot");
    cmd.args(["-netdev"])
        .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"));
    cmd.args(["-device", "virtio-net-pci,netdev=n0"]);
    // Entropy from the host: without it the guest's random pool takes tens
    // of seconds to fill under TCG, and ssh-keygen and sshd wait for it.
    cmd.args(["-device", "virtio-rng-pci"]);
    let _ = fs::remove_file(&opts.console_log);
    cmd.arg("-serial")
        .arg(format!("file:{}", opts.console_log.display()));
    let qemu_log = opts.console_log.with_extension("qemu.log");
    let err = fs::File::create(&qemu_log).map_err(|e| VmError::Io(qemu_log.clone(), e))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
    platform::kill_with_parent(&mut cmd);
    let child = cmd.spawn().map_err(VmError::Qemu)?;
    Ok((Qemu { child }, port, accel))
}

/// Waits for the ready line. Returns the report; QEMU is still running
/// unless it exited or the wait failed.
pub fn wait_ready(
    qemu: &mut Qemu,
    opts: &VmOptions,
    port: u16,
    accel: &'static str,
    stop: &AtomicBool,
) -> VmReport {
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
    };
    loop {
        if let Some(r) = watch.poll(&opts.console_log) {
            let failure = (!r.outcome.is_usable()).then(|| {
                format!(
                    "the agent reported ready_marker={}",
                    r.get("ready_marker").unwrap_or("?")
                )
            });
            return finish(&watch, Some(r), failure);
        }
        if let Some(status) = qemu.exited() {
            // The last lines it wrote before exiting.
            let _ = watch.poll(&opts.console_log);
            let qemu_err =
                fs::read_to_string(opts.console_log.with_extension("qemu.log")).unwrap_or_default();
            let why = qemu_err.lines().last().map(str::trim).unwrap_or("");
            return finish(
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
            );
        }
        if stop.load(Ordering::Relaxed) {
            qemu.stop();
            return finish(&watch, None, Some("interrupted".into()));
        }
        if t.elapsed() >= opts.timeout {
            qemu.stop();
            return finish(
                &watch,
                None,
                Some(format!(
                    "no ready line within {} s ({accel}, {firmware})",
                    opts.timeout.as_secs()
                )),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
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
        };
        assert!(r.kernel_panicked());
        r.console_tail.pop();
        assert!(!r.kernel_panicked(), "a timeout is not a panic");
    }

    #[test]
    fn disk_format_follows_the_extension() {
        assert_eq!(disk_format(Path::new("a/x.qcow2")), "qcow2");
        assert_eq!(disk_format(Path::new("x.vhd")), "vpc");
        assert_eq!(disk_format(Path::new("x.raw")), "raw");
        assert_eq!(disk_format(Path::new("x.img")), "raw");
    }
}
