//! `fruix system build`: realizes every package of a declaration into
//! `OUT/frx` (a store root), adds the agent as an item, and writes the
//! system item.
//!
//! Builder state lives in `OUT/.fruix-build` (realization records, work
//! trees, tool logs), beside the root and never in it. Downloaded `.deb`s
//! live in the cache directory, shared by every output directory.

mod agent_elf;
pub mod cache;
mod context;
pub mod debian;
pub mod fingerprint;
pub mod guile_compile;
pub mod materialize;
pub mod packages;
pub mod shepherd;
pub mod system;

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fruix_store::{ImportOptions, ItemName, StoreRoot};

use crate::declaration::Loaded;
use crate::error::{BuildError, TempTree};
use crate::progress::Progress;
use cache::Records;
use packages::{Context, Origin, Realized};
use system::ClosureItem;

/// Options of a build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The output directory; the root is `OUT/frx`.
    pub out: PathBuf,
    /// The `fruix-agent` binary to put in the system.
    pub agent: PathBuf,
    /// Where downloaded `.deb`s are kept.
    pub cache_dir: PathBuf,
    /// Worker threads.
    pub jobs: usize,
}

/// What a build made.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BuildOutcome {
    /// The system item.
    pub system: ItemName,
    /// Its directory.
    pub system_path: PathBuf,
    /// The closure the system item records.
    pub closure: Vec<ClosureItem>,
    /// Every declared package, realized.
    pub packages: Vec<Realized>,
    /// True when the system item was already in the store.
    pub system_existed: bool,
    /// The output directory's build lock, held while this outcome lives
    /// (so that the image step after the build has the work directories
    /// to itself too); [`BuildOutcome::unlock`] lets it go sooner.
    #[serde(skip)]
    pub lock: Option<Arc<fs::File>>,
}

impl BuildOutcome {
    /// Releases the output directory's build lock (a deploy, once built,
    /// needs only the store, which has its own).
    pub fn unlock(&mut self) {
        self.lock = None;
    }
}

/// Takes `STATE/lock`, waiting (and saying so) while another `fruix`
/// builds into the same output directory: a build removes and remakes
/// the work directories there, which another build's image step uses.
fn build_lock(state: &Path, progress: &Progress) -> Result<Arc<fs::File>, BuildError> {
    fs::create_dir_all(state).map_err(|e| BuildError::Io(state.to_owned(), e))?;
    let path = state.join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| BuildError::Io(path.clone(), e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            progress.line(&format!(
                "waiting for another build in {}",
                state.parent().unwrap_or(state).display()
            ));
            file.lock().map_err(|e| BuildError::Io(path.clone(), e))?;
        }
        Err(fs::TryLockError::Error(e)) => return Err(BuildError::Io(path, e)),
    }
    Ok(Arc::new(file))
}

/// Builds the system a declaration describes.
pub fn build_system(
    loaded: &Loaded,
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<BuildOutcome, BuildError> {
    let root = StoreRoot::new(opts.out.join("frx"));
    let state = opts.out.join(".fruix-build");
    let work_dir = state.join("work");
    let lock = build_lock(&state, progress)?;
    // Work trees of an interrupted build are of no use (and no other
    // build is running: we hold the lock).
    fruix_store::root::remove_tree(&work_dir).map_err(|e| BuildError::Io(work_dir.clone(), e))?;
    let records = Records::new(&state);
    let cx = Context {
        loaded,
        root: &root,
        records: &records,
        work_dir: work_dir.clone(),
        deb_cache: opts.cache_dir.join("debs"),
        jobs: opts.jobs,
        progress,
    };
    let realized = packages::realize_all(&cx)?;
    let agent = realize_agent(&cx, &opts.agent)?;
    let closure = system::closure(loaded, &realized, &agent);

    let host = loaded.decl.host_name.get_ref();
    let tree = TempTree::new(&work_dir, "system")?;
    system::write_tree(tree.path(), loaded, &root, &closure, &realized)?;
    let out = fruix_store::import_dir(
        &root,
        &format!("system-{host}"),
        tree.path(),
        &ImportOptions { jobs: opts.jobs },
    )?;
    progress.line(&format!("system: {}", out.name));
    Ok(BuildOutcome {
        system: out.name,
        system_path: out.path,
        closure,
        packages: realized.into_values().collect(),
        system_existed: out.existed,
        lock: Some(lock),
    })
}

/// The agent binary as an item of its own, `fruix-agent-VERSION`, holding
/// `bin/fruix-agent`.
fn realize_agent(cx: &Context<'_>, binary: &Path) -> Result<Realized, BuildError> {
    let meta = fs::metadata(binary).map_err(|e| BuildError::Io(binary.to_owned(), e))?;
    if !meta.is_file() {
        return Err(BuildError::Input(format!(
            "{} is not the fruix-agent binary",
            binary.display()
        )));
    }
    // The guest runs it as it is copied: an agent it cannot execute would
    // be a generation whose daemon never starts.
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
    if mode & 0o111 == 0 {
        return Err(BuildError::Input(format!(
            "{}: not executable (mode {:o}): the fruix-agent binary must be executable",
            binary.display(),
            mode & 0o7777
        )));
    }
    agent_elf::check(binary, *cx.loaded.decl.os.get_ref())?;
    let package = format!("fruix-agent-{}", env!("CARGO_PKG_VERSION"));
    let fp = fingerprint::tree(binary).map_err(|e| BuildError::Io(binary.to_owned(), e))?;
    let key = Records::key(&format!(
        "fruix-realize-v1\nname {package}\nagent {}\nfingerprint {fp}\n",
        binary.display()
    ));
    if let Some(item) = cx.records.get(cx.root, &key) {
        cx.progress.line(&format!("fruix-agent: unchanged, {item}"));
        return Ok(Realized {
            package: "fruix-agent".into(),
            path: cx.root.item_path(&item),
            item,
            origin: Origin::Native,
            reused: true,
        });
    }
    let tree = TempTree::new(&cx.work_dir, "agent")?;
    let bin = tree.path().join("bin");
    fs::create_dir(&bin).map_err(|e| BuildError::Io(bin.clone(), e))?;
    fs::copy(binary, bin.join("fruix-agent")).map_err(|e| BuildError::Io(binary.to_owned(), e))?;
    let out = fruix_store::import_dir(
        cx.root,
        &package,
        tree.path(),
        &ImportOptions { jobs: cx.jobs },
    )?;
    cx.records
        .put(&key, &out.name)
        .map_err(|e| BuildError::Io(cx.records.dir().to_owned(), e))?;
    cx.progress.line(&format!("fruix-agent: {}", out.name));
    Ok(Realized {
        package: "fruix-agent".into(),
        item: out.name,
        path: out.path,
        origin: Origin::Native,
        reused: false,
    })
}
