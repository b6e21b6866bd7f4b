//! The operating-system declaration: a TOML file, read with `serde` and
//! `toml`, then checked as a whole. Every error names the file, line and
//! column of the offending value (`FILE:LINE:COL: message`).
//!
//! The fields mirror the Fruix `operating-system` template: `kernel`,
//! `bootloader` and `base-packages` name packages declared under
//! `[packages.NAME]`. `docs/declaration.md` documents every field.

mod error;
mod load;
mod services;
mod size;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use error::DeclError;
pub use load::{load, parse};
pub use services::{Ready, Service};
pub use size::{ByteSize, parse_size};
pub use validate::compile_glob;

/// How the guest boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitMode {
    /// `fruix-agent init` activates the system and execs Shepherd as PID 1.
    ShepherdPid1,
    /// The classic init and rc scripts start Shepherd as an ordinary
    /// service (sysvinit and LSB scripts on the Linux guests, rc.d on
    /// FreeBSD).
    RcShepherd,
}

impl InitMode {
    /// The word used in declarations and status reports.
    pub fn as_str(self) -> &'static str {
        match self {
            InitMode::ShepherdPid1 => "shepherd-pid1",
            InitMode::RcShepherd => "rc-shepherd",
        }
    }
}

impl fmt::Display for InitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operating system a declaration describes: what its kernel boots
/// from, how its root file system is written and what its generated files
/// say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Os {
    /// A Linux guest (Debian's packages on the machines that test Fruix):
    /// ext4 root, systemd-boot or direct kernel boot, sysvinit in rc mode.
    #[default]
    Linux,
    /// FreeBSD: UFS2 root made by `makefs`, `loader.efi` and a
    /// `loader.conf` naming the system, rc.d in rc mode.
    Freebsd,
}

impl Os {
    /// The word used in declarations.
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Freebsd => "freebsd",
        }
    }
}

/// A whole declaration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Declaration {
    /// The guest's host name.
    pub host_name: Spanned<String>,
    /// The operating system (default `linux`).
    #[serde(default = "default_os")]
    pub os: Spanned<Os>,
    /// The boot mode.
    pub init: InitMode,
    /// The package holding the kernel (Fruix's `#:kernel`).
    pub kernel: Spanned<String>,
    /// The boot-asset package (Fruix's `#:bootloader`).
    pub bootloader: Spanned<String>,
    /// The packages of the running system (Fruix's `#:base-packages`).
    #[serde(default)]
    pub base_packages: Vec<Spanned<String>>,
    /// Every package, by name.
    #[serde(default)]
    pub packages: BTreeMap<Spanned<String>, Package>,
    /// Services.
    #[serde(default)]
    pub services: Services,
    /// Groups beyond the base ones.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Users beyond root.
    #[serde(default)]
    pub users: Vec<User>,
    /// Programs of the runtime that activation copies, setuid root, to
    /// `/run/setuid-programs` (the store holds no setuid file).
    #[serde(default)]
    pub setuid_programs: Vec<Spanned<String>>,
    /// Agent settings.
    #[serde(default)]
    pub agent: AgentSettings,
    /// Image settings.
    #[serde(default)]
    pub image: ImageSettings,
}

/// A package: from a source, or derived from another package.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Package {
    /// Version, appended to the name in the item's name (`shepherd-1.0.3`).
    pub version: Option<Spanned<String>>,
    /// Where the content comes from; exactly one of `source` and `from`.
    pub source: Option<Spanned<Source>>,
    /// The package this one is derived from.
    pub from: Option<Spanned<String>>,
    /// Globs of paths to take from `from` (default: everything).
    #[serde(default)]
    pub keep: Vec<Spanned<String>>,
    /// Globs of paths to leave out (after `keep`).
    #[serde(default)]
    pub prune: Vec<Spanned<String>>,
    /// Sanitation of a staged install prefix, applied on import.
    pub materialize: Option<Spanned<Materialize>>,
}

/// Where a package's content comes from.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Source {
    /// A directory, relative to the declaration.
    Dir {
        /// The directory.
        path: PathBuf,
    },
    /// A tar archive (plain, gzip, xz, zstd), relative to the declaration.
    Tar {
        /// The archive.
        path: PathBuf,
    },
    /// Debian packages installed into a tree by mmdebstrap.
    Debian {
        /// The suite, e.g. `trixie`.
        suite: String,
        /// Packages to install (beyond the essential set).
        packages: Vec<String>,
        /// The archive; default: the first Debian URI of the host's apt sources.
        mirror: Option<String>,
    },
    /// Copied from the build host as it is: origin `host`.
    HostPath {
        /// The host path (absolute).
        path: PathBuf,
    },
}

/// Declared sanitation of a staged install prefix.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Materialize {
    /// The prefix baked into the staged files, e.g.
    /// `/tmp/shepherd-freebsd-validate-install`.
    pub prefix: String,
    /// Rule sets to apply: `guile`, `guile-extra`, `shepherd`.
    pub rules: Vec<String>,
    /// The package whose Guile compiles the rewritten modules again (the
    /// guest's world); without it, their stale compiled files are deleted.
    #[serde(default)]
    pub compile_with: Option<String>,
}

/// The services of the system: `[services.sshd]` and any number of
/// declared `[services.NAME]` tables (read by [`services`]).
#[derive(Clone, Debug, Default)]
pub struct Services {
    /// The SSH daemon.
    pub sshd: Option<Sshd>,
    /// Declared services, by name.
    pub declared: BTreeMap<Spanned<String>, Service>,
}

/// The SSH daemon. Host keys are made at first boot, never in the image.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Sshd {
    /// TCP port.
    #[serde(default = "default_ssh_port")]
    pub port: Spanned<i64>,
    /// Public keys allowed to log in as root.
    #[serde(default)]
    pub root_authorized_keys: Vec<Spanned<String>>,
    /// Files holding more such keys, relative to the declaration.
    #[serde(default)]
    pub root_authorized_keys_files: Vec<Spanned<PathBuf>>,
}

fn default_os() -> Spanned<Os> {
    Spanned::new(0..0, Os::Linux)
}

fn default_ssh_port() -> Spanned<i64> {
    Spanned::new(0..0, 22)
}

/// A group.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Group {
    /// Name.
    pub name: Spanned<String>,
    /// Group id; stable across generations.
    pub gid: Spanned<i64>,
}

/// A user account.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct User {
    /// Login name.
    pub name: Spanned<String>,
    /// User id; stable across generations.
    pub uid: Spanned<i64>,
    /// Primary group.
    pub group: Spanned<String>,
    /// Home directory (absolute).
    pub home: Option<Spanned<String>>,
    /// Login shell (absolute).
    #[serde(default = "default_shell")]
    pub shell: Spanned<String>,
    /// GECOS comment.
    #[serde(default = "default_comment")]
    pub comment: Spanned<String>,
    /// Public keys allowed to log in as this user.
    #[serde(default)]
    pub authorized_keys: Vec<Spanned<String>>,
}

fn default_shell() -> Spanned<String> {
    Spanned::new(0..0, "/bin/sh".into())
}

fn default_comment() -> Spanned<String> {
    Spanned::new(0..0, String::new())
}

/// When the agent verifies the store at boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyPolicy {
    /// No verification.
    None,
    /// Types, modes, sizes and link targets of every item.
    #[default]
    Metadata,
    /// Metadata and content.
    Full,
}

impl VerifyPolicy {
    /// The word used in declarations and the agent's configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyPolicy::None => "none",
            VerifyPolicy::Metadata => "metadata",
            VerifyPolicy::Full => "full",
        }
    }
}

/// The agent's settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentSettings {
    /// Store verification at boot.
    #[serde(default)]
    pub store_verify: VerifyPolicy,
    /// Checks whose failure makes the system `failed` rather than
    /// `degraded`: built-in checks or names of declared probes.
    #[serde(default = "default_gate")]
    pub gate: Vec<Spanned<String>>,
    /// Command probes.
    #[serde(default)]
    pub probes: Vec<Probe>,
    /// Tries a new generation's boot entry gets (1 to 9).
    #[serde(default = "default_boot_tries")]
    pub boot_tries: Spanned<i64>,
    /// What a trial boot that reaches `failed` does: `reboot` into the
    /// previous generation, or `stay` up.
    #[serde(default)]
    pub on_failed_boot: OnFailedBoot,
    /// Seconds from the kernel's start by which a trial boot must reach an
    /// outcome before the watchdog reboots it (0: no watchdog).
    #[serde(default = "default_boot_deadline")]
    pub boot_deadline: Spanned<i64>,
}

pub use fruix_system::config::OnFailedBoot;

fn default_boot_tries() -> Spanned<i64> {
    Spanned::new(0..0, i64::from(fruix_system::config::DEFAULT_BOOT_TRIES))
}

fn default_boot_deadline() -> Spanned<i64> {
    Spanned::new(0..0, fruix_system::config::DEFAULT_BOOT_DEADLINE as i64)
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            store_verify: VerifyPolicy::default(),
            gate: default_gate(),
            probes: Vec::new(),
            boot_tries: default_boot_tries(),
            on_failed_boot: OnFailedBoot::default(),
            boot_deadline: default_boot_deadline(),
        }
    }
}

/// The built-in readiness checks of the agent.
pub const BUILTIN_CHECKS: &[&str] = &[
    "sshd",
    "shepherd",
    "store",
    "compat-shims",
    "runtime-slice",
    "activation",
];

fn default_gate() -> Vec<Spanned<String>> {
    BUILTIN_CHECKS
        .iter()
        .map(|c| Spanned::new(0..0, (*c).to_owned()))
        .collect()
}

/// A command probe: passes when the command exits 0 within the timeout.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Probe {
    /// Name, as reported in status (`guile_module_smoke` for
    /// `guile-module-smoke`).
    pub name: Spanned<String>,
    /// The program and its arguments.
    pub command: Spanned<Vec<Spanned<String>>>,
    /// Seconds before the probe counts as failed.
    #[serde(default = "default_probe_timeout")]
    pub timeout: Spanned<i64>,
    /// Extra environment: names `[A-Za-z_][A-Za-z0-9_]*`.
    #[serde(default)]
    pub environment: BTreeMap<Spanned<String>, Spanned<String>>,
}

fn default_probe_timeout() -> Spanned<i64> {
    Spanned::new(0..0, 30)
}

/// Firmware the image boots with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// OVMF and the EFI system partition.
    #[default]
    Uefi,
    /// QEMU loads the kernel and initrd directly (fastest under TCG).
    Direct,
}

/// Disk image formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    /// Raw disk.
    Raw,
    /// QEMU's qcow2.
    Qcow2,
    /// VHD (`vpc`), for XCP-ng.
    Vhd,
}

/// Image settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageSettings {
    /// Disk capacity, e.g. `12g`.
    #[serde(default = "default_capacity")]
    pub capacity: Spanned<String>,
    /// Root partition size, e.g. `10g`.
    #[serde(default = "default_root_size")]
    pub root_size: Spanned<String>,
    /// Formats to write.
    #[serde(default = "default_formats")]
    pub formats: Vec<ImageFormat>,
    /// Firmware.
    #[serde(default)]
    pub firmware: Firmware,
}

fn default_capacity() -> Spanned<String> {
    Spanned::new(0..0, "12g".into())
}
fn default_root_size() -> Spanned<String> {
    Spanned::new(0..0, "10g".into())
}
fn default_formats() -> Vec<ImageFormat> {
    vec![ImageFormat::Raw]
}

impl Default for ImageSettings {
    fn default() -> Self {
        ImageSettings {
            capacity: default_capacity(),
            root_size: default_root_size(),
            formats: default_formats(),
            firmware: Firmware::default(),
        }
    }
}

/// A declaration read from a file and checked: what the builder works from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The file it was read from.
    pub file: PathBuf,
    /// The directory relative paths are taken from.
    pub base_dir: PathBuf,
    /// The declaration.
    pub decl: Declaration,
    /// Packages in dependency order (a package after the one it is `from`).
    pub order: Vec<String>,
    /// Capacity and root size in bytes.
    pub capacity: u64,
    /// Root partition size in bytes.
    pub root_size: u64,
}

impl Loaded {
    /// A package by name (the name was checked to exist).
    pub fn package(&self, name: &str) -> Option<&Package> {
        self.decl
            .packages
            .iter()
            .find(|(k, _)| k.get_ref() == name)
            .map(|(_, v)| v)
    }

    /// Resolves a path given in the declaration.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.base_dir.join(p)
    }
}
