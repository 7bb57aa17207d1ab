//! Outbound clients: how steps reach a host.

pub mod exec;
pub mod local;

pub use exec::{ExecSession, OutputTail, RemoteExec};
