//! Verification of items against their manifests, spread over all cores.
//!
//! Two phases. The metadata phase (`metadata.rs`) takes one job per manifest
//! directory: it lists the directory, `lstat`s every expected child and
//! compares type, mode, size and link target. The content phase
//! (`content.rs`) hashes the files whose metadata matched, largest first,
//! through the bounded queue of `crate::pool`. Every difference is a
//! [`Finding`]; nothing stops the run early, and an I/O error on one file
//! is a finding for that file.

mod content;
mod findings;
mod metadata;
mod options;

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

pub use self::findings::{Finding, FindingKind};
pub use self::options::{Depth, VerifyOptions};

use self::findings::finding;
use self::metadata::{Target, type_of};
use crate::error::VerifyError;
use crate::hash::sha256;
use crate::manifest::Manifest;
use crate::name::ItemName;
use crate::root::{GC_PREFIX, MANIFEST_EXT, StoreRoot};

/// The result of a verification run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Every finding, sorted by path then kind.
    pub findings: Vec<Finding>,
    /// Items checked against a manifest.
    pub items: usize,
    /// Manifest entries checked.
    pub entries: u64,
    /// Bytes read and hashed.
    pub bytes_hashed: u64,
}

impl Report {
    /// True when there is no finding.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Verifies every item of a root, and reports whatever else is in its store
/// and manifest directories.
pub fn verify_root(root: &StoreRoot, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let store = root.store_dir();
    let mut pre = Vec::new();
    let mut targets = Vec::new();
    let mut present = HashSet::new();
    for name in list_names(&store)? {
        let path = store.join(&name);
        match name.to_str().map(ItemName::parse) {
            Some(Ok(item)) => {
                present.insert(item.as_str().to_owned());
                load_item(root, &item, &mut pre, &mut targets);
            }
            Some(Err(e)) => pre.push(finding(
                FindingKind::UnexpectedItem,
                &path,
                None,
                Some(e.to_string()),
            )),
            None => pre.push(finding(
                FindingKind::UnexpectedItem,
                &path,
                None,
                Some("name is not UTF-8".into()),
            )),
        }
    }
    let mdir = root.manifests_dir();
    for name in list_names(&mdir).or_else(|e| match e {
        VerifyError::Io { ref source, .. } if source.kind() == io::ErrorKind::NotFound => {
            Ok(Vec::new())
        }
        e => Err(e),
    })? {
        let item = name
            .to_str()
            .and_then(|s| s.strip_suffix(MANIFEST_EXT))
            .and_then(|s| ItemName::parse(s).ok());
        match item {
            // An item a gc has renamed out and whose manifest it is about
            // to remove: a collection in progress, finished by the next
            // writer's lock.
            Some(item)
                if !present.contains(item.as_str())
                    && !root.tmp_dir().join(format!("{GC_PREFIX}{item}")).exists() =>
            {
                pre.push(finding(
                    FindingKind::ItemMissing,
                    &root.item_path(&item),
                    None,
                    Some("manifest without item".into()),
                ))
            }
            Some(_) => {}
            None => pre.push(finding(
                FindingKind::Unexpected,
                &mdir.join(&name),
                None,
                Some("not an item manifest".into()),
            )),
        }
    }
    Ok(run(targets, pre, opts))
}

/// Verifies the named items of a root.
pub fn verify_items(
    root: &StoreRoot,
    items: &[ItemName],
    opts: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let mut pre = Vec::new();
    let mut targets = Vec::new();
    for item in items {
        let path = root.item_path(item);
        match fs::symlink_metadata(&path) {
            Ok(_) => load_item(root, item, &mut pre, &mut targets),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                pre.push(finding(FindingKind::ItemMissing, &path, None, None))
            }
            Err(e) => pre.push(finding(
                FindingKind::IoError,
                &path,
                None,
                Some(e.to_string()),
            )),
        }
    }
    Ok(run(targets, pre, opts))
}

/// Verifies one directory against a manifest that is already trusted (for
/// example one whose digest a parent item vouches for).
pub fn verify_tree(dir: &Path, manifest: &Manifest, opts: &VerifyOptions) -> Report {
    run(
        vec![Target {
            dir: dir.to_owned(),
            manifest: manifest.clone(),
        }],
        Vec::new(),
        opts,
    )
}

/// The names in `dir`, sorted; an error here stops the run, since without
/// the listing there is nothing to verify.
fn list_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, VerifyError> {
    let io = |source| VerifyError::Io {
        path: dir.to_owned(),
        action: "read directory",
        source,
    };
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(io)? {
        v.push(e.map_err(io)?.file_name());
    }
    v.sort();
    Ok(v)
}

/// Reads an item's manifest, checks it against the item's name, and queues
/// the item for checking when the manifest is readable.
fn load_item(root: &StoreRoot, item: &ItemName, pre: &mut Vec<Finding>, targets: &mut Vec<Target>) {
    let dir = root.item_path(item);
    match fs::symlink_metadata(&dir) {
        Ok(m) if !m.is_dir() => {
            pre.push(finding(
                FindingKind::UnexpectedItem,
                &dir,
                None,
                Some(format!("a {}, not a directory", type_of(&m))),
            ));
            return;
        }
        _ => {}
    }
    let mpath = root.manifest_path(item);
    let bytes = match fs::read(&mpath) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            pre.push(finding(FindingKind::ManifestMissing, &mpath, None, None));
            return;
        }
        Err(e) => {
            pre.push(finding(
                FindingKind::IoError,
                &mpath,
                None,
                Some(e.to_string()),
            ));
            return;
        }
    };
    let actual = sha256(&bytes);
    if actual != item.digest() {
        pre.push(finding(
            FindingKind::ManifestMismatch,
            &mpath,
            Some(item.digest().to_hex()),
            Some(actual.to_hex()),
        ));
    }
    match Manifest::parse(&bytes) {
        Ok(manifest) => targets.push(Target { dir, manifest }),
        Err(e) => pre.push(finding(
            FindingKind::ManifestInvalid,
            &mpath,
            None,
            Some(e.to_string()),
        )),
    }
}

/// Runs both phases over `targets`, adds one `item-differs` per target with
/// findings, and sorts everything after the findings in `pre`.
fn run(targets: Vec<Target>, mut pre: Vec<Finding>, opts: &VerifyOptions) -> Report {
    let checked = metadata::check_all(&targets, opts);
    let mut tagged = checked.found;
    let bytes_hashed = content::hash_all(checked.hash_jobs, opts.jobs, &mut tagged);

    let mut per_target = vec![0usize; targets.len()];
    for (ti, _) in &tagged {
        per_target[*ti] += 1;
    }
    pre.extend(tagged.into_iter().map(|(_, f)| f));
    for (ti, n) in per_target.into_iter().enumerate() {
        if n > 0 {
            let s = if n == 1 { "" } else { "s" };
            pre.push(finding(
                FindingKind::ItemDiffers,
                &targets[ti].dir,
                None,
                Some(format!("{n} finding{s}")),
            ));
        }
    }
    pre.sort();
    Report {
        findings: pre,
        items: targets.len(),
        entries: checked.entries,
        bytes_hashed,
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn an_unreadable_root_is_named_once_with_what_failed() {
        let root = StoreRoot::new("/nonexistent/fruix-root");
        let e = verify_root(&root, &VerifyOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/fruix-root/store: cannot read directory"
        );
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("No such file or directory (os error 2)")
        );
    }
}
