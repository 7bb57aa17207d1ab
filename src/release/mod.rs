//! The pure core: no I/O, time is an argument. Policy, locks and claims, deploy plans, the
//! release calendar, ticket keys.

pub mod approvals;
pub mod calendar;
pub mod deploy;
pub mod forge;
pub mod gitref;
pub mod locks;
pub mod message;
pub mod migrations;
pub mod plan;
pub mod policy;
pub mod ticket_flow;
pub mod tickets;

use chrono::{DateTime, Utc};

/// A refusal shown to the user word for word: what is wrong and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl Refusal {
    /// Builds a refusal from any text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

/// How long ago `since` was, for people: `just now`, `5m`, `2h 10m`, `3d 4h`.
pub fn age(now: DateTime<Utc>, since: DateTime<Utc>) -> String {
    duration_words((now - since).num_seconds().max(0) as u64)
}

/// A span of seconds for people, to the minute.
pub fn duration_words(secs: u64) -> String {
    let minutes = secs / 60;
    match minutes {
        0 => "under a minute".into(),
        1..60 => format!("{minutes}m"),
        60..1440 => format!("{}h {}m", minutes / 60, minutes % 60),
        _ => format!("{}d {}h", minutes / 1440, minutes % 1440 / 60),
    }
}
