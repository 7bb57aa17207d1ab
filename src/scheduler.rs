//! The scheduler: a loop that only turns the calendar into engine events.
//!
//! Each firing `(job, instant)` is claimed with the engine (compare-and-swap) *before* its
//! effect, so however often the bot restarts a reminder is sent at most once. A firing missed
//! while the bot was down runs once on start if it is still within its grace period; beyond
//! that it is logged and reported as missed, never mass-fired. The clock is injected, and
//! [`Scheduler::tick`] is public so tests drive time by hand.

use crate::clock::Clock;
use crate::engine::{Announcement, EngineHandle};
use crate::release::calendar::{Calendar, Firing};
use crate::release::policy::calendar_time;
use anyhow::Result;
use std::sync::Arc;
use std::time::Duration;

/// Longest sleep between ticks (waiting slot deploys are retried this often).
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Turns calendar firings into engine events.
pub struct Scheduler {
    calendar: Calendar,
    engine: EngineHandle,
    clock: Arc<dyn Clock>,
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Firings handed to the engine.
    pub fired: Vec<Firing>,
    /// Firings too late to run, reported as missed.
    pub missed: Vec<Firing>,
}

impl Scheduler {
    /// A scheduler for `calendar`, claiming firings with `engine` and firing into it.
    pub fn new(calendar: Calendar, engine: EngineHandle, clock: Arc<dyn Clock>) -> Self {
        Self { calendar, engine, clock }
    }

    /// Handles everything due since the last tick (or since start-up, the first time ever).
    pub async fn tick(&self) -> Result<TickReport> {
        let now = self.clock.now();
        let cursor = self.engine.scheduler_cursor()?.unwrap_or(now).min(now);
        let mut report = TickReport::default();
        for firing in self.calendar.events_between(cursor, now) {
            let late = (now - firing.at).to_std().unwrap_or_default();
            if late > firing.grace {
                if self.engine.claim_missed_firing(&firing).await? {
                    tracing::warn!(job = %firing.job, at = %firing.at, "missed while Shipday was down; not sent");
                    report.missed.push(firing);
                }
            } else if self.engine.claim_firing_to_send(&firing).await? {
                self.engine.fire(firing.clone()).await;
                report.fired.push(firing);
            }
        }
        if !report.missed.is_empty() {
            let list: Vec<String> = report
                .missed
                .iter()
                .map(|f| {
                    format!("{} at {}", crate::release::calendar::firing_words(f), calendar_time(&self.calendar, f.at))
                })
                .collect();
            self.engine.announce(Announcement::Text(format!(
                "⚠️ Shipday was down when these were due, and they are too late to run now: {}.",
                list.join("; ")
            )));
        }
        self.engine.move_scheduler_cursor(now).await?;
        self.engine.tick().await;
        Ok(report)
    }

    /// Ticks forever, sleeping until the next firing (at most [`MAX_SLEEP`]).
    pub async fn run(self) -> Result<()> {
        loop {
            match self.tick().await {
                Ok(_) => crate::metrics::scheduler_ticked(),
                Err(error) => tracing::error!(error = format!("{error:#}"), "scheduler tick failed"),
            }
            let now = self.clock.now();
            let next = self.calendar.events_between(now, now + chrono::Duration::days(1)).first().map(|f| f.at);
            let sleep = next
                .and_then(|at| (at - now).to_std().ok())
                .map(|d| d.min(MAX_SLEEP))
                .unwrap_or(MAX_SLEEP)
                .max(Duration::from_millis(200));
            tokio::time::sleep(sleep).await;
        }
    }
}
