//! The engine: one serial loop that decides and records.
//!
//! Commands from every adapter, and the progress of long-running work, arrive as [`Event`]s on
//! one channel and are handled one at a time, so decisions about locks never race. Long work
//! (resolving a ref on a host, running a deploy) runs as tasks that report back as events.
//! Every decision is written to the store and flushed before the reply goes out.

mod ask;
mod guard;
mod outbound;
pub mod reply;
pub use ask::TrackedMessage;
pub use outbound::Announcer;
mod runner;
pub(crate) use guard::spawn_guarded;
pub(crate) use runner::spawn_runner;

use crate::clients::jira::JiraClient;
use crate::clients::{ExecSession, RemoteExec};
use crate::clock::Clock;
use crate::command::authorize::{Actor, authorize};
use crate::command::{Command, CommandBook, parse};
use crate::config::{Config, Person, Role};
use crate::redact::Redactor;
use crate::release::calendar::Firing;
use crate::release::deploy::{DeployEvent, DeployRecord, Outcome, StepResult, Trigger};
use crate::release::gitref::{GitRef, Sha};
use crate::release::locks::ActiveDeploy;
use crate::release::migrations::MigrationDebt;
use crate::release::ticket_flow::TicketScan;
use crate::release::tickets::TicketKey;
use crate::store::{AuditEntry, Store};
use chrono::{DateTime, Utc};
pub use reply::{
    Announcement, Invocation, MessageRef, ProgressUpdate, PromotionView, Reaction, Reply, ReplyBody, Visibility,
};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::Instrument;

/// Everything the loop handles.
pub(crate) enum Event {
    /// A command from an adapter.
    Invocation(Invocation, oneshot::Sender<Reply>),
    /// A ref was resolved on the host (or could not be).
    Resolved(Box<Resolved>),
    /// A deploy step started.
    StepStarted { deploy_id: u64, name: String, at: DateTime<Utc>, durable: oneshot::Sender<bool> },
    /// A deploy step finished.
    StepFinished { deploy_id: u64, result: StepResult, tail: String, output_bytes: u64, duration_ms: u64 },
    /// A deploy ended.
    DeployFinished { deploy_id: u64, outcome: Outcome },
    /// A reaction on one of the bot's messages.
    Reaction(Reaction, oneshot::Sender<()>),
    /// An adapter posted a promotion request as this message.
    Bind { request: u64, platform: String, message: MessageRef, done: oneshot::Sender<()> },
    /// Promotion work reported back.
    Promotion(PromotionEvent),
    /// What GitHub says about the first environment's branch protection.
    Protection(String),
    /// A GitHub webhook event, handed on once its delivery is verified.
    GitHub(crate::release::forge::GitHubEvent, oneshot::Sender<()>),
    /// The host said where a merged commit stands against the merge head.
    MergeChecked(Box<crate::handlers::merge_stream::MergeCheck>),
    /// A calendar job fires (already claimed in the store).
    Scheduled(Box<Firing>, oneshot::Sender<()>),
    /// The scheduler's periodic tick: waiting slot deploys are retried or skipped.
    Tick(oneshot::Sender<()>),
    /// Read HEAD on every host and log drift (at start-up).
    CheckDrift,
    /// HEADs were read on the hosts; `pending` waits for a `/status --live` reply.
    Observed { env: Option<String>, heads: Vec<(String, Result<Sha, String>)>, pending: Option<Box<Pending>> },
    /// A deploy's commits were read for ticket keys (or could not be).
    TicketsFound { scan: TicketScan, result: Result<Vec<TicketKey>, String> },
    /// Long work for a command (a Jira call) is done: record the decision and reply.
    Answered(Box<TaskAnswer>),
    /// A task panicked: what it was doing, and the panic's message.
    Crashed(Crashed, String),
}

/// What long promotion work reports back to the engine loop.
pub(crate) enum PromotionEvent {
    /// The request's facts were gathered (or could not be).
    Prepared { pending: Option<Box<Pending>>, draft: Box<Result<crate::release::approvals::PromotionRequest, String>> },
    /// The source commit was merged into the target branch (or not).
    Merged { id: u64, result: Result<Sha, String> },
    /// The target's deploy was answered (accepted or refused).
    DeployAnswered { id: u64, reply: Box<Reply> },
    /// A lead's `--emergency` on an approved request: carry it out now.
    RunNow { id: u64 },
}

/// The work a panicked task was doing, so the engine can record it as failed.
#[derive(Debug)]
pub(crate) enum Crashed {
    /// A deploy's steps.
    Deploy(u64),
    /// Resolving a deploy's ref (and reading its migrations) on the host.
    Resolve { env: String, dry_run: bool },
    /// Reading a merged commit's ancestry (`env\u{1f}sha`).
    MergeCheck(String),
    /// A promotion's merge on GitHub.
    PromotionMerge(u64),
}

/// What long work for a command decided, for the loop to record and send.
pub(crate) struct TaskAnswer {
    /// The command, waiting for its reply.
    pub pending: Pending,
    /// The reply and the decision to record.
    pub handled: Handled,
    /// News for the team, sent after the reply.
    pub announcement: Option<Announcement>,
}

/// A command waiting for its reply while long work runs.
pub(crate) struct Pending {
    pub invocation: Invocation,
    pub person: Option<Person>,
    pub reply: oneshot::Sender<Reply>,
}

/// A deploy whose ref is being resolved on the host.
pub(crate) struct DeployRequest {
    pub env: String,
    pub git_ref: GitRef,
    pub dry_run: bool,
    /// A lead's reason for deploying outside the environment's slot.
    pub emergency: Option<String>,
    /// Deploy despite conflicting or irreversible migrations.
    pub force: bool,
    pub trigger: Trigger,
}

/// An open session, the resolved commit, and what the migration guard found on the branch.
pub(crate) type ResolvedDeploy = (Box<dyn ExecSession>, Sha, Option<crate::release::migrations::BranchMigrations>);

/// The result of resolving a ref: the open session and the commit, or a reason for the user.
pub(crate) struct Resolved {
    pub pending: Pending,
    pub request: DeployRequest,
    pub result: Result<ResolvedDeploy, String>,
}

/// What a handler decided.
pub(crate) enum Handled {
    /// Answer now; `decision` goes to the audit log.
    Reply { reply: Reply, decision: String },
}

impl Handled {
    pub(crate) fn refused(text: impl Into<String>) -> Self {
        let text = text.into();
        Handled::Reply { decision: format!("refused: {text}"), reply: Reply::refused(text) }
    }
}

/// A deploy in flight, with what it changes when it ends.
pub(crate) struct RunningDeploy {
    pub record: DeployRecord,
    /// The command following its progress, if any (otherwise it is announced).
    pub watcher: Option<mpsc::UnboundedSender<ProgressUpdate>>,
    /// The migration debt its first steps undo.
    pub pays_debt: Option<MigrationDebt>,
    /// The migration debt it leaves once its code is checked out.
    pub new_debt: Option<MigrationDebt>,
}

/// How long what GitHub said about branch protection is trusted before it is asked again.
pub(crate) const PROTECTION_TTL: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Most events handled between two flushes of the store (group commit).
const GROUP_COMMIT_MAX: usize = 128;

/// What a command is told when its decision could not be made durable.
const STORE_FAILED: &str =
    "Shipday could not record this in its store, so it did nothing. An operator can check its logs.";

/// The engine's state, owned by its loop.
pub struct Engine {
    pub(crate) config: Arc<Config>,
    pub(crate) book: CommandBook,
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) transports: HashMap<String, Arc<dyn RemoteExec>>,
    pub(crate) redactor: Redactor,
    /// Outbound HTTP (health checks).
    pub(crate) http: reqwest::Client,
    /// Weak, so the loop ends once every adapter handle and running task is gone.
    pub(crate) events: mpsc::WeakUnboundedSender<Event>,
    /// Deploys whose ref is being resolved: they hold the environment like a running deploy.
    pub(crate) starting: HashMap<String, ActiveDeploy>,
    /// Where announcements go; every adapter subscribes.
    pub(crate) announcements: Announcer,
    /// Replies decided but not yet sent: they go out after the next flush.
    pub(crate) unsent: Vec<(oneshot::Sender<Reply>, Reply, String)>,
    /// Running deploys and where their progress goes.
    pub(crate) running: HashMap<u64, RunningDeploy>,
    /// Jira, when `[jira]` is configured.
    pub(crate) jira: Option<Arc<JiraClient>>,
    /// GitHub, for promotions, deployments and branch protection.
    pub(crate) github: Option<Arc<crate::clients::github::GitHubClient>>,
    /// What GitHub last said about the first environment's branch protection.
    pub(crate) protection: Option<String>,
    /// When Shipday last asked GitHub about it: older than [`PROTECTION_TTL`], it is asked
    /// again, so a branch protected after start-up shows as protected.
    pub(crate) protection_asked: Option<DateTime<Utc>>,
    /// Wakes the worker that delivers ticket moves to Jira (with `jira`).
    pub(crate) outbox: Option<crate::jira_outbox::OutboxHandle>,
    /// Merged commits (`env\u{1f}sha`) whose ancestry is being read on the host: a second
    /// delivery of one meanwhile is a duplicate.
    pub(crate) merge_checks: std::collections::HashSet<String>,
    /// When expired dedupe records were last forgotten (see [`Store::prune`]).
    pub(crate) pruned_at: Option<DateTime<Utc>>,
    /// Whether promotions a restart interrupted were resumed. That happens on the first tick,
    /// which `serve` sends only once every adapter listens, so their messages are edited.
    pub(crate) resumed_at_start: bool,
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
}

/// Most commands queued or being decided at once (see [`EngineHandle::with_queue_limit`]).
pub const QUEUE_LIMIT: usize = 1024;

/// What a command is told when the queue is full: at once, well within every platform's ack
/// limit, and nothing was done.
pub const BUSY: &str = "Shipday is busy, try again in a moment. Nothing was done.";

impl EngineHandle {
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
        let redactor = Redactor::new(config.secret_values.clone());
        crate::redact::redact_logs_too(&config.secret_values);
        let announcements = Announcer::new(256, redactor.clone());
        let store = store.with_redactor(redactor.clone());
        let asked = store.clone();
        // Dropped when the loop ends, which stops the outbox worker with it.
        let (running, stopped) = tokio::sync::watch::channel(());
        let outbox = jira.clone().map(|client| {
            let outbox = crate::jira_outbox::Outbox {
                store: store.clone(),
                client,
                clock: clock.clone(),
                config: config.clone(),
                tell_team: {
                    let announcements = announcements.clone();
                    Arc::new(move |text| {
                        let _ = announcements.send(Announcement::Text(text));
                    })
                },
            };
            outbox.spawn(stopped)
        });
        let mut engine = Engine {
            redactor,
            book: CommandBook::builtin(),
            // Health checks: the connect timeout here, each check's total in `health::check`.
            http: reqwest::Client::builder()
                .user_agent(concat!("shipday/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(crate::clients::outbound::CONNECT_TIMEOUT)
                .build()
                .expect("the HTTP client builds with its defaults"),
            config,
            store,
            clock,
            transports,
            events: events.downgrade(),
            starting: HashMap::new(),
            unsent: Vec::new(),
            announcements: announcements.clone(),
            running: HashMap::new(),
            jira,
            github,
            protection: None,
            protection_asked: None,
            outbox: outbox.clone(),
            merge_checks: Default::default(),
            pruned_at: None,
            resumed_at_start: false,
        };
        engine.resume_ticket_scans();
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
            }
        });
        EngineHandle {
            events,
            announcements,
            outbox,
            admitted: Arc::new(tokio::sync::Semaphore::new(QUEUE_LIMIT)),
            store: asked,
        }
    }

    /// Handles one event; a panic while handling it is logged and the loop goes on (the
    /// event's waiting command is told Shipday could not answer), instead of taking every
    /// adapter down with it.
    async fn handle_guarded(&mut self, event: Event) {
        if let Err(message) = guard::catch_unwind(self.handle(event)).await {
            tracing::error!(message = %self.redactor.redact(&message), "handling an event panicked; the loop goes on");
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Invocation(invocation, reply) => {
                let span = tracing::info_span!(
                    "command",
                    platform = %invocation.platform,
                    user = %invocation.user_id,
                    text = %invocation.text.escape_debug()
                );
                self.invocation(invocation, reply).instrument(span).await;
            }
            Event::Resolved(resolved) => self.resolved(*resolved).await,
            Event::StepStarted { deploy_id, name, at, durable } => {
                let recorded = self.step_starting(deploy_id, name, at).await;
                let _ = durable.send(recorded);
            }
            Event::StepFinished { deploy_id, result, tail, output_bytes, duration_ms } => {
                self.progress(deploy_id, |record| {
                    let index = record.steps.len().saturating_sub(1);
                    if let Some(step) = record.steps.last_mut() {
                        step.result = Some(result);
                        step.tail = tail;
                        step.output_bytes = output_bytes;
                        step.duration_ms = Some(duration_ms);
                    }
                    DeployEvent::StepFinished { index }
                })
                .await;
            }
            Event::DeployFinished { deploy_id, outcome } => self.finished(deploy_id, outcome).await,
            Event::CheckDrift => {
                // The start-up checks: drift on the hosts and protection. Promotions resume on
                // the first tick, once the adapters listen.
                self.read_heads(None, None);
                self.refresh_protection(true);
            }
            Event::Promotion(event) => self.promotion_event(event).await,
            Event::Protection(text) => self.protection = Some(text),
            Event::GitHub(event, done) => self.github_event(event, done).await,
            Event::MergeChecked(check) => self.merge_checked(*check).await,
            Event::Scheduled(firing, done) => {
                self.scheduled(*firing).await;
                let _ = done.send(());
            }
            Event::Bind { request, platform, message, done } => {
                if let Err(error) = self.store.bind_promotion_message(&platform, &message, request) {
                    tracing::error!(error = format!("{error:#}"), "cannot bind a promotion message");
                }
                let _ = self.store.flush().await;
                self.apply_early_reactions(&platform, &message).await;
                let _ = done.send(());
            }
            Event::Tick(done) => {
                if !self.resumed_at_start {
                    self.resumed_at_start = true;
                    self.resume_promotions(true).await;
                }
                self.refresh_protection(false);
                self.prune_if_due().await;
                self.tick().await;
                let _ = done.send(());
            }
            Event::Reaction(reaction, done) => {
                // A vote on a message not bound yet is kept until it is (see `votes.rs`).
                if self.reaction(reaction.clone()).await {
                    self.keep_early_reaction(&reaction).await;
                }
                let _ = done.send(());
            }
            Event::Observed { env, heads, pending } => self.observed(env, heads, pending.map(|p| *p)).await,
            Event::TicketsFound { scan, result } => self.tickets_found(scan, result).await,
            Event::Crashed(task, message) => self.crashed(task, message).await,
            Event::Answered(answer) => {
                let TaskAnswer { pending, handled, announcement } = *answer;
                self.answer(pending, handled).await;
                if let Some(announcement) = announcement {
                    self.announce(announcement);
                }
            }
        }
    }

    /// The configured person behind a platform identity, with the roles the platform vouches
    /// for added. Never by display name.
    pub(crate) fn person(&self, platform: &str, user_id: &str, platform_roles: &[Role]) -> Option<Person> {
        let mut person = self
            .config
            .people
            .iter()
            .find(|p| match platform {
                "console" => p.id == user_id,
                "slack" => p.slack.as_deref() == Some(user_id),
                "discord" => p.discord.as_deref() == Some(user_id),
                _ => false,
            })
            .cloned()?;
        for role in platform_roles {
            if !person.roles.contains(role) {
                person.roles.push(*role);
            }
        }
        Some(person)
    }

    /// Records a reaction on one of the bot's messages. Approvals act on these.
    /// Records a reaction and applies it as a vote; `true` when its message is not bound to a
    /// request yet (see [`Engine::vote`]).
    async fn reaction(&mut self, reaction: Reaction) -> bool {
        let person = self.person(&reaction.platform, &reaction.user_id, &reaction.platform_roles);
        let entry = AuditEntry {
            at: reaction.at,
            platform: reaction.platform.clone(),
            user_id: reaction.user_id.clone(),
            person: person.as_ref().map(|p| p.id.clone()),
            text: format!(
                "{} :{}: on message {} in {}",
                if reaction.added { "reacted" } else { "removed reaction" },
                reaction.emoji,
                reaction.message.id,
                reaction.message.channel
            ),
            decision: "recorded".into(),
        };
        let result = match self.store.audit(&entry) {
            Ok(()) => self.store.flush().await,
            Err(e) => Err(e),
        };
        if let Err(error) = result {
            tracing::error!(error = format!("{error:#}"), "cannot record a reaction");
        }
        self.vote(&reaction, person).await
    }

    async fn invocation(&mut self, invocation: Invocation, reply: oneshot::Sender<Reply>) {
        let person = self.person(&invocation.platform, &invocation.user_id, &invocation.platform_roles);
        let pending = Pending { invocation, person, reply };
        let handled = match self.decide(&pending) {
            Ok(Some(command)) => self.dispatch(command, pending).await,
            Ok(None) => return,
            Err(refusal) => {
                self.answer(pending, Handled::refused(refusal)).await;
                return;
            }
        };
        if let Some((pending, handled)) = handled {
            self.answer(pending, handled).await;
        }
    }

    /// Parses and authorizes; the error is a refusal for the user.
    fn decide(&self, pending: &Pending) -> Result<Option<Command>, String> {
        let command = parse(&self.book, &self.config.environment_names(), &pending.invocation.text).map_err(|e| e.0)?;
        let spec = self.book.get(command.name()).expect("parsed commands have specs");
        let actor = Actor {
            person: pending.person.as_ref(),
            platform: &pending.invocation.platform,
            user_id: &pending.invocation.user_id,
        };
        authorize(&self.config.environments, spec, actor, &command).map_err(|r| r.0)?;
        Ok(Some(command))
    }

    /// One exhaustive match: every command has its handler. `None` means long work started
    /// and the reply will come from a later event.
    async fn dispatch(&mut self, command: Command, pending: Pending) -> Option<(Pending, Handled)> {
        let now = self.clock.now();
        let handled = match command {
            Command::Deploy { env, git_ref, dry_run, emergency, force } => {
                let request = DeployRequest { env, git_ref, dry_run, emergency, force, trigger: Trigger::Command };
                return self.command_deploy(request, pending, now);
            }
            Command::Release { env } => return self.command_release(&env, pending, now),
            Command::Promote { from, to, emergency, cancel: false } => {
                return self.command_promote(&from, &to, emergency, pending, now);
            }
            Command::Promote { from, to, cancel: true, .. } => {
                return self.command_cancel_promotion(&from, &to, pending, now);
            }
            Command::Status { env, live: false } => self.command_status(env.as_deref(), now),
            Command::Status { env, live: true } => {
                self.read_heads(env, Some(pending));
                return None;
            }
            Command::History { env, limit } => self.command_history(env.as_deref(), limit),
            Command::Lock { env, reason } => self.command_lock(&env, &reason, &pending, now),
            Command::Unlock { env } => self.command_unlock(&env, &pending),
            Command::Help { topic } => self.command_help(topic.as_deref()),
            Command::Schedule { days } => self.command_schedule(days, now),
            Command::Rollback { env, target, emergency } => {
                return self.command_rollback(&env, &target, emergency, pending, now);
            }
            Command::Ticket { key, action, reason, override_reason } => {
                return self.command_ticket(&key, action, reason, override_reason, pending, now);
            }
        };
        Some((pending, handled))
    }

    /// Records the decision, makes it durable, then replies.
    /// The reply waits in [`Engine::unsent`] until [`Engine::commit`] has flushed the store.
    pub(crate) async fn answer(&mut self, pending: Pending, handled: Handled) {
        self.answer_recorded(pending, handled).await;
    }

    /// [`Engine::answer`], returning whether the decision went into the audit log (if not, the
    /// command was told that nothing was done).
    pub(crate) async fn answer_recorded(&mut self, pending: Pending, handled: Handled) -> bool {
        let Handled::Reply { reply, decision } = handled;
        let entry = AuditEntry {
            at: self.clock.now(),
            platform: pending.invocation.platform.clone(),
            user_id: pending.invocation.user_id.clone(),
            person: pending.person.as_ref().map(|p| p.id.clone()),
            text: pending.invocation.text.clone(),
            decision: decision.clone(),
        };
        match self.store.audit(&entry) {
            Ok(()) => {
                self.unsent.push((pending.reply, reply, decision));
                true
            }
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot record a decision");
                let _ = pending.reply.send(Reply::refused(STORE_FAILED));
                false
            }
        }
    }

    /// Flushes the store once for every reply decided since the last commit, then sends them.
    /// If the flush fails, nothing was made durable, so every one of them is told so instead.
    /// Returns whether they were made durable.
    pub(crate) async fn commit(&mut self) -> bool {
        if self.unsent.is_empty() {
            return true;
        }
        let durable = self.store.flush().await;
        let made_durable = durable.is_ok();
        for (sender, reply, decision) in self.unsent.drain(..) {
            let reply = match &durable {
                Ok(()) => {
                    tracing::info!(decision = %self.redactor.redact(&decision), "answered");
                    outbound::redact_reply(&self.redactor, reply)
                }
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "cannot record a decision");
                    Reply::refused(STORE_FAILED)
                }
            };
            let _ = sender.send(reply);
        }
        made_durable
    }

    /// A task panicked: record its work as failed and free what it held.
    async fn crashed(&mut self, task: Crashed, message: String) {
        let message = self.redactor.redact(&message);
        tracing::error!(?task, %message, "recording a panicked task as failed");
        match task {
            Crashed::Deploy(deploy_id) => {
                let outcome = Outcome::Failed {
                    step: "shipday".into(),
                    reason: format!("Shipday hit an internal error and stopped this deploy ({message})"),
                    state_unknown: true,
                };
                self.finished(deploy_id, outcome).await;
            }
            Crashed::Resolve { env, dry_run } => {
                if !dry_run && self.starting.get(&env).is_some_and(|s| s.deploy_id == 0) {
                    self.starting.remove(&env);
                }
                self.announce(Announcement::Text(format!(
                    "⚠️ Shipday hit an internal error while preparing a deploy to {env}; nothing was changed there. ({message})"
                )));
            }
            Crashed::MergeCheck(key) => {
                self.merge_checks.remove(&key);
            }
            Crashed::PromotionMerge(id) => {
                self.promotion_event(PromotionEvent::Merged {
                    id,
                    result: Err(format!("Shipday hit an internal error during the merge ({message})")),
                })
                .await;
            }
        }
    }

    /// Forgets expired dedupe records, at most once an hour (the scheduler ticks every 30 s).
    async fn prune_if_due(&mut self) {
        let now = self.clock.now();
        if self.pruned_at.is_some_and(|at| now - at < chrono::Duration::hours(1) && at <= now) {
            return;
        }
        self.pruned_at = Some(now);
        match self.store.prune(now) {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(removed, "forgot expired dedupe records");
                let _ = self.store.flush().await;
            }
            Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot prune expired dedupe records"),
        }
    }

    /// Applies a progress change to a running deploy, records it and forwards it.
    async fn progress(&mut self, deploy_id: u64, change: impl FnOnce(&mut DeployRecord) -> DeployEvent) {
        let Some(RunningDeploy { record, watcher, .. }) = self.running.get_mut(&deploy_id) else {
            return;
        };
        let event = change(record);
        let record = record.clone();
        let watcher = watcher.clone();
        self.record(&record).await;
        self.forward(watcher.as_ref(), ProgressUpdate { event, record });
    }

    async fn finished(&mut self, deploy_id: u64, outcome: Outcome) {
        let Some(RunningDeploy { mut record, watcher, pays_debt, new_debt }) = self.running.remove(&deploy_id) else {
            return;
        };
        record.outcome = outcome;
        record.finished_at = Some(self.clock.now());
        tracing::info!(deploy = deploy_id, env = %record.env, sha = %record.sha, outcome = ?record.outcome, "deploy finished");
        if let Err(error) = self.store.set_active(&record.env, None) {
            tracing::error!(error = format!("{error:#}"), "cannot free the deploy lock");
        }
        if let Err(error) = self.settle(&record, pays_debt, new_debt) {
            tracing::error!(error = format!("{error:#}"), "cannot record what a deploy left behind");
        }
        self.promotion_deploy_finished(&record).await;
        self.report_to_github(&record);
        self.record(&record).await;
        self.forward(watcher.as_ref(), ProgressUpdate { event: DeployEvent::Finished, record });
    }

    /// Sends progress to the command that follows the deploy, or announces it to the team.
    pub(crate) fn forward(&self, watcher: Option<&mpsc::UnboundedSender<ProgressUpdate>>, update: ProgressUpdate) {
        match watcher {
            Some(watcher) => {
                let _ = watcher.send(outbound::redact_progress(&self.redactor, update));
            }
            None => self.announce(Announcement::Deploy(Box::new(update))),
        }
    }

    /// Tells every adapter's team channel.
    pub(crate) fn announce(&self, announcement: Announcement) {
        // No subscriber (console, tests) is not an error.
        let _ = self.announcements.send(announcement);
    }

    /// Writes a deploy record durably; a store failure is logged (the deploy itself goes on).
    pub(crate) async fn record(&self, record: &DeployRecord) {
        let result = match self.store.put_deploy(record) {
            Ok(()) => self.store.flush().await,
            Err(e) => Err(e),
        };
        if let Err(error) = result {
            tracing::error!(deploy = record.id, error = format!("{error:#}"), "cannot record deploy progress");
        }
    }
}
