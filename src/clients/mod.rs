//! Outbound clients: how steps reach a host, and GitHub.

pub mod exec;
pub mod github;
pub mod health;
pub mod local;
pub mod ssh;

pub use exec::{ExecSession, OutputTail, RemoteExec};
