//! The running system as the agent sees it: the system item, its
//! configuration and its closure.

use std::fs;
use std::path::PathBuf;

use fruix_activation::GuestRoot;
use fruix_store::ItemName;
pub use fruix_system::closure::ClosureEntry;
use fruix_system::closure::{self, CLOSURE, Origin, Role};
use fruix_system::config::SystemConfig;

use crate::error::AgentError;

/// A system item and what it says.
#[derive(Clone, Debug)]
pub struct SystemView {
    /// The guest's root.
    pub root: GuestRoot,
    /// The system item's guest path, `/frx/store/<name>`.
    pub guest_path: String,
    /// Its name.
    pub item: ItemName,
    /// `etc/fruix/system.toml`.
    pub config: SystemConfig,
    /// `closure`.
    pub closure: Vec<ClosureEntry>,
}

/// The item a system path names: `/frx/store/NAME` where NAME is a store
/// item name. A name has no `/`, so `..` and extra slashes cannot lead the
/// agent (root) out of the store.
pub fn parse_system_path(guest_path: &str) -> Result<ItemName, AgentError> {
    let name = guest_path
        .strip_prefix("/frx/store/")
        .ok_or_else(|| AgentError::NotInStore(guest_path.to_owned()))?;
    ItemName::parse(name).map_err(|source| AgentError::SystemName {
        path: guest_path.to_owned(),
        source,
    })
}

impl SystemView {
    /// Reads the system item at `guest_path` (`/frx/store/<name>`).
    pub fn load(root: &GuestRoot, guest_path: &str) -> Result<SystemView, AgentError> {
        let item = parse_system_path(guest_path)?;
        let dir = root.path(guest_path);
        let config = SystemConfig::load(&dir)?;
        let closure_path = dir.join(CLOSURE);
        let text = fs::read_to_string(&closure_path).map_err(|source| AgentError::Io {
            path: closure_path.clone(),
            source,
        })?;
        let closure = closure::parse(&text, &closure_path.display().to_string())?;
        Ok(SystemView {
            root: root.clone(),
            guest_path: guest_path.to_owned(),
            item,
            config,
            closure,
        })
    }

    /// The host path of an item of the store.
    pub fn item_dir(&self, item: &str) -> PathBuf {
        self.root.path(&format!("/frx/store/{item}"))
    }

    /// Items with role `base` by origin: (native, host).
    pub fn base_counts(&self) -> (usize, usize) {
        let base = self.closure.iter().filter(|c| c.has(Role::Base));
        base.fold((0, 0), |(n, h), c| {
            if c.origin == Origin::Host {
                (n, h + 1)
            } else {
                (n + 1, h)
            }
        })
    }

    /// The Guile environment that makes the store's Guile extensions and
    /// Shepherd modules loadable: load paths and extension paths into the
    /// items, no shim anywhere.
    pub fn guile_env(&self) -> Vec<(String, String)> {
        fruix_system::guile_env(&self.config.shepherd, &self.config.guile_extensions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-system-x";

    #[test]
    fn a_system_path_is_the_store_and_one_item_name() {
        let ok = parse_system_path(&format!("/frx/store/{NAME}")).unwrap();
        assert_eq!(ok.as_str(), NAME);
        for bad in [
            format!("/frx/store/{NAME}/../../etc"),
            format!("/frx/store//{NAME}"),
            format!("/frx/store/{NAME}/"),
            "/frx/store/..".to_owned(),
            "/frx/store/../../etc/passwd".to_owned(),
        ] {
            let e = parse_system_path(&bad).unwrap_err();
            assert!(
                matches!(&e, AgentError::SystemName { path, .. } if *path == bad),
                "{bad}: {e}"
            );
        }
        assert!(matches!(
            parse_system_path("/etc"),
            Err(AgentError::NotInStore(p)) if p == "/etc"
        ));
    }
}
