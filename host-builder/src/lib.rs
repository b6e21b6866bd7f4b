//! The Fruix host builder behind the `fruix` command: store maintenance,
//! declarations, system builds, disk images, the QEMU runner and the
//! readiness query over SSH.

pub mod cli;
pub mod commands;
pub mod declaration;
pub mod deploy;
pub mod error;
pub mod image;
pub mod pipeline;
pub mod platform;
pub mod progress;
pub mod query;
pub mod realize;
pub mod target;
pub mod tools;
pub mod vm;

/// What a command asks the process to exit with, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the command ran and found something wrong (findings, not ready).
    Findings,
}
