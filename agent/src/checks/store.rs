//! The store, checked from one hash: the system item's manifest must hash
//! to its name (and to the digest on the boot line, when given); the
//! system item holds a copy of every closure item's manifest, each of
//! which must hash to that item's name; and every item's content must
//! match its manifest, at the depth the declared policy asks.

use std::fs;

use std::path::Path;

use fruix_store::{Depth, Digest, FindingKind, Manifest, VerifyOptions, hash::sha256, verify_tree};

use super::Check;
use crate::system::SystemView;

/// How many findings a failed check lists; the rest are counted.
const MAX_REASONS: usize = 20;

/// Why a manifest copy is not trusted.
#[derive(Debug, thiserror::Error)]
enum Untrusted {
    /// It cannot be read.
    #[error("{}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// It hashes to another digest; the message says whose.
    #[error("{0}")]
    Mismatch(String),
    /// It does not parse.
    #[error("{}", path.display())]
    Parse {
        path: std::path::PathBuf,
        #[source]
        source: fruix_store::ManifestError,
    },
}

/// Reads a manifest and accepts it only when it hashes to `expected`;
/// `mismatch` words the refusal from the digest it has instead.
fn trusted_manifest(
    path: &Path,
    expected: Digest,
    mismatch: impl FnOnce(String) -> String,
) -> Result<Manifest, Untrusted> {
    let bytes = fs::read(path).map_err(|source| Untrusted::Read {
        path: path.to_owned(),
        source,
    })?;
    let got = sha256(&bytes);
    if got != expected {
        return Err(Untrusted::Mismatch(mismatch(got.to_hex())));
    }
    Manifest::parse(&bytes).map_err(|source| Untrusted::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Verifies `dir` against a trusted manifest, adding what differs (each
/// entry finding, without the per-item summary) to `reasons`.
fn check_against(
    dir: &Path,
    manifest: Result<Manifest, Untrusted>,
    opts: &VerifyOptions,
    reasons: &mut Vec<String>,
) {
    match manifest {
        Err(e) => reasons.push(crate::error::chain(&e)),
        Ok(m) => reasons.extend(
            verify_tree(dir, &m, opts)
                .findings
                .iter()
                .filter(|f| f.kind != FindingKind::ItemDiffers)
                .map(|f| f.to_string()),
        ),
    }
}

/// Runs the store check under `policy` (`none`, `metadata`, `full`).
/// `boot_digest` is the `fruix.digest` of the boot line, if any.
pub fn check(view: &SystemView, policy: &str, boot_digest: Option<&str>) -> Check {
    const NAME: &str = "store";
    let depth = match policy {
        "none" => {
            return Check {
                name: NAME.into(),
                status: super::CheckStatus::Skipped,
                value: "skipped".into(),
                reasons: vec![],
            };
        }
        "full" => Depth::Full,
        _ => Depth::Metadata,
    };
    let opts = VerifyOptions {
        depth,
        ..VerifyOptions::default()
    };
    let mut reasons = Vec::new();
    let name = view.item.as_str();
    let want = view.item.digest().to_hex();
    if let Some(d) = boot_digest
        && d != want
    {
        reasons.push(format!(
            "system item {name} does not match the digest on the boot line ({d})"
        ));
    }
    let mpath = view
        .root
        .path(&format!("/frx/var/db/fruix/manifests/{name}.mtree"));
    let system = trusted_manifest(&mpath, view.item.digest(), |got| {
        format!("manifest of the system item hashes to {got}, not to its name")
    });
    check_against(
        &view.root.path(&view.guest_path),
        system,
        &opts,
        &mut reasons,
    );
    for c in &view.closure {
        let item = c.item.as_str();
        let copy = view
            .root
            .path(&format!("{}/manifests/{item}.mtree", view.guest_path));
        let manifest = trusted_manifest(&copy, c.item.digest(), |_| {
            format!("manifest of {item} in the system item does not hash to its name")
        });
        check_against(&view.item_dir(item), manifest, &opts, &mut reasons);
    }
    if reasons.is_empty() {
        return Check::ok(NAME, "ok");
    }
    let n = reasons.len();
    if n > MAX_REASONS {
        reasons.truncate(MAX_REASONS);
        reasons.push(format!("and {} more findings", n - MAX_REASONS));
    }
    Check::failed(NAME, "failed", reasons)
}
