//! The activation steps and their ledger.
//!
//! Each step compares what the system item wants with what the guest has
//! and changes only the difference, atomically. Running activation twice
//! changes nothing the second time; a run killed at any point is completed
//! by the next one. After every step the ledger is written to
//! `/run/fruix/activation.json`, so a killed run shows where it stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::accounts;
use crate::config::{DeclaredAccounts, SystemConfig};
use crate::error::{ActivationError, At};
use crate::platform::Platform;
use crate::root::GuestRoot;

/// The legacy compatibility-prefix shims Fruix once needed. Activation
/// never makes them, and removes and reports any it finds.
pub const COMPAT_SHIMS: [&str; 3] = [
    "/tmp/guile-freebsd-validate-install",
    "/tmp/guile-gnutls-freebsd-validate-install",
    "/tmp/shepherd-freebsd-validate-install",
];

/// Where the ledger is written.
pub const LEDGER_PATH: &str = "/run/fruix/activation.json";

/// The list of `/etc` entries activation manages, so that it can remove
/// the ones a new generation no longer has.
const MANAGED_LIST: &str = "/etc/.fruix-managed";

/// Account files that activation writes itself instead of linking, and the
/// lock file the account tools open for writing.
const ACCOUNT_FILES: &[&str] = &[
    "passwd",
    "passwd-",
    "group",
    "group-",
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "master.passwd",
    "pwd.db",
    "spwd.db",
    ".pwd.lock",
];

/// Top-level names a runtime item never provides to `/`.
const NOT_TOP_LEVEL: &[&str] = &[
    "etc",
    "var",
    "tmp",
    "run",
    "dev",
    "proc",
    "sys",
    "root",
    "home",
    "frx",
    "boot",
    "mnt",
    "media",
    "srv",
    "lost+found",
];

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// It ran; it has no state to compare (such as mounting).
    Done,
    /// Nothing needed changing.
    Unchanged,
    /// It changed the guest.
    Changed,
    /// It failed; `error` says why.
    Failed,
}

/// One step of the ledger.
#[derive(Clone, Debug, Serialize)]
pub struct StepRecord {
    /// The step's name.
    pub step: String,
    /// How it ended.
    pub status: StepStatus,
    /// What it changed (or, in a dry run, would change), one line each.
    pub changes: Vec<String>,
    /// Milliseconds it took.
    pub ms: u64,
    /// The error, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The record of one activation.
#[derive(Clone, Debug, Serialize)]
pub struct Ledger {
    /// The system item, as a guest path.
    pub system: String,
    /// The generation number it is (or would be).
    pub generation: Option<u64>,
    /// True for a dry run: nothing was changed.
    pub dry_run: bool,
    /// The steps, in order.
    pub steps: Vec<StepRecord>,
}

impl Ledger {
    /// True when no step failed.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.status != StepStatus::Failed)
    }

    /// True when a step changed something.
    pub fn changed(&self) -> bool {
        self.steps.iter().any(|s| s.status == StepStatus::Changed)
    }

    /// Records a step run outside [`activate`] (the agent's mounts, say).
    pub fn push(
        &mut self,
        step: &str,
        status: StepStatus,
        changes: Vec<String>,
        ms: u64,
        error: Option<String>,
    ) {
        self.steps.push(StepRecord {
            step: step.to_owned(),
            status,
            changes,
            ms,
            error,
        });
    }

    /// Writes the ledger to [`LEDGER_PATH`] (not in a dry run).
    pub fn write(&self, root: &GuestRoot) -> Result<(), ActivationError> {
        if root.is_dry_run() {
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        root.write_if_changed(LEDGER_PATH, &json, 0o644, None)
            .map(|_| ())
    }
}

/// Choices of an activation run.
#[derive(Clone, Copy, Debug)]
pub struct ActivateOptions {
    /// Make missing SSH host keys. Off when an image is pre-activated on
    /// the host: every guest makes its own keys at first boot.
    pub host_keys: bool,
}

impl Default for ActivateOptions {
    fn default() -> Self {
        ActivateOptions { host_keys: true }
    }
}

/// Activates the system item at `system` (a guest path such as
/// `/frx/store/<digest>-system-host`) in `root`. Failed steps are
/// recorded and the others still run; the ledger says what happened.
pub fn activate(root: &GuestRoot, system: &str, platform: &dyn Platform) -> Ledger {
    activate_with(root, system, platform, ActivateOptions::default())
}

/// [`activate`], with choices.
pub fn activate_with(
    root: &GuestRoot,
    system: &str,
    platform: &dyn Platform,
    opts: ActivateOptions,
) -> Ledger {
    let mut ledger = Ledger {
        system: system.to_owned(),
        generation: None,
        dry_run: root.is_dry_run(),
        steps: Vec::new(),
    };
    let system_dir = root.path(system);
    let loaded = (|| {
        Ok::<_, ActivationError>((
            SystemConfig::load(&system_dir)?,
            DeclaredAccounts::load(&system_dir)?,
        ))
    })();
    let (cfg, declared) = match loaded {
        Ok(v) => v,
        Err(e) => {
            ledger.push(
                "system",
                StepStatus::Failed,
                Vec::new(),
                0,
                Some(e.to_string()),
            );
            let _ = ledger.write(root);
            return ledger;
        }
    };
    let runtime = format!("/frx/store/{}", cfg.runtime);
    let step = |ledger: &mut Ledger,
                name: &str,
                f: &mut dyn FnMut() -> Result<Vec<String>, ActivationError>| {
        run_step(ledger, root, name, f)
    };
    step(&mut ledger, "directories", &mut || directories(root));
    if platform.grows_root() {
        step(&mut ledger, "grow-root", &mut || platform.grow_root(root));
    }
    step(&mut ledger, "top-level", &mut || {
        top_level_links(root, &runtime)
    });
    step(&mut ledger, "etc", &mut || etc(root, &runtime, system));
    step(&mut ledger, "accounts", &mut || {
        accounts_step(root, &runtime, &declared, platform)
    });
    step(&mut ledger, "setuid-programs", &mut || {
        setuid_programs(root, &runtime, &cfg.setuid_programs)
    });
    if opts.host_keys {
        step(&mut ledger, "host-keys", &mut || host_keys(root, platform));
    }
    step(&mut ledger, "compat-shims", &mut || {
        remove_compat_shims(root)
    });
    let mut generation = None;
    step(&mut ledger, "generation", &mut || {
        let (n, changes) = switch_generation(root, system)?;
        generation = Some(n);
        Ok(changes)
    });
    ledger.generation = generation;
    let _ = ledger.write(root);
    ledger
}

/// Runs one step, records it with its time and writes the ledger.
fn run_step(
    ledger: &mut Ledger,
    root: &GuestRoot,
    name: &str,
    f: &mut dyn FnMut() -> Result<Vec<String>, ActivationError>,
) {
    let t = Instant::now();
    let (status, changes, error) = match f() {
        Ok(c) if c.is_empty() => (StepStatus::Unchanged, c, None),
        Ok(c) => (StepStatus::Changed, c, None),
        Err(e) => (StepStatus::Failed, Vec::new(), Some(e.to_string())),
    };
    ledger.push(name, status, changes, t.elapsed().as_millis() as u64, error);
    let _ = ledger.write(root);
}

/// The `host-keys` step on its own, added to `ledger`: for a caller that
/// activated with `host_keys: false` and has work to start before the
/// keys, which take seconds in an emulated guest (`fruix-agent init`).
pub fn add_host_keys(root: &GuestRoot, platform: &dyn Platform, ledger: &mut Ledger) {
    run_step(ledger, root, "host-keys", &mut || host_keys(root, platform));
}

fn directories(root: &GuestRoot) -> Result<Vec<String>, ActivationError> {
    let dirs: &[(&str, u32)] = &[
        ("/etc", 0o755),
        ("/etc/ssh", 0o755),
        ("/var", 0o755),
        ("/var/log", 0o755),
        ("/var/lib", 0o755),
        ("/var/cache", 0o755),
        ("/var/empty", 0o755),
        ("/run", 0o755),
        ("/run/fruix", 0o755),
        ("/run/sshd", 0o755),
        ("/tmp", 0o1777),
        ("/root", 0o700),
        ("/home", 0o755),
        ("/frx/var", 0o755),
        ("/frx/var/profiles", 0o755),
    ];
    let mut changes = Vec::new();
    for (d, mode) in dirs {
        if root.ensure_dir(d, *mode)? {
            changes.push(format!("directory {d} {mode:04o}"));
        }
    }
    Ok(changes)
}

/// `/usr` and its peers point into the runtime item (a guest path): each
/// top-level directory of the item becomes a link to it, and each
/// top-level link of the item (`bin -> usr/bin` on merged-/usr systems) is
/// copied. The image builder calls it too: the initramfs needs them to
/// find `init` before activation has run. Returns what changed.
pub fn top_level_links(root: &GuestRoot, runtime: &str) -> Result<Vec<String>, ActivationError> {
    let dir = root.path(runtime);
    let mut changes = Vec::new();
    let mut names: Vec<_> = fs::read_dir(&dir)
        .at(runtime)?
        .filter_map(Result::ok)
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().into_owned();
        if NOT_TOP_LEVEL.contains(&name.as_str()) {
            continue;
        }
        let ft = e.file_type().at(runtime)?;
        let target = if ft.is_symlink() {
            fs::read_link(e.path())
                .at(runtime)?
                .to_string_lossy()
                .into_owned()
        } else if ft.is_dir() {
            format!("{runtime}/{name}")
        } else {
            continue;
        };
        if root.symlink_if_changed(&format!("/{name}"), &target)? {
            changes.push(format!("link /{name} -> {target}"));
        }
    }
    Ok(changes)
}

enum EtcEntry {
    Dir,
    Link(String),
}

/// Collects `dir` (the `etc` of an item at guest path `guest`) into `out`.
fn collect_etc(
    dir: &Path,
    guest: &str,
    rel: &str,
    skip_accounts: bool,
    out: &mut BTreeMap<String, EtcEntry>,
) -> Result<(), ActivationError> {
    let here = if rel.is_empty() {
        dir.to_owned()
    } else {
        dir.join(rel)
    };
    let rd = match fs::read_dir(&here) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(ActivationError::Io {
                path: format!("{guest}/{rel}"),
                source: e,
            });
        }
    };
    for e in rd {
        let e = e.at(guest)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if skip_accounts && rel.is_empty() && ACCOUNT_FILES.contains(&name.as_str()) {
            continue;
        }
        let ft = e.file_type().at(guest)?;
        if ft.is_dir() {
            out.insert(r.clone(), EtcEntry::Dir);
            collect_etc(dir, guest, &r, skip_accounts, out)?;
        } else if ft.is_symlink() {
            // A link in an item's etc (Debian's alternatives) is copied as it is.
            let t = fs::read_link(e.path()).at(guest)?;
            out.insert(r, EtcEntry::Link(t.to_string_lossy().into_owned()));
        } else {
            out.insert(r.clone(), EtcEntry::Link(format!("{guest}/{r}")));
        }
    }
    Ok(())
}

/// `/etc` from the runtime's `etc` and the system item's generated `etc`
/// (which wins): real directories, and links into the store for files.
fn etc(root: &GuestRoot, runtime: &str, system: &str) -> Result<Vec<String>, ActivationError> {
    let mut want = BTreeMap::new();
    collect_etc(
        &root.path(&format!("{runtime}/etc")),
        &format!("{runtime}/etc"),
        "",
        true,
        &mut want,
    )?;
    let mut generated = BTreeMap::new();
    collect_etc(
        &root.path(&format!("{system}/etc")),
        &format!("{system}/etc"),
        "",
        false,
        &mut generated,
    )?;
    for (k, v) in generated {
        // A generated file replaces a runtime directory of the same name too.
        if matches!(v, EtcEntry::Link(_)) {
            let prefix = format!("{k}/");
            want.retain(|w, _| !w.starts_with(&prefix));
        }
        want.insert(k, v);
    }
    let mut changes = Vec::new();
    for (rel, e) in &want {
        let guest = format!("/etc/{rel}");
        match e {
            EtcEntry::Dir => {
                if root.ensure_dir(&guest, 0o755)? {
                    changes.push(format!("directory {guest}"));
                }
            }
            EtcEntry::Link(target) => {
                if root.symlink_if_changed(&guest, target)? {
                    changes.push(format!("link {guest} -> {target}"));
                }
            }
        }
    }
    // What an earlier generation linked and this one does not have.
    let old = fs::read_to_string(root.path(MANAGED_LIST)).unwrap_or_default();
    // Deepest first, so that a directory is empty when its turn comes.
    let mut stale: Vec<&str> = old
        .lines()
        .filter(|l| !l.is_empty() && !want.contains_key(*l))
        .collect();
    stale.sort_unstable_by(|a, b| b.cmp(a));
    for rel in stale {
        let guest = format!("/etc/{rel}");
        let p = root.path(&guest);
        let ours = fs::read_link(&p).is_ok_and(|t| t.starts_with("/frx/store/"))
            || fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
        if ours
            && fs::read_dir(&p).map_or(true, |mut d| d.next().is_none())
            && root.remove(&guest)?
        {
            changes.push(format!("removed {guest}"));
        }
    }
    let list: String = want.keys().map(|k| format!("{k}\n")).collect();
    root.write_if_changed(MANAGED_LIST, list.as_bytes(), 0o644, None)?;
    Ok(changes)
}

fn accounts_step(
    root: &GuestRoot,
    runtime: &str,
    declared: &DeclaredAccounts,
    platform: &dyn Platform,
) -> Result<Vec<String>, ActivationError> {
    let read = |g: &str| fs::read_to_string(root.path(g)).unwrap_or_default();
    let base_passwd = read(&format!("{runtime}/etc/passwd"));
    let base_group = read(&format!("{runtime}/etc/group"));
    // Hashes already on the guest, from whichever file this system keeps.
    let mut existing = accounts::parse_hashes(&read("/etc/master.passwd"));
    existing.extend(accounts::parse_hashes(&read("/etc/shadow")));
    let db = accounts::merge(&base_passwd, &base_group, declared, &existing);
    let mut changes: Vec<String> = if root.is_dry_run() {
        // The platform writes real files; a dry run compares the Linux
        // rendering, which is what tells whether anything would change.
        let mut c = Vec::new();
        if read("/etc/passwd") != db.passwd() {
            c.push("/etc/passwd".to_owned());
        }
        if read("/etc/group") != db.group() {
            c.push("/etc/group".to_owned());
        }
        c
    } else {
        platform.write_accounts(root, &db)?
    }
    .into_iter()
    .map(|p| format!("wrote {p}"))
    .collect();
    let mut homes: BTreeSet<&str> = BTreeSet::new();
    for u in db.users.iter().filter(|u| u.declared) {
        if homes.insert(&u.home) {
            if root.ensure_dir(&u.home, 0o700)? {
                changes.push(format!("home {}", u.home));
            }
            if root.path(&u.home).exists() && root.chown_if_changed(&u.home, u.uid, u.gid)? {
                changes.push(format!("owner {}:{} of {}", u.uid, u.gid, u.home));
            }
        }
    }
    Ok(changes)
}

/// The SSH host key types activation makes. No RSA: an RSA key takes
/// hundreds of milliseconds to make (seconds in an emulated guest) and
/// every current client speaks Ed25519 or ECDSA. The generated
/// sshd_config names exactly these.
pub const HOST_KEY_TYPES: [&str; 2] = ["ed25519", "ecdsa"];

fn host_keys(root: &GuestRoot, platform: &dyn Platform) -> Result<Vec<String>, ActivationError> {
    let have = |t: &str| root.path(&format!("/etc/ssh/ssh_host_{t}_key")).exists();
    let missing: Vec<&str> = HOST_KEY_TYPES.into_iter().filter(|t| !have(t)).collect();
    if !root.is_dry_run() {
        for t in &missing {
            platform.generate_host_key(root, t)?;
        }
    }
    Ok(missing
        .into_iter()
        .map(|t| format!("host key /etc/ssh/ssh_host_{t}_key"))
        .collect())
}

/// Where setuid copies live: on a tmpfs, made at every boot, as Guix and
/// NixOS do, since the store holds no setuid file.
pub const SETUID_DIR: &str = "/run/setuid-programs";

/// Copies each declared program of the runtime (a guest path such as
/// `/usr/bin/passwd`, read from the runtime item) to
/// `/run/setuid-programs/NAME`, setuid root, and removes copies no longer
/// declared.
fn setuid_programs(
    root: &GuestRoot,
    runtime: &str,
    programs: &[String],
) -> Result<Vec<String>, ActivationError> {
    let mut changes = Vec::new();
    if programs.is_empty() && !root.path(SETUID_DIR).exists() {
        return Ok(changes);
    }
    if root.ensure_dir(SETUID_DIR, 0o755)? {
        changes.push(format!("directory {SETUID_DIR}"));
    }
    let mut names = BTreeSet::new();
    for p in programs {
        let name = p.rsplit('/').next().unwrap_or(p);
        names.insert(name.to_owned());
        let src = format!("{runtime}{p}");
        let bytes = fs::read(root.path(&src)).at(&src)?;
        // Created by root and never chown'd: chown would clear the bit.
        if root.write_if_changed(&format!("{SETUID_DIR}/{name}"), &bytes, 0o4755, None)? {
            changes.push(format!("setuid {SETUID_DIR}/{name} from {src}"));
        }
    }
    // A dry run has not made the directory.
    let entries = match fs::read_dir(root.path(SETUID_DIR)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(changes),
        r => r.at(SETUID_DIR)?,
    };
    for e in entries {
        let name = e.at(SETUID_DIR)?.file_name().to_string_lossy().into_owned();
        if !names.contains(&name) && root.remove(&format!("{SETUID_DIR}/{name}"))? {
            changes.push(format!("removed {SETUID_DIR}/{name}"));
        }
    }
    Ok(changes)
}

/// Removes the legacy compatibility shims; returns what it removed. The
/// `compat-shims` step; `fruix-agent init` also calls it before anything
/// else, so that no early probe can lean on a shim.
pub fn remove_compat_shims(root: &GuestRoot) -> Result<Vec<String>, ActivationError> {
    let mut changes = Vec::new();
    for s in COMPAT_SHIMS {
        if root.remove(s)? {
            changes.push(format!("removed compatibility shim {s}"));
        }
    }
    Ok(changes)
}

/// Makes `system` the current generation: a new numbered link when it is
/// not already the newest, then the profile link and the current-system
/// links, each renamed into place.
pub fn switch_generation(
    root: &GuestRoot,
    system: &str,
) -> Result<(u64, Vec<String>), ActivationError> {
    let profiles = "/frx/var/profiles";
    let mut newest: Option<(u64, String)> = None;
    if let Ok(rd) = fs::read_dir(root.path(profiles)) {
        for e in rd.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_prefix("system-")
                .and_then(|n| n.parse::<u64>().ok())
                && newest.as_ref().is_none_or(|(m, _)| n > *m)
            {
                let t = fs::read_link(e.path())
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                newest = Some((n, t));
            }
        }
    }
    let n = match newest {
        Some((n, t)) if t == system => n,
        Some((n, _)) => n + 1,
        None => 1,
    };
    let mut changes = Vec::new();
    let links = [
        (format!("{profiles}/system-{n}"), system.to_owned()),
        (format!("{profiles}/system"), format!("system-{n}")),
        ("/frx/var/current-system".to_owned(), system.to_owned()),
        ("/run/current-system".to_owned(), system.to_owned()),
    ];
    for (link, target) in links {
        if root.symlink_if_changed(&link, &target)? {
            changes.push(format!("link {link} -> {target}"));
        }
    }
    Ok((n, changes))
}
