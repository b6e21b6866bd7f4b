//! Compiles the Guile modules the materializer rewrote, with the guest's
//! own Guile: the declared `compile-with` package's tree (the Debian world
//! for these guests), entered with `chroot` in private mount and PID
//! namespaces where the world is bound read-only and the work tree over
//! its `/tmp`, so that neither the world item nor the host is written.
//! Guile's compiler is deterministic for the same source and compiler:
//! the same bytes on every build. Source names
//! are recorded relative to the load path (`shepherd/config.scm`), so the
//! compiled files name no build directory.
//!
//! Where that Guile cannot run (a FreeBSD world on a Linux host, a build
//! without root), [`probe`] says why and the materializer deletes the
//! stale compiled files instead, as it did before.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::BuildError;

/// The guest's Guile, inside its tree.
const GUILE: &str = "/usr/bin/guile-3.0";

/// Compiles `(source, output)` pairs, paths relative to the work tree,
/// given after the expression; `%file-port-name-canonicalization` makes
/// the recorded source names relative to the load path.
const COMPILE: &str = "(use-modules (system base compile))
(let loop ((args (cdr (command-line))))
  (when (pair? args)
    (with-fluids ((%file-port-name-canonicalization 'relative))
      (compile-file (string-append \"/tmp/\" (car args))
                    #:output-file (string-append \"/tmp/\" (cadr args))))
    (loop (cddr args))))";

/// One module to compile: its source and its compiled file, relative to
/// the work tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// `share/guile/site/3.0/shepherd/config.scm`
    pub source: String,
    /// `lib/guile/3.0/site-ccache/shepherd/config.go`
    pub compiled: String,
}

/// Why the guest's Guile cannot run here; `None` when it can.
pub fn probe(world: &Path) -> Option<String> {
    for dir in ["tmp", "proc"] {
        // The namespace mounts over these: they must be real directories,
        // never links that would take the mount elsewhere.
        match fs::symlink_metadata(world.join(dir)) {
            Ok(m) if m.is_dir() => {}
            _ => return Some(format!("{}: no /{dir} directory", world.display())),
        }
    }
    // Debian's is a relative link into /usr/lib; it is resolved inside the
    // chroot, never on the host.
    match fs::symlink_metadata(world.join(GUILE.trim_start_matches('/'))) {
        Ok(m) if m.is_file() || m.is_symlink() => {}
        _ => return Some(format!("{}: no {GUILE}", world.display())),
    }
    let empty = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return Some(format!("no temporary directory: {e}")),
    };
    let out = command(world, empty.path(), &[], &["-c", "(exit 0)"]).output();
    match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(last_line(&o.stderr).unwrap_or_else(|| format!("exit {}", o.status))),
        Err(e) => Some(format!("unshare: {e}")),
    }
}

/// Compiles `modules` in `tree` with the Guile of `world`, the tree's
/// own modules and extensions loadable; Guile's output goes to `log`.
pub fn compile(
    world: &Path,
    tree: &Path,
    modules: &[Module],
    log: &Path,
) -> Result<(), BuildError> {
    let mut load = Vec::new();
    for m in modules {
        for (rel, marker) in [
            (&m.source, "/guile/site/3.0/"),
            (&m.compiled, "/site-ccache/"),
        ] {
            let Some((dir, _)) = rel.split_once(marker) else {
                return Err(BuildError::Internal(format!(
                    "{rel}: not under a Guile {marker} directory"
                )));
            };
            let flag = if marker.contains("site-ccache") {
                "-C"
            } else {
                "-L"
            };
            let dir = format!("/tmp/{dir}{}", marker.trim_end_matches('/'));
            if !load.contains(&(flag, dir.clone())) {
                load.push((flag, dir));
            }
        }
    }
    let mut args: Vec<String> = Vec::new();
    for (flag, dir) in &load {
        args.push((*flag).to_owned());
        args.push(dir.clone());
    }
    args.push("-c".into());
    args.push(COMPILE.into());
    for m in modules {
        args.push(m.source.clone());
        args.push(m.compiled.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let extensions = extension_dirs(tree);
    let ext: Vec<&str> = extensions.iter().map(String::as_str).collect();
    // Logged, and its last lines in the error, as every image tool is.
    crate::tools::run(&mut command(world, tree, &ext, &args), None, log)?;
    for m in modules {
        let p = tree.join(&m.compiled);
        if !p.is_file() {
            return Err(BuildError::Internal(format!(
                "{}: the compiler exited 0 without writing it",
                p.display()
            )));
        }
    }
    Ok(())
}

/// `unshare` running `args` under the guest's Guile, chrooted in `world`
/// (bound read-only over itself) with `tree` bound at `/tmp` and a `/proc`
/// of its own PID namespace (Guile's collector reads it; the host's
/// processes, and their roots, stay out of sight), in private mount and
/// PID namespaces that end with the process. Guile runs as root: the
/// GnuTLS extension it loads to compile `gnutls.scm` is the package being
/// built, trusted as much as mmdebstrap's maintainer scripts are.
fn command(world: &Path, tree: &Path, extensions: &[&str], args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--pid",
        "--fork",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
    ])
    .arg(concat!(
        "mount --bind \"$2\" \"$2\" && mount -o remount,bind,ro \"$2\" && ",
        "mount --bind \"$1\" \"$2/tmp\" && mount -t proc proc \"$2/proc\" && ",
        "w=$2 && ext=$3 && shift 3 && ",
        "exec chroot \"$w\" /usr/bin/env -i HOME=/nonexistent GUILE_AUTO_COMPILE=0 ",
        "${ext:+\"GUILE_EXTENSIONS_PATH=$ext\"} ",
        "/usr/bin/guile-3.0 --no-auto-compile \"$@\""
    ))
    .arg("sh")
    .arg(tree)
    .arg(world)
    .arg(extensions.join(":"))
    .args(args)
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .stdin(Stdio::null());
    c
}

/// The tree's Guile extension directories, as the chroot sees them, so
/// that a module that loads its C extension while it is compiled (GnuTLS)
/// finds it by bare name, as the guest does.
fn extension_dirs(tree: &Path) -> Vec<String> {
    ["lib/guile/3.0/extensions"]
        .iter()
        .filter(|d| tree.join(d).is_dir())
        .map(|d| format!("/tmp/{d}"))
        .collect()
}

fn last_line(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_without_guile_is_refused_with_the_reason() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path();
        assert_eq!(
            probe(w),
            Some(format!("{}: no /tmp directory", w.display()))
        );
        fs::create_dir(w.join("tmp")).unwrap();
        // A link where the namespace mounts is never followed.
        std::os::unix::fs::symlink("/", w.join("proc")).unwrap();
        assert_eq!(
            probe(w),
            Some(format!("{}: no /proc directory", w.display()))
        );
        fs::remove_file(w.join("proc")).unwrap();
        fs::create_dir(w.join("proc")).unwrap();
        assert_eq!(
            probe(w),
            Some(format!("{}: no /usr/bin/guile-3.0", w.display()))
        );
    }

    #[test]
    fn a_module_outside_guile_directories_is_an_internal_error() {
        let t = tempfile::tempdir().unwrap();
        let m = Module {
            source: "share/x.scm".into(),
            compiled: "lib/x.go".into(),
        };
        let err = compile(t.path(), t.path(), &[m], &t.path().join("log")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "internal error: share/x.scm: not under a Guile /guile/site/3.0/ directory"
        );
    }
}
