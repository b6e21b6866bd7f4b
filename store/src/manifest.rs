//! The canonical manifest, `#mtree fruix-v1`: writer, strict parser, digest.
//!
//! The writer is the definition of canonical: the parser re-serialises every
//! line it reads and refuses the manifest unless the bytes match, so that one
//! tree has exactly one manifest and therefore one digest.

use std::collections::HashSet;

use crate::digest::{Digest, hex};
use crate::error::ManifestError;
use crate::escape::{escape_into, unescape};
use crate::hash::sha256;

/// The first line of every manifest, without its newline.
pub const HEADER: &str = "#mtree fruix-v1";

/// Mode of directories and non-executable files in the store.
pub const MODE_DIR: u32 = 0o555;
/// Mode of files that had an execute bit.
pub const MODE_EXEC: u32 = 0o555;
/// Mode of files that had no execute bit.
pub const MODE_FILE: u32 = 0o444;

/// What an entry is, with what the manifest records of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory (always mode 0555).
    Dir,
    /// A regular file.
    File {
        /// Whether the source had any execute bit (mode 0555, else 0444).
        executable: bool,
        /// Size in bytes.
        size: u64,
        /// SHA-256 of the content.
        sha256: Digest,
    },
    /// A symbolic link, never followed.
    Link {
        /// The raw target bytes.
        target: Vec<u8>,
    },
}

impl EntryKind {
    /// The mtree `type=` word.
    pub fn type_name(&self) -> &'static str {
        match self {
            EntryKind::Dir => "dir",
            EntryKind::File { .. } => "file",
            EntryKind::Link { .. } => "link",
        }
    }

    /// The permission bits the entry has on disk (links have none of their own).
    pub fn mode(&self) -> Option<u32> {
        match self {
            EntryKind::Dir => Some(MODE_DIR),
            EntryKind::File {
                executable: true, ..
            } => Some(MODE_EXEC),
            EntryKind::File {
                executable: false, ..
            } => Some(MODE_FILE),
            EntryKind::Link { .. } => None,
        }
    }
}

/// One line of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the item root, raw bytes, `/` between components;
    /// empty for the root itself.
    pub path: Vec<u8>,
    /// What the entry is.
    pub kind: EntryKind,
}

impl Entry {
    /// Appends the entry's canonical line, newline included.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        if self.path.is_empty() {
            out.push(b'.');
        } else {
            out.extend_from_slice(b"./");
            escape_into(&self.path, out);
        }
        match &self.kind {
            EntryKind::Dir => out.extend_from_slice(b" type=dir mode=0555"),
            EntryKind::File {
                executable,
                size,
                sha256,
            } => {
                let mode = if *executable { "0555" } else { "0444" };
                out.extend_from_slice(
                    format!(
                        " type=file mode={mode} size={size} sha256={}",
                        hex(&sha256.0)
                    )
                    .as_bytes(),
                );
            }
            EntryKind::Link { target } => {
                out.extend_from_slice(b" type=link link=");
                escape_into(target, out);
            }
        }
        out.push(b'\n');
    }

    /// The parent directory's path (`None` for the root).
    pub fn parent(&self) -> Option<&[u8]> {
        parent_of(&self.path)
    }

    /// The last component of the path (empty for the root).
    pub fn file_name(&self) -> &[u8] {
        match self.path.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.path[i + 1..],
            None => &self.path,
        }
    }
}

/// Parent of a relative path: `a/b` -> `a`, `a` -> `` (the root), `` -> none.
pub fn parent_of(path: &[u8]) -> Option<&[u8]> {
    if path.is_empty() {
        return None;
    }
    Some(match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => &[],
    })
}

/// A canonical manifest: entries sorted bytewise by path, the root first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<Entry>,
}

impl Manifest {
    /// Builds a manifest from entries in any order. Fails if the set is not a
    /// tree: no root directory, a duplicate, a bad path, or an orphan.
    pub fn from_entries(mut entries: Vec<Entry>) -> Result<Manifest, ManifestError> {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        check_tree(&entries, |i| i + 2)?;
        Ok(Manifest { entries })
    }

    /// The entries, sorted, root first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The canonical bytes of the manifest file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.entries.len() * 100);
        out.extend_from_slice(HEADER.as_bytes());
        out.push(b'\n');
        for e in &self.entries {
            e.write_line(&mut out);
        }
        out
    }

    /// The item digest: SHA-256 of the whole manifest file.
    pub fn digest(&self) -> Digest {
        sha256(&self.to_bytes())
    }

    /// Total bytes of regular files.
    pub fn content_size(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }

    /// Parses a manifest file, refusing anything not in canonical form.
    /// Errors name the 1-based line.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let body = bytes
            .strip_prefix(HEADER.as_bytes())
            .and_then(|b| b.strip_prefix(b"\n"))
            .ok_or_else(|| ManifestError::new(1, format!("first line is not '{HEADER}'")))?;
        let body = match body.strip_suffix(b"\n") {
            Some(b) => b,
            None if body.is_empty() => body,
            None => {
                let line = 1 + bytes.iter().filter(|&&b| b == b'\n').count();
                return Err(ManifestError::new(line, "last line has no newline"));
            }
        };
        let mut entries = Vec::new();
        let mut line_buf = Vec::new();
        let lines = body.split(|&b| b == b'\n').filter(|_| !body.is_empty());
        for (i, line) in lines.enumerate() {
            let lineno = i + 2;
            if line.is_empty() {
                return Err(ManifestError::new(lineno, "empty line"));
            }
            let entry = parse_line(line).map_err(|m| ManifestError::new(lineno, m))?;
            line_buf.clear();
            entry.write_line(&mut line_buf);
            if line_buf[..line_buf.len() - 1] != *line {
                return Err(ManifestError::new(
                    lineno,
                    "not in canonical form (keyword order, spacing, escaping or number format)",
                ));
            }
            entries.push(entry);
        }
        check_tree(&entries, |i| i + 2)?;
        Ok(Manifest { entries })
    }
}

fn parse_line(line: &[u8]) -> Result<Entry, String> {
    let mut fields = line.split(|&b| b == b' ');
    let raw_path = fields.next().unwrap_or_default();
    let path = if raw_path == b"." {
        Vec::new()
    } else {
        let rest = raw_path
            .strip_prefix(b"./")
            .ok_or("path does not start with './'")?;
        let p = unescape(rest).map_err(|e| format!("path: {e}"))?;
        check_path(&p)?;
        p
    };
    let keyword = |f: Option<&[u8]>, key: &str| -> Result<Vec<u8>, String> {
        let f = f.ok_or_else(|| format!("missing keyword '{key}'"))?;
        f.strip_prefix(key.as_bytes())
            .and_then(|v| v.strip_prefix(b"="))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                format!(
                    "expected keyword '{key}=', found '{}'",
                    String::from_utf8_lossy(f)
                )
            })
    };
    let kind = match keyword(fields.next(), "type")?.as_slice() {
        b"dir" => {
            if keyword(fields.next(), "mode")? != b"0555" {
                return Err("directory mode is not 0555".into());
            }
            EntryKind::Dir
        }
        b"file" => {
            let executable = match keyword(fields.next(), "mode")?.as_slice() {
                b"0555" => true,
                b"0444" => false,
                _ => return Err("file mode is neither 0444 nor 0555".into()),
            };
            let size = std::str::from_utf8(&keyword(fields.next(), "size")?)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("size is not a decimal number")?;
            let sha = keyword(fields.next(), "sha256")?;
            let sha256 = std::str::from_utf8(&sha)
                .ok()
                .and_then(Digest::from_hex)
                .ok_or("sha256 is not 64 lowercase hex digits")?;
            EntryKind::File {
                executable,
                size,
                sha256,
            }
        }
        b"link" => {
            let t = keyword(fields.next(), "link")?;
            let target = unescape(&t).map_err(|e| format!("link target: {e}"))?;
            if target.is_empty() {
                return Err("link target is empty".into());
            }
            EntryKind::Link { target }
        }
        other => {
            return Err(format!("unknown type '{}'", String::from_utf8_lossy(other)));
        }
    };
    if let Some(extra) = fields.next() {
        return Err(format!(
            "unexpected keyword '{}'",
            String::from_utf8_lossy(extra)
        ));
    }
    Ok(Entry { path, kind })
}

/// A relative path's components must be real names: no empty, `.`, `..`,
/// and no NUL byte (which no file name can hold).
pub(crate) fn check_path(p: &[u8]) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty path after './'".into());
    }
    for c in p.split(|&b| b == b'/') {
        if c.is_empty() || c == b"." || c == b".." {
            return Err("path has an empty, '.' or '..' component".into());
        }
        if c.contains(&0) {
            return Err("path has a NUL byte".into());
        }
    }
    Ok(())
}

/// Checks sortedness, uniqueness, the root and that every parent is a
/// directory listed before its children. `line_of` maps an index to the line
/// number used in errors.
fn check_tree(entries: &[Entry], line_of: impl Fn(usize) -> usize) -> Result<(), ManifestError> {
    match entries.first() {
        Some(Entry {
            path,
            kind: EntryKind::Dir,
        }) if path.is_empty() => {}
        _ => {
            return Err(ManifestError::new(
                line_of(0),
                "the first entry is not the root directory '.'",
            ));
        }
    }
    let mut dirs: HashSet<&[u8]> = HashSet::new();
    dirs.insert(&[]);
    for (i, pair) in entries.windows(2).enumerate() {
        if pair[0].path >= pair[1].path {
            return Err(ManifestError::new(
                line_of(i + 1),
                "entries are not in strictly increasing bytewise path order",
            ));
        }
    }
    for (i, e) in entries.iter().enumerate().skip(1) {
        check_path(&e.path).map_err(|m| ManifestError::new(line_of(i), m))?;
        let parent = e.parent().unwrap_or_default();
        if !dirs.contains(parent) {
            return Err(ManifestError::new(
                line_of(i),
                "parent directory is not listed before the entry",
            ));
        }
        if e.kind == EntryKind::Dir {
            dirs.insert(&e.path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, exec: bool, content: &[u8]) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File {
                executable: exec,
                size: content.len() as u64,
                sha256: sha256(content),
            },
        }
    }
    fn dir(path: &str) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::Dir,
        }
    }

    /// The contract's own example, byte for byte.
    const CONTRACT_EXAMPLE: &str = include_str!("../tests/fixtures/contract-example.mtree");

    #[test]
    fn contract_example_is_written_exactly() {
        let m = Manifest::from_entries(vec![
            file("etc/a file", false, b"x\n"),
            dir(""),
            Entry {
                path: b"bin/hello".to_vec(),
                kind: EntryKind::Link {
                    target: b"hi".to_vec(),
                },
            },
            dir("etc"),
            file("bin/hi", true, b"#!/bin/sh\necho hi\n"),
            dir("bin"),
        ])
        .unwrap();
        assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), CONTRACT_EXAMPLE);
        assert_eq!(Manifest::parse(CONTRACT_EXAMPLE.as_bytes()).unwrap(), m);
        assert_eq!(m.digest(), sha256(CONTRACT_EXAMPLE.as_bytes()));
        // As sha256sum(1) gives it for the fixture file.
        assert_eq!(
            m.digest().to_hex(),
            "0e698eb2fddfc8a2724018dc10c8347f7846f59dac4bb3b048f71c61e4d42399"
        );
    }

    #[test]
    fn bytewise_order_puts_space_before_slash() {
        let m = Manifest::from_entries(vec![
            dir(""),
            dir("a"),
            file("a/b", false, b""),
            file("a b", false, b""),
            file("a0", false, b""),
        ])
        .unwrap();
        let paths: Vec<_> = m
            .entries()
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect();
        assert_eq!(paths, ["", "a", "a b", "a/b", "a0"]);
    }

    #[test]
    fn parser_refuses_non_canonical_input_naming_the_line() {
        let good = CONTRACT_EXAMPLE;
        let cases: Vec<(String, usize, &str)> = vec![
            (
                good.replacen("#mtree fruix-v1", "#mtree v2.0", 1),
                1,
                "first line",
            ),
            (
                good.replacen("./bin type=dir mode=0555", "./bin mode=0555 type=dir", 1),
                3,
                "expected keyword 'type='",
            ),
            (
                good.replacen("./bin type=dir mode=0555", "./bin type=dir  mode=0555", 1),
                3,
                "expected keyword",
            ),
            (
                good.replacen("./bin type=dir mode=0555", "./bin type=dir mode=0755", 1),
                3,
                "directory mode",
            ),
            (good.replacen("size=18", "size=018", 1), 5, "canonical form"),
            (
                good.replacen("size=18", "size=18 uid=0", 1),
                5,
                "expected keyword 'sha256='",
            ),
            (
                good.replacen("link=hi", "link=hi uid=0", 1),
                4,
                "unexpected keyword",
            ),
            (
                good.replacen("sha256=2990", "sha256=2A90", 1),
                5,
                "lowercase hex",
            ),
            (
                good.replacen("a\\040file", "a file", 1),
                7,
                "expected keyword",
            ),
            (
                good.replacen("a\\040file", "a\\141file", 1),
                7,
                "escaped but must be",
            ),
            (
                good.replacen("./bin/hello", "./bin/zz", 1),
                5,
                "bytewise path order",
            ),
            (
                good.replacen("./etc type=dir", "./d type=dir", 1),
                7,
                "parent directory",
            ),
            (
                good.replacen("type=link", "type=fifo", 1),
                4,
                "unknown type",
            ),
            (
                good.replacen("./bin/hi", "bin/hi", 1),
                5,
                "does not start with './'",
            ),
            (
                good.replacen("./bin/hello", "./bin/../hello", 1),
                4,
                "'..' component",
            ),
            (good.trim_end().to_owned(), 7, "no newline"),
            (
                good.replacen("./bin type", "\n./bin type", 1),
                3,
                "empty line",
            ),
        ];
        for (text, line, want) in cases {
            let err = Manifest::parse(text.as_bytes()).unwrap_err();
            assert_eq!(err.line, line, "{want}: {err}");
            assert!(err.message.contains(want), "want '{want}', got: {err}");
        }
    }

    #[test]
    fn empty_and_rootless_manifests_are_refused() {
        assert!(
            Manifest::parse(b"#mtree fruix-v1\n")
                .unwrap_err()
                .message
                .contains("root")
        );
        assert!(Manifest::parse(b"#mtree fruix-v1\n./a type=dir mode=0555\n").is_err());
        assert!(Manifest::from_entries(vec![dir(""), dir("a"), dir("a")]).is_err());
        assert!(Manifest::from_entries(vec![dir(""), file("x/y", false, b"")]).is_err());
    }
}
