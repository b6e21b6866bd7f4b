//! Import from directories: the contract's vector, normalisation,
//! idempotence, refusals and what an interrupted import leaves.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::process::Command;

use common::*;
use fruix_store::hash::sha256;
use fruix_store::{ImportError, ImportOptions, Manifest, import_dir};

#[test]
fn contract_tree_imports_to_the_contract_manifest() {
    let s = Scratch::new();
    let src = s.src("src");
    contract_tree(&src);
    let out = import_dir(&s.root, "example", &src, &ImportOptions::default()).unwrap();
    let digest = sha256(CONTRACT_MANIFEST.as_bytes()).to_hex();
    assert_eq!(out.name.as_str(), format!("{digest}-example"));
    assert!(!out.existed);
    let on_disk = fs::read(s.root.manifest_path(&out.name)).unwrap();
    assert_eq!(String::from_utf8(on_disk).unwrap(), CONTRACT_MANIFEST);
    assert_eq!(out.path, s.root.store_dir().join(out.name.as_str()));
    assert_eq!(s.tmp_names(), Vec::<String>::new());
}

#[test]
fn item_files_have_store_modes_and_mtime_one() {
    let s = Scratch::new();
    let src = s.src("src");
    contract_tree(&src);
    let out = import_dir(&s.root, "example", &src, &ImportOptions::default()).unwrap();
    let expect = [
        ("", 0o555),
        ("bin", 0o555),
        ("bin/hi", 0o555),
        ("etc", 0o555),
        ("etc/a file", 0o444),
    ];
    for (rel, mode) in expect {
        let m = fs::symlink_metadata(out.path.join(rel)).unwrap();
        assert_eq!(m.mode() & 0o7777, mode, "{rel}");
        assert_eq!(m.mtime(), 1, "{rel}");
        assert_eq!(m.atime(), 1, "{rel}");
    }
    let link = fs::symlink_metadata(out.path.join("bin/hello")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(link.mtime(), 1);
    assert_eq!(
        fs::read_link(out.path.join("bin/hello")).unwrap().to_str(),
        Some("hi")
    );
}

#[test]
fn importing_identical_content_again_writes_nothing() {
    let s = Scratch::new();
    let src = s.src("src");
    contract_tree(&src);
    let first = import_dir(&s.root, "example", &src, &ImportOptions::default()).unwrap();
    let item_meta = fs::metadata(&first.path).unwrap();
    let man_meta = fs::metadata(s.root.manifest_path(&first.name)).unwrap();
    // Another source with the same content but other times and modes of
    // non-executable files.
    let src2 = s.src("src2");
    contract_tree(&src2);
    fs::set_permissions(src2.join("etc/a file"), fs::Permissions::from_mode(0o600)).unwrap();
    let second = import_dir(&s.root, "example", &src2, &ImportOptions::default()).unwrap();
    assert!(second.existed);
    assert_eq!(second.name, first.name);
    let item_after = fs::metadata(&second.path).unwrap();
    let man_after = fs::metadata(s.root.manifest_path(&second.name)).unwrap();
    assert_eq!(
        (
            item_after.ino(),
            item_after.ctime(),
            item_after.ctime_nsec()
        ),
        (item_meta.ino(), item_meta.ctime(), item_meta.ctime_nsec())
    );
    assert_eq!(
        (man_after.ino(), man_after.ctime_nsec()),
        (man_meta.ino(), man_meta.ctime_nsec())
    );
    assert_eq!(s.store_names().len(), 1);
    assert_eq!(s.tmp_names(), Vec::<String>::new());
}

#[test]
fn a_changed_file_gives_another_item() {
    let s = Scratch::new();
    let src = s.src("src");
    contract_tree(&src);
    let a = import_dir(&s.root, "example", &src, &ImportOptions::default()).unwrap();
    fs::write(src.join("etc/a file"), b"y\n").unwrap();
    let b = import_dir(&s.root, "example", &src, &ImportOptions::default()).unwrap();
    assert_ne!(a.name, b.name);
    // Making a file executable changes the item too.
    fs::set_permissions(src.join("etc/a file"), fs::Permissions::from_mode(0o744)).unwrap();
    let c = import_dir(&s.root, "example", &src, &ImportOptions::default()).unwrap();
    assert_ne!(b.name, c.name);
    assert_eq!(s.store_names().len(), 3);
}

#[test]
fn special_bits_are_dropped_and_listed() {
    let s = Scratch::new();
    let src = s.src("src");
    fs::create_dir(src.join("tmp")).unwrap();
    fs::set_permissions(src.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    write_mode(&src.join("passwd"), b"suid\n", 0o4755);
    write_mode(&src.join("wall"), b"sgid\n", 0o2555);
    let out = import_dir(&s.root, "bits", &src, &ImportOptions::default()).unwrap();
    let listed: Vec<(String, u32)> = out
        .dropped
        .iter()
        .map(|d| (d.entry.clone(), d.mode))
        .collect();
    let mut listed = listed;
    listed.sort();
    assert_eq!(
        listed,
        [
            ("passwd".to_owned(), 0o4755),
            ("tmp".to_owned(), 0o1777),
            ("wall".to_owned(), 0o2555)
        ]
    );
    for (rel, mode) in [("passwd", 0o555), ("wall", 0o555), ("tmp", 0o555)] {
        assert_eq!(
            fs::metadata(out.path.join(rel)).unwrap().mode() & 0o7777,
            mode,
            "{rel}"
        );
    }
}

#[test]
fn hard_links_inside_the_tree_stay_hard_links() {
    let s = Scratch::new();
    let src = s.src("src");
    fs::create_dir(src.join("bin")).unwrap();
    write_mode(&src.join("bin/sh"), b"shell", 0o755);
    fs::hard_link(src.join("bin/sh"), src.join("bin/rsh")).unwrap();
    fs::hard_link(src.join("bin/sh"), src.join("sh2")).unwrap();
    let out = import_dir(&s.root, "links", &src, &ImportOptions::default()).unwrap();
    let ino = |p: &str| fs::metadata(out.path.join(p)).unwrap().ino();
    assert_eq!(ino("bin/sh"), ino("bin/rsh"));
    assert_eq!(ino("bin/sh"), ino("sh2"));
    let m = Manifest::parse(&fs::read(s.root.manifest_path(&out.name)).unwrap()).unwrap();
    let files = m
        .entries()
        .iter()
        .filter(|e| e.kind.type_name() == "file")
        .count();
    assert_eq!(files, 3, "each link is a file entry of its own");
}

#[test]
fn empty_directories_and_files_are_kept() {
    let s = Scratch::new();
    let src = s.src("src");
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    fs::write(src.join("a/empty"), b"").unwrap();
    let out = import_dir(&s.root, "empty", &src, &ImportOptions::default()).unwrap();
    let text = String::from_utf8(out.manifest.to_bytes()).unwrap();
    assert!(text.contains("./a/b/c type=dir mode=0555\n"), "{text}");
    assert!(text.contains("./a/empty type=file mode=0444 size=0 sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"));
}

#[test]
fn refuses_fifos_and_sockets_naming_the_entry() {
    for kind in ["fifo", "socket"] {
        let s = Scratch::new();
        let src = s.src("src");
        contract_tree(&src);
        fs::create_dir(src.join("run")).unwrap();
        let p = src.join("run/thing");
        let _listener;
        if kind == "fifo" {
            assert!(Command::new("mkfifo").arg(&p).status().unwrap().success());
        } else {
            _listener = UnixListener::bind(&p).unwrap();
        }
        let err = import_dir(&s.root, "bad", &src, &ImportOptions::default()).unwrap_err();
        assert!(matches!(err, ImportError::UnsupportedType { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("entry 'run/thing' is a ") && msg.contains(kind),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        s.assert_empty();
    }
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root to mknod a device (the root tier: --features root-tests)"
)]
fn refuses_device_nodes() {
    // mknod needs root; the test command runs as root (see README).
    assert!(
        fruix_store::root::running_as_root(),
        "this test creates a device node and must run as root (the README's test command does)"
    );
    let s = Scratch::new();
    let src = s.src("src");
    let st = Command::new("mknod")
        .arg(src.join("null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(st.success());
    let err = import_dir(&s.root, "dev", &src, &ImportOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: entry 'null' is a character device node, which a store item cannot hold",
            src.display()
        )
    );
    s.assert_empty();
}

#[test]
fn refuses_invalid_package_names_before_writing() {
    let s = Scratch::new();
    let src = s.src("src");
    contract_tree(&src);
    for bad in ["", ".hidden", "-x", "a b", "a/b", &"x".repeat(201)] {
        let err = import_dir(&s.root, bad, &src, &ImportOptions::default()).unwrap_err();
        assert!(matches!(err, ImportError::Name(_)), "{bad}: {err}");
    }
    assert!(!s.root.path().exists(), "nothing was created");
}

#[test]
fn a_failure_late_in_the_import_leaves_nothing() {
    let s = Scratch::new();
    let src = s.src("src");
    for i in 0..200 {
        fs::write(src.join(format!("f{i:03}")), vec![i as u8; 10_000]).unwrap();
    }
    fs::create_dir(src.join("zz")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(src.join("zz/pipe"))
            .status()
            .unwrap()
            .success()
    );
    assert!(import_dir(&s.root, "late", &src, &ImportOptions::default()).is_err());
    s.assert_empty();
}

#[test]
fn leftovers_of_a_killed_import_are_swept_by_the_next_one() {
    let s = Scratch::new();
    let src = s.src("src");
    contract_tree(&src);
    // What a killed import leaves: a work directory with a sealed item, and
    // a manifest renamed into place whose item never followed.
    let work = s.root.tmp_dir().join("import-999999-0-x/item/sub");
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("f"), b"partial").unwrap();
    fs::set_permissions(&work, fs::Permissions::from_mode(0o555)).unwrap();
    fs::create_dir_all(s.root.manifests_dir()).unwrap();
    let orphan = format!("{}-orphan.mtree", "0".repeat(64));
    fs::write(s.root.manifests_dir().join(&orphan), b"#mtree fruix-v1\n").unwrap();
    let out = import_dir(&s.root, "example", &src, &ImportOptions::default()).unwrap();
    assert_eq!(s.tmp_names(), Vec::<String>::new());
    assert_eq!(s.manifest_names(), vec![format!("{}.mtree", out.name)]);
}

#[test]
fn one_job_and_many_jobs_give_the_same_item() {
    let s = Scratch::new();
    let src = s.src("src");
    for d in 0..5 {
        fs::create_dir(src.join(format!("d{d}"))).unwrap();
        for f in 0..40 {
            fs::write(
                src.join(format!("d{d}/f{f}")),
                format!("{d}-{f}").repeat(f * 100),
            )
            .unwrap();
        }
    }
    let a = import_dir(&s.root, "p", &src, &ImportOptions { jobs: 1 }).unwrap();
    let s2 = Scratch::new();
    let b = import_dir(&s2.root, "p", &src, &ImportOptions { jobs: 7 }).unwrap();
    assert_eq!(a.name, b.name);
}

#[test]
fn a_derived_item_shares_inodes_and_keeps_the_parents_hashes() {
    let s = Scratch::new();
    let src = s.src("src");
    contract_tree(&src);
    fs::create_dir_all(src.join("usr/include")).unwrap();
    fs::write(src.join("usr/include/x.h"), b"int x;\n").unwrap();
    let parent = import_dir(&s.root, "world", &src, &ImportOptions::default()).unwrap();
    let keep_bin = |p: &[u8]| p.starts_with(b"bin");
    let child = fruix_store::derive_item(&s.root, "runtime", &parent.name, keep_bin).unwrap();
    let text = String::from_utf8(child.manifest.to_bytes()).unwrap();
    assert_eq!(
        text,
        CONTRACT_MANIFEST
            .lines()
            .filter(|l| !l.starts_with("./etc"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let ino = |p: &std::path::Path| fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&child.path.join("bin/hi")),
        ino(&parent.path.join("bin/hi"))
    );
    // A selected entry whose directory was not selected still gets it.
    let deep = fruix_store::derive_item(&s.root, "headers", &parent.name, |p: &[u8]| {
        p == b"usr/include/x.h"
    })
    .unwrap();
    let paths: Vec<_> = deep
        .manifest
        .entries()
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    assert_eq!(paths, ["", "usr", "usr/include", "usr/include/x.h"]);
    let r = fruix_store::verify_root(&s.root, &fruix_store::VerifyOptions::default()).unwrap();
    assert!(r.is_clean(), "{:?}", r.findings);
    // Deriving again finds the same item.
    assert!(
        fruix_store::derive_item(&s.root, "runtime", &parent.name, keep_bin)
            .unwrap()
            .existed
    );
}
