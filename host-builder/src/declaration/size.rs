//! Sizes written as in Fruix's image settings: `12g`, `512m`, `64k`, or a
//! plain number of bytes.

/// A size in bytes.
pub type ByteSize = u64;

/// Parses `12g`, `10G`, `512m`, `64k`, `4096` (bytes). Units are powers of
/// 1024, as qemu-img and truncate(1) read them.
pub fn parse_size(s: &str) -> Result<ByteSize, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_lowercase() {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                _ => {
                    return Err(format!(
                        "'{s}' has an unknown unit '{c}' (use k, m, g or t)"
                    ));
                }
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size such as 12g, 512m or 4096"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("12g"), Ok(12 << 30));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12x").unwrap_err().contains("unknown unit"));
        assert!(parse_size("g").is_err());
        assert!(parse_size("-1g").is_err());
        assert!(
            parse_size("99999999999t")
                .unwrap_err()
                .contains("too large")
        );
    }
}
