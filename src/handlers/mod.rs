//! One file per command; `Engine::dispatch` matches over all of them.

pub mod calendar;
pub(crate) mod deploy;
mod help;
mod history;
mod holds;
mod jira;
pub(crate) mod merge_stream;
mod migrations;
pub(crate) mod promote;
mod rollback;
mod status;
mod ticket;
mod votes;
