//! Linux.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the kernel send SIGKILL to the child when we die, however we
/// die, so that no QEMU outlives the `fruix` that started it.
pub fn kill_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe, and nothing else runs between
    // fork and exec here.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Why KVM cannot run a guest here, or `None` when it can: `/dev/kvm`
/// must open read-write and the CPU must have VT-x or AMD-V. The second
/// test rules out software-backed KVM (kvm-pvm), on which stock kernels
/// die with emulation failures.
pub fn kvm_unusable() -> Option<String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Some(format!("/dev/kvm: {e}"));
    }
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        return Some(
            "/dev/kvm is kvm-pvm (software virtualization), which stock kernels crash under".into(),
        );
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !hw {
        return Some("the CPU has no vmx or svm flag".into());
    }
    None
}
