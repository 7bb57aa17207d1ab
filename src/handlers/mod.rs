//! What each command and event does: free functions over a [`Context`] the engine lends them.
//!
//! A command's handler is found under its command's name (`/lock` and `/unlock` in `lock.rs`,
//! `/schedule` in `schedule.rs`, ...); `engine::dispatch` matches over all of them. Host,
//! GitHub and Jira work runs as jobs (`jobs.rs`) that report back to the loop.

pub mod calendar;
mod cancel;
pub(crate) mod ci;
mod context;
pub(crate) mod deploy;
mod freeze;
mod help;
mod history;
mod host;
mod jira;
pub(crate) mod jobs;
mod lock;
pub(crate) mod merge_stream;
mod migrations;
pub(crate) mod outbound;
pub(crate) mod promote;
mod release;
pub mod reply;
mod rollback;
pub(crate) mod runner;
mod schedule;
mod skip;
mod status;
mod ticket;
mod votes;
mod waiting;

pub(crate) use context::*;
pub(crate) use reply::*;

// Every handler file sees the others' entry points (`use super::*`).
pub(crate) use calendar::*;
pub(crate) use cancel::*;
pub(crate) use deploy::*;
pub(crate) use freeze::*;
pub(crate) use help::*;
pub(crate) use history::*;
pub(crate) use host::*;
pub(crate) use jira::*;
pub(crate) use jobs::*;
pub(crate) use lock::*;
pub(crate) use merge_stream::*;
pub(crate) use promote::*;
pub(crate) use release::*;
pub(crate) use rollback::*;
pub(crate) use schedule::*;
pub(crate) use skip::*;
pub(crate) use status::*;
pub(crate) use ticket::*;
pub(crate) use votes::*;
pub(crate) use waiting::*;

#[cfg(test)]
mod tests;
