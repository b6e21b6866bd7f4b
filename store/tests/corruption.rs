//! The corruption matrix: one damage at a time, and the exact report
//! verification gives for it.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use common::*;
use fruix_store::hash::sha256;
use fruix_store::{
    Depth, ImportOptions, ImportOutcome, VerifyOptions, import_dir, verify_items, verify_root,
};

fn setup() -> (Scratch, ImportOutcome) {
    let s = Scratch::new();
    let src = s.src("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::create_dir_all(src.join("emptydir")).unwrap();
    write_mode(&src.join("bin/x"), b"run\n", 0o755);
    write_mode(&src.join("sub/f"), b"hello\n", 0o644);
    write_mode(&src.join("sub/g"), b"other\n", 0o644);
    symlink("sub/f", src.join("l")).unwrap();
    let out = import_dir(&s.root, "pkg", &src, &ImportOptions::default()).unwrap();
    (s, out)
}

/// Runs full verification of the whole root and returns its lines, with
/// the item directory written as ITEM, the manifest as MANIFEST and the
/// root as ROOT.
fn report(s: &Scratch, out: &ImportOutcome, depth: Depth) -> Vec<String> {
    let opts = VerifyOptions { depth, jobs: 3 };
    let r = verify_root(&s.root, &opts).unwrap();
    let item = out.path.display().to_string();
    let man = s.root.manifest_path(&out.name).display().to_string();
    let root = s.root.path().display().to_string();
    r.findings
        .iter()
        .map(|f| {
            f.to_string()
                .replace(&man, "MANIFEST")
                .replace(&item, "ITEM")
                .replace(&root, "ROOT")
        })
        .collect()
}

fn h(s: &str) -> String {
    format!("sha256={}", sha256(s.as_bytes()).to_hex())
}

/// Replaces a file's content inside a sealed item, keeping its mode.
fn overwrite(path: &Path, content: &[u8]) {
    let dir = path.parent().unwrap();
    unsealed(dir, || {
        let mode = fs::metadata(path).unwrap().permissions().mode();
        fs::remove_file(path).unwrap();
        write_mode(path, content, mode & 0o7777);
    });
}

#[test]
fn a_clean_item_has_no_finding() {
    let (s, out) = setup();
    assert_eq!(report(&s, &out, Depth::Full), Vec::<String>::new());
    let r = verify_root(&s.root, &VerifyOptions::default()).unwrap();
    assert_eq!((r.items, r.entries, r.bytes_hashed), (1, 8, 4 + 6 + 6));
}

#[test]
fn content_changed() {
    let (s, out) = setup();
    overwrite(&out.path.join("sub/f"), b"HELLO\n");
    assert_eq!(
        report(&s, &out, Depth::Full),
        [
            "item-differs ITEM -> 1 finding".to_owned(),
            format!(
                "content-changed ITEM/sub/f {} -> {}",
                h("hello\n"),
                h("HELLO\n")
            ),
        ]
    );
    // Metadata-only verification does not read content.
    assert_eq!(report(&s, &out, Depth::Metadata), Vec::<String>::new());
}

#[test]
fn size_changed() {
    let (s, out) = setup();
    overwrite(&out.path.join("sub/f"), b"hello!\n");
    let want = [
        "item-differs ITEM -> 1 finding",
        "size-changed ITEM/sub/f 6 -> 7",
    ];
    assert_eq!(report(&s, &out, Depth::Full), want);
    assert_eq!(report(&s, &out, Depth::Metadata), want);
}

#[test]
fn mode_changed() {
    let (s, out) = setup();
    fs::set_permissions(out.path.join("sub/f"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(out.path.join("bin"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        report(&s, &out, Depth::Full),
        [
            "item-differs ITEM -> 2 findings",
            "mode-changed ITEM/bin 0555 -> 0755",
            "mode-changed ITEM/sub/f 0444 -> 0644"
        ]
    );
}

#[test]
fn missing_entry() {
    let (s, out) = setup();
    unsealed(&out.path.join("sub"), || {
        fs::remove_file(out.path.join("sub/g")).unwrap()
    });
    assert_eq!(
        report(&s, &out, Depth::Full),
        ["item-differs ITEM -> 1 finding", "missing ITEM/sub/g"]
    );
}

#[test]
fn unexpected_entry() {
    let (s, out) = setup();
    unsealed(&out.path.join("emptydir"), || {
        fs::write(out.path.join("emptydir/new"), b"").unwrap()
    });
    assert_eq!(
        report(&s, &out, Depth::Full),
        [
            "item-differs ITEM -> 1 finding",
            "unexpected ITEM/emptydir/new -> file"
        ]
    );
}

#[test]
fn type_changed() {
    let (s, out) = setup();
    unsealed(&out.path.join("sub"), || {
        fs::remove_file(out.path.join("sub/g")).unwrap();
        fs::create_dir(out.path.join("sub/g")).unwrap();
    });
    unsealed(&out.path, || {
        fs::remove_file(out.path.join("l")).unwrap();
        fs::write(out.path.join("l"), b"hello\n").unwrap();
    });
    assert_eq!(
        report(&s, &out, Depth::Full),
        [
            "item-differs ITEM -> 2 findings",
            "type-changed ITEM/l link -> file",
            "type-changed ITEM/sub/g file -> dir"
        ]
    );
}

#[test]
fn link_changed() {
    let (s, out) = setup();
    unsealed(&out.path, || {
        fs::remove_file(out.path.join("l")).unwrap();
        symlink("/etc/shadow", out.path.join("l")).unwrap();
    });
    assert_eq!(
        report(&s, &out, Depth::Full),
        [
            "item-differs ITEM -> 1 finding",
            "link-changed ITEM/l sub/f -> /etc/shadow"
        ]
    );
}

#[test]
fn manifest_missing() {
    let (s, out) = setup();
    fs::remove_file(s.root.manifest_path(&out.name)).unwrap();
    assert_eq!(report(&s, &out, Depth::Full), ["manifest-missing MANIFEST"]);
}

#[test]
fn manifest_does_not_hash_to_the_name() {
    let (s, out) = setup();
    let mpath = s.root.manifest_path(&out.name);
    let text = fs::read_to_string(&mpath).unwrap();
    // A valid manifest that claims other content for sub/g.
    let old_line = format!("./sub/g type=file mode=0444 size=6 {}", h("other\n"));
    let new_line = format!("./sub/g type=file mode=0444 size=7 {}", h("forged\n"));
    assert!(text.contains(&old_line));
    let forged = text.replace(&old_line, &new_line);
    fs::write(&mpath, &forged).unwrap();
    let actual = sha256(forged.as_bytes()).to_hex();
    assert_eq!(
        report(&s, &out, Depth::Full),
        [
            "item-differs ITEM -> 1 finding".to_owned(),
            "size-changed ITEM/sub/g 7 -> 6".to_owned(),
            format!(
                "manifest-mismatch MANIFEST {} -> {actual}",
                out.name.digest().to_hex()
            ),
        ]
    );
}

#[test]
fn manifest_invalid() {
    let (s, out) = setup();
    fs::write(s.root.manifest_path(&out.name), b"#mtree v2.0\n").unwrap();
    let r = report(&s, &out, Depth::Full);
    assert_eq!(r.len(), 2);
    assert_eq!(
        r[0],
        format!("manifest-invalid MANIFEST -> line 1: first line is not '#mtree fruix-v1'")
    );
    assert!(r[1].starts_with("manifest-mismatch MANIFEST "), "{r:?}");
}

#[test]
fn unexpected_item_in_the_store() {
    let (s, out) = setup();
    fs::write(s.root.store_dir().join("junk"), b"").unwrap();
    let fake = format!("{}-notadir", "a".repeat(64));
    fs::write(s.root.store_dir().join(&fake), b"").unwrap();
    assert_eq!(
        report(&s, &out, Depth::Full),
        [
            format!("unexpected-item ROOT/store/{fake} -> a file, not a directory"),
            "unexpected-item ROOT/store/junk -> invalid item name 'junk': it is shorter than a digest, '-' and a name".to_owned(),
        ]
    );
}

#[test]
fn item_missing() {
    let (s, out) = setup();
    fruix_store::root::remove_tree(&out.path).unwrap();
    assert_eq!(
        report(&s, &out, Depth::Full),
        ["item-missing ITEM -> manifest without item"]
    );
    let r = verify_items(
        &s.root,
        std::slice::from_ref(&out.name),
        &VerifyOptions::default(),
    )
    .unwrap();
    assert_eq!(r.findings.len(), 1);
    assert_eq!(
        r.findings[0].to_string(),
        format!("item-missing {}", out.path.display())
    );
}

#[test]
fn every_finding_is_reported_in_one_run() {
    let (s, out) = setup();
    overwrite(&out.path.join("sub/f"), b"HELLO\n");
    overwrite(&out.path.join("bin/x"), b"ruN\n");
    unsealed(&out.path.join("sub"), || {
        fs::remove_file(out.path.join("sub/g")).unwrap()
    });
    unsealed(&out.path, || {
        fs::write(out.path.join("extra"), b"").unwrap()
    });
    let r = report(&s, &out, Depth::Full);
    assert_eq!(
        r,
        [
            "item-differs ITEM -> 4 findings".to_owned(),
            format!(
                "content-changed ITEM/bin/x {} -> {}",
                h("run\n"),
                h("ruN\n")
            ),
            "unexpected ITEM/extra -> file".to_owned(),
            format!(
                "content-changed ITEM/sub/f {} -> {}",
                h("hello\n"),
                h("HELLO\n")
            ),
            "missing ITEM/sub/g".to_owned(),
        ]
    );
}

#[test]
fn a_replaced_directory_is_one_finding() {
    let (s, out) = setup();
    unsealed(&out.path, || {
        fruix_store::root::remove_tree(&out.path.join("sub")).unwrap();
        fs::write(out.path.join("sub"), b"").unwrap();
    });
    assert_eq!(
        report(&s, &out, Depth::Full),
        [
            "item-differs ITEM -> 1 finding",
            "type-changed ITEM/sub dir -> file"
        ]
    );
}

#[test]
fn json_findings_carry_kind_path_expected_found() {
    let (s, out) = setup();
    overwrite(&out.path.join("sub/f"), b"hello!\n");
    let r = verify_root(&s.root, &VerifyOptions::default()).unwrap();
    let v: Vec<String> = r
        .findings
        .iter()
        .map(|f| {
            format!(
                "{:?}",
                (f.kind.as_str(), f.expected.as_deref(), f.found.as_deref())
            )
        })
        .collect();
    assert_eq!(
        v,
        [
            r#"("item-differs", None, Some("1 finding"))"#,
            r#"("size-changed", Some("6"), Some("7"))"#
        ]
    );
}
