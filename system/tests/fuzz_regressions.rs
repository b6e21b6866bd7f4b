//! Inputs the fuzz targets of `fuzz/` (scripts/fuzz) found to crash a
//! parser of this crate, each kept byte for byte as it was found, with
//! the error the parser must give instead.

use fruix_system::{Outcome, Report, closure};

/// `fuzz/artifacts/closure_ledger/crash-a05dd593…`: a closure line whose
/// item name has a two-byte character across byte 64 (the digest's end)
/// panicked in `ItemName::parse`.
#[test]
fn closure_line_with_a_character_across_the_digest_end() {
    let input = b"0123456789abcdef0123456789abcdef0123456789abcdef3054216789ab>\xc2\xa0\xc2\xa0nat\x01\x00\x00\x00boo6789abcd base h\x1cst\n";
    let text = std::str::from_utf8(input).unwrap();
    let e = closure::parse(text, "closure").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "closure: line 1: invalid item name '{}': it does not start with 64 lowercase hex digits",
            text.split(' ').next().unwrap()
        )
    );
}

/// `fuzz/artifacts/report/crash-…` (the report target's round trip): a
/// last line without its newline kept a '\r' that `lines` drops from
/// every other line, so the value read was not the value read back after
/// `to_lines`.
#[test]
fn report_lines_with_a_carriage_return_on_the_last_line() {
    let input = b"ready_marker=failed\nsto2e_verreasent differse endin=gsshd,smoed\nreasent differse endin=gsshd,smok\x03\r";
    let text = std::str::from_utf8(input).unwrap();
    let r = Report::from_lines(text, "report").unwrap();
    assert_eq!(
        r,
        Report {
            outcome: Outcome::Failed,
            fields: vec![
                ("ready_marker".into(), "failed".into()),
                (
                    "sto2e_verreasent differse endin".into(),
                    "gsshd,smoed".into()
                ),
                ("reasent differse endin".into(), "gsshd,smok\u{3}".into()),
            ],
            reasons: vec![],
            pending: vec![],
        }
    );
    assert_eq!(Report::from_lines(&r.to_lines(), "report").unwrap(), r);
}

/// The second `report` crash: a line ending in several '\r' before its
/// '\n' kept all but the one `lines` drops.
#[test]
fn report_lines_with_carriage_returns_before_a_newline() {
    let input = b"ready_marker=failed\nstore_ve\x00\x00\x00rify=failed\nreason=e\x00\x00\x00\r\r\r\nreaseady_marker=failed\nstore_verify=failed\nreason=e\x00\x00\x00std\nreason=stor\x01he: ing=sshd,smoke\non=storng=sshd,smoke\x00";
    let text = std::str::from_utf8(input).unwrap();
    let r = Report::from_lines(text, "report").unwrap();
    assert_eq!(
        r.reasons,
        ["e\0\0\0", "e\0\0\0std", "stor\u{1}he: ing=sshd,smoke"]
    );
    assert_eq!(Report::from_lines(&r.to_lines(), "report").unwrap(), r);
}
