//! The handle adapters, the scheduler and `serve` hold: commands, reactions, firings and
//! webhook events in (each waits until the engine has recorded it), announcements out, and the
//! graceful shutdown.

use super::{Announcement, Announcer, Event, Invocation, MessageRef, Reaction, Reply};
use crate::release::calendar::Firing;
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

/// A handle adapters use to talk to the engine.
#[derive(Clone)]
pub struct EngineHandle {
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) announcements: Announcer,
    pub(super) outbox: Option<crate::jira_outbox::OutboxHandle>,
    /// One permit per command queued or being decided: a full queue answers [`BUSY`] at once.
    pub(super) admitted: Arc<tokio::sync::Semaphore>,
    /// For the records adapters ask about (`ask.rs`).
    pub(super) store: Store,
    /// Set when a graceful shutdown starts: commands are answered [`RESTARTING`] at once.
    pub(super) draining: Arc<std::sync::atomic::AtomicBool>,
}

/// Most commands queued or being decided at once (see [`EngineHandle::with_queue_limit`]).
pub const QUEUE_LIMIT: usize = 1024;

/// What a command is told when the queue is full: at once, well within every platform's ack
/// limit, and nothing was done.
pub const BUSY: &str = "Shipday is busy, try again in a moment. Nothing was done.";

/// What a command is told while Shipday shuts down: at once, and nothing was done.
pub const RESTARTING: &str = "Shipday is restarting, try again in a minute. Nothing was done.";

/// The longest wait, after the deploys ended, for the adapters' last edits of their messages.
const LAST_EDITS: std::time::Duration = std::time::Duration::from_secs(10);

/// How a graceful shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether the grace ran out with deploys still running (they were stopped before their
    /// next step).
    pub stopped_deploys: bool,
    /// Whether every deploy message's last edit was made (within [`LAST_EDITS`]).
    pub messages_edited: bool,
}

impl EngineHandle {
    /// Graceful shutdown: from now on commands are answered [`RESTARTING`] and nothing new
    /// starts; running deploys may finish within `grace`. After it, each stops before its next
    /// step (the step running then is not killed) and is recorded as stopped, `why` saying by
    /// what ("SIGTERM"). Returns once no deploy runs and their chat messages are edited.
    pub async fn shut_down(&self, grace: std::time::Duration, why: &str) -> ShutdownReport {
        self.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        let (done, mut drained) = oneshot::channel();
        if self.events.send(Event::Drain(done)).is_err() {
            return ShutdownReport { stopped_deploys: false, messages_edited: true };
        }
        let (drained, stopped_deploys) = match tokio::time::timeout(grace, &mut drained).await {
            Ok(drained) => (drained, false),
            Err(_) => {
                tracing::warn!(?grace, "the shutdown grace ran out; running deploys stop before their next step");
                let why = format!("Shipday was stopped ({why}) and its shutdown grace ({}s) ran out", grace.as_secs());
                let _ = self.events.send(Event::StopDeploys(why));
                (drained.await, true)
            }
        };
        let watchers = drained.map(|d| d.watchers).unwrap_or_default();
        let edited = async {
            for watcher in &watchers {
                watcher.closed().await;
            }
        };
        let messages_edited = tokio::time::timeout(LAST_EDITS, edited).await.is_ok();
        if !messages_edited {
            tracing::warn!("a deploy message was not edited before exit");
        }
        ShutdownReport { stopped_deploys, messages_edited }
    }

    /// Hands a reaction on one of the bot's messages to the engine, and waits until it is
    /// durably recorded (adapters ack or dedupe deliveries only after that).
    pub async fn react(&self, reaction: Reaction) {
        let (tx, rx) = oneshot::channel();
        if self.events.send(Event::Reaction(reaction, tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Hands a calendar firing (claimed in the store) to the engine and waits until handled.
    pub async fn fire(&self, firing: Firing) {
        let (tx, rx) = oneshot::channel();
        if self.events.send(Event::Scheduled(Box::new(firing), tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Lets the engine retry or skip slot deploys that wait for a hold.
    pub async fn tick(&self) {
        let (tx, rx) = oneshot::channel();
        if self.events.send(Event::Tick(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Reports the message an adapter posted for promotion request `request`, so reactions on
    /// it become votes and later changes edit it.
    pub async fn bind_message(&self, request: u64, platform: &str, message: MessageRef) {
        let (done, rx) = oneshot::channel();
        let event = Event::Bind { request, platform: platform.to_owned(), message, done };
        if self.events.send(event).is_ok() {
            let _ = rx.await;
        }
    }

    /// Tells every adapter's team channel (used by the scheduler).
    pub fn announce(&self, announcement: Announcement) {
        let _ = self.announcements.send(announcement);
    }

    /// Hands a verified GitHub webhook event to the engine; returns once it is recorded.
    pub async fn github_event(&self, event: crate::release::forge::GitHubEvent) {
        let (tx, rx) = oneshot::channel();
        if self.events.send(Event::GitHub(event, tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Subscribes to announcements (reminders, scheduled deploys) for one adapter.
    pub fn announcements(&self) -> broadcast::Receiver<Announcement> {
        self.announcements.subscribe()
    }

    /// Reads HEAD on every host in the background and logs drift from the last deploys.
    pub fn check_drift(&self) {
        let _ = self.events.send(Event::CheckDrift);
    }

    /// Asks the Jira outbox to deliver the ticket moves that are due now, without waiting for
    /// its next round (it also runs every few seconds on its own).
    pub fn deliver_ticket_moves(&self) {
        if let Some(outbox) = &self.outbox {
            outbox.wake();
        }
    }

    /// This handle (and its clones) admitting at most `limit` commands at once instead of
    /// [`QUEUE_LIMIT`].
    pub fn with_queue_limit(mut self, limit: usize) -> Self {
        self.admitted = Arc::new(tokio::sync::Semaphore::new(limit));
        self
    }

    /// Submits a command and waits for the engine's reply (not for the deploy to finish).
    /// When [`QUEUE_LIMIT`] commands are already queued or being decided, answers [`BUSY`] at
    /// once instead of queueing without bound.
    pub async fn submit(&self, invocation: Invocation) -> Reply {
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::info!(platform = %invocation.platform, user = %invocation.user_id, "shutting down; answered restarting");
            return Reply::refused(RESTARTING);
        }
        let Ok(_admitted) = self.admitted.clone().try_acquire_owned() else {
            tracing::warn!(platform = %invocation.platform, user = %invocation.user_id, "the engine's queue is full; answered busy");
            return Reply::refused(BUSY);
        };
        let (tx, rx) = oneshot::channel();
        if self.events.send(Event::Invocation(invocation, tx)).is_err() {
            return Reply::refused("Shipday is shutting down. Try again in a minute.");
        }
        rx.await.unwrap_or_else(|_| Reply::refused("Shipday could not answer. An operator can check its logs."))
    }
}
