//! The running system as the agent sees it: the system item, its
//! configuration and its closure.

use std::fs;
use std::path::PathBuf;

use fruix_activation::GuestRoot;
use fruix_activation::config::SystemConfig;
use fruix_store::ItemName;

/// One line of the system item's `closure`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosureEntry {
    /// The item.
    pub item: ItemName,
    /// Its roles (`kernel`, `bootloader`, `base`, `agent`).
    pub roles: Vec<String>,
    /// `native` or `host`.
    pub origin: String,
}

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

impl SystemView {
    /// Reads the system item at `guest_path` (`/frx/store/<name>`).
    pub fn load(root: &GuestRoot, guest_path: &str) -> Result<SystemView, String> {
        let name = guest_path
            .strip_prefix("/frx/store/")
            .ok_or_else(|| format!("{guest_path}: not under /frx/store"))?;
        let item = ItemName::parse(name).map_err(|e| e.to_string())?;
        let dir = root.path(guest_path);
        let config = SystemConfig::load(&dir).map_err(|e| e.to_string())?;
        let closure_path = dir.join("closure");
        let text = fs::read_to_string(&closure_path)
            .map_err(|e| format!("{}: {e}", closure_path.display()))?;
        let closure =
            parse_closure(&text).map_err(|e| format!("{}: {e}", closure_path.display()))?;
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
        let base = self
            .closure
            .iter()
            .filter(|c| c.roles.iter().any(|r| r == "base"));
        base.fold((0, 0), |(n, h), c| {
            if c.origin == "host" {
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
        fruix_activation::config::guile_env(&self.config.shepherd, &self.config.guile_extensions)
    }
}

/// Parses `ITEM ROLES ORIGIN` lines.
pub fn parse_closure(text: &str) -> Result<Vec<ClosureEntry>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() != 3 {
                return Err(format!("line {}: expected 'ITEM ROLES ORIGIN'", i + 1));
            }
            let item = ItemName::parse(f[0]).map_err(|e| format!("line {}: {e}", i + 1))?;
            Ok(ClosureEntry {
                item,
                roles: f[1].split(',').map(str::to_owned).collect(),
                origin: f[2].to_owned(),
            })
        })
        .collect()
}
