//! The Discord adapter: slash commands and reactions over the gateway (serenity), an optional
//! HTTP interactions endpoint, and announcements in the team channel.
//!
//! Like every adapter it only translates: an application command becomes the command line the
//! engine parses, a reaction on one of the bot's messages becomes a platform-neutral
//! [`Reaction`](crate::engine::Reaction), and replies and progress become embeds.
//!
//! Discord-specific duties live here: acknowledging within 3 seconds (`interaction.rs`), moving
//! long deploys to a channel message before the 15-minute interaction token expires, and
//! re-reading reactions over REST after a gateway session could not be resumed (`reactions.rs`).

pub mod commands;
pub mod config;
pub mod register;
pub mod render;
pub mod verify;

mod announce;
mod endpoint;
mod gateway;
mod interaction;
mod reactions;

pub use config::DiscordConfig;

use crate::app::App;
use crate::clock::Clock;
use crate::command::CommandBook;
use crate::config::Config;
use crate::engine::EngineHandle;
use crate::store::Store;
use anyhow::{Context, Result, bail};
use serenity::http::{Http, HttpBuilder};
use serenity::model::gateway::GatewayIntents;
use serenity::model::id::ApplicationId;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The platform name the engine knows Discord users by.
pub const PLATFORM: &str = "discord";

/// Gateway intents: GUILDS | GUILD_MESSAGES | GUILD_MESSAGE_REACTIONS (1537). Slash commands
/// need no message content, so the privileged MESSAGE_CONTENT intent is not asked for.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGES | GatewayIntents::GUILD_MESSAGE_REACTIONS
}

/// Whether serenity's REST rate limiter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimiter {
    /// Production: serenity paces every REST call by Discord's buckets and honours 429s.
    On,
    /// Tests only: serenity sends REST calls to another base URL (a local fake Discord) only
    /// with its rate limiter off, so tests turn it off. `shipday serve` never does.
    OffForTests,
}

/// How the adapter paces itself against Discord. [`Tuning::default`] is what production uses;
/// tests shorten the waits.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// See [`RateLimiter`].
    pub rate_limiter: RateLimiter,
    /// How long a command that runs on hosts may take before it is deferred. Short, so the
    /// "thinking" state shows at once, but long enough that a quick refusal is answered
    /// privately without a public placeholder flashing up first.
    pub host_work_budget: Duration,
    /// How long any other command may take before it is deferred (Discord allows 3 s).
    pub quick_answer_budget: Duration,
    /// How long an interaction token may be used to edit the reply before progress moves to a
    /// normal channel message (Discord's tokens live 15 minutes).
    pub interaction_token_lifetime: Duration,
    /// The least time between two edits of one progress message.
    pub min_edit_interval: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            rate_limiter: RateLimiter::On,
            host_work_budget: Duration::from_millis(250),
            quick_answer_budget: Duration::from_millis(1500),
            interaction_token_lifetime: Duration::from_secs(14 * 60),
            min_edit_interval: Duration::from_secs(1),
        }
    }
}

/// What the adapter's parts share.
pub(crate) struct Shared {
    pub http: Arc<Http>,
    pub engine: EngineHandle,
    pub store: Store,
    pub config: Arc<Config>,
    pub settings: DiscordConfig,
    pub tuning: Tuning,
    pub clock: Arc<dyn Clock>,
    pub book: CommandBook,
    /// The bot's own user id, from READY (0 until then).
    pub bot_id: AtomicU64,
    /// The serial reaction worker.
    pub reactions: mpsc::UnboundedSender<reactions::Job>,
    /// Interaction ids being handled now (the store remembers the finished ones).
    pub in_flight: std::sync::Mutex<HashSet<u64>>,
}

impl Shared {
    pub(crate) fn bot_id(&self) -> Option<u64> {
        Some(self.bot_id.load(Ordering::Acquire)).filter(|id| *id != 0)
    }
}

/// A started Discord adapter.
pub struct Running {
    /// The HTTP interactions endpoint's route (with `public_key`), for the one listener.
    pub endpoint: Option<axum::Router>,
    gateway: JoinHandle<Result<()>>,
}

impl Running {
    /// Runs until the gateway client stops, which only a fatal error (a bad token, disallowed
    /// intents) makes it do.
    pub async fn wait(self) -> Result<()> {
        match self.gateway.await {
            Ok(result) => result,
            Err(panic) => bail!("the Discord gateway task crashed: {panic}"),
        }
    }
}

/// Starts the adapter for the `[discord]` section of `app`'s config: the REST client, the
/// reaction worker, announcements, the optional HTTP endpoint and the gateway connection.
pub async fn start(app: &App, clock: Arc<dyn Clock>, tuning: Tuning) -> Result<Running> {
    let settings = app.config.discord.clone().context("no [discord] section in the config")?;
    let limiter = tuning.rate_limiter;
    let http = Arc::new(rest_client(&settings, limiter)?);
    let (reactions_tx, reactions_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        http: http.clone(),
        engine: app.engine.clone(),
        store: app.store.clone(),
        config: app.config.clone(),
        settings: settings.clone(),
        tuning,
        clock,
        book: CommandBook::builtin(),
        bot_id: AtomicU64::new(0),
        reactions: reactions_tx,
        in_flight: std::sync::Mutex::new(HashSet::new()),
    });
    tokio::spawn(reactions::run(shared.clone(), reactions_rx));
    tokio::spawn(announce::run(shared.clone(), app.engine.announcements(), app.interrupted.clone()));
    let endpoint = settings.public_key.is_some().then(|| endpoint::routes(shared.clone()));
    // serenity's client owns its REST client; it uses it only to ask for the gateway URL.
    let gateway_http = rest_client(&settings, limiter)?;
    let gateway = tokio::spawn(gateway::run(shared, gateway_http));
    Ok(Running { endpoint, gateway })
}

/// serenity's REST client. Production keeps its rate limiter, which only talks to Discord
/// itself; tests point it at a fake with the limiter off (see [`RateLimiter`]).
fn rest_client(settings: &DiscordConfig, limiter: RateLimiter) -> Result<Http> {
    // serenity's own client has no timeouts: ours has a connect and a total timeout.
    let builder = HttpBuilder::new(settings.bot_token.expose())
        .application_id(ApplicationId::new(settings.application_id))
        .client(crate::clients::outbound::http_client()?);
    match limiter {
        RateLimiter::On if settings.api_base_url != config::DEFAULT_API_BASE_URL => bail!(
            "discord.api_base_url: `{}` is only used by `shipday register discord` and tests; the bot \
             itself keeps serenity's rate limiter on, which talks to {} only. Remove the key to serve",
            settings.api_base_url,
            config::DEFAULT_API_BASE_URL
        ),
        RateLimiter::On => Ok(builder.build()),
        RateLimiter::OffForTests => {
            let origin = settings.api_base_url.trim_end_matches("/api/v10");
            Ok(builder.proxy(origin).ratelimiter_disabled(true).build())
        }
    }
}
