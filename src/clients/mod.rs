//! Outbound clients: how steps reach a host.

pub mod exec;
pub mod health;
pub mod local;
pub mod ssh;

pub use exec::{ExecSession, OutputTail, RemoteExec};
