//! What adapters and the scheduler ask the engine about the records it keeps for them, instead
//! of holding the store themselves:
//!
//! - which inbound deliveries (a Slack event or command, a Discord interaction, a GitHub
//!   delivery) were already handled, so a platform's retry never runs twice;
//! - which chat messages show a deploy, so after a crash the restarted bot edits them;
//! - which of the bot's messages have their reactions tracked (Discord re-reads them after a
//!   gap in its event stream);
//! - which calendar firings were claimed, and up to when the scheduler has looked.
//!
//! These are bookkeeping records, each written and read back by one adapter and never decided
//! on by the loop, so they are answered on the caller's task without queueing behind the loop.
//! Each method says when what it writes is durable.

use super::{EngineHandle, MessageRef};
use crate::release::calendar::Firing;
use anyhow::Result;
use chrono::{DateTime, Utc};

pub use crate::store::TrackedMessage;

/// How a claimed firing was handled, as the store records it.
const FIRING_SENT: &str = "sent";
const FIRING_MISSED: &str = "missed";

impl EngineHandle {
    /// Whether inbound delivery `key` was already handled (durably marked with
    /// [`EngineHandle::mark_delivery_handled`]). An error means the records cannot be read:
    /// the adapter must then not act, since it cannot tell a retry from a first delivery.
    pub fn delivery_handled(&self, key: &str) -> Result<bool> {
        self.store.delivery_seen(key)
    }

    /// Marks inbound delivery `key` as handled at `at`; durable when this returns `Ok`. Call it
    /// only once the delivery's effect is durably recorded, so a retry of a delivery that
    /// crashed before this point is still handled.
    pub async fn mark_delivery_handled(&self, key: &str, at: DateTime<Utc>) -> Result<()> {
        self.store.record_delivery(key, at).await
    }

    /// Remembers that `message` on `platform` shows deploy `deploy_id`, so that after a crash
    /// the restarted bot edits it to say the deploy was interrupted; durable when this returns
    /// `Ok`.
    pub async fn remember_deploy_message(&self, deploy_id: u64, platform: &str, message: &MessageRef) -> Result<()> {
        self.store.add_deploy_message(deploy_id, platform, message)?;
        self.store.flush().await
    }

    /// The messages on `platform` that show deploy `deploy_id`.
    pub fn deploy_messages(&self, deploy_id: u64, platform: &str) -> Result<Vec<MessageRef>> {
        self.store.deploy_messages(deploy_id, platform)
    }

    /// The bot's tracked messages on `platform`, newest first.
    pub fn tracked_messages(&self, platform: &str) -> Result<Vec<TrackedMessage>> {
        self.store.tracked_messages(platform)
    }

    /// One tracked message on `platform`, if it is tracked.
    pub fn tracked_message(&self, platform: &str, message: &MessageRef) -> Result<Option<TrackedMessage>> {
        self.store.tracked_message(platform, message)
    }

    /// Tracks `tracked` on `platform` (or updates its reactions), then forgets the oldest beyond
    /// the newest `keep`. Durable with the engine's next flush.
    pub fn track_message(&self, platform: &str, tracked: &TrackedMessage, keep: usize) -> Result<()> {
        self.store.put_tracked_message(platform, tracked, keep)
    }

    /// Stops tracking `message` on `platform` (it was deleted). Durable with the engine's next
    /// flush.
    pub fn forget_tracked_message(&self, platform: &str, message: &MessageRef) -> Result<()> {
        self.store.forget_tracked_message(platform, message)
    }

    /// Claims `firing` to be sent now: true for the one caller that wins it, however often the
    /// bot restarts (compare-and-swap on the job and instant), durable before this returns, so
    /// the firing has its effect at most once. False when it was already claimed.
    pub async fn claim_firing_to_send(&self, firing: &Firing) -> Result<bool> {
        self.store.claim_firing(&firing.job, firing.at, FIRING_SENT).await
    }

    /// Claims `firing` as missed (too late to run): like [`EngineHandle::claim_firing_to_send`],
    /// so a missed firing is reported once and never sent later.
    pub async fn claim_missed_firing(&self, firing: &Firing) -> Result<bool> {
        self.store.claim_firing(&firing.job, firing.at, FIRING_MISSED).await
    }

    /// Up to when the scheduler has looked at the calendar (`None` before its first tick ever).
    pub fn scheduler_cursor(&self) -> Result<Option<DateTime<Utc>>> {
        self.store.scheduler_cursor()
    }

    /// Moves the scheduler's cursor to `at`; durable when this returns `Ok`.
    pub async fn move_scheduler_cursor(&self, at: DateTime<Utc>) -> Result<()> {
        self.store.set_scheduler_cursor(at).await
    }
}
