//! `fruix scan-prefixes`: where old install prefixes still stand in an
//! item, by file and count. Exit 0 when none is left, 1 when some are.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::Outcome;
use crate::cli::ScanArgs;

/// One file that still holds a prefix.
#[derive(Debug, serde::Serialize, PartialEq, Eq)]
pub struct Hit {
    /// The file, relative to the scanned directory.
    pub file: String,
    /// The prefix found.
    pub prefix: String,
    /// How many times.
    pub count: usize,
    /// What the file is: `elf`, `libtool`, `pkg-config`, `compiled-guile`,
    /// `text` or `binary`.
    pub kind: &'static str,
}

/// Scans every regular file under `dir` for each prefix.
pub fn scan(dir: &Path, prefixes: &[String]) -> Result<Vec<Hit>> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files).with_context(|| dir.display().to_string())?;
    files.sort();
    let mut hits = Vec::new();
    for rel in files {
        let path = dir.join(&rel);
        let bytes = fs::read(&path).with_context(|| path.display().to_string())?;
        for p in prefixes {
            let count = count(&bytes, p.as_bytes());
            if count > 0 {
                hits.push(Hit {
                    file: rel.clone(),
                    prefix: p.clone(),
                    count,
                    kind: kind(&rel, &bytes),
                });
            }
        }
    }
    Ok(hits)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || hay.len() < needle.len() {
        return 0;
    }
    let mut n = 0;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if &hay[i..i + needle.len()] == needle {
            n += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    n
}

fn kind(rel: &str, bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x7fELF") {
        if rel.ends_with(".go") {
            "compiled-guile"
        } else {
            "elf"
        }
    } else if rel.ends_with(".la") {
        "libtool"
    } else if rel.ends_with(".pc") {
        "pkg-config"
    } else if bytes.contains(&0) {
        "binary"
    } else {
        "text"
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(root, &e.path(), out)?;
        } else if ft.is_file() {
            let p = e.path();
            out.push(
                p.strip_prefix(root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    Ok(())
}

/// Runs `fruix scan-prefixes`.
pub fn run(a: ScanArgs) -> Result<Outcome> {
    let meta = fs::metadata(&a.item).with_context(|| a.item.display().to_string())?;
    if !meta.is_dir() {
        anyhow::bail!("{}: not a directory", a.item.display());
    }
    let hits = scan(&a.item, &a.prefixes)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&hits)?)?;
    } else {
        for h in &hits {
            writeln!(out, "{:>6} {} {} ({})", h.count, h.file, h.prefix, h.kind)?;
        }
    }
    Ok(if hits.is_empty() {
        Outcome::Success
    } else {
        Outcome::Findings
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_prefixes_by_file_and_kind() {
        let t = tempfile::tempdir().unwrap();
        let p = "/tmp/shepherd-freebsd-validate-install";
        fs::create_dir_all(t.path().join("lib/pkgconfig")).unwrap();
        fs::write(
            t.path().join("lib/pkgconfig/x.pc"),
            format!("prefix={p}\nlibdir={p}/lib\n"),
        )
        .unwrap();
        fs::write(t.path().join("lib/libx.la"), format!("libdir='{p}/lib'\n")).unwrap();
        fs::write(
            t.path().join("lib/x.go"),
            [b"\x7fELF\0".as_slice(), p.as_bytes()].concat(),
        )
        .unwrap();
        fs::write(t.path().join("clean.txt"), "nothing here").unwrap();
        let hits = scan(t.path(), &[p.to_owned()]).unwrap();
        let got: Vec<(String, usize, &str)> = hits
            .iter()
            .map(|h| (h.file.clone(), h.count, h.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("lib/libx.la".to_owned(), 1, "libtool"),
                ("lib/pkgconfig/x.pc".to_owned(), 2, "pkg-config"),
                ("lib/x.go".to_owned(), 1, "compiled-guile")
            ]
        );
    }
}
