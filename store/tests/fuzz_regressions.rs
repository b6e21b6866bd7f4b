//! Inputs the fuzz targets of `fuzz/` (scripts/fuzz) found to crash a
//! store parser, each kept as it was found, with what the parser must say
//! instead.

use fruix_store::{ItemName, NameError};

/// `fuzz/artifacts/closure_ledger/crash-a05dd593…`'s first field: a
/// no-break space (two bytes) across byte 64 made `ItemName::parse` slice
/// inside a character and panic.
#[test]
fn item_name_with_a_character_across_the_digest_end() {
    let name = "0123456789abcdef0123456789abcdef0123456789abcdef3054216789ab>\u{a0}\u{a0}nat\u{1}\0\0\0boo6789abcd";
    let e = ItemName::parse(name).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("invalid item name '{name}': it does not start with 64 lowercase hex digits")
    );
    assert!(matches!(e, NameError::Item { .. }), "{e:?}");
}
