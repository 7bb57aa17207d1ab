//! What every handler works with: the [`Context`] the engine lends it, the [`Decision`] it
//! returns for a command, and the command it answers ([`WaitingCommand`]).

use super::deploy::{AcceptedDeploy, RunningDeploy};
use super::jobs::Jobs;
use super::outbound::{self, Announcer};
use super::reply::{Announcement, Invocation, ProgressUpdate, Reply};
use crate::clients::RemoteExec;
use crate::clients::github::GitHubClient;
use crate::clients::jira::JiraClient;
use crate::clock::Clock;
use crate::command::CommandBook;
use crate::config::{Config, Person, Role};
use crate::redact::Redactor;
use crate::release::deploy::DeployRecord;
use crate::release::locks::ActiveDeploy;
use crate::store::Store;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The state handlers read and change. The engine owns it and lends it to one handler at a
/// time, so decisions about locks never race.
pub(crate) struct Context {
    pub config: Arc<Config>,
    pub book: CommandBook,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// How each environment's steps run.
    pub transports: HashMap<String, Arc<dyn RemoteExec>>,
    pub redactor: Redactor,
    /// Outbound HTTP (health checks).
    pub http: reqwest::Client,
    /// Where jobs (host, GitHub and Jira work) report back.
    pub jobs: Jobs,
    /// Deploys whose ref is being resolved: they hold the environment like a running deploy.
    pub starting: HashMap<String, ActiveDeploy>,
    /// Where announcements go; every adapter subscribes.
    pub announcements: Announcer,
    /// Running deploys and where their progress goes.
    pub running: HashMap<u64, RunningDeploy>,
    /// Jira, when `[jira]` is configured.
    pub jira: Option<Arc<JiraClient>>,
    /// GitHub, for promotions, deployments and branch protection.
    pub github: Option<Arc<GitHubClient>>,
    /// What GitHub last said about the first environment's branch protection.
    pub protection: Option<String>,
    /// When Shipday last asked GitHub about it: older than
    /// [`super::status::PROTECTION_TTL`], it is asked again, so a branch protected after
    /// start-up shows as protected.
    pub protection_asked: Option<DateTime<Utc>>,
    /// Wakes the worker that delivers ticket moves to Jira (with `jira`).
    pub outbox: Option<crate::jira_outbox::OutboxHandle>,
    /// Merged commits (`env\u{1f}sha`) whose ancestry is being read on the host: a second
    /// delivery of one meanwhile is a duplicate.
    pub merge_checks: HashSet<String>,
    /// When expired dedupe records were last forgotten (see [`Store::prune`]).
    pub pruned_at: Option<DateTime<Utc>>,
    /// Whether promotions a restart interrupted were resumed. That happens on the first tick,
    /// which `serve` sends only once every adapter listens, so their messages are edited.
    pub resumed_at_start: bool,
    /// Commands answered while handling the current event. The engine records each decision,
    /// flushes the store, and only then sends the replies.
    pub answers: Vec<Answer>,
    /// Where a graceful shutdown stands (`serve` on SIGTERM or SIGINT).
    pub shutdown: Shutdown,
}

/// A graceful shutdown: nothing new starts, running deploys may finish within the grace, and
/// after it each stops before its next step.
#[derive(Default)]
pub(crate) struct Shutdown {
    /// Told once no deploy runs or is being prepared any more; set while draining.
    pub waiter: Option<oneshot::Sender<Drained>>,
    /// Whether draining started (it never ends: the process exits).
    pub started: bool,
    /// Set once the grace ran out: why the deploys stop, as a sentence's start.
    pub stop: Option<String>,
    /// Progress channels of deploys that ended while draining, kept until their adapter made
    /// its last edit (it drops its end then).
    pub watchers: Vec<mpsc::UnboundedSender<ProgressUpdate>>,
}

impl Shutdown {
    /// Whether Shipday is shutting down.
    pub(crate) fn draining(&self) -> bool {
        self.started
    }
}

/// What the engine hands back once it drained.
pub(crate) struct Drained {
    /// Progress channels of the deploys that ended meanwhile: each closes once its adapter
    /// made its last edit.
    pub watchers: Vec<mpsc::UnboundedSender<ProgressUpdate>>,
}

/// A command waiting for its reply.
pub(crate) struct WaitingCommand {
    pub invocation: Invocation,
    pub person: Option<Person>,
    pub reply: oneshot::Sender<Reply>,
    /// The command's span: every line logged about it, and about the deploy it starts (in
    /// the loop and in its jobs), carries `platform`, `user`, `env` and `deploy_id`.
    pub span: tracing::Span,
}

impl WaitingCommand {
    /// A command from `invocation`, with its span (`env` and `deploy_id` are recorded on it
    /// once known: [`WaitingCommand::record_env`], [`WaitingCommand::record_deploy`]).
    pub(crate) fn new(invocation: Invocation, person: Option<Person>, reply: oneshot::Sender<Reply>) -> Self {
        // At ERROR level, so the span is on whenever anything is logged: a warning or an error
        // about the command carries its fields too, whatever `SHIPDAY_LOG` filters out.
        let span = tracing::error_span!(
            "command",
            platform = %invocation.platform,
            user = %invocation.user_id,
            person = person.as_ref().map(|p| tracing::field::display(&p.id)),
            text = %invocation.text.escape_debug(),
            env = tracing::field::Empty,
            deploy_id = tracing::field::Empty,
        );
        WaitingCommand { invocation, person, reply, span }
    }

    /// The environment the command acts on, on its span.
    pub(crate) fn record_env(&self, env: &str) {
        self.span.record("env", tracing::field::display(env));
    }

    /// The deploy the command started, on its span.
    pub(crate) fn record_deploy(&self, deploy_id: u64) {
        self.span.record("deploy_id", deploy_id);
    }
}

/// What a handler decided for a command: the reply, and what the audit log records.
#[derive(Debug)]
pub(crate) struct Decision {
    pub reply: Reply,
    /// The audit log's line: `accepted: …`, `refused: …`, `answered`.
    pub decision: String,
}

impl Decision {
    /// A refusal: the user reads `text` word for word.
    pub(crate) fn refused(text: impl Into<String>) -> Self {
        let text = text.into();
        Decision { decision: format!("refused: {text}"), reply: Reply::refused(text) }
    }

    /// The one answer to a store failure: the error is logged with what Shipday was doing
    /// (`doing`: "read the history"), and the user reads [`STORE_TROUBLE`].
    pub(crate) fn store_trouble(doing: &str, error: &anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "cannot {doing}");
        Decision::refused(STORE_TROUBLE)
    }
}

/// What a command is told when Shipday cannot read or write its store. The error itself goes to
/// the log, with context, never to chat.
pub(crate) const STORE_TROUBLE: &str =
    "Shipday cannot use its store right now, so it did nothing. An operator can check its logs.";

/// Why a command cannot be done, in a sentence the user reads word for word. Anything else
/// (a store failure, a bug) is logged and answered with one short line instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserError(pub String);

impl UserError {
    /// A store failure, logged with what Shipday was doing, as the user reads it.
    pub(crate) fn store(doing: &str, error: &anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "cannot {doing}");
        UserError(STORE_TROUBLE.to_owned())
    }
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for UserError {
    fn from(text: String) -> Self {
        UserError(text)
    }
}

impl From<&str> for UserError {
    fn from(text: &str) -> Self {
        UserError(text.to_owned())
    }
}

impl From<UserError> for Decision {
    fn from(error: UserError) -> Self {
        Decision::refused(error.0)
    }
}

/// A command's answer, for the engine to record and then send.
pub(crate) struct Answer {
    pub waiting: WaitingCommand,
    pub decision: Decision,
    /// A deploy that starts once this answer is durable (and is abandoned if it is not).
    pub starts: Option<Box<AcceptedDeploy>>,
}

impl Context {
    /// A context with nothing running yet. Everything it sends out (replies, announcements,
    /// the audit log, logs) is redacted of the config's secrets. With `jira`, the outbox worker
    /// that delivers ticket moves starts, and stops with `stopped`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: Arc<Config>,
        store: Store,
        clock: Arc<dyn Clock>,
        transports: HashMap<String, Arc<dyn RemoteExec>>,
        jobs: Jobs,
        jira: Option<Arc<JiraClient>>,
        github: Option<Arc<GitHubClient>>,
        stopped: tokio::sync::watch::Receiver<()>,
    ) -> Self {
        let redactor = Redactor::new(config.secret_values.clone());
        crate::redact::redact_logs_too(&config.secret_values);
        let announcements = Announcer::new(256, redactor.clone());
        let store = store.with_redactor(redactor.clone());
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
        Context {
            config,
            book: CommandBook::builtin(),
            store,
            clock,
            transports,
            redactor,
            // Health checks: the connect timeout here, each check's total in `health::check`.
            http: reqwest::Client::builder()
                .user_agent(concat!("shipday/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(crate::clients::outbound::CONNECT_TIMEOUT)
                .build()
                .expect("the HTTP client builds with its defaults"),
            jobs,
            starting: HashMap::new(),
            announcements,
            running: HashMap::new(),
            jira,
            github,
            protection: None,
            protection_asked: None,
            outbox,
            merge_checks: HashSet::new(),
            pruned_at: None,
            resumed_at_start: false,
            answers: Vec::new(),
            shutdown: Shutdown::default(),
        }
    }

    /// Answers `waiting` with `decision`: the engine records it, then replies after the flush.
    pub(crate) fn answer(&mut self, waiting: WaitingCommand, decision: Decision) {
        self.answers.push(Answer { waiting, decision, starts: None });
    }

    /// Tells every adapter's team channel.
    pub(crate) fn announce(&self, announcement: Announcement) {
        // No subscriber (console, tests) is not an error.
        let _ = self.announcements.send(announcement);
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
}
