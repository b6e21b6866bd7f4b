//! A loader entry as the agent reads it from the ESP (`Entry::parse`)
//! and a file name of `loader/entries` (`EntryName::parse`); the same
//! input is read as both. Property: what parses, written and read again,
//! is the same value, and the default entry of names is one of them.
#![no_main]

use fruix_system::bootentry::{Entry, EntryName, default_entry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(e) = Entry::parse(text) {
        let again = Entry::parse(&e.to_text()).expect("a written entry parses");
        assert_eq!(again, e);
        let _ = e.kernel_item();
    }
    let names: Vec<EntryName> = text.lines().filter_map(EntryName::parse).collect();
    for n in &names {
        assert_eq!(EntryName::parse(&n.to_string()), Some(*n));
        assert_eq!(EntryName::parse(&n.marked_bad().to_string()), Some(n.marked_bad()));
    }
    if let Some(d) = default_entry(&names) {
        assert!(names.contains(&d));
    }
});
