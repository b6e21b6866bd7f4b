//! Import of a tar archive (plain, gzip, xz or zstd) into a fresh store
//! root (`import_archive`), as the builder does with downloaded
//! distribution sets. Property: an item the import accepts verifies
//! clean, content and all.
#![no_main]

use fruix_store::verify::{Depth, VerifyOptions};
use fruix_store::{ImportOptions, StoreRoot, import_archive, verify_items};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("input.tar");
    std::fs::write(&src, data).expect("write the archive");
    let root = StoreRoot::new(dir.path().join("root"));
    match import_archive(&root, "fuzz-1", &src, &ImportOptions { jobs: 1 }) {
        Ok(out) => {
            let opts = VerifyOptions {
                depth: Depth::Full,
                jobs: 1,
            };
            let report = verify_items(&root, &[out.name], &opts).expect("the item can be verified");
            assert!(
                report.findings.is_empty(),
                "an imported item verifies clean: {:?}",
                report.findings
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
