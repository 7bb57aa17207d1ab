//! The pure core: no I/O, time is an argument. Policy, locks and claims, deploy plans, the
//! release calendar, ticket keys.

pub mod approvals;
pub mod calendar;
pub mod ci_gate;
pub mod delivery;
pub mod deploy;
pub mod environment;
pub mod forge;
pub mod freeze;
pub mod gitref;
pub mod locks;
pub mod message;
pub mod migrations;
pub mod people;
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

/// Parses `90s`, `5m`, `8h`, `1h30m`, `2d`.
pub fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    let mut any_unit = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => anyhow::bail!("`{text}` is not a duration like 30s, 5m, 8h or 1h30m"),
        };
        let n: u64 =
            number.parse().map_err(|_| anyhow::anyhow!("`{text}` is not a duration like 30s, 5m, 8h or 1h30m"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
        any_unit = true;
    }
    if !number.is_empty() || !any_unit || total == 0 {
        anyhow::bail!("`{text}` is not a positive duration like 30s, 5m, 8h or 1h30m");
    }
    Ok(std::time::Duration::from_secs(total))
}
