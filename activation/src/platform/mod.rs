//! What activation does differently per operating system, behind one small
//! interface, chosen here and nowhere else.
//!
//! Both platforms compile everywhere: the builder pre-activates a guest's
//! image for the guest's declared system ([`for_os`]), whatever the build
//! host runs; the agent in the guest takes [`native`], the one `cfg`
//! choice. To add a platform: write `platform/NAME.rs` with a type
//! implementing [`Platform`], a [`GuestOs`] variant, and its arm in
//! [`for_os`] and [`native`].

use crate::accounts::AccountDb;
use crate::error::ActivationError;
use crate::root::GuestRoot;

mod freebsd;
mod linux;

/// The operating systems activation can act for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestOs {
    /// Linux guests (Debian-built, as tested here).
    Linux,
    /// FreeBSD guests.
    Freebsd,
}

/// The platform of a declared guest system, chosen at run time.
pub fn for_os(os: GuestOs) -> Box<dyn Platform> {
    match os {
        GuestOs::Linux => Box::new(linux::Linux),
        GuestOs::Freebsd => Box::new(freebsd::FreeBsd),
    }
}

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

    /// Makes the SSH host key of `key_type` (`ed25519`, `ecdsa`).
    fn generate_host_key(&self, root: &GuestRoot, key_type: &str) -> Result<(), ActivationError>;

    /// Whether this system's images have a root file system smaller than
    /// its partition, which [`Platform::grow_root`] grows at first boot:
    /// FreeBSD's (makefs writes every byte of the size it is given, so the
    /// image builder sizes it to its content). Linux images' ext4 already
    /// fills its partition, and their ledger has no such step.
    fn grows_root(&self) -> bool {
        false
    }

    /// Grows the running system's root file system to its partition, once.
    /// Returns what changed.
    fn grow_root(&self, _root: &GuestRoot) -> Result<Vec<String>, ActivationError> {
        Ok(Vec::new())
    }
}

/// The platform this binary was built for.
pub fn native() -> Box<dyn Platform> {
    #[cfg(target_os = "linux")]
    return for_os(GuestOs::Linux);
    #[cfg(target_os = "freebsd")]
    return for_os(GuestOs::Freebsd);
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
    fn generate_host_key(&self, _: &GuestRoot, _: &str) -> Result<(), ActivationError> {
        Err(ActivationError::Tool {
            tool: "activation".into(),
            message: "this operating system is not supported".into(),
        })
    }
}

/// Makes `/etc/ssh/ssh_host_TYPE_key` (and `.pub`) with `ssh-keygen`,
/// under temporary names renamed into place, the public half first: a
/// run killed half-way leaves no private key without its public half, and
/// no half-written key that would pass for made. The same on both systems.
pub(crate) fn ssh_keygen(root: &GuestRoot, key_type: &str) -> Result<(), ActivationError> {
    let tool = |message: String| ActivationError::Tool {
        tool: "ssh-keygen".into(),
        message,
    };
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
    .ok_or_else(|| tool("not found".into()))?;
    let key = format!("/etc/ssh/ssh_host_{key_type}_key");
    let tmp = format!("/etc/ssh/.ssh_host_{key_type}_key.tmp");
    let tmp_path = root.path(&tmp);
    let tmp_pub = root.path(&format!("{tmp}.pub"));
    let _ = std::fs::remove_file(&tmp_path);
    let _ = std::fs::remove_file(&tmp_pub);
    let out = std::process::Command::new(&keygen)
        // Not /dev/null, which output() would open: activation may run
        // before /dev is there, and ssh-keygen reads nothing.
        .stdin(std::process::Stdio::inherit())
        .args(["-q", "-t", key_type, "-N", "", "-C", "root@fruix", "-f"])
        .arg(&tmp_path)
        .output()
        .map_err(|e| tool(e.to_string()))?;
    if !out.status.success() {
        return Err(tool(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let rename = |from: &std::path::Path, to: &str| {
        std::fs::rename(from, root.path(to)).map_err(|e| ActivationError::Io {
            path: to.to_owned(),
            action: "rename into place",
            source: e,
        })
    };
    rename(&tmp_pub, &format!("{key}.pub"))?;
    rename(&tmp_path, &key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{AccountDb, parse_passwd};

    #[test]
    fn the_declared_os_picks_the_platform_whatever_the_host_runs() {
        // Only FreeBSD's images have a content-sized root to grow.
        assert!(!for_os(GuestOs::Linux).grows_root());
        assert!(for_os(GuestOs::Freebsd).grows_root());
    }

    #[test]
    #[cfg_attr(
        not(feature = "root-tests"),
        ignore = "needs root to give account files their owner (the root tier: --features root-tests)"
    )]
    fn a_linux_guest_gets_passwd_not_master_passwd() {
        let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(t.path().join("etc")).unwrap_or_else(|e| panic!("{e}"));
        let root = GuestRoot::new(t.path());
        let db = AccountDb {
            users: parse_passwd("root:x:0:0:root:/root:/bin/sh\n"),
            groups: Vec::new(),
        };
        let written = for_os(GuestOs::Linux)
            .write_accounts(&root, &db)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            written,
            ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"]
        );
        assert!(!t.path().join("etc/master.passwd").exists());
    }
}
