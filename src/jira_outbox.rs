//! The Jira outbox: ticket moves that deploys queued in the store, delivered by one worker.
//!
//! A deploy never waits for Jira and never fails because of it: its moves are written to the
//! store (and flushed) when it finishes, and this worker delivers them in the background. A
//! move that fails because Jira is down or busy is tried again later with a growing wait
//! ([`crate::release::ticket_flow::retry_delay`]); one Jira refuses (a transition missing from
//! the workflow, an unknown ticket) or that keeps failing is given up, announced, and listed in
//! `/status`. Moves live in the store, so a restart loses none: the worker picks them up again.

use crate::clients::jira::{JiraClient, MoveOutcome, is_transient};
use crate::clock::Clock;
use crate::config::Config;
use crate::engine::Announcement;
use crate::release::ticket_flow::TicketMove;
use crate::store::Store;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

/// How often the worker looks for moves that became due, when nothing wakes it.
pub const POLL: Duration = Duration::from_secs(10);

/// Wakes the outbox worker so that it delivers due moves now.
#[derive(Clone, Debug, Default)]
pub struct OutboxHandle(Arc<Notify>);

impl OutboxHandle {
    /// Delivers due moves as soon as the worker is free (a wake while it works is kept).
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// What the worker needs: the store holding the moves, Jira, time, and the team channel.
pub(crate) struct Outbox {
    pub store: Store,
    pub client: Arc<JiraClient>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub announcements: crate::engine::Announcer,
}

impl Outbox {
    /// Starts the worker; it stops once `stop`'s sender is dropped (the engine loop ended).
    pub(crate) fn spawn(self, mut stop: watch::Receiver<()>) -> OutboxHandle {
        let handle = OutboxHandle::default();
        let wake = handle.0.clone();
        tokio::spawn(async move {
            loop {
                self.deliver_due().await;
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => return,
                }
            }
        });
        handle
    }

    /// One round: every move that is due, oldest first. A ticket's later moves wait while an
    /// earlier one of the same ticket is still pending, so its card never jumps out of order.
    async fn deliver_due(&self) {
        let pending = match self.store.pending_jira_moves() {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot read the Jira outbox");
                return;
            }
        };
        let mut waiting: HashSet<String> = HashSet::new();
        for mut ticket_move in pending {
            let key = ticket_move.key.to_string();
            if waiting.contains(&key) || !ticket_move.is_due(self.clock.now()) {
                waiting.insert(key);
                continue;
            }
            let span = tracing::info_span!("ticket move", id = ticket_move.id, key = %key, to = %ticket_move.to);
            self.attempt(&mut ticket_move).instrument(span).await;
            if ticket_move.is_pending() {
                waiting.insert(key);
            }
            let written = match self.store.put_jira_move(&ticket_move) {
                Ok(()) => self.store.flush().await,
                Err(e) => Err(e),
            };
            if let Err(error) = written {
                tracing::error!(error = format!("{error:#}"), id = ticket_move.id, "cannot record a ticket move");
            }
        }
    }

    /// One attempt at one move, recorded in `ticket_move`.
    async fn attempt(&self, ticket_move: &mut TicketMove) {
        let key = ticket_move.key.to_string();
        let result = match &ticket_move.from {
            Some(from) => self.client.move_if_in(&key, from, &ticket_move.to).await,
            None => self.client.move_to(&key, &ticket_move.to).await,
        };
        let now = self.clock.now();
        match result {
            Ok(outcome) => {
                let words = match &outcome {
                    MoveOutcome::Moved { from } => format!("moved from {from}"),
                    MoveOutcome::AlreadyThere => "already there".to_owned(),
                    MoveOutcome::LeftAlone { status } => format!("left in {status}"),
                };
                tracing::info!(outcome = %words, "ticket move delivered");
                ticket_move.delivered(words, now);
                if ticket_move.mention_assignee && matches!(outcome, MoveOutcome::Moved { .. }) {
                    self.mention_assignee(ticket_move).await;
                }
            }
            Err(error) => {
                let why = format!("{error:#}");
                let transient = is_transient(&error);
                tracing::warn!(%why, transient, attempt = ticket_move.attempts + 1, "ticket move failed");
                if ticket_move.failed(why, transient, now) {
                    self.announce_given_up(ticket_move);
                }
            }
        }
    }

    /// Tells the assignee their ticket's code is on the environment, for them to test.
    async fn mention_assignee(&self, ticket_move: &TicketMove) {
        let key = ticket_move.key.to_string();
        let issue = match self.client.issue(&key).await {
            Ok(issue) => issue,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot read the assignee to mention");
                return;
            }
        };
        let env = ticket_move.env.as_deref().unwrap_or("dev");
        let who = match &issue.assignee {
            Some(assignee) => format!("{}, it is yours to test", assignee_mention(&self.config, assignee)),
            None => "nobody is assigned to test it".to_owned(),
        };
        let _ = self.announcements.send(Announcement::Text(format!(
            "🧪 {key} {} is on {env} and in {}: {who}. `/ticket {key} pass` once it works, in the drag window.",
            issue.summary, ticket_move.to
        )));
    }

    fn announce_given_up(&self, ticket_move: &TicketMove) {
        let crate::release::ticket_flow::MoveState::GivenUp { why, .. } = &ticket_move.state else { return };
        let _ = self.announcements.send(Announcement::Text(format!(
            "⚠️ Shipday gave up moving {} in Jira ({}): {why}. Move it by hand; `/status` lists moves given up.",
            ticket_move.describe(),
            ticket_move.reason
        )));
    }
}

/// A Jira assignee as the team channel writes them: a mention (`@{grace}`) when they are one
/// of the configured people, otherwise their Jira name.
pub(crate) fn assignee_mention(config: &Config, assignee: &crate::clients::jira::Assignee) -> String {
    match config.person_by_jira(&assignee.account_id) {
        Some(person) => format!("@{{{}}}", person.id),
        None => assignee.display_name.clone(),
    }
}
