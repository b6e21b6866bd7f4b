//! The `[services]` section: the SSH daemon's port and root's keys, and
//! the declared `[services.NAME]` services.

use std::collections::{BTreeMap, HashSet};

use toml::Spanned;

use super::accounts::BASE_GROUPS;
use super::agent::valid_env_name;
use super::text::{check_key, check_text, key_problem};
use crate::declaration::error::{DeclError, Locator};
use crate::declaration::{BUILTIN_CHECKS, Declaration, Ready, Service, Services};

/// Checks `[services.sshd]`: the port, each key, and that each key file
/// can be read (relative to the declaration's directory) and holds only
/// keys (blank lines and `#` comments aside), as the build copies them.
pub(super) fn check(at: &Locator<'_>, services: &Services) -> Result<(), DeclError> {
    let Some(sshd) = &services.sshd else {
        return Ok(());
    };
    let p = *sshd.port.get_ref();
    if !(1..=65535).contains(&p) {
        return Err(at.error(
            &sshd.port.span(),
            format!("`services.sshd.port`: {p} is not a TCP port (1 to 65535)"),
        ));
    }
    for k in &sshd.root_authorized_keys {
        check_key(
            at,
            &k.span(),
            "services.sshd.root-authorized-keys",
            k.get_ref(),
        )?;
    }
    for f in &sshd.root_authorized_keys_files {
        let path = at
            .file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(f.get_ref());
        let field = "services.sshd.root-authorized-keys-files";
        let text = std::fs::read_to_string(&path).map_err(|e| {
            at.error(
                &f.span(),
                format!("`{field}`: cannot read {}: {e}", path.display()),
            )
        })?;
        // The same lines the build copies (realize/system.rs).
        for (n, l) in text.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if let Some(why) = key_problem(l) {
                return Err(at.error(
                    &f.span(),
                    format!("`{field}`: {} line {}: {why}", path.display(), n + 1),
                ));
            }
        }
    }
    Ok(())
}

/// Names a declared service may not take: Shepherd's own services, the
/// agent's, and the words the generated files use.
const RESERVED: &[&str] = &["root", "network", "fruix-agent", "transient", "shepherd"];

/// Checks each `[services.NAME]`: its name, command, requirements (known,
/// no cycle), user and group (declared or base), environment, paths, and
/// readiness check. Every string reaches `etc/shepherd.scm` or
/// `system.toml`, so each goes through `check_text`.
pub(super) fn check_declared(at: &Locator<'_>, decl: &Declaration) -> Result<(), DeclError> {
    let services = &decl.services.declared;
    for (key, s) in services {
        let n = key.get_ref().as_str();
        if !valid_service_name(n) {
            return Err(at.error(
                &key.span(),
                format!(
                    "`services.{}`: '{}' is not a service name (lower-case letters, digits and '-', starting with a letter)",
                    n.escape_debug(),
                    n.escape_debug()
                ),
            ));
        }
        if RESERVED.contains(&n)
            || BUILTIN_CHECKS.contains(&n)
            || decl.agent.probes.iter().any(|p| p.name.get_ref() == n)
        {
            return Err(at.error(
                &key.span(),
                format!(
                    "`services.{n}`: '{n}' is reserved or the name of a built-in check or probe"
                ),
            ));
        }
        check_service(at, decl, n, s)?;
    }
    check_cycles(at, services)
}

fn check_service(
    at: &Locator<'_>,
    decl: &Declaration,
    n: &str,
    s: &Service,
) -> Result<(), DeclError> {
    let field = |f: &str| format!("services.{n}.{f}");
    check_argv(at, &s.command, &field("command"))?;
    let services = &decl.services.declared;
    for r in &s.requirement {
        let req = r.get_ref().as_str();
        let known = req == "network"
            || (req == "sshd" && decl.services.sshd.is_some())
            || services.keys().any(|k| k.get_ref() == req);
        if !known {
            return Err(at.error(
                &r.span(),
                format!(
                    "`{}`: '{}' is neither network, sshd nor a declared service",
                    field("requirement"),
                    req.escape_debug()
                ),
            ));
        }
    }
    if let Some(u) = &s.user {
        let v = u.get_ref().as_str();
        if v != "root" && !decl.users.iter().any(|x| x.name.get_ref() == v) {
            return Err(at.error(
                &u.span(),
                format!(
                    "`{}`: '{}' is neither root nor a declared user",
                    field("user"),
                    v.escape_debug()
                ),
            ));
        }
    }
    if let Some(g) = &s.group {
        let v = g.get_ref().as_str();
        if !BASE_GROUPS.iter().any(|(b, _)| *b == v)
            && !decl.groups.iter().any(|x| x.name.get_ref() == v)
        {
            return Err(at.error(
                &g.span(),
                format!(
                    "`{}`: '{}' is neither a base group nor a declared group",
                    field("group"),
                    v.escape_debug()
                ),
            ));
        }
    }
    for (k, v) in &s.environment {
        if !valid_env_name(k.get_ref()) {
            return Err(at.error(
                &k.span(),
                format!(
                    "`{}`: '{}' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
                    field("environment"),
                    k.get_ref().escape_debug()
                ),
            ));
        }
        check_text(at, &v.span(), &field("environment"), v.get_ref())?;
    }
    for (f, p) in [("directory", &s.directory), ("log-file", &s.log_file)] {
        if let Some(p) = p {
            check_absolute(at, p, &field(f))?;
        }
    }
    if let Some(r) = &s.ready {
        check_ready(at, n, r)?;
    }
    Ok(())
}

/// A non-empty argv whose program is an absolute path.
fn check_argv(
    at: &Locator<'_>,
    argv: &Spanned<Vec<Spanned<String>>>,
    field: &str,
) -> Result<(), DeclError> {
    let Some(first) = argv.get_ref().first() else {
        return Err(at.error(&argv.span(), format!("`{field}`: has no program")));
    };
    for a in argv.get_ref() {
        check_text(at, &a.span(), field, a.get_ref())?;
    }
    check_absolute(at, first, field)
}

fn check_absolute(at: &Locator<'_>, p: &Spanned<String>, field: &str) -> Result<(), DeclError> {
    check_text(at, &p.span(), field, p.get_ref())?;
    if !p.get_ref().starts_with('/') {
        return Err(at.error(
            &p.span(),
            format!("`{field}`: '{}' is not an absolute path", p.get_ref()),
        ));
    }
    Ok(())
}

fn check_ready(at: &Locator<'_>, n: &str, r: &Spanned<Ready>) -> Result<(), DeclError> {
    let field = format!("services.{n}.ready");
    let ready = r.get_ref();
    let kinds = [
        ready.tcp.is_some(),
        ready.http.is_some(),
        ready.command.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if kinds != 1 {
        return Err(at.error(
            &r.span(),
            format!("`{field}`: give exactly one of tcp, http and command"),
        ));
    }
    if let Some(p) = &ready.tcp {
        let v = *p.get_ref();
        if !(1..=65535).contains(&v) {
            return Err(at.error(
                &p.span(),
                format!("`{field}.tcp`: {v} is not a TCP port (1 to 65535)"),
            ));
        }
    }
    if let Some(u) = &ready.http {
        check_text(at, &u.span(), &format!("{field}.http"), u.get_ref())?;
        if fruix_system::config::HttpUrl::parse(u.get_ref()).is_none() {
            return Err(at.error(
                &u.span(),
                format!(
                    "`{field}.http`: '{}' is not an http URL of this machine (http://127.0.0.1:PORT/PATH or http://localhost:PORT/PATH)",
                    u.get_ref()
                ),
            ));
        }
    }
    if let Some(c) = &ready.command {
        check_argv(at, c, &format!("{field}.command"))?;
    }
    let t = *ready.timeout.get_ref();
    if !(1..=3600).contains(&t) {
        return Err(at.error(
            &ready.timeout.span(),
            format!("`{field}.timeout`: {t} is outside 1 to 3600 seconds"),
        ));
    }
    Ok(())
}

/// Refuses a cycle among declared services' requirements, at the
/// requirement that closes it.
fn check_cycles(
    at: &Locator<'_>,
    services: &BTreeMap<Spanned<String>, Service>,
) -> Result<(), DeclError> {
    let by_name: BTreeMap<&str, &Service> = services
        .iter()
        .map(|(k, v)| (k.get_ref().as_str(), v))
        .collect();
    let mut done: HashSet<&str> = HashSet::new();
    for start in by_name.keys() {
        let mut path: Vec<&str> = Vec::new();
        visit(at, &by_name, start, &mut path, &mut done)?;
    }
    Ok(())
}

fn visit<'a>(
    at: &Locator<'_>,
    by_name: &BTreeMap<&'a str, &'a Service>,
    n: &'a str,
    path: &mut Vec<&'a str>,
    done: &mut HashSet<&'a str>,
) -> Result<(), DeclError> {
    if done.contains(n) {
        return Ok(());
    }
    path.push(n);
    if let Some(s) = by_name.get(n) {
        for r in &s.requirement {
            let req = r.get_ref().as_str();
            if let Some(i) = path.iter().position(|p| *p == req) {
                let mut cycle: Vec<&str> = path[i..].to_vec();
                cycle.push(req);
                return Err(at.error(
                    &r.span(),
                    format!(
                        "`services.{n}.requirement`: makes a cycle: {}",
                        cycle.join(" -> ")
                    ),
                ));
            }
            if let Some((k, _)) = by_name.get_key_value(req) {
                visit(at, by_name, k, path, done)?;
            }
        }
    }
    path.pop();
    done.insert(n);
    Ok(())
}

fn valid_service_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}
