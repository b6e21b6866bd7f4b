//! Activation of a Fruix system item in a guest: bring `/etc`, accounts,
//! the top-level links into the runtime, SSH host keys, profiles and the
//! current-system links in line with the system item.
//!
//! Every absolute path is taken from an injected [`GuestRoot`], so tests run
//! activation against a temporary directory. Every change is atomic (a new
//! file or link renamed into place), every step is idempotent, and each run
//! leaves a ledger (`/run/fruix/activation.json`). Operating-system specific
//! work (account databases, host keys) lives in [`platform`].

pub mod accounts;
mod activate;
pub mod config;
pub mod error;
mod ledger;
pub mod platform;
pub mod root;
mod steps;

pub use activate::{ActivateOptions, activate, activate_with, add_host_keys};
pub use error::ActivationError;
pub use ledger::{LEDGER_PATH, Ledger, StepRecord, StepStatus, write as write_ledger};
pub use root::GuestRoot;
pub use steps::{
    COMPAT_SHIMS, HOST_KEY_TYPES, SETUID_DIR, remove_compat_shims, switch_generation,
    top_level_links,
};
