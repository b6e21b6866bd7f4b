//! What the host builder does differently per operating system, behind
//! one small interface, chosen here and nowhere else: tying a child
//! process's life to ours, and telling whether KVM can run a guest.

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "freebsd")]
pub use freebsd::*;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;
