//! The prefix materializer: imports a staged install prefix (a program
//! installed with `./configure --prefix=/tmp/...-validate-install`) into
//! the store without any compatibility shim at the old prefix.
//!
//! It works on a copy of the prefix and applies declared, deterministic
//! rules to the text files that bake the prefix in:
//!
//! - `shepherd`: `shepherd/config.scm`'s `Prefix-dir`, `%localstatedir`,
//!   `%runstatedir`, `%sysconfdir`, `%localedir` and `%pkglibdir` become the
//!   guest's `/usr`, `/var`, `/run`, `/etc`, `/usr/share/locale` and
//!   `/usr/lib/shepherd`. The `shepherd`, `herd` and `halt`/`reboot`
//!   scripts compute their load paths from their own location, so they
//!   find their modules in the store item without naming it (an item cannot
//!   name its own digest).
//! - `guile-extra`: `fibers/config.scm` and `gnutls.scm` name their C
//!   extensions by bare name, so that Guile finds them through
//!   `GUILE_EXTENSIONS_PATH`.
//! - `guile`: the Guile prefix itself in scripts' first lines becomes the
//!   runtime's `/usr/bin/guile`.
//!
//! A compiled `.go` whose `.scm` was rewritten would still hold the old
//! strings: it is compiled again from the rewritten source with the
//! guest's Guile when the declaration names a `compile-with` tree where
//! that Guile can run (`guile_compile`), and deleted otherwise (Guile then
//! compiles or interprets the source at every start in the guest).
//! `share/fruix/materialized` in the item records the prefix, the rules,
//! this revision and every file changed. What the rules leave
//! behind, `fruix scan-prefixes` reports.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::context::Context;
use super::guile_compile::{self, Module};
use crate::declaration::Materialize;
use crate::error::{BuildError, TempTree};
use crate::progress::Step;

/// Revision of the rules; part of the package's description. 3: stale
/// compiled modules are compiled again where a `compile-with` Guile runs.
pub const REVISION: u32 = 3;

/// Compiles stale modules in the work tree (or fails with the compiler's
/// error).
pub type Compiler<'a> = &'a dyn Fn(&Path, &[Module]) -> Result<(), BuildError>;

/// Copies `input` and applies the rules; returns the work tree to import,
/// and whether a declared `compile-with` Guile could not run (so stale
/// compiled files were deleted instead). `world`: the realized
/// `compile-with` tree, whose Guile compiles the rewritten modules when it
/// can run here.
pub fn stage(
    cx: &Context<'_>,
    input: &Path,
    m: &Materialize,
    world: Option<&Path>,
    step: &Step,
) -> Result<(TempTree, bool), BuildError> {
    let tree = TempTree::new(&cx.work_dir, "materialize")?;
    copy_tree(input, tree.path()).map_err(|e| BuildError::Io(input.to_owned(), e))?;
    let log = cx.work_dir.join(format!(
        "guile-compile-{}.log",
        m.prefix.trim_matches('/').replace('/', "-")
    ));
    // The declared world, when its Guile runs here.
    let usable = world.filter(|w| match guile_compile::probe(w) {
        None => true,
        Some(why) => {
            step.note(&format!(
                "{}: the compile-with Guile cannot run here ({why}): stale compiled modules are deleted",
                m.prefix
            ));
            false
        }
    });
    let compile = usable.map(|w| {
        move |tree: &Path, modules: &[Module]| guile_compile::compile(w, tree, modules, &log)
    });
    let fell_back = world.is_some() && usable.is_none();
    let report = apply(tree.path(), m, compile.as_ref().map(|c| c as Compiler<'_>))?;
    step.note(&format!(
        "materialized {}: {} file(s) rewritten, {} module(s) compiled, {} compiled file(s) deleted",
        m.prefix,
        report.rewritten.len(),
        report.compiled.len(),
        report.deleted.len()
    ));
    Ok((tree, fell_back))
}

/// What the rules changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Files rewritten, relative to the prefix.
    pub rewritten: Vec<String>,
    /// Compiled files made again from rewritten sources.
    pub compiled: Vec<String>,
    /// Compiled files deleted, relative to the prefix.
    pub deleted: Vec<String>,
}

/// Applies the rules of `m` to the tree at `root` (a copy of the prefix);
/// the compiled files of rewritten modules are made again by `compiler`,
/// or deleted when there is none.
pub fn apply(
    root: &Path,
    m: &Materialize,
    compiler: Option<Compiler<'_>>,
) -> Result<Report, BuildError> {
    let prefix = m.prefix.trim_end_matches('/');
    let mut report = Report::default();
    let mut files = Vec::new();
    walk(root, root, &mut files).map_err(|e| BuildError::Io(root.to_owned(), e))?;
    files.sort();
    for rel in &files {
        let path = root.join(rel);
        let Ok(bytes) = fs::read(&path) else { continue };
        if bytes.contains(&0) {
            continue; // binaries are the scanner's to report
        }
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let mut new = text.clone();
        for rule in &m.rules {
            new = match rule.as_str() {
                "shepherd" => shepherd_rule(rel, &new, prefix),
                "guile-extra" => guile_extra_rule(rel, &new, prefix),
                "guile" => guile_rule(&new, prefix),
                _ => new,
            };
        }
        if new != text {
            write_keeping_mode(&path, new.as_bytes())
                .map_err(|e| BuildError::Io(path.clone(), e))?;
            report.rewritten.push(rel.clone());
        }
    }
    // A .go compiled from a rewritten .scm holds the old strings.
    let mut stale = Vec::new();
    for rel in &report.rewritten {
        if let Some(module) = rel
            .strip_suffix(".scm")
            .and_then(|r| r.split_once("/guile/site/3.0/").map(|(_, m)| m.to_owned()))
        {
            for go in files
                .iter()
                .filter(|f| f.ends_with(&format!("/site-ccache/{module}.go")))
            {
                stale.push(Module {
                    source: rel.clone(),
                    compiled: go.clone(),
                });
            }
        }
    }
    stale.sort_by(|a, b| a.compiled.cmp(&b.compiled));
    match compiler {
        Some(compile) if !stale.is_empty() => {
            compile(root, &stale)?;
            report.compiled = stale.into_iter().map(|m| m.compiled).collect();
        }
        _ => {
            for m in stale {
                let p = root.join(&m.compiled);
                fs::remove_file(&p).map_err(|e| BuildError::Io(p.clone(), e))?;
                report.deleted.push(m.compiled);
            }
        }
    }
    let record = root.join("share/fruix");
    fs::create_dir_all(&record).map_err(|e| BuildError::Io(record.clone(), e))?;
    // The old prefix is recorded as parent and name, not as the path
    // itself, so that a cleanly materialized item scans clean.
    let (parent, name) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    let mut text = format!(
        "prefix-parent {parent}/\nprefix-name {name}\nrules {}\nrevision {REVISION}\n",
        m.rules.join(" ")
    );
    for r in &report.rewritten {
        text.push_str(&format!("rewritten {r}\n"));
    }
    for c in &report.compiled {
        text.push_str(&format!("compiled {c}\n"));
    }
    for d in &report.deleted {
        text.push_str(&format!("deleted {d}\n"));
    }
    let p = record.join("materialized");
    fs::write(&p, text).map_err(|e| BuildError::Io(p.clone(), e))?;
    Ok(report)
}

/// The guest paths Shepherd's configuration variables take.
const SHEPHERD_DIRS: &[(&str, &str)] = &[
    ("Prefix-dir", "/usr"),
    ("%localstatedir", "/var"),
    ("%runstatedir", "/run"),
    ("%sysconfdir", "/etc"),
    ("%localedir", "/usr/share/locale"),
    ("%pkglibdir", "/usr/lib/shepherd"),
];

fn shepherd_rule(rel: &str, text: &str, prefix: &str) -> String {
    if rel.ends_with("shepherd/config.scm") {
        return text
            .lines()
            .map(|line| {
                for (var, value) in SHEPHERD_DIRS {
                    let head = format!("(define {var} ");
                    if let Some(rest) = line.trim_start().strip_prefix(&head)
                        && rest.contains(prefix)
                    {
                        let indent = &line[..line.len() - line.trim_start().len()];
                        return format!("{indent}(define {var} \"{value}\")");
                    }
                }
                line.to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
            + if text.ends_with('\n') { "\n" } else { "" };
    }
    if rel.starts_with("bin/") || rel.starts_with("sbin/") || rel.starts_with("libexec/") {
        // "PREFIX/share/guile/site/3.0" -> computed from the script's place.
        // A quoted list naming the prefix becomes a (list ...), so that the
        // computed elements are evaluated.
        let needle = format!("\"{prefix}/");
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            if !line.contains(&needle) {
                out.push_str(line);
                continue;
            }
            let mut l = line.replace("'(\"", "(list \"");
            for sub in ["share/guile/site/3.0", "lib/guile/3.0/site-ccache"] {
                let quoted = format!("\"{prefix}/{sub}\"");
                let computed = format!(
                    "(string-append (dirname (dirname (canonicalize-path (current-filename)))) \"/{sub}\")"
                );
                l = l.replace(&quoted, &computed);
            }
            out.push_str(&l);
        }
        return out;
    }
    text.to_owned()
}

fn guile_extra_rule(rel: &str, text: &str, prefix: &str) -> String {
    // The extension directory baked in by configure becomes #f, so that the
    // bare library name is looked up (GUILE_EXTENSIONS_PATH, then Guile's
    // own extension directory).
    let dir = format!("\"{prefix}/lib/guile/3.0/extensions\"");
    if rel.ends_with("fibers/config.scm") {
        return text.replace(&dir, "#f").replace(
            "(in-vicinity *extlibdir* lib)",
            "(if *extlibdir* (in-vicinity *extlibdir* lib) lib)",
        );
    }
    if rel.ends_with("/gnutls.scm") {
        return text.replace(&dir, "#f");
    }
    text.to_owned()
}

fn guile_rule(text: &str, prefix: &str) -> String {
    let Some(first) = text.lines().next() else {
        return text.to_owned();
    };
    let shebang = format!("#!{prefix}/bin/guile");
    if first.starts_with(&shebang) {
        return text.replacen(&shebang, "#!/usr/bin/guile", 1);
    }
    text.to_owned()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        let p = e.path();
        if ft.is_dir() {
            walk(root, &p, out)?;
        } else if ft.is_file()
            && let Ok(rel) = p.strip_prefix(root)
        {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn write_keeping_mode(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode();
    let tmp = path.with_extension("fruix-tmp");
    fs::write(&tmp, bytes)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode & 0o777))?;
    fs::rename(&tmp, path)
}

/// Copies a tree: directories, files with their permission bits, and
/// symbolic links as links.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    for e in fs::read_dir(src)? {
        let e = e?;
        let ft = e.file_type()?;
        let (from, to): (PathBuf, PathBuf) = (e.path(), dst.join(e.file_name()));
        if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else {
            fs::copy(&from, &to)?;
        }
    }
    let mode = fs::metadata(src)?.permissions().mode();
    fs::set_permissions(dst, fs::Permissions::from_mode(mode & 0o777 | 0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/tmp/shepherd-freebsd-validate-install";

    #[test]
    fn shepherd_config_variables_take_guest_paths() {
        let text = format!(
            "(define-module (shepherd config))\n(define Prefix-dir \"{P}\")\n  (define %localstatedir \"{P}/var\")\n(define %runstatedir \"{P}/var/run\")\n(define %sysconfdir \"{P}/etc\")\n(define %localedir \"{P}/share/locale\")\n(define %pkglibdir \"{P}/lib/shepherd\")\n(define %version \"1.0.3\")\n"
        );
        let out = shepherd_rule("share/guile/site/3.0/shepherd/config.scm", &text, P);
        assert_eq!(
            out,
            "(define-module (shepherd config))\n(define Prefix-dir \"/usr\")\n  (define %localstatedir \"/var\")\n(define %runstatedir \"/run\")\n(define %sysconfdir \"/etc\")\n(define %localedir \"/usr/share/locale\")\n(define %pkglibdir \"/usr/lib/shepherd\")\n(define %version \"1.0.3\")\n"
        );
    }

    #[test]
    fn scripts_find_their_modules_from_their_own_place() {
        // As Shepherd 1.0.3's configure writes bin/shepherd.
        let text = format!(
            "#!/usr/bin/guile-3.0 --no-auto-compile\n-*- scheme -*-\n!#\n\n(set! %load-path\n      (append '(\"{P}/share/guile/site/3.0\" \"{P}/share/guile/site/3.0\") %load-path))\n(set! %load-compiled-path\n      (append '(\"{P}/lib/guile/3.0/site-ccache\") %load-compiled-path))\n"
        );
        let out = shepherd_rule("bin/shepherd", &text, P);
        assert!(!out.contains(P), "{out}");
        let here = "(dirname (dirname (canonicalize-path (current-filename))))";
        assert!(out.contains(&format!("(append (list (string-append {here} \"/share/guile/site/3.0\") (string-append {here} \"/share/guile/site/3.0\")) %load-path)")), "{out}");
        assert!(out.contains(&format!("(append (list (string-append {here} \"/lib/guile/3.0/site-ccache\")) %load-compiled-path)")), "{out}");
        assert!(out.starts_with(
            "#!/usr/bin/guile-3.0 --no-auto-compile\n-*- scheme -*-\n!#\n\n(set! %load-path\n"
        ));
    }

    #[test]
    fn extensions_are_found_by_bare_name() {
        let g = "/tmp/guile-gnutls-freebsd-validate-install";
        // As guile-fibers 1.3.1 and guile-gnutls 4.0.1 write them for a
        // non-standard prefix.
        let fibers = format!(
            "(define *extlibdir*\n  (cond\n   ((getenv \"FIBERS_BUILD_DIR\")\n    => (lambda (builddir) (in-vicinity builddir \".libs\")))\n   (else \"{g}/lib/guile/3.0/extensions\")))\n\n(define (extension-library lib)\n  (in-vicinity *extlibdir* lib))\n"
        );
        let out = guile_extra_rule("share/guile/site/3.0/fibers/config.scm", &fibers, g);
        assert!(
            out.contains("   (else #f)))\n")
                && out.contains("(if *extlibdir* (in-vicinity *extlibdir* lib) lib)"),
            "{out}"
        );
        let gnutls = format!(
            "  (define %libdir\n    (or (getenv \"GNUTLS_GUILE_EXTENSION_DIR\")\n        \"{g}/lib/guile/3.0/extensions\"\n        ))\n"
        );
        let out = guile_extra_rule("share/guile/site/3.0/gnutls.scm", &gnutls, g);
        assert_eq!(
            out,
            "  (define %libdir\n    (or (getenv \"GNUTLS_GUILE_EXTENSION_DIR\")\n        #f\n        ))\n"
        );
        assert_eq!(
            guile_extra_rule("share/x.scm", &gnutls, g),
            gnutls,
            "other files are left alone"
        );
    }

    #[test]
    fn applies_rules_deletes_stale_go_and_records() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("share/guile/site/3.0/shepherd")).unwrap();
        fs::create_dir_all(r.join("lib/guile/3.0/site-ccache/shepherd")).unwrap();
        fs::write(
            r.join("share/guile/site/3.0/shepherd/config.scm"),
            format!("(define %sysconfdir \"{P}/etc\")\n"),
        )
        .unwrap();
        fs::write(
            r.join("share/guile/site/3.0/shepherd/service.scm"),
            "(define x 1)\n",
        )
        .unwrap();
        fs::write(
            r.join("lib/guile/3.0/site-ccache/shepherd/config.go"),
            b"\0GOOF",
        )
        .unwrap();
        fs::write(
            r.join("lib/guile/3.0/site-ccache/shepherd/service.go"),
            b"\0GOOF",
        )
        .unwrap();
        let m = Materialize {
            prefix: P.into(),
            rules: vec!["shepherd".into()],
            compile_with: None,
        };
        let rep = apply(r, &m, None).unwrap();
        assert_eq!(rep.rewritten, ["share/guile/site/3.0/shepherd/config.scm"]);
        assert_eq!(
            rep.deleted,
            ["lib/guile/3.0/site-ccache/shepherd/config.go"]
        );
        assert!(
            r.join("lib/guile/3.0/site-ccache/shepherd/service.go")
                .exists()
        );
        let rec = fs::read_to_string(r.join("share/fruix/materialized")).unwrap();
        assert!(
            rec.starts_with(&format!(
                "prefix-parent /tmp/\nprefix-name shepherd-freebsd-validate-install\nrules shepherd\nrevision {REVISION}\n"
            )),
            "{rec}"
        );
        assert!(
            !rec.contains(P),
            "the record does not hold the prefix itself"
        );
        // Deterministic: the same input gives the same output.
        assert_eq!(apply(r, &m, None).unwrap(), Report::default());
    }

    #[test]
    fn stale_modules_go_to_the_compiler_and_are_recorded_as_compiled() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let g = "/tmp/guile-gnutls-freebsd-validate-install";
        for d in [
            "share/guile/site/3.0/fibers",
            "lib/guile/3.0/site-ccache/fibers",
        ] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        let ext = format!("\"{g}/lib/guile/3.0/extensions\"");
        fs::write(r.join("share/guile/site/3.0/gnutls.scm"), &ext).unwrap();
        fs::write(r.join("share/guile/site/3.0/fibers/config.scm"), &ext).unwrap();
        fs::write(r.join("lib/guile/3.0/site-ccache/gnutls.go"), b"\0old").unwrap();
        fs::write(
            r.join("lib/guile/3.0/site-ccache/fibers/config.go"),
            b"\0old",
        )
        .unwrap();
        let m = Materialize {
            prefix: g.into(),
            rules: vec!["guile-extra".into()],
            compile_with: Some("native-world".into()),
        };
        let asked = std::cell::RefCell::new(Vec::new());
        let compiler = |tree: &Path, modules: &[Module]| -> Result<(), BuildError> {
            asked.borrow_mut().extend(modules.iter().cloned());
            for m in modules {
                fs::write(tree.join(&m.compiled), b"\0new").unwrap();
            }
            Ok(())
        };
        let rep = apply(r, &m, Some(&compiler)).unwrap();
        assert_eq!(
            *asked.borrow(),
            [
                Module {
                    source: "share/guile/site/3.0/fibers/config.scm".into(),
                    compiled: "lib/guile/3.0/site-ccache/fibers/config.go".into(),
                },
                Module {
                    source: "share/guile/site/3.0/gnutls.scm".into(),
                    compiled: "lib/guile/3.0/site-ccache/gnutls.go".into(),
                },
            ]
        );
        assert_eq!(
            rep.compiled,
            [
                "lib/guile/3.0/site-ccache/fibers/config.go",
                "lib/guile/3.0/site-ccache/gnutls.go"
            ]
        );
        assert!(rep.deleted.is_empty());
        let rec = fs::read_to_string(r.join("share/fruix/materialized")).unwrap();
        assert!(
            rec.ends_with(
                "rewritten share/guile/site/3.0/fibers/config.scm\nrewritten share/guile/site/3.0/gnutls.scm\ncompiled lib/guile/3.0/site-ccache/fibers/config.go\ncompiled lib/guile/3.0/site-ccache/gnutls.go\n"
            ),
            "{rec}"
        );
        // A compiler that fails fails the materialization.
        fs::write(r.join("share/guile/site/3.0/gnutls.scm"), &ext).unwrap();
        let failing = |_: &Path, _: &[Module]| -> Result<(), BuildError> {
            Err(BuildError::Input("compile failed".into()))
        };
        let err = apply(r, &m, Some(&failing)).unwrap_err();
        assert_eq!(err.to_string(), "compile failed");
    }
}
