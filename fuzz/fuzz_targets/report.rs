//! The agent's readiness report as the host reads it: `key=value` lines
//! (`Report::from_lines`, `fruix query`), the flat JSON object
//! (`Report::from_json`), the serde form of the status socket, and the
//! console (`ConsoleWatch`, `fruix system vm`, with the host key blocks
//! it pins from), fed in two chunks through
//! a file as QEMU writes it. Property: each of the three text forms reads
//! back what its writer wrote from a parsed report.
#![no_main]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use fruix_system::{ConsoleWatch, HostKey, Report};
use libfuzzer_sys::fuzz_target;

/// A console log file of this process, reused by every input.
fn console_file() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("console.log");
        (dir, path)
    });
    path
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match Report::from_lines(text, "report") {
            Ok(r) => {
                let again = Report::from_lines(&r.to_lines(), "report")
                    .expect("written report lines parse");
                assert_eq!(again, r);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        match Report::from_json(text, "report") {
            Ok(r) => {
                let again = Report::from_json(&r.to_json().to_string(), "report")
                    .expect("a written report object parses");
                assert_eq!(again, r);
                let _ = r.console_text();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        if let Ok(r) = serde_json::from_str::<Report>(text) {
            let written = serde_json::to_string(&r).expect("a report serializes");
            let again: Report = serde_json::from_str(&written).expect("a written report parses");
            assert_eq!(again, r);
        }
    }
    let path = console_file();
    let (first, second) = data.split_at(data.len() / 2);
    let mut watch = ConsoleWatch::default();
    File::create(path)
        .and_then(|mut f| f.write_all(first))
        .expect("write the console log");
    let _ = watch.poll(path);
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(second))
        .expect("append to the console log");
    let _ = watch.poll(path);
    let _ = watch.tail();
    // The host keys `fruix system vm` would pin: each reads back from the
    // line it would write.
    if let Some(keys) = watch.host_keys() {
        for k in keys {
            let back = HostKey::parse(&k.public_line(), "pinned key").expect("a pinned key parses");
            assert_eq!(&back, k);
            let _ = k.known_hosts_line("127.0.0.1", 2222);
        }
    }
    let _ = watch.host_keys_error();
});
