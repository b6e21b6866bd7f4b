//! The agent's configuration and the declared accounts
//! (`etc/fruix/system.toml` and `etc/fruix/accounts.toml` of a system
//! item), read by the agent and activation in the guest. The same text
//! is read as each. Property: what parses, written and read again, is
//! the same value.
#![no_main]

use std::path::Path;

use fruix_system::{DeclaredAccounts, SystemConfig, guile_env};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("system.toml");
    match SystemConfig::parse(text, path) {
        Ok(c) => {
            let _ = guile_env(&c.shepherd, &c.guile_extensions);
            let written = c.to_toml().expect("a parsed system.toml can be written");
            let again = SystemConfig::parse(&written, path).expect("a written system.toml parses");
            assert_eq!(again, c);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let path = Path::new("accounts.toml");
    match DeclaredAccounts::parse(text, path) {
        Ok(a) => {
            let written = a.to_toml().expect("parsed accounts can be written");
            let again = DeclaredAccounts::parse(&written, path).expect("written accounts parse");
            assert_eq!(again, a);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
