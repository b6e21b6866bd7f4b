//! The system item's configuration files, as `fruix system build` writes
//! them: `etc/fruix/system.toml` (the agent's view of the system) and
//! `etc/fruix/accounts.toml` (declared groups and users). Their types,
//! writer and reader are `fruix_system`'s, shared with the builder; this
//! module names them for activation and turns their errors into
//! activation's.

use fruix_system::FormatError;
pub use fruix_system::config::{
    DeclaredAccounts, DeclaredGroup, DeclaredUser, ProbeConfig, SshdConfig, SystemConfig, guile_env,
};

use crate::error::ActivationError;

impl From<FormatError> for ActivationError {
    fn from(e: FormatError) -> ActivationError {
        match e {
            FormatError::Read { path, source } => ActivationError::System {
                path,
                message: source.to_string(),
            },
            FormatError::Toml { path, message } => ActivationError::System { path, message },
            other => ActivationError::System {
                path: "etc/fruix".into(),
                message: other.to_string(),
            },
        }
    }
}
