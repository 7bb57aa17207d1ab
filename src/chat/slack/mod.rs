//! The Slack adapter: slash commands, live deploy messages, reactions and announcements, over
//! Socket Mode or signed HTTP requests with one behaviour.
//!
//! Both transports hand the same [`commands::SlashCommand`] and event payloads to one
//! [`Slack`] core, which checks the workspace, dedupes deliveries durably, turns them into
//! engine [`Invocation`](crate::engine::Invocation)s and [`Reaction`](crate::engine::Reaction)s,
//! and renders replies as Block Kit. It decides nothing: refusals come from the engine.

mod announce;
mod api;
mod commands;
mod config;
mod events;
mod http;
pub mod names;
pub mod render;
mod socket;
pub mod verify;

pub use api::{ApiError, BotIdentity, ChannelMembership, SlackApi};
pub use config::{DEFAULT_API_BASE_URL, SlackConfig, SlackMode};
pub use http::{COMMANDS_PATH, EVENTS_PATH, INTERACTIVITY_PATH};

use crate::app::App;
use crate::clients::outbound::StartupRetry;
use crate::clock::Clock;
use crate::command::CommandBook;
use crate::config::Config;
use crate::engine::EngineHandle;
use anyhow::{Context, Result, bail};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::task::JoinSet;

/// A running Slack adapter: its tasks stop when it is dropped.
pub struct SlackAdapter {
    api: SlackApi,
    routes: Option<axum::Router>,
    tasks: JoinSet<Result<()>>,
}

impl SlackAdapter {
    /// Checks the bot token against the configured workspace (`auth.test`), then starts the
    /// transport `settings` (the `[slack]` section) names and the announcement poster.
    pub async fn start(app: &App, settings: &SlackConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::start_with(app, settings, clock, &StartupRetry::default()).await
    }

    /// [`SlackAdapter::start`], with `retry` bounding `auth.test`: a Slack that does not
    /// answer is retried with backoff (logged), then start-up fails instead of hanging.
    pub async fn start_with(
        app: &App,
        settings: &SlackConfig,
        clock: Arc<dyn Clock>,
        retry: &StartupRetry,
    ) -> Result<Self> {
        let settings = settings.clone();
        let api = SlackApi::new(&settings.api_base_url, &settings.bot_token)?.with_names(settings.commands.clone());
        // Slack's own answer (`invalid_auth`) is final; only an unreachable Slack is retried.
        let answered = retry
            .run("Slack's auth.test", || async {
                match api.auth_test().await {
                    Err(refused @ api::ApiError::Slack { .. }) => Ok(Err(refused)),
                    other => other.map(Ok),
                }
            })
            .await
            .and_then(|answer| answer.map_err(anyhow::Error::from));
        let bot = answered.with_context(|| {
            format!("cannot check the bot token with Slack's auth.test at {}", settings.api_base_url)
        })?;
        if bot.team_id != settings.team_id {
            bail!(
                "slack.team_id is {} but the bot token belongs to workspace {}: Shipday serves exactly one workspace",
                settings.team_id,
                bot.team_id
            );
        }
        tracing::info!(team = %bot.team_id, bot_user = %bot.user_id, "connected to Slack's Web API");
        let announcements = app.engine.announcements();
        let slack = Arc::new(Slack {
            config: app.config.clone(),
            engine: app.engine.clone(),
            clock,
            api,
            bot_user_id: bot.user_id,
            book: CommandBook::builtin(),
            in_flight: Mutex::new(HashSet::new()),
            response_urls: Mutex::new(HashMap::new()),
            settings,
        });
        let mut tasks = JoinSet::new();
        // Short work, apart from the adapter's tasks (whose end would stop the adapter).
        tokio::spawn(mark_interrupted(slack.clone(), app.interrupted.clone()));
        let notice = crate::chat::text::interrupted_notice(&app.interrupted);
        tasks.spawn(announce::run(slack.clone(), announcements, notice));
        let routes = match slack.settings.mode.clone() {
            SlackMode::Http { signing_secret } => Some(http::routes(slack.clone(), signing_secret)),
            SlackMode::Socket { app_token } => {
                tasks.spawn(socket::run(slack.clone(), app_token, retry.websocket_ready, retry.first_backoff));
                None
            }
        };
        Ok(Self { api: slack.api.clone(), routes, tasks })
    }

    /// What `/readyz` asks: whether Slack's Web API answers the bot token now (`auth.test`).
    pub fn readiness(&self) -> SlackReadiness {
        SlackReadiness { api: self.api.clone() }
    }

    /// HTTP mode's routes (commands, events, interactivity), each behind its limits, for the
    /// one listener (`crate::listener`) to serve; `None` in Socket Mode.
    pub fn routes(&self) -> Option<axum::Router> {
        self.routes.clone()
    }

    /// Runs until one of the adapter's tasks stops, which is an error: they are meant to run
    /// until the process ends.
    pub async fn run(mut self) -> Result<()> {
        match self.tasks.join_next().await {
            Some(Ok(Ok(()))) | None => bail!("the Slack adapter stopped"),
            Some(Ok(Err(error))) => Err(error.context("the Slack adapter stopped")),
            Some(Err(panic)) => bail!("the Slack adapter crashed: {panic}"),
        }
    }
}

/// What both transports share.
pub(crate) struct Slack {
    settings: SlackConfig,
    config: Arc<Config>,
    engine: EngineHandle,
    clock: Arc<dyn Clock>,
    api: SlackApi,
    /// The bot's own member id, from `auth.test`.
    bot_user_id: String,
    book: CommandBook,
    /// Deliveries being handled now, so a retry arriving meanwhile is not handled twice.
    in_flight: Mutex<HashSet<String>>,
    /// Uses of each command's `response_url` (Slack allows 5 in 30 minutes).
    response_urls: Mutex<HashMap<String, commands::ResponseUrlUses>>,
}

/// A delivery this process is handling. Dropping it without [`Delivery::done`] leaves the
/// delivery unrecorded, so Slack's retry of it is handled again.
pub(crate) struct Delivery {
    slack: Arc<Slack>,
    key: String,
}

impl Slack {
    /// Claims delivery `key`, or `None` when it was already handled (durably recorded) or is
    /// being handled right now.
    pub(crate) fn claim(self: &Arc<Self>, key: String) -> Result<Option<Delivery>> {
        if !self.in_flight.lock().expect("in-flight lock").insert(key.clone()) {
            return Ok(None);
        }
        let delivery = Delivery { slack: self.clone(), key };
        if self.engine.delivery_handled(&delivery.key)? {
            return Ok(None);
        }
        Ok(Some(delivery))
    }
}

impl Delivery {
    /// Records the delivery as handled: call only once its effect is durable.
    pub(crate) async fn done(self) -> Result<()> {
        let now = self.slack.clock.now();
        self.slack.engine.mark_delivery_handled(&self.key, now).await
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.slack.in_flight.lock().expect("in-flight lock").remove(&self.key);
    }
}

/// After a crash: edits the message of each deploy the crash interrupted to say so (the notice
/// in the team channel comes as well).
async fn mark_interrupted(slack: Arc<Slack>, interrupted: Vec<crate::release::deploy::DeployRecord>) {
    for record in &interrupted {
        let shown = match slack.engine.deploy_messages(record.id, "slack") {
            Ok(shown) => shown,
            Err(error) => {
                tracing::warn!(deploy = record.id, error = format!("{error:#}"), "cannot read a deploy's messages");
                continue;
            }
        };
        let content = render::deploy(record, slack.clock.now(), slack.config.timezone);
        for at in shown {
            if let Err(error) = slack.api.update(&at, &content).await {
                tracing::warn!(deploy = record.id, %error, "cannot mark a deploy's message interrupted");
            }
        }
    }
}

/// The Slack adapter's readiness check (see [`SlackAdapter::readiness`]).
#[derive(Clone)]
pub struct SlackReadiness {
    api: SlackApi,
}

impl SlackReadiness {
    /// `Ok` when `auth.test` answers within a few seconds; otherwise what went wrong.
    pub async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(std::time::Duration::from_secs(3), self.api.auth_test()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("Slack's auth.test failed: {error}")),
            Err(_) => Err("Slack's auth.test did not answer within 3s".into()),
        }
    }
}
