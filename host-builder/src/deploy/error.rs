//! Why a deploy could not be done: one error type for the deploy's steps
//! (`run`) and its reboot (`reboot`), which both use it.

use super::remote::RemoteError;
use crate::pipeline::PipelineError;

/// Why a deploy could not be done (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The system could not be built.
    #[error(transparent)]
    Build(#[from] PipelineError),
    /// The guest could not be asked, or refused.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The system item's closure could not be read.
    #[error(transparent)]
    Format(#[from] fruix_system::FormatError),
    /// The built system item's name is not an item name.
    #[error(transparent)]
    Name(#[from] fruix_store::NameError),
    /// The host's store could not be read.
    #[error(transparent)]
    Store(#[from] fruix_store::StoreError),
    /// The guest's answer is not what its agent prints.
    #[error("{host}: unexpected answer from {what}: {text}")]
    Answer {
        /// The guest.
        host: String,
        /// The command.
        what: String,
        /// What came back (its last line).
        text: String,
    },
    /// The switch ended without committing or rolling back.
    #[error("{host}: switch failed: {reason}")]
    SwitchFailed {
        /// The guest.
        host: String,
        /// Its reason.
        reason: String,
    },
}
