//! Outbound clients: how steps reach a host, Jira and GitHub.

pub mod exec;
pub mod github;
pub mod health;
pub mod jira;
pub mod local;
pub mod outbound;
pub mod ssh;

pub use exec::{ExecSession, OutputTail, RemoteExec};
