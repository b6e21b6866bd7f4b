//! What every realization step needs: the declaration, the store root,
//! the records, the work and cache directories. Its own module so that
//! the steps (`debian`, `materialize`) and the package loop that calls
//! them share it without importing each other.

use std::path::PathBuf;

use fruix_store::StoreRoot;

use super::cache::Records;
use crate::declaration::Loaded;
use crate::progress::Progress;

/// What every realization needs.
pub struct Context<'a> {
    /// The declaration.
    pub loaded: &'a Loaded,
    /// The store root being filled.
    pub root: &'a StoreRoot,
    /// Realization records.
    pub records: &'a Records,
    /// Where work trees go (on the same file system as the root).
    pub work_dir: PathBuf,
    /// Where downloaded `.deb`s are kept between builds.
    pub deb_cache: PathBuf,
    /// Worker threads.
    pub jobs: usize,
    /// Progress display.
    pub progress: &'a Progress,
}
