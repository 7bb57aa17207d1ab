//! Events API callbacks: reactions on the bot's own messages become engine reactions.
//!
//! Slack redelivers an event it thinks was lost, so each is deduped on its `event_id`, and
//! the delivery is recorded only after the engine has durably recorded the reaction. A retry
//! of a delivery that died before that point is handled again (at least once, never lost).

use super::Slack;
use crate::engine::{MessageRef, Reaction};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use slack_morphism::prelude::*;
use std::sync::Arc;
use tracing::Instrument;

impl Slack {
    /// Handles one event callback. `Err` means it was not handled: the transport withholds the
    /// ack (HTTP 500, or no Socket Mode ack) so that Slack delivers it again.
    pub(crate) async fn event(self: &Arc<Self>, callback: SlackPushEventCallback, retry: Option<u32>) -> Result<()> {
        let span = tracing::info_span!("slack_event", event = %callback.event_id, retry = retry.unwrap_or(0));
        self.reaction(callback).instrument(span).await
    }

    async fn reaction(self: &Arc<Self>, callback: SlackPushEventCallback) -> Result<()> {
        let event_id = callback.event_id.0.clone();
        if callback.team_id.0 != self.settings.team_id {
            tracing::warn!(team = %callback.team_id, "ignored an event from another workspace");
            return Ok(());
        }
        let (user, emoji, item_user, item, event_ts, added) = match callback.event {
            SlackEventCallbackBody::ReactionAdded(e) => (e.user, e.reaction, e.item_user, e.item, e.event_ts, true),
            SlackEventCallbackBody::ReactionRemoved(e) => (e.user, e.reaction, e.item_user, e.item, e.event_ts, false),
            _ => {
                tracing::debug!("ignored an event Shipday does not use");
                return Ok(());
            }
        };
        if user.0 == self.bot_user_id {
            tracing::debug!("ignored the bot's own reaction");
            return Ok(());
        }
        // Approvals count only on the bot's own messages.
        let SlackReactionsItem::Message(message) = item else { return Ok(()) };
        let Some(channel) = message.origin.channel.filter(|_| item_user.is_some_and(|u| u.0 == self.bot_user_id))
        else {
            tracing::debug!("ignored a reaction on someone else's message");
            return Ok(());
        };
        let Some(delivery) = self.claim(format!("slack:event:{event_id}"))? else {
            tracing::info!(event = %event_id, "duplicate delivery of an event; not handled again");
            return Ok(());
        };
        let reaction = Reaction {
            platform: "slack".into(),
            user_id: user.0,
            platform_roles: Vec::new(),
            emoji: emoji.0,
            message: MessageRef { channel: channel.0, id: message.origin.ts.0 },
            added,
            at: slack_time(&event_ts.0).unwrap_or_else(|| self.clock.now()),
        };
        self.engine.react(reaction).await;
        delivery.done().await.context("cannot record the event as handled")
    }
}

/// A Slack timestamp (`1360782804.083113`) as a time.
fn slack_time(ts: &str) -> Option<DateTime<Utc>> {
    let (secs, micros) = ts.split_once('.').unwrap_or((ts, "0"));
    let micros: u32 = format!("{micros:0<6}").get(..6)?.parse().ok()?;
    DateTime::from_timestamp(secs.parse().ok()?, micros * 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn slack_timestamps_become_times() {
        let at = super::slack_time("1360782804.083113").unwrap();
        assert_eq!(at.timestamp(), 1360782804);
        assert_eq!(at.timestamp_subsec_micros(), 83113);
        assert!(super::slack_time("soon").is_none());
    }
}
