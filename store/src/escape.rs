//! The manifest's escaping of paths and link targets (contract rule 5).
//!
//! Every byte outside `0x21..=0x7E`, and each of `\ # * ? [ ]`, becomes a
//! backslash and three octal digits; all other bytes stand as they are. This
//! is the subset of vis(3) octal escaping that stock mtree(8) reads back.

/// True when `b` must be written as `\ooo`.
fn needs_escape(b: u8) -> bool {
    !(0x21..=0x7E).contains(&b) || matches!(b, b'\\' | b'#' | b'*' | b'?' | b'[' | b']')
}

/// Appends the escaped form of `raw` to `out`.
pub fn escape_into(raw: &[u8], out: &mut Vec<u8>) {
    for &b in raw {
        if needs_escape(b) {
            out.extend_from_slice(&[
                b'\\',
                b'0' + (b >> 6),
                b'0' + ((b >> 3) & 7),
                b'0' + (b & 7),
            ]);
        } else {
            out.push(b);
        }
    }
}

/// The escaped form of `raw`, as a string (always ASCII).
pub fn escape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    escape_into(raw, &mut out);
    // Escaping leaves only printable ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// Reverses [`escape`]. Refuses anything `escape` would not have written: a
/// backslash not followed by three octal digits of a byte that needed
/// escaping, or a raw byte that should have been escaped.
pub fn unescape(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'\\' {
            let digits = s
                .get(i + 1..i + 4)
                .ok_or("backslash not followed by three octal digits")?;
            if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                return Err("backslash not followed by three octal digits".into());
            }
            let v = u32::from(digits[0] - b'0') * 64
                + u32::from(digits[1] - b'0') * 8
                + u32::from(digits[2] - b'0');
            let byte = u8::try_from(v).map_err(|_| {
                format!(
                    "octal escape \\{} is above \\377",
                    String::from_utf8_lossy(digits)
                )
            })?;
            if !needs_escape(byte) {
                return Err(format!(
                    "byte {byte:#04x} is escaped but must be written as it is"
                ));
            }
            out.push(byte);
            i += 4;
        } else {
            if needs_escape(b) {
                return Err(format!("byte {b:#04x} must be escaped"));
            }
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_exactly_the_contract_set() {
        assert_eq!(escape(b"a file"), "a\\040file");
        assert_eq!(escape(b"x#*?[]\\y"), "x\\043\\052\\077\\133\\135\\134y");
        assert_eq!(escape(b"new\nline\ttab"), "new\\012line\\011tab");
        assert_eq!(escape("é".as_bytes()), "\\303\\251");
        assert_eq!(escape(b"\x7f\x00"), "\\177\\000");
        assert_eq!(
            escape(b"plain-._+~!$%&'(){}=,;:@^`|\"<>"),
            "plain-._+~!$%&'(){}=,;:@^`|\"<>"
        );
    }

    #[test]
    fn unescape_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unescape(escape(&all).as_bytes()).unwrap(), all);
    }

    #[test]
    fn unescape_refuses_non_canonical_forms() {
        assert!(unescape(b"a\\141").is_err(), "escaped 'a'");
        assert!(unescape(b"a b").is_err(), "raw space");
        assert!(unescape(b"a\\04").is_err(), "short escape");
        assert!(unescape(b"a\\400").is_err(), "above 255");
        assert!(unescape(b"a#").is_err(), "raw #");
    }
}
