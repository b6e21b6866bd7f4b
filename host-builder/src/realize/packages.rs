//! Realizing the declared packages into store items, parents before the
//! packages derived from them, each reused when its description is
//! unchanged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use fruix_store::{ImportOptions, ItemName};

use super::cache::Records;
pub use super::context::Context;
use super::{debian, fingerprint, materialize};
use crate::declaration::{Package, Source, compile_glob};
use crate::error::BuildError;

/// Where an item came from, as the closure records it.
pub use fruix_system::Origin;

/// A package made into an item.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Realized {
    /// The declared package name.
    pub package: String,
    /// The item.
    pub item: ItemName,
    /// Its directory.
    pub path: PathBuf,
    /// Its origin.
    pub origin: Origin,
    /// True when the record of an earlier build was used and nothing was
    /// made.
    pub reused: bool,
}

/// Revision of the way derived packages are cut from their parent; part
/// of every derived package's description.
const DERIVE_REVISION: u32 = 1;

/// Realizes every declared package.
pub fn realize_all(cx: &Context<'_>) -> Result<BTreeMap<String, Realized>, BuildError> {
    let mut done: BTreeMap<String, Realized> = BTreeMap::new();
    for name in &cx.loaded.order {
        let pkg = cx
            .loaded
            .package(name)
            .ok_or_else(|| BuildError::Internal(format!("package '{name}' is not declared")))?;
        let r = realize(cx, name, pkg, &done).map_err(|e| e.in_package(name))?;
        done.insert(name.clone(), r);
    }
    Ok(done)
}

fn item_package_name(name: &str, pkg: &Package) -> String {
    match &pkg.version {
        Some(v) => format!("{name}-{}", v.get_ref()),
        None => name.to_owned(),
    }
}

fn realize(
    cx: &Context<'_>,
    name: &str,
    pkg: &Package,
    done: &BTreeMap<String, Realized>,
) -> Result<Realized, BuildError> {
    let item_name = item_package_name(name, pkg);
    let mut desc = format!("fruix-realize-v1\nname {item_name}\n");
    let origin;
    match (&pkg.source, &pkg.from) {
        (Some(src), _) => {
            origin = if matches!(src.get_ref(), Source::HostPath { .. }) {
                Origin::Host
            } else {
                Origin::Native
            };
            describe_source(cx, src.get_ref(), &mut desc)?;
        }
        (None, Some(from)) => {
            let parent = done.get(from.get_ref()).ok_or_else(|| {
                BuildError::Internal(format!("'{}' was not realized first", from.get_ref()))
            })?;
            origin = parent.origin;
            let _ = writeln!(
                desc,
                "from {}\nderive-revision {DERIVE_REVISION}",
                parent.item
            );
            for g in &pkg.keep {
                let _ = writeln!(desc, "keep {}", g.get_ref());
            }
            for g in &pkg.prune {
                let _ = writeln!(desc, "prune {}", g.get_ref());
            }
        }
        (None, None) => {
            return Err(BuildError::Internal(
                "package has neither source nor from".into(),
            ));
        }
    }
    if let Some(m) = &pkg.materialize {
        let m = m.get_ref();
        let _ = writeln!(
            desc,
            "materialize {} {} revision {}",
            m.prefix,
            m.rules.join(","),
            materialize::REVISION
        );
        if let Some(w) = &m.compile_with {
            let world = done
                .get(w)
                .ok_or_else(|| BuildError::Internal(format!("'{w}' was not realized first")))?;
            let _ = writeln!(desc, "compile-with {}", world.item);
        }
    }
    let key = Records::key(&desc);
    if let Some(item) = cx.records.get(cx.root, &key) {
        cx.progress.line(&format!("{name}: unchanged, {item}"));
        return Ok(Realized {
            package: name.to_owned(),
            path: cx.root.item_path(&item),
            item,
            origin,
            reused: true,
        });
    }

    let step = cx.progress.step(&format!("{name}: realizing"));
    let opts = ImportOptions { jobs: cx.jobs };
    let mut record = true;
    let out = match (&pkg.source, &pkg.from) {
        (Some(src), _) => {
            let staged = match src.get_ref() {
                Source::Debian {
                    suite,
                    packages,
                    mirror,
                } => Some(debian::make_tree(
                    cx,
                    name,
                    suite,
                    packages,
                    mirror.as_deref(),
                    &step,
                )?),
                _ => None,
            };
            let input = match (src.get_ref(), &staged) {
                (_, Some(tree)) => tree.path().to_owned(),
                (Source::Dir { path } | Source::Tar { path }, None) => cx.loaded.resolve(path),
                (Source::HostPath { path }, None) => path.clone(),
                (Source::Debian { .. }, None) => unreachable_tree()?,
            };
            if let Some(m) = &pkg.materialize {
                let m = m.get_ref();
                let world = m.compile_with.as_ref().map(|w| done[w].path.clone());
                let (work, fell_back) = materialize::stage(cx, &input, m, world.as_deref(), &step)?;
                // Not recorded when the declared compiler could not run:
                // a build where it can makes the compiled item, not this.
                record = !fell_back;
                fruix_store::import_dir(cx.root, &item_name, work.path(), &opts)?
            } else if matches!(src.get_ref(), Source::Tar { .. }) {
                fruix_store::import_archive(cx.root, &item_name, &input, &opts)?
            } else {
                if !input.is_dir() {
                    return Err(BuildError::Input(format!(
                        "{} is not a directory",
                        input.display()
                    )));
                }
                fruix_store::import_dir(cx.root, &item_name, &input, &opts)?
            }
        }
        (None, Some(from)) => {
            let parent = &done[from.get_ref()];
            let keep = pkg
                .keep
                .iter()
                .map(|g| compile_glob(g.get_ref()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(BuildError::Input)?;
            let prune = pkg
                .prune
                .iter()
                .map(|g| compile_glob(g.get_ref()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(BuildError::Input)?;
            let select = |p: &[u8]| selected(p, &keep, &prune);
            fruix_store::derive_item(cx.root, &item_name, &parent.item, select)?
        }
        (None, None) => {
            return Err(BuildError::Internal(
                "package has neither source nor from".into(),
            ));
        }
    };
    for d in &out.dropped {
        step.note(&format!(
            "{name}: dropped setuid/setgid/sticky bits of '{}' (mode {:04o})",
            d.entry, d.mode
        ));
    }
    if record {
        cx.records
            .put(&key, &out.name)
            .map_err(|e| BuildError::Io(cx.records.dir().to_owned(), e))?;
    }
    step.finish(&format!("{name}: {}", out.name));
    Ok(Realized {
        package: name.to_owned(),
        item: out.name,
        path: out.path,
        origin,
        reused: false,
    })
}

fn unreachable_tree() -> Result<PathBuf, BuildError> {
    Err(BuildError::Internal("a debian source made no tree".into()))
}

/// Whether a derived package takes the entry at `path`: it, or a
/// directory above it, matches a `keep` glob (or there are none), and
/// neither it nor a directory above it matches a `prune` glob.
pub fn selected(
    path: &[u8],
    keep: &[globset::GlobMatcher],
    prune: &[globset::GlobMatcher],
) -> bool {
    let self_and_ancestors = || {
        path.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| &path[..i])
            .chain(std::iter::once(path))
    };
    let matches = |globs: &[globset::GlobMatcher]| {
        self_and_ancestors().any(|p| {
            let s = String::from_utf8_lossy(p);
            globs.iter().any(|g| g.is_match(s.as_ref()))
        })
    };
    (keep.is_empty() || matches(keep)) && !matches(prune)
}

fn describe_source(cx: &Context<'_>, src: &Source, desc: &mut String) -> Result<(), BuildError> {
    match src {
        Source::Dir { path } | Source::Tar { path } | Source::HostPath { path } => {
            let p = match src {
                Source::HostPath { .. } => path.clone(),
                _ => cx.loaded.resolve(path),
            };
            let fp = fingerprint::tree(&p).map_err(|e| BuildError::Io(p.clone(), e))?;
            let kind = match src {
                Source::Dir { .. } => "dir",
                Source::Tar { .. } => "tar",
                _ => "host-path",
            };
            let _ = writeln!(desc, "source {kind} {}\nfingerprint {fp}", p.display());
        }
        Source::Debian {
            suite,
            packages,
            mirror,
        } => {
            let mut pk = packages.clone();
            pk.sort();
            let _ = writeln!(
                desc,
                "source debian {suite}\nmirror {}\npackages {}\nrecipe-revision {}",
                debian::mirror_or_default(mirror.as_deref()),
                pk.join(" "),
                debian::RECIPE_REVISION
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(gs: &[&str]) -> Vec<globset::GlobMatcher> {
        gs.iter().map(|g| compile_glob(g).unwrap()).collect()
    }

    #[test]
    fn keep_takes_subtrees_and_prune_cuts_them() {
        let keep = globs(&["boot/vmlinuz-*", "usr/lib/modules"]);
        let none = globs(&[]);
        assert!(selected(b"boot/vmlinuz-6.12", &keep, &none));
        assert!(!selected(b"boot/config-6.12", &keep, &none));
        assert!(selected(
            b"usr/lib/modules/6.12/kernel/virtio.ko",
            &keep,
            &none
        ));
        assert!(!selected(
            b"usr/lib/x86_64-linux-gnu/libc.so.6",
            &keep,
            &none
        ));
        let prune = globs(&["boot", "usr/include", "usr/share/doc"]);
        assert!(selected(b"usr/bin/guile", &none, &prune));
        assert!(!selected(b"boot", &none, &prune));
        assert!(!selected(b"usr/include/stdio.h", &none, &prune));
        assert!(!selected(b"usr/share/doc/x/copyright", &none, &prune));
        assert!(
            selected(b"usr/share/docs-not", &none, &prune),
            "a glob is a whole component"
        );
        // keep, then prune
        assert!(!selected(
            b"usr/lib/modules/6.12/build",
            &keep,
            &globs(&["usr/lib/modules/*/build"])
        ));
    }
}
