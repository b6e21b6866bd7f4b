//! SHA-256 digests and their lowercase hex spelling.
//!
//! On its own so that the hashing code (which makes digests) and the item
//! names (which spell them) both depend on it and not on each other.

use std::fmt;

/// Length of a digest in hex, as at the start of an item name.
pub const DIGEST_HEX_LEN: usize = 64;

/// A SHA-256 digest, as the 32 bytes the hash function gives.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest in the form item names use: 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 lowercase hex characters; anything else is `None`.
    pub fn from_hex(s: &str) -> Option<Digest> {
        let b = s.as_bytes();
        if b.len() != DIGEST_HEX_LEN {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Some(Digest(out))
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn hex_val(c: u8) -> Option<u8> {
    // Uppercase is refused on purpose: one digest has one spelling.
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "2990018000000000000000000000000000000000000000000000000000000a9c";

    #[test]
    fn digest_hex_round_trip() {
        let d = Digest::from_hex(HEX).unwrap();
        assert_eq!(d.to_hex(), HEX);
        assert!(Digest::from_hex(&HEX[1..]).is_none());
        assert!(Digest::from_hex(&HEX.to_uppercase()).is_none());
        assert_eq!(hex(&[0x00, 0x9f, 0xff]), "009fff");
    }
}
