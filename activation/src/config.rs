//! The system item's configuration files, as `fruix system build` writes
//! them: `etc/fruix/system.toml` (the agent's view of the system) and
//! `etc/fruix/accounts.toml` (declared groups and users).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::ActivationError;

/// `etc/fruix/system.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct SystemConfig {
    /// The host name.
    pub host_name: String,
    /// `shepherd-pid1` or `rc-shepherd`.
    pub boot_mode: String,
    /// `none`, `metadata` or `full`.
    pub store_verify: String,
    /// Checks that gate the ready marker.
    pub gate: Vec<String>,
    /// The runtime item (the first base package).
    pub runtime: String,
    /// The agent's item.
    pub agent: String,
    /// The item holding `bin/shepherd`, if any.
    #[serde(default)]
    pub shepherd: String,
    /// Items holding Guile extensions.
    #[serde(default)]
    pub guile_extensions: Vec<String>,
    /// Declared base packages.
    #[serde(default)]
    pub base_packages: Vec<String>,
    /// Runtime programs copied setuid root to `/run/setuid-programs`.
    #[serde(default)]
    pub setuid_programs: Vec<String>,
    /// sshd settings.
    pub sshd: Option<SshdConfig>,
    /// Command probes.
    #[serde(default)]
    pub probes: Vec<ProbeConfig>,
}

/// The Guile environment that makes the store's Guile extensions and
/// Shepherd's modules loadable, as `(variable, value)` pairs: load paths
/// and extension paths into the items (`shepherd` may be empty), no shim
/// anywhere. The agent runs Shepherd and the probes with it; the builder
/// writes it into the system's `bin/shepherd` and `bin/herd` wrappers.
pub fn guile_env(shepherd: &str, extensions: &[String]) -> Vec<(String, String)> {
    let mut items: Vec<&str> = extensions.iter().map(String::as_str).collect();
    if !shepherd.is_empty() {
        items.push(shepherd);
    }
    let join = |sub: &str| {
        items
            .iter()
            .map(|i| format!("/frx/store/{i}/{sub}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let ext: Vec<String> = extensions
        .iter()
        .map(|i| format!("/frx/store/{i}/lib/guile/3.0/extensions"))
        .collect();
    vec![
        ("GUILE_LOAD_PATH".into(), join("share/guile/site/3.0")),
        (
            "GUILE_LOAD_COMPILED_PATH".into(),
            join("lib/guile/3.0/site-ccache"),
        ),
        ("GUILE_EXTENSIONS_PATH".into(), ext.join(":")),
    ]
}

/// sshd settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct SshdConfig {
    /// TCP port.
    pub port: u16,
}

/// A command probe.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Name.
    pub name: String,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Seconds.
    pub timeout: u64,
    /// Extra environment.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

/// `etc/fruix/accounts.toml`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct DeclaredAccounts {
    /// Groups.
    #[serde(default)]
    pub groups: Vec<DeclaredGroup>,
    /// Users.
    #[serde(default)]
    pub users: Vec<DeclaredUser>,
}

/// A declared group.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct DeclaredGroup {
    /// Name.
    pub name: String,
    /// Group id.
    pub gid: u32,
}

/// A declared user.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct DeclaredUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group's name.
    pub group: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
    /// GECOS.
    #[serde(default)]
    pub comment: String,
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ActivationError> {
    let text = std::fs::read_to_string(path).map_err(|e| ActivationError::System {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ActivationError::System {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

impl SystemConfig {
    /// Reads `etc/fruix/system.toml` of a system item directory.
    pub fn load(system_dir: &Path) -> Result<SystemConfig, ActivationError> {
        read_toml(&system_dir.join("etc/fruix/system.toml"))
    }
}

impl DeclaredAccounts {
    /// Reads `etc/fruix/accounts.toml` of a system item directory (none
    /// declared when it is absent).
    pub fn load(system_dir: &Path) -> Result<DeclaredAccounts, ActivationError> {
        let p = system_dir.join("etc/fruix/accounts.toml");
        if !p.exists() {
            return Ok(DeclaredAccounts::default());
        }
        read_toml(&p)
    }
}
