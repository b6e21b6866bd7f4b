//! The store manifest reader (`Manifest::parse`): the guest agent reads
//! every manifest of the store it verifies, the builder those of the
//! stores it is given. Property: the reader takes only canonical form, so
//! whatever it accepts the writer writes back byte for byte.
#![no_main]

use fruix_store::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Manifest::parse(data) {
        Ok(m) => {
            assert_eq!(m.to_bytes(), data, "an accepted manifest is canonical");
            let rebuilt = Manifest::from_entries(m.entries().to_vec())
                .expect("the entries of a parsed manifest are a tree");
            assert_eq!(rebuilt, m);
            let _ = m.digest();
            let _ = m.content_size();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
