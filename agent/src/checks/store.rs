//! The store, checked from one hash: the system item's manifest must hash
//! to its name (and to the digest on the boot line, when given); the
//! system item holds a copy of every closure item's manifest, each of
//! which must hash to that item's name; and every item's content must
//! match its manifest, at the depth the declared policy asks.

use std::fs;

use fruix_store::{Depth, Manifest, VerifyOptions, hash::sha256, verify_tree};

use super::Check;
use crate::system::SystemView;

/// How many findings a failed check lists; the rest are counted.
const MAX_REASONS: usize = 20;

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
    let system_manifest = fs::read(&mpath)
        .map_err(|e| format!("{}: {e}", mpath.display()))
        .and_then(|b| {
            let got = sha256(&b).to_hex();
            if got != want {
                return Err(format!(
                    "manifest of the system item hashes to {got}, not to its name"
                ));
            }
            Manifest::parse(&b).map_err(|e| format!("{}: {e}", mpath.display()))
        });
    match system_manifest {
        Err(e) => reasons.push(e),
        Ok(m) => {
            let r = verify_tree(&view.root.path(&view.guest_path), &m, &opts);
            reasons.extend(r.findings.iter().map(|f| f.to_string()));
        }
    }
    for c in &view.closure {
        let item = c.item.as_str();
        let copy = view
            .root
            .path(&format!("{}/manifests/{item}.mtree", view.guest_path));
        let manifest = fs::read(&copy)
            .map_err(|e| format!("{}: {e}", copy.display()))
            .and_then(|b| {
                if sha256(&b) != c.item.digest() {
                    return Err(format!(
                        "manifest of {item} in the system item does not hash to its name"
                    ));
                }
                Manifest::parse(&b).map_err(|e| format!("{}: {e}", copy.display()))
            });
        match manifest {
            Err(e) => reasons.push(e),
            Ok(m) => {
                let r = verify_tree(&view.item_dir(item), &m, &opts);
                reasons.extend(
                    r.findings
                        .iter()
                        .filter(|f| f.kind != fruix_store::FindingKind::ItemDiffers)
                        .map(|f| f.to_string()),
                );
            }
        }
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
