//! The engine: one serial loop that decides and records.
//!
//! Commands from every adapter, and what jobs report, arrive as [`Event`]s on one channel and
//! are handled one at a time, so decisions about locks never race. The loop dispatches each to
//! its handler (`crate::handlers`), which decides with the [`Context`] it is lent; jobs (host,
//! GitHub and Jira work) run outside the loop and report back. Every decision is written to the
//! store and flushed before its reply goes out, one flush for every reply decided meanwhile
//! (group commit).

mod ask;
pub mod control;
mod handle;
pub use crate::handlers::outbound::Announcer;
pub use crate::handlers::reply;
pub use ask::TrackedMessage;
pub use handle::{BUSY, EngineHandle, QUEUE_LIMIT, RESTARTING, ShutdownReport};
pub use reply::{
    Announcement, DirectNotice, Invocation, MessageRef, ProgressUpdate, PromotionView, Reaction, Reply, ReplyBody,
    Visibility,
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
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

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
    /// A job reported back, from within the span it ran in (the command's or deploy's), which
    /// the loop enters while it handles the report.
    Report(Report, tracing::Span),
    /// `serve` is shutting down: start nothing new, and tell `done` once no deploy runs.
    Drain(oneshot::Sender<handlers::Drained>),
    /// The shutdown grace ran out: running deploys stop before their next step (why, as a
    /// sentence's start).
    StopDeploys(String),
    /// The operator asked for a backup through the control socket: the whole store, made
    /// between two decisions.
    Snapshot(oneshot::Sender<anyhow::Result<Vec<u8>>>),
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
    /// The command's span, entered to log what was answered.
    span: tracing::Span,
    reply: Reply,
    decision: String,
    starts: Option<Box<AcceptedDeploy>>,
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
            weak.upgrade().map(|events| {
                Reporter::new(move |report| events.send(Event::Report(report, tracing::Span::current())).is_ok())
            })
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
        // Whatever the event freed (a deploy ended, an unlock, a release), those waiting for
        // it are told, or their deploy starts.
        if let Err(message) = catch_unwind(handlers::wake_waiters(&mut self.ctx)).await {
            tracing::error!(%message, "waking those who wait panicked; the loop goes on");
        }
        self.record_answers().await;
    }

    /// One exhaustive match: every event has its handler.
    async fn handle(&mut self, event: Event) {
        let ctx = &mut self.ctx;
        match event {
            Event::Invocation(invocation, reply) => self.invocation(invocation, reply),
            Event::Reaction(reaction, done) => {
                let span = tracing::error_span!("reaction", platform = %reaction.platform, user = %reaction.user_id);
                handlers::reaction(ctx, reaction).instrument(span).await;
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
            Event::Report(report, span) => handle_report(ctx, report).instrument(span).await,
            Event::Drain(done) => {
                tracing::info!(running = ctx.running.len(), "shutting down: waiting for running deploys");
                ctx.shutdown.started = true;
                ctx.shutdown.waiter = Some(done);
            }
            Event::StopDeploys(why) => ctx.shutdown.stop = Some(why),
            Event::Snapshot(done) => {
                let _ = done.send(control::snapshot(&ctx.store, ctx.clock.now()));
            }
        }
    }

    fn invocation(&mut self, invocation: Invocation, reply: oneshot::Sender<Reply>) {
        let person = self.ctx.person(&invocation.platform, &invocation.user_id, &invocation.platform_roles);
        let waiting = WaitingCommand::new(invocation, person, reply);
        let _entered = waiting.span.clone().entered();
        let answered = match self.decide(&waiting) {
            Ok(command) => {
                if let Some(env) = command.env() {
                    waiting.record_env(env);
                }
                self.dispatch(command, waiting)
            }
            Err(refusal) => Some((waiting, Decision::refused(refusal))),
        };
        if let Some((waiting, decision)) = answered {
            self.ctx.answer(waiting, decision);
        }
    }

    /// Parses and authorizes; the error is a refusal for the user.
    fn decide(&self, waiting: &WaitingCommand) -> Result<Command, String> {
        let (book, config) = (&self.ctx.book, &self.ctx.config);
        let command = parse(book, &config.environments, &waiting.invocation.text).map_err(|e| e.0)?;
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
            Command::Deploy { env, git_ref, dry_run, emergency, force, force_reason, notify, when_free } => {
                let request = DeployRequest {
                    dry_run,
                    emergency,
                    force,
                    ci_override: force_reason,
                    ..DeployRequest::new(&env, git_ref, Trigger::Command)
                };
                let wait = match (when_free, notify) {
                    (true, _) => handlers::Wait::Deploy,
                    (false, true) => handlers::Wait::Notify,
                    (false, false) => handlers::Wait::No,
                };
                return handlers::deploy_or_wait(ctx, request, wait, waiting, now);
            }
            Command::Release { env } => return handlers::release(ctx, &env, waiting, now),
            Command::Promote { from, to, emergency, cancel: false, force } => {
                return handlers::promote(ctx, &from, &to, emergency, force, waiting, now);
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
            Command::Cancel { env } => handlers::cancel(ctx, &env, &waiting),
            Command::Help { topic } => handlers::help(ctx, topic.as_deref()),
            Command::Schedule { days } => handlers::schedule(ctx, days, now),
            Command::Rollback { env, target, emergency } => {
                return handlers::rollback(ctx, &env, &target, emergency, waiting, now);
            }
            Command::Freeze { env, reason, until } => {
                handlers::freeze(ctx, &env, &reason, until.as_deref(), &waiting, now)
            }
            Command::Unfreeze { env } => handlers::unfreeze(ctx, &env, &waiting, now),
            Command::Skip { env } => handlers::skip(ctx, &env, &waiting, now),
            Command::Unskip { env } => handlers::unskip(ctx, &env, &waiting),
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
            let span = waiting.span.clone();
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
                    self.unsent.push(Unsent { sender: waiting.reply, span, reply, decision, starts });
                }
                Err(error) => {
                    crate::metrics::command_answered(command, "failed");
                    span.in_scope(|| tracing::error!(error = format!("{error:#}"), "cannot record a decision"));
                    let _ = waiting.reply.send(Reply::refused(STORE_FAILED));
                    if let Some(deploy) = starts {
                        handlers::deploy::start_accepted(&mut self.ctx, *deploy, false).instrument(span).await;
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
        for Unsent { sender, span, reply, decision, starts: deploy } in std::mem::take(&mut self.unsent) {
            let _entered = span.enter();
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
            let span = deploy.span.clone();
            handlers::deploy::start_accepted(&mut self.ctx, *deploy, durable.is_ok()).instrument(span).await;
        }
    }
}

/// The command's name for metrics: a name from the command book, or `unknown` (chat text never
/// becomes a label).
fn command_name<'a>(book: &'a crate::command::CommandBook, text: &str) -> &'a str {
    let word = text.split_whitespace().next().unwrap_or_default().trim_start_matches('/');
    book.get(word).map_or("unknown", |spec| spec.name.as_str())
}
