//! Why a switch could not be run or followed.

use std::path::PathBuf;

use crate::checks::shepherd::ShepherdError;
use crate::error::AgentError;

/// Why a switch could not be run or followed.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// Another switch holds the lock.
    #[error("another switch is running (lock {})", .0.display())]
    Busy(PathBuf),
    /// A file could not be used.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state could not be written.
    #[error("switch state: {0}")]
    State(String),
    /// The stream of a dry run's system item was refused.
    #[error("preview stream: {0}")]
    Preview(fruix_store::transfer::TransferError),
    /// The state file does not parse.
    #[error(transparent)]
    Format(#[from] fruix_system::FormatError),
    /// A system item could not be read.
    #[error(transparent)]
    System(#[from] AgentError),
    /// Shepherd refused a command.
    #[error(transparent)]
    Shepherd(#[from] ShepherdError),
    /// The worker ended before it recorded the switch.
    #[error("switch {id}: the worker ended before starting ({log}: {tail})")]
    WorkerGone {
        /// The switch's id.
        id: String,
        /// Its log.
        log: String,
        /// The log's last line.
        tail: String,
    },
    /// The worker ended, or was killed, before the switch did.
    #[error(
        "switch {id}: interrupted in phase {phase}; the next agent start rolls it back (fruix-agent switch --recover)"
    )]
    Interrupted {
        /// The switch's id.
        id: String,
        /// Where it stopped.
        phase: &'static str,
    },
    /// A switch is unfinished: deleting generations or items must wait.
    #[error(
        "switch {id} is unfinished (phase {phase}): finish it first (fruix-agent switch --recover)"
    )]
    Unfinished {
        /// The switch's id.
        id: String,
        /// Where it stopped.
        phase: &'static str,
    },
    /// No switch with the id followed.
    #[error("no switch {0} is recorded")]
    Unknown(String),
}
