//! The system item: everything generated from the declaration, plus the
//! closure and a copy of every closure item's manifest, so that the system
//! item's one digest covers every file of the system.
//!
//! Layout:
//!
//! ```text
//! closure                      ITEM ROLES ORIGIN, one line per item, sorted
//! manifests/ITEM.mtree         the manifest of every closure item
//! etc/fruix/system.toml        the agent's configuration
//! etc/fruix/accounts.toml      declared groups and users, for activation
//! etc/hostname, etc/hosts
//! etc/ssh/sshd_config
//! etc/ssh/authorized_keys/USER
//! etc/fstab                    the root file system, by label
//! etc/shepherd.scm             loads and starts Shepherd's services (both boot modes)
//! etc/shepherd/services/NAME.scm  one service each (realize/shepherd.rs)
//! etc/init.d/fruix-*           LSB scripts (rc-shepherd mode, Linux guests),
//! etc/rc?.d/S*fruix-*          with their links, run in name order
//! etc/rc.d/fruix_*             rc.d scripts (rc-shepherd mode, FreeBSD),
//! etc/rc.conf.d/fruix_*        enabled, and the first activation run by
//! libexec/fruix-first-activation  init(8) before /etc/rc (`target.rs`)
//! bin/fruix-agent              link to the agent item's binary
//! bin/shepherd, bin/herd       Shepherd with the Guile paths of the store
//! ```
//!
//! Once activated, `/run/current-system/bin` (`/frx/var/current-system/bin`
//! on FreeBSD) is where rc scripts, `fruix query` and people find these
//! commands, as Guix's `/run/current-system/profile/bin`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use fruix_store::{ItemName, StoreRoot};
use fruix_system::closure::{self, ClosureEntry, Role};
use fruix_system::config::{
    BootPolicy, DeclaredAccounts, DeclaredGroup, DeclaredUser, ProbeConfig, ReadyCheck,
    ServiceConfig, SshdConfig, SystemConfig,
};

use super::packages::{Origin, Realized};
use crate::declaration::{InitMode, Loaded, Os};
use crate::error::BuildError;
use crate::target::{self, GenFile};

/// One line of the closure.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClosureItem {
    /// The item.
    pub item: ItemName,
    /// Its roles: `kernel`, `bootloader`, `base`, `agent`.
    pub roles: Vec<Role>,
    /// Its origin.
    pub origin: Origin,
    /// The declared package (or `fruix-agent`).
    pub package: String,
}

/// The closure of a system: kernel, boot loader, base packages and agent,
/// each once, with all its roles. The broad world a runtime is cut from
/// is not in it.
pub fn closure(
    loaded: &Loaded,
    realized: &BTreeMap<String, Realized>,
    agent: &Realized,
) -> Vec<ClosureItem> {
    let d = &loaded.decl;
    let mut by_pkg: BTreeMap<String, ClosureItem> = BTreeMap::new();
    let mut add = |pkg: &str, role: Role, r: &Realized| {
        let e = by_pkg.entry(pkg.to_owned()).or_insert_with(|| ClosureItem {
            item: r.item.clone(),
            roles: Vec::new(),
            origin: r.origin,
            package: pkg.to_owned(),
        });
        if !e.roles.contains(&role) {
            e.roles.push(role);
        }
    };
    for (role, pkg) in [
        (Role::Kernel, d.kernel.get_ref()),
        (Role::Bootloader, d.bootloader.get_ref()),
    ] {
        if let Some(r) = realized.get(pkg) {
            add(pkg, role, r);
        }
    }
    for p in &d.base_packages {
        if let Some(r) = realized.get(p.get_ref()) {
            add(p.get_ref(), Role::Base, r);
        }
    }
    add("fruix-agent", Role::Agent, agent);
    let mut v: Vec<ClosureItem> = by_pkg.into_values().collect();
    v.sort_by(|a, b| a.item.cmp(&b.item));
    v
}

/// Writes the system item's tree into `dir`.
pub fn write_tree(
    dir: &Path,
    loaded: &Loaded,
    root: &StoreRoot,
    closure: &[ClosureItem],
    realized: &BTreeMap<String, Realized>,
) -> Result<(), BuildError> {
    let d = &loaded.decl;
    let os = *d.os.get_ref();
    let w = |rel: &str, text: &str, mode: u32| write(dir, rel, text, mode);

    for c in closure {
        let from = root.manifest_path(&c.item);
        let to = dir.join("manifests").join(format!("{}.mtree", c.item));
        fs::create_dir_all(dir.join("manifests"))
            .map_err(|e| BuildError::Io(dir.join("manifests"), e))?;
        fs::copy(&from, &to).map_err(|e| BuildError::Io(from.clone(), e))?;
    }
    let entries: Vec<ClosureEntry> = closure
        .iter()
        .map(|c| ClosureEntry {
            item: c.item.clone(),
            roles: c.roles.clone(),
            origin: c.origin,
        })
        .collect();
    w(closure::CLOSURE, &closure::to_text(&entries), 0o444)?;

    let host = d.host_name.get_ref();
    w("etc/hostname", &format!("{host}\n"), 0o444)?;
    w(
        "etc/hosts",
        &format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{host}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        ),
        0o444,
    )?;

    let item_of = |pkg: &str| {
        realized
            .get(pkg)
            .map(|r| r.item.to_string())
            .unwrap_or_default()
    };
    let agent = closure
        .iter()
        .find(|c| c.roles.contains(&Role::Agent))
        .map(|c| c.item.to_string())
        .unwrap_or_default();
    let runtime = d
        .base_packages
        .first()
        .map(|p| item_of(p.get_ref()))
        .unwrap_or_default();
    let shepherd = d
        .base_packages
        .iter()
        .map(|p| p.get_ref())
        .find(|p| {
            realized
                .get(*p)
                .is_some_and(|r| r.path.join("bin/shepherd").exists())
        })
        .map(|p| item_of(p))
        .unwrap_or_default();
    let extensions: Vec<String> = d
        .base_packages
        .iter()
        .filter_map(|p| realized.get(p.get_ref()))
        .filter(|r| r.path.join("lib/guile/3.0/extensions").is_dir())
        .map(|r| r.item.to_string())
        .collect();
    let config = agent_config(loaded, &runtime, &agent, &shepherd, &extensions)?;
    w(
        fruix_system::config::SYSTEM_TOML,
        &config.to_toml().map_err(format_error)?,
        0o444,
    )?;
    w(
        fruix_system::config::ACCOUNTS_TOML,
        &accounts(loaded)?.to_toml().map_err(format_error)?,
        0o444,
    )?;

    let port = d.services.sshd.as_ref().map_or(22, |s| *s.port.get_ref());
    if let Some(sshd) = &d.services.sshd {
        let mut keys = String::new();
        for k in &sshd.root_authorized_keys {
            let _ = writeln!(keys, "{}", k.get_ref().trim());
        }
        for f in &sshd.root_authorized_keys_files {
            let p = loaded.resolve(f.get_ref());
            let text = fs::read_to_string(&p).map_err(|e| BuildError::Io(p.clone(), e))?;
            for l in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let _ = writeln!(keys, "{l}");
            }
        }
        w("etc/ssh/authorized_keys/root", &keys, 0o444)?;
        w("etc/ssh/sshd_config", &sshd_config(port, os), 0o444)?;
    }
    for u in &d.users {
        if !u.authorized_keys.is_empty() {
            w(
                &format!("etc/ssh/authorized_keys/{}", u.name.get_ref()),
                &(values(&u.authorized_keys).join("\n") + "\n"),
                0o444,
            )?;
        }
    }

    for (rel, text) in super::shepherd::files(loaded, &agent, d.services.sshd.is_some()) {
        w(&rel, &text, 0o444)?;
    }
    w("etc/fstab", &target::fstab(os), 0o444)?;
    if d.init == InitMode::RcShepherd {
        for f in target::rc_files(os, &agent) {
            f.write_into(dir)?;
        }
    }

    if !agent.is_empty() {
        link(
            dir,
            "bin/fruix-agent",
            &format!("/frx/store/{agent}/bin/fruix-agent"),
        )?;
    }
    if !shepherd.is_empty() {
        let env = guile_env(&shepherd, &extensions);
        for prog in ["shepherd", "herd"] {
            w(
                &format!("bin/{prog}"),
                &format!(
                    "#!/bin/sh\n# Generated by `fruix system build`: {prog} with the Guile paths of the store.\n{env}exec /frx/store/{shepherd}/bin/{prog} \"$@\"\n"
                ),
                0o555,
            )?;
        }
    }
    Ok(())
}

/// `export` lines for the Guile paths that find Shepherd's modules and the
/// extensions in the store; the agent's `init` sets the same ones.
fn guile_env(shepherd: &str, extensions: &[String]) -> String {
    let vars = fruix_system::guile_env(shepherd, extensions);
    let mut s: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    s.push_str(&format!("export {}\n", names.join(" ")));
    s
}

fn link(dir: &Path, rel: &str, target: &str) -> Result<(), BuildError> {
    GenFile::Link {
        path: rel.to_owned(),
        target: target.to_owned(),
    }
    .write_into(dir)
}

fn write(dir: &Path, rel: &str, text: &str, mode: u32) -> Result<(), BuildError> {
    GenFile::File {
        path: rel.to_owned(),
        text: text.to_owned(),
        mode,
    }
    .write_into(dir)
}

fn format_error(e: fruix_system::FormatError) -> BuildError {
    BuildError::Input(e.to_string())
}

/// The values of declared strings, without their places in the file.
fn values(v: &[toml::Spanned<String>]) -> Vec<String> {
    v.iter().map(|x| x.get_ref().clone()).collect()
}

fn agent_config(
    loaded: &Loaded,
    runtime: &str,
    agent: &str,
    shepherd: &str,
    extensions: &[String],
) -> Result<SystemConfig, BuildError> {
    let d = &loaded.decl;
    Ok(SystemConfig {
        host_name: d.host_name.get_ref().clone(),
        boot_mode: d.init.as_str().to_owned(),
        store_verify: d.agent.store_verify.as_str().to_owned(),
        gate: values(&d.agent.gate),
        boot: BootPolicy {
            tries: number(*d.agent.boot_tries.get_ref(), "boot tries")?,
            on_failed_boot: d.agent.on_failed_boot,
            deadline: number(*d.agent.boot_deadline.get_ref(), "boot deadline")?,
        },
        runtime: runtime.to_owned(),
        agent: agent.to_owned(),
        shepherd: shepherd.to_owned(),
        guile_extensions: extensions.to_vec(),
        base_packages: values(&d.base_packages),
        setuid_programs: values(&d.setuid_programs),
        sshd: d
            .services
            .sshd
            .as_ref()
            .map(|s| {
                Ok::<_, BuildError>(SshdConfig {
                    port: number(*s.port.get_ref(), "sshd port")?,
                })
            })
            .transpose()?,
        probes: d
            .agent
            .probes
            .iter()
            .map(|p| {
                Ok(ProbeConfig {
                    name: p.name.get_ref().clone(),
                    command: values(p.command.get_ref()),
                    timeout: number(*p.timeout.get_ref(), "probe timeout")?,
                    environment: p
                        .environment
                        .iter()
                        .map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone()))
                        .collect(),
                })
            })
            .collect::<Result<_, BuildError>>()?,
        services: d
            .services
            .declared
            .iter()
            .map(|(k, s)| service_config(k.get_ref(), s))
            .collect::<Result<_, BuildError>>()?,
    })
}

/// What the agent needs to check a declared service.
fn service_config(
    name: &str,
    s: &crate::declaration::Service,
) -> Result<ServiceConfig, BuildError> {
    let ready = s.ready.as_ref().map(|r| r.get_ref());
    let check = match ready {
        None => None,
        Some(r) => Some(if let Some(p) = &r.tcp {
            ReadyCheck::Tcp {
                port: number(*p.get_ref(), "ready tcp port")?,
            }
        } else if let Some(u) = &r.http {
            ReadyCheck::Http {
                url: u.get_ref().clone(),
            }
        } else {
            ReadyCheck::Command {
                argv: r
                    .command
                    .as_ref()
                    .map(|c| values(c.get_ref()))
                    .unwrap_or_default(),
            }
        }),
    };
    Ok(ServiceConfig {
        name: name.to_owned(),
        ready: check,
        timeout: number(ready.map_or(30, |r| *r.timeout.get_ref()), "ready timeout")?,
    })
}

/// A declared number the declaration checks have put in range.
fn number<T: TryFrom<i64>>(v: i64, what: &str) -> Result<T, BuildError> {
    T::try_from(v).map_err(|_| BuildError::Input(format!("{what} {v} is out of range")))
}

fn accounts(loaded: &Loaded) -> Result<DeclaredAccounts, BuildError> {
    let d = &loaded.decl;
    Ok(DeclaredAccounts {
        groups: d
            .groups
            .iter()
            .map(|g| {
                Ok(DeclaredGroup {
                    name: g.name.get_ref().clone(),
                    gid: number(*g.gid.get_ref(), "gid")?,
                })
            })
            .collect::<Result<_, BuildError>>()?,
        users: d
            .users
            .iter()
            .map(|u| {
                Ok(DeclaredUser {
                    name: u.name.get_ref().clone(),
                    uid: number(*u.uid.get_ref(), "uid")?,
                    group: u.group.get_ref().clone(),
                    home: u
                        .home
                        .as_ref()
                        .map(|h| h.get_ref().clone())
                        .unwrap_or_else(|| format!("/home/{}", u.name.get_ref())),
                    shell: u.shell.get_ref().clone(),
                    comment: u.comment.get_ref().clone(),
                })
            })
            .collect::<Result<_, BuildError>>()?,
    })
}

fn sshd_config(port: i64, os: Os) -> String {
    // Exactly the keys activation makes, so that sshd looks for no other.
    let host_keys: String = fruix_activation::HOST_KEY_TYPES
        .iter()
        .map(|t| format!("HostKey /etc/ssh/ssh_host_{t}_key\n"))
        .collect();
    format!(
        "# Generated by `fruix system build`. Host keys are made at first boot.\n\
         Port {port}\n\
         {host_keys}\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         AuthorizedKeysFile /etc/ssh/authorized_keys/%u .ssh/authorized_keys\n\
         PidFile {pid}\n\
         Subsystem sftp internal-sftp\n",
        pid = target::sshd_pid_file(os)
    )
}
