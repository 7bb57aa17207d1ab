//! The engine: one serial loop that decides and records.
//!
//! Commands from every adapter, and what jobs report, arrive as [`Event`]s on one channel and
//! are handled one at a time, so decisions about locks never race. The loop dispatches each to
//! its handler (`crate::handlers`), which decides with the [`Context`] it is lent; jobs (host,
//! GitHub and Jira work) run outside the loop and report back. Every decision is written to the
//! store and flushed before its reply goes out, one flush for every reply decided meanwhile
//! (group commit).

mod ask;
pub use crate::handlers::outbound::Announcer;
pub use crate::handlers::reply;
pub use ask::TrackedMessage;
pub use reply::{
    Announcement, Invocation, MessageRef, ProgressUpdate, PromotionView, Reaction, Reply, ReplyBody, Visibility,
};

use crate::clients::RemoteExec;
use crate::clients::jira::JiraClient;
use crate::clock::Clock;
use crate::command::authorize::{Actor, authorize};
use crate::command::{Command, parse};
use crate::config::Config;
use crate::handlers::deploy::{AcceptedDeploy, DeployRequest};
use crate::handlers::jobs::{Jobs, Report, Reporter, catch_unwind, handle_report};
use crate::handlers::{self, Answer, Context, Decision, WaitingCommand};
use crate::release::calendar::Firing;
use crate::release::deploy::Trigger;
use crate::store::{AuditEntry, Store};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Everything the loop handles.
pub(crate) enum Event {
    /// A command from an adapter.
    Invocation(Invocation, oneshot::Sender<Reply>),
    /// A reaction on one of the bot's messages.
    Reaction(Reaction, oneshot::Sender<()>),
    /// An adapter posted a promotion request as this message.
    Bind { request: u64, platform: String, message: MessageRef, done: oneshot::Sender<()> },
    /// A GitHub webhook event, handed on once its delivery is verified.
    GitHub(crate::release::forge::GitHubEvent, oneshot::Sender<()>),
    /// A calendar job fires (already claimed in the store).
    Scheduled(Box<Firing>, oneshot::Sender<()>),
    /// The scheduler's periodic tick: waiting slot deploys are retried or skipped.
    Tick(oneshot::Sender<()>),
    /// Read HEAD on every host and log drift (at start-up).
    CheckDrift,
    /// A job reported back.
    Report(Report),
    /// `serve` is shutting down: start nothing new, and tell `done` once no deploy runs.
    Drain(oneshot::Sender<handlers::Drained>),
    /// The shutdown grace ran out: running deploys stop before their next step (why, as a
    /// sentence's start).
    StopDeploys(String),
}

/// Most events handled between two flushes of the store (group commit).
const GROUP_COMMIT_MAX: usize = 128;

/// What a command is told when its decision could not be made durable.
const STORE_FAILED: &str =
    "Shipday could not record this in its store, so it did nothing. An operator can check its logs.";

/// The engine's loop state: the context it lends handlers, and the replies waiting for the
/// next flush.
pub struct Engine {
    ctx: Context,
    /// Replies decided and recorded but not yet sent: they go out after the next flush.
    unsent: Vec<Unsent>,
}

/// A recorded answer waiting for the flush.
struct Unsent {
    sender: oneshot::Sender<Reply>,
    reply: Reply,
    decision: String,
    starts: Option<Box<AcceptedDeploy>>,
}

/// A handle adapters use to talk to the engine.
#[derive(Clone)]
pub struct EngineHandle {
    events: mpsc::UnboundedSender<Event>,
    announcements: Announcer,
    outbox: Option<crate::jira_outbox::OutboxHandle>,
    /// One permit per command queued or being decided: a full queue answers [`BUSY`] at once.
    admitted: Arc<tokio::sync::Semaphore>,
    /// For the records adapters ask about (`ask.rs`).
    store: Store,
    /// Set when a graceful shutdown starts: commands are answered [`RESTARTING`] at once.
    draining: Arc<std::sync::atomic::AtomicBool>,
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
            tracing::info!(platform = %invocation.platform, "shutting down; answered restarting");
            return Reply::refused(RESTARTING);
        }
        let Ok(_admitted) = self.admitted.clone().try_acquire_owned() else {
            tracing::warn!(platform = %invocation.platform, "the engine's queue is full; answered busy");
            return Reply::refused(BUSY);
        };
        let (tx, rx) = oneshot::channel();
        if self.events.send(Event::Invocation(invocation, tx)).is_err() {
            return Reply::refused("Shipday is shutting down. Try again in a minute.");
        }
        rx.await.unwrap_or_else(|_| Reply::refused("Shipday could not answer. An operator can check its logs."))
    }
}

impl Engine {
    /// Starts the engine loop. `transports` maps each environment to how its steps run;
    /// `jira` is the Jira client when `[jira]` is configured (then the outbox worker that
    /// delivers ticket moves runs as long as the loop does).
    pub fn spawn(
        config: Arc<Config>,
        store: Store,
        clock: Arc<dyn Clock>,
        transports: HashMap<String, Arc<dyn RemoteExec>>,
        jira: Option<Arc<JiraClient>>,
        github: Option<Arc<crate::clients::github::GitHubClient>>,
    ) -> EngineHandle {
        let (events, mut inbox) = mpsc::unbounded_channel();
        // Dropped when the loop ends, which stops the outbox worker with it.
        let (running, stopped) = tokio::sync::watch::channel(());
        // Jobs hold the inbox only while they run: the loop ends once every adapter handle and
        // running job is gone.
        let weak: mpsc::WeakUnboundedSender<Event> = events.downgrade();
        let jobs = Jobs::new(move || {
            weak.upgrade().map(|events| Reporter::new(move |report| events.send(Event::Report(report)).is_ok()))
        });
        let ctx = Context::new(config, store, clock, transports, jobs, jira, github, stopped);
        let (announcements, outbox) = (ctx.announcements.clone(), ctx.outbox.clone());
        let asked = ctx.store.clone();
        let mut engine = Engine { ctx, unsent: Vec::new() };
        handlers::resume_ticket_scans(&engine.ctx);
        tokio::spawn(async move {
            let _running = running;
            while let Some(event) = inbox.recv().await {
                engine.handle_guarded(event).await;
                // Group commit: handle what else is already waiting, then make all of it
                // durable with one flush before any of those replies goes out.
                for _ in 0..GROUP_COMMIT_MAX {
                    match inbox.try_recv() {
                        Ok(event) => engine.handle_guarded(event).await,
                        Err(_) => break,
                    }
                }
                engine.commit().await;
                engine.tell_when_drained();
            }
        });
        EngineHandle {
            events,
            announcements,
            outbox,
            admitted: Arc::new(tokio::sync::Semaphore::new(QUEUE_LIMIT)),
            store: asked,
            draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// While shutting down: once no deploy runs or is being prepared, tells the waiter.
    fn tell_when_drained(&mut self) {
        let shutdown = &mut self.ctx.shutdown;
        if shutdown.waiter.is_some() && self.ctx.running.is_empty() && self.ctx.starting.is_empty() {
            let watchers = std::mem::take(&mut shutdown.watchers);
            if let Some(waiter) = shutdown.waiter.take() {
                let _ = waiter.send(handlers::Drained { watchers });
            }
        }
    }

    /// Handles one event, then records what it answered; a panic while handling it is logged
    /// and the loop goes on (the event's waiting command is told Shipday could not answer),
    /// instead of taking every adapter down with it.
    async fn handle_guarded(&mut self, event: Event) {
        if let Err(message) = catch_unwind(self.handle(event)).await {
            let message = self.ctx.redactor.redact(&message);
            tracing::error!(%message, "handling an event panicked; the loop goes on");
        }
        self.record_answers().await;
    }

    /// One exhaustive match: every event has its handler.
    async fn handle(&mut self, event: Event) {
        let ctx = &mut self.ctx;
        match event {
            Event::Invocation(invocation, reply) => self.invocation(invocation, reply),
            Event::Reaction(reaction, done) => {
                handlers::reaction(ctx, reaction).await;
                let _ = done.send(());
            }
            Event::Bind { request, platform, message, done } => {
                handlers::bind_message(ctx, request, &platform, &message).await;
                let _ = done.send(());
            }
            // Shutting down: a merge starts nothing now; the webhook answers "not recorded;
            // redeliver it" once `done` is dropped.
            Event::GitHub(_, done) if ctx.shutdown.draining() => drop(done),
            Event::GitHub(event, done) => handlers::github_event(ctx, event, done).await,
            Event::Scheduled(firing, done) => {
                handlers::scheduled(ctx, *firing).await;
                let _ = done.send(());
            }
            Event::Tick(done) => {
                handlers::on_tick(ctx).await;
                let _ = done.send(());
            }
            Event::CheckDrift => handlers::check_drift(ctx),
            Event::Report(report) => handle_report(ctx, report).await,
            Event::Drain(done) => {
                tracing::info!(running = ctx.running.len(), "shutting down: waiting for running deploys");
                ctx.shutdown.started = true;
                ctx.shutdown.waiter = Some(done);
            }
            Event::StopDeploys(why) => ctx.shutdown.stop = Some(why),
        }
    }

    fn invocation(&mut self, invocation: Invocation, reply: oneshot::Sender<Reply>) {
        let span = tracing::info_span!("command", platform = %invocation.platform, user = %invocation.user_id, text = %invocation.text.escape_debug());
        let _entered = span.enter();
        let person = self.ctx.person(&invocation.platform, &invocation.user_id, &invocation.platform_roles);
        let waiting = WaitingCommand { invocation, person, reply };
        let answered = match self.decide(&waiting) {
            Ok(command) => self.dispatch(command, waiting),
            Err(refusal) => Some((waiting, Decision::refused(refusal))),
        };
        if let Some((waiting, decision)) = answered {
            self.ctx.answer(waiting, decision);
        }
    }

    /// Parses and authorizes; the error is a refusal for the user.
    fn decide(&self, waiting: &WaitingCommand) -> Result<Command, String> {
        let (book, config) = (&self.ctx.book, &self.ctx.config);
        let command = parse(book, &config.environment_names(), &waiting.invocation.text).map_err(|e| e.0)?;
        let spec = book.get(command.name()).expect("parsed commands have specs");
        let actor = Actor {
            person: waiting.person.as_ref(),
            platform: &waiting.invocation.platform,
            user_id: &waiting.invocation.user_id,
        };
        authorize(&config.environments, spec, actor, &command).map_err(|r| r.0)?;
        Ok(command)
    }

    /// One exhaustive match: every command has its handler. `None` means a job started and
    /// the reply will come from what it reports.
    fn dispatch(&mut self, command: Command, waiting: WaitingCommand) -> Option<(WaitingCommand, Decision)> {
        let ctx = &mut self.ctx;
        let now = ctx.clock.now();
        let decision = match command {
            Command::Deploy { env, git_ref, dry_run, emergency, force } => {
                let request = DeployRequest { env, git_ref, dry_run, emergency, force, trigger: Trigger::Command };
                return handlers::deploy(ctx, request, waiting, now);
            }
            Command::Release { env } => return handlers::release(ctx, &env, waiting, now),
            Command::Promote { from, to, emergency, cancel: false } => {
                return handlers::promote(ctx, &from, &to, emergency, waiting, now);
            }
            Command::Promote { from, to, cancel: true, .. } => {
                return handlers::cancel_promotion(ctx, &from, &to, waiting, now);
            }
            Command::Status { env, live: false } => handlers::status(ctx, env.as_deref(), now),
            Command::Status { env, live: true } => {
                handlers::read_heads(ctx, env, Some(waiting));
                return None;
            }
            Command::History { env, limit } => handlers::history(ctx, env.as_deref(), limit),
            Command::Lock { env, reason } => handlers::lock(ctx, &env, &reason, &waiting, now),
            Command::Unlock { env } => handlers::unlock(ctx, &env, &waiting),
            Command::Help { topic } => handlers::help(ctx, topic.as_deref()),
            Command::Schedule { days } => handlers::schedule(ctx, days, now),
            Command::Rollback { env, target, emergency } => {
                return handlers::rollback(ctx, &env, &target, emergency, waiting, now);
            }
            Command::Ticket { key, action, reason, override_reason } => {
                return handlers::ticket(ctx, &key, action, reason, override_reason, waiting, now);
            }
        };
        Some((waiting, decision))
    }

    /// Records every decision answered while handling the last event in the audit log; its
    /// reply waits in [`Engine::unsent`] until [`Engine::commit`] has flushed the store. A
    /// decision that cannot be recorded is answered with [`STORE_FAILED`] at once.
    async fn record_answers(&mut self) {
        for Answer { waiting, decision, starts } in std::mem::take(&mut self.ctx.answers) {
            let Decision { reply, decision } = decision;
            let entry = AuditEntry {
                at: self.ctx.clock.now(),
                platform: waiting.invocation.platform.clone(),
                user_id: waiting.invocation.user_id.clone(),
                person: waiting.person.as_ref().map(|p| p.id.clone()),
                text: waiting.invocation.text.clone(),
                decision: decision.clone(),
            };
            let command = command_name(&self.ctx.book, &waiting.invocation.text);
            match self.ctx.store.audit(&entry) {
                Ok(()) => {
                    let outcome = if decision.starts_with("refused") { "refused" } else { "accepted" };
                    crate::metrics::command_answered(command, outcome);
                    self.unsent.push(Unsent { sender: waiting.reply, reply, decision, starts });
                }
                Err(error) => {
                    crate::metrics::command_answered(command, "failed");
                    tracing::error!(error = format!("{error:#}"), "cannot record a decision");
                    let _ = waiting.reply.send(Reply::refused(STORE_FAILED));
                    if let Some(deploy) = starts {
                        handlers::deploy::start_accepted(&mut self.ctx, *deploy, false).await;
                    }
                }
            }
        }
    }

    /// Flushes the store once for every reply decided since the last commit, then sends them,
    /// then starts the deploys they accepted. If the flush fails, nothing was made durable, so
    /// every one of them is told so instead, and no deploy starts.
    async fn commit(&mut self) {
        if self.unsent.is_empty() {
            return;
        }
        let durable = self.ctx.store.flush().await;
        let mut starts = Vec::new();
        for Unsent { sender, reply, decision, starts: deploy } in std::mem::take(&mut self.unsent) {
            let reply = match &durable {
                Ok(()) => {
                    tracing::info!(decision = %self.ctx.redactor.redact(&decision), "answered");
                    handlers::outbound::redact_reply(&self.ctx.redactor, reply)
                }
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "cannot record a decision");
                    Reply::refused(STORE_FAILED)
                }
            };
            let _ = sender.send(reply);
            starts.extend(deploy);
        }
        for deploy in starts {
            handlers::deploy::start_accepted(&mut self.ctx, *deploy, durable.is_ok()).await;
        }
    }
}

/// The command's name for metrics: a name from the command book, or `unknown` (chat text never
/// becomes a label).
fn command_name<'a>(book: &'a crate::command::CommandBook, text: &str) -> &'a str {
    let word = text.split_whitespace().next().unwrap_or_default().trim_start_matches('/');
    book.get(word).map_or("unknown", |spec| spec.name.as_str())
}
