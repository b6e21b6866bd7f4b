//! Checks of a parsed declaration as a whole: references between packages,
//! cycles, globs, sources, accounts, services, agent and image settings.
//! Each error points at the value it is about.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use toml::Spanned;

use super::{
    BUILTIN_CHECKS, DeclError, Declaration, Firmware, Loaded, Locator, Os, Package, Source,
    parse_size,
};

/// Rule sets the prefix materializer knows.
pub const MATERIALIZE_RULES: &[&str] = &["guile", "guile-extra", "shepherd"];

/// Groups every system has; users may name them without declaring them.
pub const BASE_GROUPS: &[(&str, i64)] = &[("root", 0), ("users", 100)];

/// Space the image keeps beside the root partition: the EFI system
/// partition and GPT alignment and tables.
pub const NON_ROOT_SPACE: u64 = (64 << 20) + (2 << 20);

pub(super) fn check(at: &Locator<'_>, decl: Declaration) -> Result<Loaded, DeclError> {
    let err = |span: &std::ops::Range<usize>, msg: String| at.error(span, msg);

    let host = &decl.host_name;
    if !valid_host_name(host.get_ref()) {
        return Err(err(
            &host.span(),
            format!(
                "`host-name`: '{}' is not a host name (letters, digits and '-', 1 to 63 characters, no '-' at either end)",
                host.get_ref()
            ),
        ));
    }

    let names: BTreeSet<&str> = decl.packages.keys().map(|k| k.get_ref().as_str()).collect();
    // Names first, so that a bad name is reported as such and not as a
    // dangling reference from another package.
    for key in decl.packages.keys() {
        if let Err(e) = fruix_store::name::validate_package_name(key.get_ref()) {
            return Err(at.error(&key.span(), format!("`packages`: {e}")));
        }
    }
    for (key, pkg) in &decl.packages {
        check_package(at, key, pkg, &names)?;
    }
    let order = topo_order(at, &decl)?;

    for (field, r) in [("kernel", &decl.kernel), ("bootloader", &decl.bootloader)] {
        if !names.contains(r.get_ref().as_str()) {
            return Err(err(
                &r.span(),
                format!(
                    "`{field}`: names package '{}', which is not declared",
                    r.get_ref()
                ),
            ));
        }
    }
    let mut seen = HashSet::new();
    for r in &decl.base_packages {
        if !names.contains(r.get_ref().as_str()) {
            return Err(err(
                &r.span(),
                format!(
                    "`base-packages`: names package '{}', which is not declared",
                    r.get_ref()
                ),
            ));
        }
        if !seen.insert(r.get_ref()) {
            return Err(err(
                &r.span(),
                format!("`base-packages`: '{}' is listed twice", r.get_ref()),
            ));
        }
    }

    if let Some(sshd) = &decl.services.sshd {
        let p = *sshd.port.get_ref();
        if !(1..=65535).contains(&p) {
            return Err(err(
                &sshd.port.span(),
                format!("`services.sshd.port`: {p} is not a TCP port (1 to 65535)"),
            ));
        }
        for k in &sshd.root_authorized_keys {
            check_key(at, k, "services.sshd.root-authorized-keys")?;
        }
        for f in &sshd.root_authorized_keys_files {
            let path = at
                .file
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(f.get_ref());
            if let Err(e) = std::fs::read_to_string(&path) {
                return Err(err(
                    &f.span(),
                    format!(
                        "`services.sshd.root-authorized-keys-files`: cannot read {}: {e}",
                        path.display()
                    ),
                ));
            }
        }
    }

    let mut groups: BTreeMap<String, i64> = BASE_GROUPS
        .iter()
        .map(|(n, g)| ((*n).to_owned(), *g))
        .collect();
    for g in &decl.groups {
        if !valid_account_name(g.name.get_ref()) {
            return Err(err(
                &g.name.span(),
                format!(
                    "`groups.name`: '{}' is not a group name (lower-case letters, digits, '_' and '-', starting with a letter or '_', at most 32)",
                    g.name.get_ref()
                ),
            ));
        }
        let gid = *g.gid.get_ref();
        if !(1..=65533).contains(&gid) {
            return Err(err(
                &g.gid.span(),
                format!("`groups.gid`: {gid} is outside 1 to 65533"),
            ));
        }
        if groups.contains_key(g.name.get_ref()) {
            return Err(err(
                &g.name.span(),
                format!(
                    "`groups.name`: group '{}' is declared twice or is a base group",
                    g.name.get_ref()
                ),
            ));
        }
        if let Some((other, _)) = groups.iter().find(|(_, v)| **v == gid) {
            return Err(err(
                &g.gid.span(),
                format!("`groups.gid`: {gid} is already the gid of '{other}'"),
            ));
        }
        groups.insert(g.name.get_ref().clone(), gid);
    }
    let mut users: BTreeMap<&str, i64> = BTreeMap::new();
    for u in &decl.users {
        let name = u.name.get_ref();
        if !valid_account_name(name) {
            return Err(err(
                &u.name.span(),
                format!(
                    "`users.name`: '{name}' is not a user name (lower-case letters, digits, '_' and '-', starting with a letter or '_', at most 32)"
                ),
            ));
        }
        if name == "root" || users.contains_key(name.as_str()) {
            return Err(err(
                &u.name.span(),
                format!("`users.name`: user '{name}' is declared twice or is root"),
            ));
        }
        let uid = *u.uid.get_ref();
        if !(1..=65533).contains(&uid) {
            return Err(err(
                &u.uid.span(),
                format!("`users.uid`: {uid} is outside 1 to 65533"),
            ));
        }
        if let Some((other, _)) = users.iter().find(|(_, v)| **v == uid) {
            return Err(err(
                &u.uid.span(),
                format!("`users.uid`: {uid} is already the uid of '{other}'"),
            ));
        }
        if !groups.contains_key(u.group.get_ref()) {
            return Err(err(
                &u.group.span(),
                format!(
                    "`users.group`: group '{}' is not declared",
                    u.group.get_ref()
                ),
            ));
        }
        if let Some(h) = &u.home
            && !h.get_ref().starts_with('/')
        {
            return Err(err(
                &h.span(),
                format!("`users.home`: '{}' is not an absolute path", h.get_ref()),
            ));
        }
        users.insert(name, uid);
    }

    let mut setuid_names = HashSet::new();
    for p in &decl.setuid_programs {
        let path = p.get_ref();
        let name = path.rsplit('/').next().unwrap_or("");
        if !path.starts_with('/')
            || name.is_empty()
            || path.split('/').any(|c| c == ".." || c == ".")
        {
            return Err(err(
                &p.span(),
                format!(
                    "`setuid-programs`: '{path}' is not an absolute path to a file of the runtime"
                ),
            ));
        }
        if !setuid_names.insert(name) {
            return Err(err(
                &p.span(),
                format!("`setuid-programs`: two programs are named '{name}'"),
            ));
        }
    }

    let mut probes = HashSet::new();
    for p in &decl.agent.probes {
        let n = p.name.get_ref();
        if n.is_empty()
            || !n
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err(
                &p.name.span(),
                format!(
                    "`agent.probes.name`: '{n}' is not a probe name (lower-case letters, digits and '-')"
                ),
            ));
        }
        if BUILTIN_CHECKS.contains(&n.as_str()) || !probes.insert(n.as_str()) {
            return Err(err(
                &p.name.span(),
                format!("`agent.probes.name`: '{n}' is declared twice or is a built-in check"),
            ));
        }
        if p.command.get_ref().is_empty() || p.command.get_ref()[0].is_empty() {
            return Err(err(
                &p.command.span(),
                format!("`agent.probes.command`: probe '{n}' has no program"),
            ));
        }
        let t = *p.timeout.get_ref();
        if !(1..=3600).contains(&t) {
            return Err(err(
                &p.timeout.span(),
                format!("`agent.probes.timeout`: {t} is outside 1 to 3600 seconds"),
            ));
        }
    }
    for g in &decl.agent.gate {
        let n = g.get_ref().as_str();
        if !BUILTIN_CHECKS.contains(&n) && !probes.contains(n) {
            return Err(err(
                &g.span(),
                format!(
                    "`agent.gate`: '{n}' is neither a built-in check ({}) nor a declared probe",
                    BUILTIN_CHECKS.join(", ")
                ),
            ));
        }
    }

    let img = &decl.image;
    let capacity = parse_size(img.capacity.get_ref())
        .map_err(|m| err(&img.capacity.span(), format!("`image.capacity`: {m}")))?;
    let root_size = parse_size(img.root_size.get_ref())
        .map_err(|m| err(&img.root_size.span(), format!("`image.root-size`: {m}")))?;
    if root_size < (64 << 20) {
        return Err(err(
            &img.root_size.span(),
            "`image.root-size`: must be at least 64m".to_owned(),
        ));
    }
    if root_size.saturating_add(NON_ROOT_SPACE) > capacity {
        return Err(err(
            &img.root_size.span(),
            format!(
                "`image.root-size`: {} does not fit in `image.capacity` {} beside the 64m EFI system partition",
                img.root_size.get_ref(),
                img.capacity.get_ref()
            ),
        ));
    }
    // QEMU can load a Linux kernel itself, not a FreeBSD one: FreeBSD's
    // kernel is started by its loader, which UEFI firmware starts.
    if *decl.os.get_ref() == Os::Freebsd && img.firmware == Firmware::Direct {
        return Err(err(
            &decl.os.span(),
            "`os`: a FreeBSD system boots through loader.efi: set `image.firmware = \"uefi\"`"
                .to_owned(),
        ));
    }
    if img.formats.is_empty() {
        return Err(err(
            &img.capacity.span(),
            "`image.formats`: give at least one format".to_owned(),
        ));
    }

    Ok(Loaded {
        file: at.file.to_owned(),
        base_dir: at
            .file
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    std::path::Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(std::path::Path::new("."))
            .to_owned(),
        order,
        capacity,
        root_size,
        decl,
    })
}

fn check_package(
    at: &Locator<'_>,
    key: &Spanned<String>,
    pkg: &Package,
    names: &BTreeSet<&str>,
) -> Result<(), DeclError> {
    let name = key.get_ref();
    let field = |f: &str| format!("`packages.{name}.{f}`");
    if let Some(v) = &pkg.version
        && let Err(e) = fruix_store::name::validate_package_name(&format!("{name}-{}", v.get_ref()))
    {
        return Err(at.error(&v.span(), format!("{}: {e}", field("version"))));
    }
    match (&pkg.source, &pkg.from) {
        (Some(_), Some(f)) => {
            return Err(at.error(
                &f.span(),
                format!("package '{name}': give either `source` or `from`, not both"),
            ));
        }
        (None, None) => {
            return Err(at.error(
                &key.span(),
                format!("package '{name}': has neither `source` nor `from`"),
            ));
        }
        (Some(src), None) => {
            if let Some(g) = pkg.keep.first().or(pkg.prune.first()) {
                return Err(at.error(
                    &g.span(),
                    format!("package '{name}': `keep` and `prune` need `from`"),
                ));
            }
            check_source(at, name, src)?;
        }
        (None, Some(f)) => {
            if !names.contains(f.get_ref().as_str()) {
                return Err(at.error(
                    &f.span(),
                    format!(
                        "{}: names package '{}', which is not declared",
                        field("from"),
                        f.get_ref()
                    ),
                ));
            }
        }
    }
    for (what, globs) in [("keep", &pkg.keep), ("prune", &pkg.prune)] {
        for g in globs {
            check_glob(g.get_ref())
                .map_err(|m| at.error(&g.span(), format!("{}: {m}", field(what))))?;
        }
    }
    if let Some(m) = &pkg.materialize {
        let mat = m.get_ref();
        if !mat.prefix.starts_with('/') || mat.prefix.len() < 2 {
            return Err(at.error(
                &m.span(),
                format!(
                    "{}: prefix '{}' is not an absolute path",
                    field("materialize"),
                    mat.prefix
                ),
            ));
        }
        if let Some(r) = mat
            .rules
            .iter()
            .find(|r| !MATERIALIZE_RULES.contains(&r.as_str()))
        {
            return Err(at.error(
                &m.span(),
                format!(
                    "{}: unknown rule set '{r}' (known: {})",
                    field("materialize"),
                    MATERIALIZE_RULES.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Compiles a keep/prune glob; the same options as the deriver uses.
pub fn compile_glob(g: &str) -> Result<globset::GlobMatcher, String> {
    check_glob(g)?;
    globset::GlobBuilder::new(g)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid glob '{g}': {}", e.kind()))
}

fn check_glob(g: &str) -> Result<(), String> {
    if g.is_empty() || g.starts_with('/') {
        return Err(format!("glob '{g}' must be a non-empty relative path"));
    }
    if g.split('/').any(|c| c == "..") {
        return Err(format!("glob '{g}' must not contain '..'"));
    }
    globset::GlobBuilder::new(g)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|_| ())
        .map_err(|e| format!("invalid glob '{g}': {}", e.kind()))
}

fn check_source(at: &Locator<'_>, name: &str, src: &Spanned<Source>) -> Result<(), DeclError> {
    let base = at.file.parent().unwrap_or(std::path::Path::new("."));
    let field = format!("`packages.{name}.source`");
    match src.get_ref() {
        Source::Dir { path } | Source::Tar { path } => {
            let p = base.join(path);
            let meta = std::fs::metadata(&p).map_err(|e| {
                at.error(
                    &src.span(),
                    format!("{field}: cannot read {}: {e}", p.display()),
                )
            })?;
            let want_dir = matches!(src.get_ref(), Source::Dir { .. });
            if meta.is_dir() != want_dir {
                let what = if want_dir {
                    "a directory"
                } else {
                    "an archive file"
                };
                return Err(at.error(
                    &src.span(),
                    format!("{field}: {} is not {what}", p.display()),
                ));
            }
        }
        Source::HostPath { path } => {
            if !path.is_absolute() {
                return Err(at.error(
                    &src.span(),
                    format!("{field}: host-path '{}' must be absolute", path.display()),
                ));
            }
            std::fs::symlink_metadata(path).map_err(|e| {
                at.error(
                    &src.span(),
                    format!("{field}: cannot read {}: {e}", path.display()),
                )
            })?;
        }
        Source::Debian {
            suite,
            packages,
            mirror,
        } => {
            if suite.is_empty()
                || !suite
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(at.error(
                    &src.span(),
                    format!("{field}: '{suite}' is not a Debian suite name"),
                ));
            }
            if packages.is_empty() {
                return Err(at.error(
                    &src.span(),
                    format!("{field}: a debian source needs at least one package"),
                ));
            }
            if let Some(p) = packages.iter().find(|p| !valid_deb_name(p)) {
                return Err(at.error(
                    &src.span(),
                    format!("{field}: '{p}' is not a Debian package name"),
                ));
            }
            if let Some(m) = mirror
                && !(m.starts_with("http://")
                    || m.starts_with("https://")
                    || m.starts_with("file:/"))
            {
                return Err(at.error(
                    &src.span(),
                    format!("{field}: mirror '{m}' is not an http, https or file URL"),
                ));
            }
        }
    }
    Ok(())
}

/// Orders packages so that each comes after the one it is `from`; a cycle
/// is an error at the `from` that closes it.
fn topo_order(at: &Locator<'_>, decl: &Declaration) -> Result<Vec<String>, DeclError> {
    let from: BTreeMap<&str, &Spanned<String>> = decl
        .packages
        .iter()
        .filter_map(|(k, p)| p.from.as_ref().map(|f| (k.get_ref().as_str(), f)))
        .collect();
    let mut order: Vec<String> = Vec::new();
    let mut done: HashSet<&str> = HashSet::new();
    for start in decl.packages.keys().map(|k| k.get_ref().as_str()) {
        let mut chain: Vec<&str> = Vec::new();
        let mut cur = start;
        while !done.contains(cur) {
            if let Some(i) = chain.iter().position(|c| *c == cur) {
                let mut cycle: Vec<&str> = chain[i..].to_vec();
                cycle.push(cur);
                let f = from[chain[chain.len() - 1]];
                return Err(at.error(
                    &f.span(),
                    format!(
                        "`packages.{}.from`: makes a cycle: {}",
                        chain[chain.len() - 1],
                        cycle.join(" -> ")
                    ),
                ));
            }
            chain.push(cur);
            match from.get(cur) {
                Some(next) => cur = next.get_ref().as_str(),
                None => break,
            }
        }
        for c in chain.into_iter().rev() {
            if done.insert(c) {
                order.push(c.to_owned());
            }
        }
    }
    Ok(order)
}

fn check_key(at: &Locator<'_>, k: &Spanned<String>, field: &str) -> Result<(), DeclError> {
    let parts: Vec<&str> = k.get_ref().split_whitespace().collect();
    let known = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let ok = parts.len() >= 2
        && known.contains(&parts[0])
        && parts[1].len() >= 16
        && parts[1]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(at.error(
            &k.span(),
            format!("`{field}`: not an OpenSSH public key ('TYPE BASE64 [COMMENT]')"),
        ))
    }
}

fn valid_host_name(h: &str) -> bool {
    (1..=63).contains(&h.len())
        && !h.starts_with('-')
        && !h.ends_with('-')
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn valid_account_name(n: &str) -> bool {
    let b = n.as_bytes();
    (1..=32).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn valid_deb_name(n: &str) -> bool {
    n.len() >= 2
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}
