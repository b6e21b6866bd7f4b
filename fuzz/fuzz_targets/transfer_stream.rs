//! The deploy's item stream as `fruix-agent store receive` reads it
//! (`fruix_store::transfer::receive`, uncompressed), into a fresh store
//! root. Properties: no panic; a refused stream leaves no item, no
//! manifest and no work directory; an accepted one verifies clean.
#![no_main]

use fruix_store::verify::{Depth, VerifyOptions};
use fruix_store::{ItemName, StoreRoot, verify_root};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = StoreRoot::new(dir.path().join("root"));
    let system = ItemName::parse(&format!("{}-system-fuzz", "0".repeat(64))).expect("a name");
    let closure_of = |p: &std::path::Path| -> Result<Vec<ItemName>, String> {
        let text = std::fs::read_to_string(p.join("closure")).map_err(|e| e.to_string())?;
        fruix_system::closure::parse(&text, "closure")
            .map(|v| v.into_iter().map(|c| c.item).collect())
            .map_err(|e| e.to_string())
    };
    let r = fruix_store::transfer::receive(&root, &system, &closure_of, data, &mut |_| {});
    match r {
        Ok(_) => {
            let opts = VerifyOptions {
                depth: Depth::Full,
                jobs: 1,
            };
            let report = verify_root(&root, &opts).expect("the store can be verified");
            assert!(report.findings.is_empty(), "{:?}", report.findings);
        }
        Err(e) => {
            let _ = e.to_string();
            for d in [root.store_dir(), root.manifests_dir(), root.tmp_dir()] {
                let left = std::fs::read_dir(&d).map(|r| r.count()).unwrap_or(0);
                assert_eq!(left, 0, "{} not empty after a refused stream: {e}", d.display());
            }
        }
    }
});
