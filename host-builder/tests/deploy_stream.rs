//! The builder's stream (`deploy::stream::write_stream`) read by the
//! guest's reader (`fruix_store::transfer::receive_compressed`, what
//! `fruix-agent store receive` runs), in process: the system's closure in
//! the closure format the builder writes.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::path::Path;

use fruix_host_builder::deploy::stream::{order, plan, write_stream};
use fruix_host_builder::progress::Progress;
use fruix_store::transfer::{self, MANIFEST_COPIES};
use fruix_store::{ImportOptions, ItemName, StoreRoot, VerifyOptions, import_dir, verify_root};
use fruix_system::closure::{self, ClosureEntry, Origin, Role};

fn import(root: &StoreRoot, package: &str, src: &Path) -> ItemName {
    import_dir(root, package, src, &ImportOptions { jobs: 1 })
        .unwrap()
        .name
}

fn closure_of(dir: &Path) -> Result<Vec<ItemName>, String> {
    let text = fs::read_to_string(dir.join(closure::CLOSURE)).map_err(|e| e.to_string())?;
    let entries = closure::parse(&text, closure::CLOSURE).map_err(|e| e.to_string())?;
    Ok(entries.into_iter().map(|e| e.item).collect())
}

#[test]
fn the_builders_stream_is_read_by_the_guests_reader() {
    let t = tempfile::tempdir().unwrap();
    let host = StoreRoot::new(t.path().join("host"));
    let mut items = Vec::new();
    for (pkg, files) in [("runtime-1", 40), ("agent-1", 3)] {
        let src = t.path().join("src").join(pkg);
        fs::create_dir_all(src.join("lib/sub")).unwrap();
        for i in 0..files {
            fs::write(
                src.join(format!("lib/sub/f{i}")),
                format!("{pkg} {i}\n").repeat(i),
            )
            .unwrap();
        }
        std::os::unix::fs::symlink("sub/f1", src.join("lib/f")).unwrap();
        items.push(import(&host, pkg, &src));
    }
    let sys = t.path().join("src/system");
    fs::create_dir_all(sys.join(MANIFEST_COPIES)).unwrap();
    let entries: Vec<ClosureEntry> = items
        .iter()
        .map(|n| ClosureEntry {
            item: n.clone(),
            roles: vec![Role::Base],
            origin: Origin::Native,
        })
        .collect();
    fs::write(sys.join(closure::CLOSURE), closure::to_text(&entries)).unwrap();
    for n in &items {
        fs::copy(
            host.manifest_path(n),
            sys.join(MANIFEST_COPIES).join(format!("{n}.mtree")),
        )
        .unwrap();
    }
    let system = import(&host, "system-x", &sys);

    // What the guest said it lacks, in any order: the system goes first.
    let send = order(
        &system,
        &[items[1].clone(), system.clone(), items[0].clone()],
    );
    assert_eq!(send, [system.clone(), items[1].clone(), items[0].clone()]);
    let (count, bytes) = plan(&host, &send).unwrap();
    let mut out = Vec::new();
    let sent = write_stream(&host, &send, &mut out, &Progress::quiet()).unwrap();
    assert_eq!((sent.items, sent.file_bytes), (count as u64, bytes));
    assert_eq!(sent.compressed, out.len() as u64);
    let mut plain = Vec::new();
    transfer::decompressor(&out[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(sent.uncompressed, plain.len() as u64);
    assert!(sent.compressed < sent.uncompressed, "{sent:?}");

    let guest = StoreRoot::new(t.path().join("guest"));
    let mut told = Vec::new();
    let summary = transfer::receive_compressed(&guest, &system, &closure_of, &out[..], &mut |r| {
        told.push(r.name.clone())
    })
    .unwrap();
    assert_eq!(told, send);
    assert_eq!(summary.file_bytes, bytes);
    let report = verify_root(&guest, &VerifyOptions::default()).unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(guest.item_names().unwrap(), host.item_names().unwrap());
    let mut ask = vec![system.clone()];
    ask.extend(items.iter().cloned());
    assert_eq!(transfer::missing(&guest, &ask), Vec::<ItemName>::new());
}
