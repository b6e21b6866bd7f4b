//! Helpers the host-builder's integration tests share.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the `fruix` built with the tests and waits for it.
pub fn fruix(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fruix"))
        .args(args)
        .output()
        .expect("fruix runs")
}
