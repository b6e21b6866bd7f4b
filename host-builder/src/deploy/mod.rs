//! Deploying a system to a running guest.

pub mod stream;
