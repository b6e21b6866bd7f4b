//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use fruix_store::StoreRoot;

/// The contract's example manifest, byte for byte.
pub const CONTRACT_MANIFEST: &str = include_str!("../fixtures/contract-example.mtree");

/// Writes the contract example's tree under `dir`.
pub fn contract_tree(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("etc")).unwrap();
    write_mode(&dir.join("bin/hi"), b"#!/bin/sh\necho hi\n", 0o755);
    symlink("hi", dir.join("bin/hello")).unwrap();
    write_mode(&dir.join("etc/a file"), b"x\n", 0o644);
}

/// Writes a file and sets its mode.
pub fn write_mode(path: &Path, content: &[u8], mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A temporary directory with a fresh root inside.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub root: StoreRoot,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let root = StoreRoot::new(dir.path().join("root"));
        Scratch { dir, root }
    }

    /// A fresh source directory inside the scratch space.
    pub fn src(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// Names in ROOT/store.
    pub fn store_names(&self) -> Vec<String> {
        names(&self.root.store_dir())
    }

    /// Names in the manifests directory.
    pub fn manifest_names(&self) -> Vec<String> {
        names(&self.root.manifests_dir())
    }

    /// Names in the work directory of imports.
    pub fn tmp_names(&self) -> Vec<String> {
        names(&self.root.tmp_dir())
    }

    /// Asserts that the root holds no item, manifest or work directory.
    pub fn assert_empty(&self) {
        assert_eq!(self.store_names(), Vec::<String>::new(), "store");
        assert_eq!(self.manifest_names(), Vec::<String>::new(), "manifests");
        assert_eq!(self.tmp_names(), Vec::<String>::new(), "tmp");
    }
}

/// Sorted names in a directory (empty if it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Runs `f` with `dir` (a sealed store directory) made writable.
pub fn unsealed<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let out = f();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
    out
}
