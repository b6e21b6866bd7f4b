//! The Fruix host builder behind the `fruix` command: store maintenance,
//! declarations and system builds; images and the VM runner as the issues
//! that build them land.

pub mod build;
pub mod cli;
pub mod commands;
pub mod declaration;

/// What a command asks the process to exit with, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the command ran and found something wrong (findings, not ready).
    Findings,
}
