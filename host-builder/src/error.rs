//! The builder library's errors and the work tree guard that its steps
//! share. Each error names its input once and carries its cause as a
//! source: the binary prints the chain on one line (`{:#}`) and maps it to
//! an exit status.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use fruix_store::ImportError;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An input the declaration names cannot be used.
    #[error("{0}")]
    Input(String),
    /// An I/O error on a path.
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] io::Error),
    /// An import into the store failed.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// An image tool failed.
    #[error(transparent)]
    Tool(#[from] crate::tools::ToolError),
    /// A build tool (mmdebstrap) failed; its last lines and its log.
    #[error("{tool} failed (whole log: {}): {tail}", log.display())]
    BuildTool {
        /// The tool.
        tool: String,
        /// Its full output.
        log: PathBuf,
        /// Its last lines, joined with ` | `.
        tail: String,
    },
    /// A failure while realizing one package.
    #[error("package '{package}'")]
    InPackage {
        /// The package.
        package: String,
        /// What went wrong.
        #[source]
        source: Box<BuildError>,
    },
    /// A bug: something the checks of the declaration should have caught.
    #[error("internal error: {0}")]
    Internal(String),
}

impl BuildError {
    /// Says which package the error is about.
    pub fn in_package(self, package: &str) -> BuildError {
        match self {
            e @ BuildError::InPackage { .. } => e,
            e => BuildError::InPackage {
                package: package.to_owned(),
                source: Box::new(e),
            },
        }
    }
}

/// A work tree, removed when dropped.
#[derive(Debug)]
pub struct TempTree {
    path: PathBuf,
}

impl TempTree {
    /// A fresh empty directory under `parent`, `LABEL-XXXXXX` with a random
    /// suffix made by `tempfile` (created exclusively, so never a name
    /// someone else can guess and plant first), then given the mode a
    /// plain `mkdir` would (0755): the staged trees become store items and
    /// image roots, whose top directory's mode they keep.
    pub fn new(parent: &Path, label: &str) -> Result<TempTree, BuildError> {
        fs::create_dir_all(parent).map_err(|e| BuildError::Io(parent.to_owned(), e))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{label}-"))
            .tempdir_in(parent)
            .map_err(|e| BuildError::Io(parent.join(format!("{label}-XXXXXX")), e))?;
        // Removed by our Drop, which also clears read-only directories.
        let tree = TempTree { path: dir.keep() };
        fs::set_permissions(&tree.path, fs::Permissions::from_mode(0o755))
            .map_err(|e| BuildError::Io(tree.path.clone(), e))?;
        Ok(tree)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = fruix_store::root::remove_tree(&self.path);
    }
}

/// A new empty file in `dir`, `PREFIXXXXXXX` with a random suffix, created
/// exclusively (never a name someone could plant first, never through a
/// link) at mode 0644, for a tool to write and the caller to rename into
/// place. The caller removes it (a [`Cleanup`]).
pub fn temp_file_in(dir: &Path, prefix: &str) -> Result<PathBuf, BuildError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .and_then(|f| f.into_temp_path().keep().map_err(|e| e.error))
        .map_err(|e| BuildError::Io(dir.join(format!("{prefix}XXXXXX")), e))
}

/// Removes the temporary files it holds when dropped: what a failed
/// image step leaves is gone with it.
pub struct Cleanup(pub Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}
