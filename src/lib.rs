//! Shipday: a release bot for Slack and Discord.
//!
//! Platform adapters at the edges ([`chat`]), a pure core that takes `now` ([`release`],
//! [`command`]), one serial [`engine`] that decides and records in the [`store`], and concrete
//! outbound [`clients`]. Service [`webhook`]s (GitHub) come in at the edge like chat does.
//!
//! Outside data never panics the bot: indexing, string slicing and `unwrap` are denied in
//! non-test code (tests may use them; benches and `tests/` are their own crates).
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::string_slice, clippy::unwrap_used))]

pub mod app;
pub mod chat;
pub mod clients;
pub mod clock;
pub mod command;
pub mod config;
pub mod crashpoint;
pub mod engine;
mod handlers;
pub mod jira_outbox;
pub mod listener;
pub mod metrics;
pub mod operations;
/// The Slack app manifest and Discord's command registrations (they live with the chat adapters).
pub use chat::manifest;
pub mod playground;
pub mod preflight;
#[cfg(test)]
mod proptests;
pub mod redact;
pub mod release;
pub mod scheduler;
pub mod secret;
pub mod serve;
pub mod settings;
pub mod store;
pub mod webhook;
