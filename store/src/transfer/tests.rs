//! The stream's writer and reader together: round trips, and every way a
//! stream can be bad leaving the store as it was.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::frame::{FrameWriter, Record};
use super::*;
use crate::import::{ImportOptions, import_dir};
use crate::manifest::EntryKind;

/// The test's closure format: the first word of each line of `closure`.
fn closure_of(dir: &Path) -> Result<Vec<ItemName>, String> {
    let text = fs::read_to_string(dir.join("closure")).map_err(|e| e.to_string())?;
    text.lines()
        .map(|l| ItemName::parse(l.split(' ').next().unwrap_or("")).map_err(|e| e.to_string()))
        .collect()
}

fn import(root: &StoreRoot, package: &str, src: &Path) -> ItemName {
    import_dir(root, package, src, &ImportOptions { jobs: 1 })
        .unwrap()
        .name
}

/// A host store with items `a` (files, an empty file, an executable,
/// links, nested directories) and `b`, an item `c` outside the system,
/// and the system item over `a` and `b`.
struct Host {
    _t: tempfile::TempDir,
    root: StoreRoot,
    a: ItemName,
    b: ItemName,
    c: ItemName,
    system: ItemName,
}

fn system_tree(dir: &Path, root: &StoreRoot, closure: &[&ItemName]) {
    fs::create_dir_all(dir.join(MANIFEST_COPIES)).unwrap();
    let mut text = String::new();
    for n in closure {
        text.push_str(&format!("{n} base native\n"));
        fs::copy(
            root.manifest_path(n),
            dir.join(MANIFEST_COPIES).join(format!("{n}.mtree")),
        )
        .unwrap();
    }
    fs::write(dir.join("closure"), text).unwrap();
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("etc/hostname"), "guest\n").unwrap();
}

fn host() -> Host {
    let t = tempfile::tempdir().unwrap();
    let root = StoreRoot::new(t.path().join("host"));
    let src = t.path().join("src");
    let a = src.join("a");
    fs::create_dir_all(a.join("bin")).unwrap();
    fs::create_dir_all(a.join("share/doc/deep")).unwrap();
    fs::write(a.join("bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(a.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(a.join("share/empty"), "").unwrap();
    fs::write(a.join("share/doc/deep/README"), "read me\n".repeat(1000)).unwrap();
    std::os::unix::fs::symlink("tool", a.join("bin/alias")).unwrap();
    std::os::unix::fs::symlink("/frx/store/elsewhere", a.join("share/abs")).unwrap();
    let b = src.join("b");
    fs::create_dir_all(&b).unwrap();
    fs::write(b.join("data"), "bbb").unwrap();
    let c = src.join("c");
    fs::create_dir_all(&c).unwrap();
    fs::write(c.join("other"), "c").unwrap();
    let (a, b, c) = (
        import(&root, "a-1", &a),
        import(&root, "b-1", &b),
        import(&root, "c-1", &c),
    );
    let s = src.join("system");
    system_tree(&s, &root, &[&a, &b]);
    let system = import(&root, "system-x", &s);
    Host {
        _t: t,
        root,
        a,
        b,
        c,
        system,
    }
}

impl Host {
    /// The stream of `items`, and where each item's bytes begin and its
    /// name record ends.
    fn stream(&self, items: &[&ItemName]) -> (Vec<u8>, Vec<(usize, usize)>) {
        let mut w = StreamWriter::new(Vec::new()).unwrap();
        let mut at = Vec::new();
        for n in items {
            let start = w.bytes() as usize;
            w.write_item(&self.root, n).unwrap();
            at.push((start, start + 3 + n.as_str().len()));
        }
        (w.finish().unwrap(), at)
    }
}

struct Guest {
    t: tempfile::TempDir,
    root: StoreRoot,
}

fn guest() -> Guest {
    let t = tempfile::tempdir().unwrap();
    let root = StoreRoot::new(t.path().join("guest"));
    Guest { t, root }
}

fn names(dir: PathBuf) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Guest {
    fn receive(&self, system: &ItemName, stream: &[u8]) -> Result<Summary, TransferError> {
        receive(&self.root, system, &closure_of, stream, &mut |_| {})
    }

    fn err(&self, system: &ItemName, stream: &[u8]) -> String {
        let e = self.receive(system, stream).unwrap_err().to_string();
        self.assert_unchanged(&[]);
        e
    }

    /// The store holds exactly `items`, with their manifests, and no work
    /// directory (after the next lock, which a call takes first).
    fn assert_unchanged(&self, items: &[&ItemName]) {
        let mut want: Vec<String> = items.iter().map(|n| n.to_string()).collect();
        want.sort();
        assert_eq!(names(self.root.store_dir()), want, "items");
        let manifests: Vec<String> = want.iter().map(|n| format!("{n}.mtree")).collect();
        assert_eq!(names(self.root.manifests_dir()), manifests, "manifests");
        assert_eq!(names(self.root.tmp_dir()), Vec::<String>::new(), "tmp");
        let _ = &self.t;
    }
}

#[test]
fn a_stream_round_trips_through_the_import_path() {
    let h = host();
    let g = guest();
    let (stream, _) = h.stream(&[&h.system, &h.a, &h.b]);
    let mut told = Vec::new();
    let s = receive(&g.root, &h.system, &closure_of, &stream[..], &mut |r| {
        told.push(r.name.to_string())
    })
    .unwrap();
    assert_eq!(
        told,
        [h.system.to_string(), h.a.to_string(), h.b.to_string()]
    );
    let a = s.items.iter().find(|i| i.name == h.a).unwrap();
    assert_eq!((a.files, a.file_bytes, a.skipped), (3, 8000 + 20, false));
    assert_eq!(
        s.file_bytes,
        s.items.iter().map(|i| i.file_bytes).sum::<u64>()
    );
    g.assert_unchanged(&[&h.system, &h.a, &h.b]);
    for n in [&h.system, &h.a, &h.b] {
        assert_eq!(
            fs::read(g.root.manifest_path(n)).unwrap(),
            fs::read(h.root.manifest_path(n)).unwrap()
        );
    }
    let report = crate::verify_root(&g.root, &crate::VerifyOptions::default()).unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    let tool = g.root.item_path(&h.a).join("bin/tool");
    assert_eq!(
        fs::metadata(&tool).unwrap().permissions().mode() & 0o7777,
        0o555
    );
    assert_eq!(
        fs::read_link(g.root.item_path(&h.a).join("share/abs")).unwrap(),
        Path::new("/frx/store/elsewhere")
    );
    assert_eq!(
        fs::read(g.root.item_path(&h.a).join("share/empty")).unwrap(),
        b""
    );

    // Again: everything is whole already, read and dropped.
    let s = g.receive(&h.system, &stream).unwrap();
    assert!(s.items.iter().all(|i| i.skipped));
    assert_eq!(s.file_bytes, 0);
    // A system already whole needs no item at all.
    let (empty, _) = h.stream(&[]);
    assert_eq!(g.receive(&h.system, &empty).unwrap().items.len(), 0);
    assert_eq!(
        missing(&g.root, &[h.a.clone(), h.c.clone(), h.a.clone()]),
        std::slice::from_ref(&h.c)
    );
}

#[test]
fn a_stream_cut_anywhere_leaves_nothing() {
    let h = host();
    let g = guest();
    let order = [&h.system, &h.a, &h.b];
    let (stream, at) = h.stream(&order);
    let end = stream.len() - 9;
    let near = |c: usize| {
        at.iter()
            .any(|&(s, h)| c.abs_diff(s) < 8 || c.abs_diff(h) < 8)
    };
    let cuts = (0..stream.len()).filter(|&c| c % 13 == 0 || near(c) || c + 12 > stream.len());
    for cut in cuts {
        let want = match at.iter().rposition(|&(start, _)| start <= cut) {
            _ if cut < MAGIC.len() => "stream truncated before the first item".to_owned(),
            None => "stream truncated before the first item".to_owned(),
            Some(i) if cut >= end => format!("stream truncated after item {}", order[i]),
            Some(i) if cut < at[i].1 => match i {
                0 => "stream truncated before the first item".to_owned(),
                i => format!("stream truncated after item {}", order[i - 1]),
            },
            Some(i) => format!("item {}: stream truncated", order[i]),
        };
        assert_eq!(g.err(&h.system, &stream[..cut]), want, "cut at {cut}");
    }
}

#[test]
fn a_compressed_stream_round_trips_and_cut_leaves_nothing() {
    let h = host();
    let g = guest();
    let order = [&h.system, &h.a, &h.b];
    let (plain, _) = h.stream(&order);
    // As `compressor` does (the zstd crate is a dev-dependency too, so
    // that this runs without the `archive` feature).
    let mut z = zstd::Encoder::new(Vec::new(), ZSTD_LEVEL).unwrap();
    std::io::Write::write_all(&mut z, &plain).unwrap();
    let z = z.finish().unwrap();
    let mut possible = vec!["stream truncated before the first item".to_owned()];
    for n in order {
        possible.push(format!("stream truncated after item {n}"));
        possible.push(format!("item {n}: stream truncated"));
    }
    for cut in (0..z.len()).step_by(7).chain([z.len() - 1]) {
        let e = receive_compressed(&g.root, &h.system, &closure_of, &z[..cut], &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(possible.contains(&e), "cut at {cut}: {e}");
        g.assert_unchanged(&[]);
    }
    let mut trailing = z.clone();
    trailing.push(0);
    let e = receive_compressed(&g.root, &h.system, &closure_of, &trailing[..], &mut |_| {});
    assert_eq!(
        e.unwrap_err().to_string(),
        "stream: bytes after the end mark"
    );
    g.assert_unchanged(&[]);
    let e = receive_compressed(
        &g.root,
        &h.system,
        &closure_of,
        &b"not zstd at all"[..],
        &mut |_| {},
    );
    assert!(
        e.unwrap_err()
            .to_string()
            .starts_with("stream unreadable: not zstd: "),
        "bad magic"
    );
    receive_compressed(&g.root, &h.system, &closure_of, &z[..], &mut |_| {}).unwrap();
    g.assert_unchanged(&[&h.system, &h.a, &h.b]);
}

/// Offset of the last `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .rposition(|w| w == needle)
        .unwrap()
}

#[test]
fn a_flipped_byte_is_refused_naming_the_item() {
    let h = host();
    let g = guest();
    let (stream, _) = h.stream(&[&h.system, &h.a, &h.b]);
    // In a closure item's file: its digest is the manifest copy's.
    let mut bad = stream.clone();
    bad[find(&stream, b"read me") + 3] ^= 1;
    assert_eq!(
        g.err(&h.system, &bad),
        format!(
            "item {}: file 'share/doc/deep/README' differs from the manifest copy in {}",
            h.a, h.system
        )
    );
    // In the system item: it no longer hashes to its name.
    let mut bad = stream.clone();
    bad[find(&stream, b"guest\n")] ^= 1;
    let e = g.err(&h.system, &bad);
    let hex = e
        .strip_prefix(&format!(
            "item {}: digest mismatch (stream has sha256 ",
            h.system
        ))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{e}"));
    assert!(hex.len() == 64 && hex != h.system.digest().to_hex(), "{e}");
    // In an entry's path: not the manifest copy's entry.
    let mut bad = stream.clone();
    bad[find(&stream, b"bin/tool")] = b'z';
    assert_eq!(
        g.err(&h.system, &bad),
        format!(
            "item {}: entry 'zin/tool' differs from the manifest copy in {}",
            h.a, h.system
        )
    );
    // A tag.
    let mut bad = stream.clone();
    bad[MAGIC.len()] = b'?';
    assert_eq!(g.err(&h.system, &bad), "stream: unknown tag 0x3f");
    let mut bad = stream.clone();
    bad[..4].copy_from_slice(b"FRUI");
    assert_eq!(
        g.err(&h.system, &bad),
        "stream: not a fruix transfer stream"
    );
    let mut bad = stream.clone();
    bad.push(b'Z');
    assert_eq!(g.err(&h.system, &bad), "stream: bytes after the end mark");
}

#[test]
fn an_item_outside_the_closure_is_refused() {
    let h = host();
    let g = guest();
    let (stream, _) = h.stream(&[&h.system, &h.c]);
    assert_eq!(
        g.err(&h.system, &stream),
        format!("item {}: not in the closure of {}", h.c, h.system)
    );
    let (stream, _) = h.stream(&[&h.a, &h.system]);
    assert_eq!(
        g.err(&h.system, &stream),
        format!("item {}: the system item {} must come first", h.a, h.system)
    );
    let (stream, _) = h.stream(&[&h.system, &h.a, &h.a]);
    assert_eq!(
        g.err(&h.system, &stream),
        format!("item {}: sent twice", h.a)
    );
    let (stream, _) = h.stream(&[&h.system, &h.a]);
    assert_eq!(
        g.err(&h.system, &stream),
        format!(
            "item {}: in the closure of {} but neither in the store nor in the stream",
            h.b, h.system
        )
    );
    let (stream, _) = h.stream(&[]);
    assert_eq!(
        g.err(&h.system, &stream),
        format!(
            "the system item {} is neither in the store nor in the stream",
            h.system
        )
    );
}

/// A stream written record by record.
struct Craft(FrameWriter<Vec<u8>>);

impl Craft {
    fn new() -> Craft {
        let mut w = FrameWriter::new(Vec::new());
        w.raw(MAGIC).unwrap();
        Craft(w)
    }
    fn item(mut self, root: &StoreRoot, n: &ItemName) -> Craft {
        let mut w = StreamWriter {
            w: self.0,
            items: 0,
            file_bytes: 0,
            buf: vec![0; 64],
        };
        w.write_item(root, n).unwrap();
        self.0 = w.w;
        self
    }
    fn rec(mut self, r: Record) -> Craft {
        self.0.record(&r).unwrap();
        self
    }
    fn raw(mut self, b: &[u8]) -> Craft {
        self.0.raw(b).unwrap();
        self
    }
    fn end(self, items: u64) -> Vec<u8> {
        self.rec(Record::End { items }).0.into_inner()
    }
}

fn file(path: &str, size: u64) -> Record {
    Record::File {
        path: path.into(),
        executable: false,
        size,
    }
}

#[test]
fn an_item_unlike_its_manifest_copy_is_refused_before_it_is_written() {
    let h = host();
    let g = guest();
    let b = Record::Item(h.b.to_string());
    let start = || Craft::new().item(&h.root, &h.system).rec(b.clone());
    // The copy says `data` has 3 bytes: an announced 4 GiB is refused at
    // its header, before a byte is written.
    let s = start().rec(file("data", 1 << 32)).raw(b"bbb").end(2);
    let differs = format!(
        "item {}: entry 'data' differs from the manifest copy in {}",
        h.b, h.system
    );
    assert_eq!(g.err(&h.system, &s), differs);
    // Same size, other bytes.
    let s = start()
        .rec(file("data", 3))
        .raw(b"bbc")
        .rec(Record::EndItem)
        .end(2);
    assert_eq!(
        g.err(&h.system, &s),
        format!(
            "item {}: file 'data' differs from the manifest copy in {}",
            h.b, h.system
        )
    );
    // An entry the copy does not have, and one missing.
    let s = start().rec(Record::Dir(b"extra".to_vec())).end(2);
    assert_eq!(
        g.err(&h.system, &s),
        format!(
            "item {}: entry 'extra' differs from the manifest copy in {}",
            h.b, h.system
        )
    );
    let s = start().rec(Record::EndItem).end(2);
    assert_eq!(
        g.err(&h.system, &s),
        format!(
            "item {}: entry 'data' of the manifest copy in {} is not in the stream",
            h.b, h.system
        )
    );
    // A system whose manifest copy is another item's manifest.
    let t = tempfile::tempdir().unwrap();
    system_tree(t.path(), &h.root, &[&h.a]);
    fs::copy(
        h.root.manifest_path(&h.b),
        t.path()
            .join(MANIFEST_COPIES)
            .join(format!("{}.mtree", h.a)),
    )
    .unwrap();
    let liar = import(&h.root, "system-liar", t.path());
    let s = Craft::new().item(&h.root, &liar).item(&h.root, &h.a).end(2);
    assert_eq!(
        g.err(&liar, &s),
        format!(
            "item {}: the manifest copy in {liar} does not hash to the item's name",
            h.a
        )
    );
}

#[test]
fn a_file_longer_than_announced_is_refused() {
    let h = host();
    let g = guest();
    let sys = Record::Item(h.system.to_string());
    // Two bytes more than announced: they are read as the next record.
    let s = Craft::new()
        .rec(sys.clone())
        .rec(file("f", 3))
        .raw(b"abc\x01\x02")
        .rec(Record::EndItem)
        .end(1);
    assert_eq!(
        g.err(&h.system, &s),
        format!("item {}: bad record: unknown tag 0x01", h.system)
    );
    // The system item's files are bounded too, before a byte is written.
    let s = Craft::new()
        .rec(sys.clone())
        .rec(file("f", 1))
        .raw(b"a")
        .rec(file("g", MAX_SYSTEM_BYTES))
        .end(1);
    assert_eq!(
        g.err(&h.system, &s),
        format!(
            "item {}: its files are larger than 1073741824 bytes, the most a system item may hold",
            h.system
        )
    );
}

#[test]
fn paths_that_climb_out_or_go_through_links_are_refused() {
    let h = host();
    let g = guest();
    let sys = Record::Item(h.system.to_string());
    for (path, why) in [
        ("../x", "path has an empty, '.' or '..' component"),
        ("/etc/passwd", "path has an empty, '.' or '..' component"),
        ("a/./b", "path has an empty, '.' or '..' component"),
        ("a\0b", "path has a NUL byte"),
    ] {
        let s = Craft::new()
            .rec(sys.clone())
            .rec(file(path, 0))
            .rec(Record::EndItem)
            .end(1);
        assert_eq!(
            g.err(&h.system, &s),
            format!(
                "item {}: entry '{}': {why}",
                h.system,
                crate::escape::escape(path.as_bytes())
            )
        );
    }
    let s = Craft::new()
        .rec(sys.clone())
        .rec(Record::Link {
            path: b"l".to_vec(),
            target: b"/tmp".to_vec(),
        })
        .rec(file("l/x", 1))
        .raw(b"x")
        .rec(Record::EndItem)
        .end(1);
    assert_eq!(
        g.err(&h.system, &s),
        format!(
            "item {}: entry 'l/x' would be written through the symbolic link 'l'",
            h.system
        )
    );
    let s = Craft::new()
        .rec(sys)
        .rec(file("b", 0))
        .rec(file("a", 0))
        .rec(Record::EndItem)
        .end(1);
    assert_eq!(
        g.err(&h.system, &s),
        format!("item {}: entry 'a': not in manifest order", h.system)
    );
    // Nothing outside the guest's root was touched.
    assert!(!g.t.path().join("x").exists());
    let _ = EntryKind::Dir;
}
