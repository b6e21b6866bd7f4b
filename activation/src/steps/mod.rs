//! The activation steps: directories, the top-level links, `/etc` (in
//! [`etc`]), accounts, setuid programs, SSH host keys, the compatibility
//! shims and the generation links. Each returns what it changed, one line
//! each, and changes nothing that is already as wanted.

mod etc;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;

use fruix_store::hash::sha256;
use fruix_store::root::MANIFEST_EXT;
use fruix_store::{EntryKind, ItemName, Manifest};

use crate::accounts;
use crate::config::DeclaredAccounts;
use crate::error::{ActivationError, At, SetuidRefusal};
use crate::platform::Platform;
use crate::root::GuestRoot;

pub(crate) use self::etc::etc;

/// The legacy compatibility-prefix shims Fruix once needed. Activation
/// never makes them, and removes and reports any it finds.
pub const COMPAT_SHIMS: [&str; 3] = [
    "/tmp/guile-freebsd-validate-install",
    "/tmp/guile-gnutls-freebsd-validate-install",
    "/tmp/shepherd-freebsd-validate-install",
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

/// The `directories` step: the directories every guest has, with their
/// modes.
pub(crate) fn directories(root: &GuestRoot) -> Result<Vec<String>, ActivationError> {
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
        .at(runtime, "read directory")?
        .filter_map(Result::ok)
        .collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().into_owned();
        if NOT_TOP_LEVEL.contains(&name.as_str()) {
            continue;
        }
        let ft = e.file_type().at(runtime, "read directory")?;
        let target = if ft.is_symlink() {
            fs::read_link(e.path())
                .at(runtime, "read link")?
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

/// The `accounts` step: the runtime's accounts merged with the declared
/// ones (keeping password hashes already on the guest), written by the
/// platform, and the declared users' homes.
pub(crate) fn accounts_step(
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

/// The `host-keys` step: makes each of [`HOST_KEY_TYPES`] that is missing.
pub(crate) fn host_keys(
    root: &GuestRoot,
    platform: &dyn Platform,
) -> Result<Vec<String>, ActivationError> {
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
///
/// Each source is checked first against the runtime item's manifest,
/// trusted through the system item: its copy in `SYSTEM/manifests/` must
/// hash to the runtime item's name. The source is opened without following
/// a link, read once, and those same bytes are hashed, compared with the
/// manifest's entry and written. A source that differs (or is a link, or
/// not a regular file of the manifest) is refused with
/// [`ActivationError::SetuidRefused`]: no copy is installed for it (one
/// left from an earlier run is removed), the others are, and the step
/// fails with the first refusal.
pub(crate) fn setuid_programs(
    root: &GuestRoot,
    system: &str,
    runtime: &str,
    programs: &[String],
) -> Result<Vec<String>, ActivationError> {
    let mut changes = Vec::new();
    if programs.is_empty() && !root.path(SETUID_DIR).exists() {
        return Ok(changes);
    }
    let item = runtime.rsplit('/').next().unwrap_or(runtime);
    // A manifest that cannot be trusted refuses every program, and the
    // copies of earlier runs are still withdrawn below.
    let (manifest, mut refused) = if programs.is_empty() {
        (None, None)
    } else {
        match trusted_manifest(root, system, item) {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e)),
        }
    };
    if root.ensure_dir(SETUID_DIR, 0o755)? {
        changes.push(format!("directory {SETUID_DIR}"));
    }
    let mut names = BTreeSet::new();
    for p in programs {
        let Some(m) = &manifest else { break };
        let name = p.rsplit('/').next().unwrap_or(p);
        let bytes = match verified_source(root, runtime, item, p, m) {
            Ok(b) => b,
            Err(e) => {
                refused.get_or_insert(e);
                continue;
            }
        };
        names.insert(name.to_owned());
        let src = format!("{runtime}{p}");
        // Created by root and never chown'd: chown would clear the bit.
        if root.write_if_changed(&format!("{SETUID_DIR}/{name}"), &bytes, 0o4755, None)? {
            changes.push(format!("setuid {SETUID_DIR}/{name} from {src}"));
        }
    }
    // A dry run has not made the directory.
    let entries = match fs::read_dir(root.path(SETUID_DIR)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(changes),
        r => r.at(SETUID_DIR, "read directory")?,
    };
    for e in entries {
        let name = e
            .at(SETUID_DIR, "read directory")?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !names.contains(&name) && root.remove(&format!("{SETUID_DIR}/{name}"))? {
            changes.push(format!("removed {SETUID_DIR}/{name}"));
        }
    }
    match refused {
        Some(e) => Err(e),
        None => Ok(changes),
    }
}

/// The manifest of `item`, from its copy in the system item, accepted
/// only when it hashes to the item's name.
fn trusted_manifest(
    root: &GuestRoot,
    system: &str,
    item: &str,
) -> Result<Manifest, ActivationError> {
    let copy = format!("{system}/manifests/{item}{MANIFEST_EXT}");
    let untrusted = |message: String| ActivationError::System {
        path: copy.clone().into(),
        message,
    };
    let name = ItemName::parse(item).map_err(|e| untrusted(e.to_string()))?;
    let bytes = fs::read(root.path(&copy)).at(&copy, "read")?;
    if sha256(&bytes) != name.digest() {
        return Err(untrusted(format!("does not hash to the name of {item}")));
    }
    Manifest::parse(&bytes).map_err(|e| untrusted(format!("not a canonical manifest: {e}")))
}

/// The bytes of the declared program `program` of the runtime item, read
/// once, without following a link, and only when they are what the item's
/// manifest says.
fn verified_source(
    root: &GuestRoot,
    runtime: &str,
    item: &str,
    program: &str,
    manifest: &Manifest,
) -> Result<Vec<u8>, ActivationError> {
    let refuse = |reason| ActivationError::SetuidRefused {
        program: program.to_owned(),
        item: item.to_owned(),
        reason,
    };
    let rel = program.trim_start_matches('/').as_bytes();
    let Some((want, size)) = manifest.entries().iter().find_map(|e| match e.kind {
        EntryKind::File { sha256, size, .. } if e.path == rel => Some((sha256, size)),
        _ => None,
    }) else {
        return Err(refuse(SetuidRefusal::NotInManifest));
    };
    let src = format!("{runtime}{program}");
    let mut f = match fruix_store::root::open_nofollow(&root.path(&src)) {
        Ok(f) => f,
        Err(e) if fruix_store::root::is_not_a_directory(&e) => {
            return Err(refuse(SetuidRefusal::Link));
        }
        Err(e) => return Err(e).at(&src, "read"),
    };
    if !f.metadata().at(&src, "read metadata")?.is_file() {
        return Err(refuse(SetuidRefusal::NotAFile));
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).at(&src, "read")?;
    if bytes.len() as u64 != size || sha256(&bytes) != want {
        return Err(refuse(SetuidRefusal::Differs));
    }
    Ok(bytes)
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
/// not already the newest (or generation `back`, an existing one, again:
/// a rollback), then the profile link and the current-system links, each
/// renamed into place.
pub fn switch_generation(
    root: &GuestRoot,
    system: &str,
    back: Option<u64>,
) -> Result<(u64, Vec<String>), ActivationError> {
    let profiles = "/frx/var/profiles";
    // Every generation link: its number and the system it names.
    let mut existing: Vec<(u64, String)> = Vec::new();
    if let Ok(rd) = fs::read_dir(root.path(profiles)) {
        for e in rd.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_prefix("system-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                let t = fs::read_link(e.path())
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                existing.push((n, t));
            }
        }
    }
    // A system that already is a generation (a reboot into the image's
    // system after a switch, the same system activated again) keeps its
    // number: the newest that names it. Else a new number.
    let n = match back {
        Some(b) => b,
        None => existing
            .iter()
            .filter(|(_, t)| t == system)
            .map(|(n, _)| *n)
            .max()
            .unwrap_or_else(|| existing.iter().map(|(n, _)| *n).max().unwrap_or(0) + 1),
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
