//! Deploying a system to a running guest.

pub mod mux;
pub mod remote;
pub mod run;
pub mod stream;
