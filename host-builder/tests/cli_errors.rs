//! Bad input to `fruix query` and `fruix system vm`: exit 2 and one line
//! naming the input, before anything is started.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn fruix(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_fruix"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn query_refuses_a_bad_target_and_a_missing_key() {
    let (code, err) = fruix(&["query", "--ssh", "root@host:notaport"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim(),
        "fruix: --ssh: 'root@host:notaport': 'notaport' is not a port"
    );
    let (code, err) = fruix(&["query", "--ssh", "host", "-i", "/nonexistent/key"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim(), "fruix: -i: /nonexistent/key: no such key file");
}

#[test]
fn vm_refuses_a_missing_image_and_a_declaration_without_out() {
    let (code, err) = fruix(&["system", "vm", "/nonexistent/disk.raw"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim(), "fruix: /nonexistent/disk.raw: no such image");
    let (code, err) = fruix(&["system", "vm", "/nonexistent/system.toml"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim(),
        "fruix: --out: needed to build /nonexistent/system.toml"
    );
}
