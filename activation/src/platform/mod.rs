//! What activation does differently per operating system, behind one small
//! interface, chosen here and nowhere else.
//!
//! To add a platform: write `platform/NAME.rs` with a type implementing
//! [`Platform`], and add it to the `cfg` choice of [`native`].

use crate::accounts::AccountDb;
use crate::error::ActivationError;
use crate::root::GuestRoot;

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "linux")]
mod linux;

/// The operating-system specific parts of activation.
pub trait Platform {
    /// Writes the account database in the system's own files, atomically
    /// (`/etc/passwd`, `/etc/group`, `/etc/shadow` on Linux;
    /// `/etc/master.passwd` and `pwd_mkdb` on FreeBSD). Returns the guest
    /// paths written.
    fn write_accounts(
        &self,
        root: &GuestRoot,
        db: &AccountDb,
    ) -> Result<Vec<String>, ActivationError>;

    /// Makes the SSH host keys that are missing.
    fn generate_host_keys(&self, root: &GuestRoot) -> Result<(), ActivationError>;
}

/// The platform this binary was built for.
pub fn native() -> Box<dyn Platform> {
    #[cfg(target_os = "linux")]
    return Box::new(linux::Linux);
    #[cfg(target_os = "freebsd")]
    return Box::new(freebsd::FreeBsd);
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    return Box::new(Unsupported);
}

/// A platform activation does not support: every call is an error.
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
struct Unsupported;

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
impl Platform for Unsupported {
    fn write_accounts(&self, _: &GuestRoot, _: &AccountDb) -> Result<Vec<String>, ActivationError> {
        Err(ActivationError::Tool {
            tool: "activation".into(),
            message: "this operating system is not supported".into(),
        })
    }
    fn generate_host_keys(&self, _: &GuestRoot) -> Result<(), ActivationError> {
        Err(ActivationError::Tool {
            tool: "activation".into(),
            message: "this operating system is not supported".into(),
        })
    }
}

/// Runs `ssh-keygen -A` with the guest root as its prefix: it makes every
/// missing default host key under `ROOT/etc/ssh`. The same on both systems.
pub(crate) fn ssh_keygen_all(root: &GuestRoot) -> Result<(), ActivationError> {
    let keygen = [
        "/usr/bin/ssh-keygen",
        "/usr/local/bin/ssh-keygen",
        "/usr/sbin/ssh-keygen",
    ]
    .iter()
    .map(|p| root.path(p))
    .find(|p| p.is_file())
    .or_else(|| {
        ["/usr/bin/ssh-keygen"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.is_file())
    })
    .ok_or_else(|| ActivationError::Tool {
        tool: "ssh-keygen".into(),
        message: "not found".into(),
    })?;
    let out = std::process::Command::new(&keygen)
        // Not /dev/null, which output() would open: activation may run
        // before /dev is there, and ssh-keygen -A reads nothing.
        .stdin(std::process::Stdio::inherit())
        .arg("-A")
        .arg("-f")
        .arg(root.as_path())
        .output()
        .map_err(|e| ActivationError::Tool {
            tool: "ssh-keygen".into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ActivationError::Tool {
            tool: "ssh-keygen".into(),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}
