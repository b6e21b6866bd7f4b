//! The formats that cross the line between the Fruix host builder and the
//! guest agent, each with exactly one writer and one reader, here, so that
//! both sides link the same code:
//!
//! - [`config`]: the system item's `etc/fruix/system.toml` (the agent's
//!   view of the system) and `etc/fruix/accounts.toml` (declared groups
//!   and users), serialized with `toml`;
//! - [`closure`]: the system item's `closure` file (items, roles, origins);
//! - [`report`]: the agent's readiness report as `key=value` lines, as JSON
//!   and as the console's `fruix-reason:` and `fruix-ready:` lines.
//!
//! - [`hostkeys`]: the guest's SSH host keys as the console's
//!   cloud-init-style fingerprint and key blocks, and their fingerprints;
//! - [`console`]: console lines put together again where kernel messages
//!   cut into them;
//! - [`ledger`]: the activation ledger (`/run/fruix/activation.json`),
//!   written by activation, read by the agent's activation check.
//! - [`switch`]: the state of a live switch (`/frx/var/fruix/switch.json`).
//! - [`generations`]: the generation records (`/frx/var/fruix/generations.json`).
//! - [`bootentry`]: the ESP's loader entries (names with try counters, text),
//!   the kernel command line.
//! - [`nextboot`]: FreeBSD's loader files naming a system (`loader.conf`,
//!   `loader.conf.local`, `nextboot.conf`).

pub mod bootentry;
pub mod closure;
pub mod config;
pub mod console;
mod error;
pub mod generations;
pub mod hostkeys;
pub mod ledger;
pub mod nextboot;
pub mod report;
pub mod switch;

pub use closure::{ClosureEntry, Origin, Role};
pub use config::{
    DeclaredAccounts, DeclaredGroup, DeclaredUser, HttpUrl, ProbeConfig, ReadyCheck, ServiceConfig,
    SshdConfig, SystemConfig, guile_env,
};
pub use error::{FormatError, chain};

/// Where a system item keeps its Shepherd services, one file per service
/// (`NAME.scm`): written by the builder, compared and loaded by a live
/// switch.
pub const SHEPHERD_SERVICES_DIR: &str = "etc/shepherd/services";

/// A string as a Scheme string literal: `"` and `\\` escaped, the rest
/// as it is. The builder writes Shepherd's service files with it and the
/// agent its commands to Shepherd's socket, so both quote alike.
pub fn scheme_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
pub use hostkeys::{HostKey, HostKeyWatch};
pub use report::{ConsoleWatch, Outcome, Report};
