//! The `[packages.NAME]` sections and the fields that name packages
//! (`kernel`, `bootloader`, `base-packages`): names, versions, sources,
//! `from` references and their cycles, keep/prune globs, materialize.

use std::collections::{BTreeSet, HashSet};
use std::ops::Range;

use toml::Spanned;

use super::text::check_text;
use crate::declaration::error::{DeclError, Locator};
use crate::declaration::{Declaration, Package, Source};

/// Rule sets the prefix materializer knows.
pub const MATERIALIZE_RULES: &[&str] = &["guile", "guile-extra", "shepherd"];

/// Checks every package and every reference to one; returns the packages
/// in dependency order (a package after the one it is `from`).
pub(super) fn check(at: &Locator<'_>, decl: &Declaration) -> Result<Vec<String>, DeclError> {
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
    let order = topo_order(at, decl)?;
    check_references(at, decl, &names)?;
    Ok(order)
}

/// Checks that `kernel`, `bootloader` and `base-packages` name declared
/// packages, and that `base-packages` lists none twice.
fn check_references(
    at: &Locator<'_>,
    decl: &Declaration,
    names: &BTreeSet<&str>,
) -> Result<(), DeclError> {
    for (field, r) in [("kernel", &decl.kernel), ("bootloader", &decl.bootloader)] {
        if !names.contains(r.get_ref().as_str()) {
            return Err(at.error(
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
            return Err(at.error(
                &r.span(),
                format!(
                    "`base-packages`: names package '{}', which is not declared",
                    r.get_ref()
                ),
            ));
        }
        if !seen.insert(r.get_ref()) {
            return Err(at.error(
                &r.span(),
                format!("`base-packages`: '{}' is listed twice", r.get_ref()),
            ));
        }
    }
    Ok(())
}

/// Checks one package: its version, exactly one of `source` and `from`,
/// its globs and its materialize settings.
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
        check_text(
            at,
            &m.span(),
            &format!("packages.{name}.materialize"),
            &mat.prefix,
        )?;
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
        if let Some(w) = &mat.compile_with
            && !names.contains(w.as_str())
        {
            return Err(at.error(
                &m.span(),
                format!(
                    "{}: compile-with names package '{w}', which is not declared",
                    field("materialize")
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

/// Checks a keep/prune glob: relative, without `..`, and valid.
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

/// Checks a package's `source`: that the file or directory is there and
/// of the right kind, or that a Debian source is well formed.
fn check_source(at: &Locator<'_>, name: &str, src: &Spanned<Source>) -> Result<(), DeclError> {
    let base = at.file.parent().unwrap_or(std::path::Path::new("."));
    let field = format!("`packages.{name}.source`");
    match src.get_ref() {
        // The path is part of the package's description (the key of its
        // build record), one line of it.
        Source::Dir { path } | Source::Tar { path } | Source::HostPath { path } => check_text(
            at,
            &src.span(),
            &format!("packages.{name}.source"),
            &path.to_string_lossy(),
        )?,
        Source::Debian { .. } => {}
    }
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
                && m.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(at.error(
                    &src.span(),
                    format!("{field}: mirror {m:?} has a space or a control character"),
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

/// Orders packages so that each comes after the ones it needs (its
/// `from` and its `materialize.compile-with`); a cycle is an error at the
/// reference that closes it.
fn topo_order(at: &Locator<'_>, decl: &Declaration) -> Result<Vec<String>, DeclError> {
    let mut order: Vec<String> = Vec::new();
    let mut done: HashSet<&str> = HashSet::new();
    for start in decl.packages.keys().map(|k| k.get_ref().as_str()) {
        visit(at, decl, start, &mut Vec::new(), &mut done, &mut order)?;
    }
    Ok(order)
}

/// The packages `name` needs: (name, where the reference is, its field).
fn needs<'d>(decl: &'d Declaration, name: &str) -> Vec<(&'d str, Range<usize>, &'static str)> {
    let Some(pkg) = decl
        .packages
        .iter()
        .find(|(k, _)| k.get_ref() == name)
        .map(|(_, p)| p)
    else {
        return vec![];
    };
    let mut out = Vec::new();
    if let Some(f) = &pkg.from {
        out.push((f.get_ref().as_str(), f.span(), "from"));
    }
    if let Some(m) = &pkg.materialize
        && let Some(w) = &m.get_ref().compile_with
    {
        out.push((w.as_str(), m.span(), "materialize.compile-with"));
    }
    out
}

/// Depth first: `cur` after what it needs; `chain` is the path here.
fn visit<'d>(
    at: &Locator<'_>,
    decl: &'d Declaration,
    cur: &'d str,
    chain: &mut Vec<&'d str>,
    done: &mut HashSet<&'d str>,
    order: &mut Vec<String>,
) -> Result<(), DeclError> {
    if done.contains(cur) {
        return Ok(());
    }
    chain.push(cur);
    for (next, span, field) in needs(decl, cur) {
        if let Some(i) = chain.iter().position(|c| *c == next) {
            let mut cycle: Vec<&str> = chain[i..].to_vec();
            cycle.push(next);
            return Err(at.error(
                &span,
                format!(
                    "`packages.{cur}.{field}`: makes a cycle: {}",
                    cycle.join(" -> ")
                ),
            ));
        }
        visit(at, decl, next, chain, done, order)?;
    }
    chain.pop();
    if done.insert(cur) {
        order.push(cur.to_owned());
    }
    Ok(())
}

/// Whether `n` is a valid Debian package name.
fn valid_deb_name(n: &str) -> bool {
    n.len() >= 2
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}
