//! How deep and how wide a verification run goes. A module of its own so
//! that the phases can read the options without depending on the entry
//! points that call them.

/// How deep to look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Metadata and content.
    Full,
    /// Types, modes, sizes and link targets; no file is read.
    Metadata,
}

/// Options of a verification run.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// How deep to look.
    pub depth: Depth,
    /// Worker threads.
    pub jobs: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            depth: Depth::Full,
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}
