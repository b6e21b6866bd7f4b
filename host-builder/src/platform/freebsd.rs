//! FreeBSD.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the kernel send SIGKILL to the child when we die
/// (`procctl(PROC_PDEATHSIG_CTL)`), so that no QEMU outlives us.
pub fn kill_with_parent(cmd: &mut Command) {
    // SAFETY: procctl is a plain system call, and nothing else runs
    // between fork and exec here.
    unsafe {
        cmd.pre_exec(|| {
            let mut sig: libc::c_int = libc::SIGKILL;
            if libc::procctl(
                libc::P_PID,
                0,
                libc::PROC_PDEATHSIG_CTL,
                (&mut sig as *mut libc::c_int).cast(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// QEMU has no KVM on FreeBSD (bhyve is another program): always a reason.
pub fn kvm_unusable() -> Option<String> {
    Some("KVM is a Linux interface".into())
}
