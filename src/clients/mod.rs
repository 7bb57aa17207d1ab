//! Outbound clients: how steps reach a host, and Jira.

pub mod exec;
pub mod health;
pub mod jira;
pub mod local;
pub mod ssh;

pub use exec::{ExecSession, OutputTail, RemoteExec};
