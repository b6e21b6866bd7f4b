//! Deploying a system to a running guest.

pub mod error;
pub mod mux;
pub mod reboot;
pub mod remote;
pub mod run;
pub mod stream;
