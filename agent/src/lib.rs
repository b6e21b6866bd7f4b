//! The Fruix guest agent as a library: the view of the running system, the
//! readiness checks, and the report they make. The `fruix-agent` binary is
//! a thin command line over it.

pub mod bootcheck;
pub mod bootentries;
pub mod bootfacts;
pub mod checks;
pub mod client;
pub mod daemon;
pub mod early;
pub mod error;
pub mod esp;
pub mod generations;
pub mod hold;
pub mod hostkeys;
pub mod init;
pub mod markers;
pub mod nextboot;
pub mod platform;
pub mod received;
pub mod report;
pub mod round;
pub mod shepherd_ctl;
pub mod socket;
pub mod switch;
pub mod system;
pub mod watchdog;
