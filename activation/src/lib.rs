//! Activation of a Fruix system item in a guest.
//!
//! Not written yet: the agent and activation issue builds it (generations,
//! `/etc`, accounts, setuid programs, the current-system link), every path
//! taken from an injected root so that tests run against a temporary
//! directory. What exists today is the root abstraction it will take.

use std::path::{Path, PathBuf};

/// The file system a guest is activated into: `/` in a guest, a temporary
/// directory in tests.
#[derive(Clone, Debug)]
pub struct GuestRoot {
    root: PathBuf,
}

impl GuestRoot {
    /// A guest root at `root`.
    pub fn new(root: impl Into<PathBuf>) -> GuestRoot {
        GuestRoot { root: root.into() }
    }

    /// Maps an absolute guest path (such as `/frx/var/current-system`) into
    /// this root.
    pub fn path(&self, guest_path: &str) -> PathBuf {
        self.root.join(guest_path.trim_start_matches('/'))
    }

    /// The root directory.
    pub fn as_path(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_stay_inside_the_root() {
        let r = GuestRoot::new("/tmp/g");
        assert_eq!(
            r.path("/frx/var/current-system"),
            Path::new("/tmp/g/frx/var/current-system")
        );
        assert_eq!(r.path("etc"), Path::new("/tmp/g/etc"));
    }
}
