//! The declaration reader (`declaration::parse`, the builder's loader of a
//! user's `system.toml` from its text): TOML, then every check, then the
//! `FILE:LINE:COL` error built from the span. No property beyond no panic;
//! relative paths resolve under a directory that does not exist.
#![no_main]

use std::path::Path;

use fruix_host_builder::declaration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/nonexistent/fruix-fuzz/system.toml");
    if let Err(e) = declaration::parse(file, text) {
        let _ = e.to_string();
    }
});
