//! Import from tar archives: compressions, agreement with directory import,
//! and the traversal and type refusals.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use common::*;
use fruix_store::hash::sha256;
use fruix_store::{ImportError, ImportOptions, import_archive, import_dir};
use tar::{EntryType, Header};

/// One raw tar entry; names are written into the header as they are, so
/// that hostile names can be made.
struct E<'a> {
    name: &'a [u8],
    kind: EntryType,
    mode: u32,
    data: &'a [u8],
    link: &'a [u8],
}

fn e<'a>(name: &'a str, kind: EntryType, mode: u32, data: &'a [u8], link: &'a str) -> E<'a> {
    E {
        name: name.as_bytes(),
        kind,
        mode,
        data,
        link: link.as_bytes(),
    }
}

fn tar_bytes(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for en in entries {
        let mut h = Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..en.name.len()].copy_from_slice(en.name);
        h.as_gnu_mut().unwrap().linkname[..en.link.len()].copy_from_slice(en.link);
        h.set_entry_type(en.kind);
        h.set_mode(en.mode);
        h.set_size(en.data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, en.data).unwrap();
    }
    b.into_inner().unwrap()
}

fn contract_entries() -> Vec<E<'static>> {
    vec![
        e("./", EntryType::Directory, 0o755, b"", ""),
        e("./bin/", EntryType::Directory, 0o755, b"", ""),
        e(
            "./bin/hi",
            EntryType::Regular,
            0o755,
            b"#!/bin/sh\necho hi\n",
            "",
        ),
        e("./bin/hello", EntryType::Symlink, 0o777, b"", "hi"),
        // No entry for etc/: parents are made as needed.
        e("./etc/a file", EntryType::Regular, 0o644, b"x\n", ""),
    ]
}

fn write(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
}

#[test]
fn every_compression_gives_the_contract_item() {
    let s = Scratch::new();
    let plain = tar_bytes(&contract_entries());
    let dir = s.dir.path();
    write(&dir.join("a.tar"), &plain);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    write(&dir.join("a.tgz"), &gz.finish().unwrap());
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&plain).unwrap();
    write(&dir.join("a.txz"), &xz.finish().unwrap());
    write(
        &dir.join("a.tar.zst"),
        &zstd::encode_all(&plain[..], 3).unwrap(),
    );
    let want = format!("{}-example", sha256(CONTRACT_MANIFEST.as_bytes()).to_hex());
    for f in ["a.tar", "a.tgz", "a.txz", "a.tar.zst"] {
        let out =
            import_archive(&s.root, "example", &dir.join(f), &ImportOptions::default()).unwrap();
        assert_eq!(out.name.as_str(), want, "{f}");
    }
    assert_eq!(s.store_names(), vec![want]);
}

#[test]
fn archive_and_directory_of_the_same_tree_agree() {
    let s = Scratch::new();
    let src = s.src("src");
    contract_tree(&src);
    fs::create_dir_all(src.join("usr/share/empty")).unwrap();
    fs::hard_link(src.join("bin/hi"), src.join("usr/hi2")).unwrap();
    let tarball = s.dir.path().join("t.tar");
    let st = std::process::Command::new("tar")
        .args(["-C"])
        .arg(&src)
        .args(["-cf"])
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let a = import_dir(&s.root, "same", &src, &ImportOptions::default()).unwrap();
    let b = import_archive(&s.root, "same", &tarball, &ImportOptions::default()).unwrap();
    assert_eq!(a.name, b.name);
    assert!(b.existed);
}

#[test]
fn a_later_entry_replaces_an_earlier_one() {
    let s = Scratch::new();
    let t = s.dir.path().join("dup.tar");
    write(
        &t,
        &tar_bytes(&[
            e("f", EntryType::Regular, 0o644, b"old", ""),
            e("f", EntryType::Symlink, 0o777, b"", "elsewhere"),
            e("f", EntryType::Regular, 0o644, b"new", ""),
        ]),
    );
    let out = import_archive(&s.root, "dup", &t, &ImportOptions::default()).unwrap();
    assert_eq!(fs::read(out.path.join("f")).unwrap(), b"new");
}

/// Imports `entries` and returns the error, after checking that nothing
/// was left in the root.
fn refused(entries: &[E]) -> String {
    let s = Scratch::new();
    let t = s.dir.path().join("evil.tar");
    write(&t, &tar_bytes(entries));
    let err = import_archive(&s.root, "evil", &t, &ImportOptions::default()).unwrap_err();
    s.assert_empty();
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(
        msg.starts_with(&t.display().to_string()),
        "names the archive: {msg}"
    );
    msg
}

#[test]
fn refuses_absolute_paths() {
    let m = refused(&[e("/etc/passwd", EntryType::Regular, 0o644, b"x", "")]);
    assert!(
        m.ends_with("entry '/etc/passwd' has an absolute path"),
        "{m}"
    );
}

#[test]
fn refuses_dot_dot() {
    let m = refused(&[e("../x", EntryType::Regular, 0o644, b"x", "")]);
    assert!(m.ends_with("entry '../x' contains a '..' component"), "{m}");
    let m = refused(&[e("a/b/../../../x", EntryType::Regular, 0o644, b"x", "")]);
    assert!(m.contains("'a/b/../../../x'"), "{m}");
}

#[test]
fn refuses_writing_through_a_symbolic_link() {
    let m = refused(&[
        e("etc", EntryType::Symlink, 0o777, b"", "/etc"),
        e(
            "etc/passwd",
            EntryType::Regular,
            0o644,
            b"root::0:0::/:/bin/sh\n",
            "",
        ),
    ]);
    assert!(
        m.ends_with("entry 'etc/passwd' would be written through the symbolic link 'etc'"),
        "{m}"
    );
    let m = refused(&[
        e("d", EntryType::Directory, 0o755, b"", ""),
        e("d/up", EntryType::Symlink, 0o777, b"", ".."),
        e("d/up/d/x", EntryType::Directory, 0o755, b"", ""),
    ]);
    assert!(m.contains("through the symbolic link 'd/up'"), "{m}");
}

#[test]
fn refuses_hard_links_out_of_the_archive() {
    let m = refused(&[e("x", EntryType::Link, 0o644, b"", "/etc/shadow")]);
    assert!(
        m.ends_with("entry '/etc/shadow' has an absolute path"),
        "{m}"
    );
    let m = refused(&[e("x", EntryType::Link, 0o644, b"", "../../etc/shadow")]);
    assert!(m.contains("contains a '..' component"), "{m}");
    let m = refused(&[e("x", EntryType::Link, 0o644, b"", "not-here")]);
    assert!(
        m.ends_with(
            "entry 'x' is a hard link to 'not-here', which is not a file earlier in the archive"
        ),
        "{m}"
    );
    let m = refused(&[
        e("l", EntryType::Symlink, 0o777, b"", "/etc/shadow"),
        e("x", EntryType::Link, 0o644, b"", "l"),
    ]);
    assert!(m.contains("hard link to 'l'"), "{m}");
}

#[test]
fn refuses_devices_and_fifos() {
    let m = refused(&[e("dev/null", EntryType::Char, 0o666, b"", "")]);
    assert!(
        m.ends_with("entry 'dev/null' is a character device node, which a store item cannot hold"),
        "{m}"
    );
    let m = refused(&[e("dev/sda", EntryType::Block, 0o660, b"", "")]);
    assert!(m.contains("block device node"), "{m}");
    let m = refused(&[e("p", EntryType::Fifo, 0o644, b"", "")]);
    assert!(m.contains("'p' is a fifo"), "{m}");
}

#[test]
fn refuses_a_file_over_a_directory() {
    let m = refused(&[
        e("d/", EntryType::Directory, 0o755, b"", ""),
        e("d", EntryType::Regular, 0o644, b"x", ""),
    ]);
    assert!(m.contains("entry 'd' conflicts with 'd'"), "{m}");
}

#[test]
fn a_bad_entry_after_many_files_leaves_nothing() {
    let data = vec![7u8; 50_000];
    let names: Vec<String> = (0..300).map(|i| format!("usr/lib/f{i}")).collect();
    let mut entries: Vec<E> = names
        .iter()
        .map(|n| e(n, EntryType::Regular, 0o644, &data, ""))
        .collect();
    entries.push(e("../../escape", EntryType::Regular, 0o644, b"x", ""));
    let m = refused(&entries);
    assert!(m.contains("'../../escape'"), "{m}");
}

#[test]
fn truncated_and_foreign_files_are_refused() {
    let s = Scratch::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar_bytes(&contract_entries())).unwrap();
    let full = gz.finish().unwrap();
    let t = s.dir.path().join("cut.tgz");
    write(&t, &full[..full.len() / 2]);
    let err = import_archive(&s.root, "cut", &t, &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, ImportError::Archive { .. }), "{err}");
    assert!(err.to_string().contains("cannot read archive"), "{err}");
    s.assert_empty();
    let junk = s.dir.path().join("junk.bin");
    write(&junk, b"this is not an archive at all");
    let err = import_archive(&s.root, "junk", &junk, &ImportOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: is not a tar archive (plain, gzip, xz or zstd)",
            junk.display()
        )
    );
}

#[test]
fn setuid_entries_are_imported_without_the_bit() {
    let s = Scratch::new();
    let t = s.dir.path().join("suid.tar");
    write(
        &t,
        &tar_bytes(&[e("usr/bin/passwd", EntryType::Regular, 0o4755, b"bin", "")]),
    );
    let out = import_archive(&s.root, "suid", &t, &ImportOptions::default()).unwrap();
    assert_eq!(out.dropped.len(), 1);
    assert_eq!(out.dropped[0].entry, "usr/bin/passwd");
    assert_eq!(out.dropped[0].mode, 0o4755);
}
