//! The system item's `closure` file: one line per item of the system,
//! `ITEM ROLES ORIGIN`, sorted by item, roles comma-separated. The builder
//! writes it with [`to_text`]; the agent reads it with [`parse`].

use std::fmt;

use fruix_store::ItemName;
use serde::{Deserialize, Serialize};

use crate::FormatError;

/// Where the closure is, inside a system item.
pub const CLOSURE: &str = "closure";

/// What an item is to its system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The kernel's item.
    Kernel,
    /// The boot loader's item.
    Bootloader,
    /// A base package (the first one is the runtime).
    Base,
    /// The agent's item.
    Agent,
}

impl Role {
    /// The word in the closure file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Kernel => "kernel",
            Role::Bootloader => "bootloader",
            Role::Base => "base",
            Role::Agent => "agent",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "kernel" => Role::Kernel,
            "bootloader" => Role::Bootloader,
            "base" => Role::Base,
            "agent" => Role::Agent,
            _ => return None,
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an item came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Built from declared inputs.
    Native,
    /// Copied from the build host (`host-path`), or derived from such.
    Host,
}

impl Origin {
    /// The word in the closure file.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Native => "native",
            Origin::Host => "host",
        }
    }

    fn parse(s: &str) -> Option<Origin> {
        match s {
            "native" => Some(Origin::Native),
            "host" => Some(Origin::Host),
            _ => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the closure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosureEntry {
    /// The item.
    pub item: ItemName,
    /// Its roles, in the order they were given.
    pub roles: Vec<Role>,
    /// Its origin.
    pub origin: Origin,
}

impl ClosureEntry {
    /// True when it has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The file's text: the entries in the order given (the builder sorts
/// them by item).
pub fn to_text(entries: &[ClosureEntry]) -> String {
    let mut s = String::new();
    for e in entries {
        let roles: Vec<&str> = e.roles.iter().map(|r| r.as_str()).collect();
        s.push_str(&format!("{} {} {}\n", e.item, roles.join(","), e.origin));
    }
    s
}

/// Reads the file's text; blank lines are allowed. `what` names the file
/// in errors.
pub fn parse(text: &str, what: &str) -> Result<Vec<ClosureEntry>, FormatError> {
    let bad = |line: usize, message: String| FormatError::Line {
        what: what.to_owned(),
        line,
        message,
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let n = i + 1;
            let f: Vec<&str> = l.split(' ').collect();
            let [item, roles, origin] = f[..] else {
                return Err(bad(n, "expected 'ITEM ROLES ORIGIN'".into()));
            };
            let item = ItemName::parse(item).map_err(|e| bad(n, e.to_string()))?;
            let roles = roles
                .split(',')
                .map(|r| Role::parse(r).ok_or_else(|| bad(n, format!("unknown role '{r}'"))))
                .collect::<Result<Vec<_>, _>>()?;
            let origin = Origin::parse(origin)
                .ok_or_else(|| bad(n, format!("unknown origin '{origin}'")))?;
            Ok(ClosureEntry {
                item,
                roles,
                origin,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip() {
        let entries = vec![
            ClosureEntry {
                item: ItemName::parse(&format!("{D}-native-boot-trixie")).unwrap(),
                roles: vec![Role::Kernel, Role::Bootloader],
                origin: Origin::Native,
            },
            ClosureEntry {
                item: ItemName::parse(&format!("{D}-tools-1")).unwrap(),
                roles: vec![Role::Base],
                origin: Origin::Host,
            },
        ];
        let text = to_text(&entries);
        assert_eq!(
            text,
            format!("{D}-native-boot-trixie kernel,bootloader native\n{D}-tools-1 base host\n")
        );
        assert_eq!(parse(&text, CLOSURE).unwrap(), entries);
        assert_eq!(parse(&format!("\n{text}\n"), CLOSURE).unwrap(), entries);
    }

    #[test]
    fn malformed_lines_are_named() {
        let e = |t: &str| parse(t, CLOSURE).unwrap_err().to_string();
        assert_eq!(e("a b\n"), "closure: line 1: expected 'ITEM ROLES ORIGIN'");
        assert_eq!(
            e(&format!("\n{D}-x-1 base alien\n")),
            "closure: line 2: unknown origin 'alien'"
        );
        assert_eq!(
            e(&format!("{D}-x-1 base,boot native\n")),
            "closure: line 1: unknown role 'boot'"
        );
    }
}
