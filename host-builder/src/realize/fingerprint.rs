//! Cheap identities of build inputs, for deciding whether a package must be
//! realized again.
//!
//! A directory or file is identified by what `lstat` says of every entry
//! (path, type, mode, size, mtime with nanoseconds, inode, link target),
//! the way make and ccache's direct mode decide. Reading every byte would
//! make a no-change rebuild cost as much as an import. An input edited in
//! place without any change to size or mtime goes unnoticed, which is also
//! true of make.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// SHA-256 over the `lstat` data of `path` and everything below it, in a
/// fixed order.
pub fn tree(path: &Path) -> io::Result<String> {
    let mut h = Sha256::new();
    visit(path, b"", &mut h)?;
    Ok(fruix_store::hash::hex(&h.finalize()))
}

fn visit(path: &Path, rel: &[u8], h: &mut Sha256) -> io::Result<()> {
    let m = fs::symlink_metadata(path)?;
    h.update(rel);
    h.update(
        format!(
            "\0{:o} {} {}.{} {}\0",
            m.mode(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ino()
        )
        .as_bytes(),
    );
    if m.file_type().is_symlink() {
        h.update(fs::read_link(path)?.as_os_str().as_bytes());
    } else if m.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for n in names {
            let mut r = rel.to_vec();
            r.push(b'/');
            r.extend_from_slice(n.as_bytes());
            visit(&path.join(&n), &r, h)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_with_content_size_names_and_modes() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("d/f"), b"one").unwrap();
        let a = tree(t.path()).unwrap();
        assert_eq!(a, tree(t.path()).unwrap(), "stable");
        fs::write(t.path().join("d/f"), b"two!").unwrap();
        let b = tree(t.path()).unwrap();
        assert_ne!(a, b, "size");
        fs::rename(t.path().join("d/f"), t.path().join("d/g")).unwrap();
        let c = tree(t.path()).unwrap();
        assert_ne!(b, c, "name");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(t.path().join("d/g"), fs::Permissions::from_mode(0o700)).unwrap();
        assert_ne!(c, tree(t.path()).unwrap(), "mode");
    }
}
