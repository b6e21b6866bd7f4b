//! The system item's closure (`closure::parse`) and the activation ledger
//! (`Ledger::parse`), read by the agent in the guest; the same input is
//! read as each. Property: what parses, written and read again, is the
//! same value.
#![no_main]

use fruix_system::closure;
use fruix_system::ledger::Ledger;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match closure::parse(text, "closure") {
            Ok(entries) => {
                let again = closure::parse(&closure::to_text(&entries), "closure")
                    .expect("a written closure parses");
                assert_eq!(again, entries);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    match Ledger::parse(data, "ledger") {
        Ok(l) => {
            let again = Ledger::parse(&l.to_json(), "ledger").expect("a written ledger parses");
            assert_eq!(again, l);
            let _ = (l.ok(), l.changed(), l.failed().count());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
