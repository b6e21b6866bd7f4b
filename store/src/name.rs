//! Store item names: `<64 lowercase hex digest>-<name>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::NameError;

// Re-exported: `name::Digest` and `name::DIGEST_HEX_LEN` were their
// paths before they had a module of their own.
pub use crate::digest::{DIGEST_HEX_LEN, Digest};

/// Longest package name allowed after the digest.
pub const MAX_NAME_LEN: usize = 200;

/// Checks a package name (the part after `<digest>-`) against the contract.
pub fn validate_package_name(name: &str) -> Result<(), NameError> {
    let bad = |reason: &'static str| NameError::Package {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("is longer than 200 bytes"));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(bad("starts with '.' or '-'"));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'_' | b'-'))
    {
        return Err(bad("has a byte outside A-Z a-z 0-9 + . _ -"));
    }
    Ok(())
}

/// A validated store item name, `<digest>-<name>`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ItemName {
    digest: Digest,
    full: String,
}

impl ItemName {
    /// Builds the name of an item from its manifest digest and package name.
    pub fn new(digest: Digest, package: &str) -> Result<ItemName, NameError> {
        validate_package_name(package)?;
        Ok(ItemName {
            digest,
            full: format!("{}-{}", digest.to_hex(), package),
        })
    }

    /// Parses and validates a full item name such as `<64 hex>-shepherd-1.0.3`.
    pub fn parse(s: &str) -> Result<ItemName, NameError> {
        let invalid = |reason: &'static str| NameError::Item {
            name: s.to_owned(),
            reason,
        };
        if s.len() < DIGEST_HEX_LEN + 2 {
            return Err(invalid("is shorter than a digest, '-' and a name"));
        }
        // Checked: a multi-byte character across byte 64 is a bad name,
        // not a panic (found by fuzzing, store/tests/fuzz_regressions.rs).
        let (hex, rest) = s
            .split_at_checked(DIGEST_HEX_LEN)
            .ok_or(invalid("does not start with 64 lowercase hex digits"))?;
        let digest =
            Digest::from_hex(hex).ok_or(invalid("does not start with 64 lowercase hex digits"))?;
        let package = rest
            .strip_prefix('-')
            .ok_or(invalid("has no '-' after the digest"))?;
        validate_package_name(package).map_err(|e| match e {
            NameError::Package { reason, .. } => NameError::Item {
                name: s.to_owned(),
                reason,
            },
            other => other,
        })?;
        Ok(ItemName {
            digest,
            full: s.to_owned(),
        })
    }

    /// The digest of the item's canonical manifest.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The package part, e.g. `shepherd-1.0.3`.
    pub fn package(&self) -> &str {
        &self.full[DIGEST_HEX_LEN + 1..]
    }

    /// The whole name, as it stands in the store directory.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for ItemName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for ItemName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ItemName({})", self.full)
    }
}

impl FromStr for ItemName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ItemName::parse(s)
    }
}

impl TryFrom<String> for ItemName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ItemName::parse(&s)
    }
}

impl From<ItemName> for String {
    fn from(n: ItemName) -> String {
        n.full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "2990018000000000000000000000000000000000000000000000000000000a9c";

    #[test]
    fn parses_valid_names() {
        let n = ItemName::parse(&format!("{HEX}-shepherd-1.0.3")).unwrap();
        assert_eq!(n.package(), "shepherd-1.0.3");
        assert_eq!(n.digest().to_hex(), HEX);
        let n = ItemName::parse(&format!("{HEX}-native-runtime-15.0-STABLE")).unwrap();
        assert_eq!(n.package(), "native-runtime-15.0-STABLE");
        assert!(ItemName::parse(&format!("{HEX}-g++_x")).is_ok());
    }

    #[test]
    fn refuses_bad_names_with_reason() {
        let cases = [
            ("short", "is shorter than a digest"),
            (&*format!("{}-x", HEX.to_uppercase()), "64 lowercase hex"),
            (&*format!("{HEX}_x"), "no '-' after the digest"),
            (&*format!("{HEX}-.hidden"), "starts with '.' or '-'"),
            (&*format!("{HEX}--x"), "starts with '.' or '-'"),
            (&*format!("{HEX}-a b"), "byte outside"),
            (&*format!("{HEX}-a/b"), "byte outside"),
            (&*format!("{HEX}-é"), "byte outside"),
            (&*format!("{HEX}-{}", "a".repeat(201)), "longer than 200"),
        ];
        for (input, want) in cases {
            let err = ItemName::parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
        assert!(ItemName::parse(&format!("{HEX}-{}", "a".repeat(200))).is_ok());
    }
}
