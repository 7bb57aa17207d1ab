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

pub mod autocomplete;
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
pub mod rest;

pub use config::DiscordConfig;

use crate::app::App;
use crate::clock::Clock;
use crate::command::CommandBook;
use crate::config::Config;
use crate::engine::EngineHandle;
use anyhow::{Result, bail};
use rest::{Pacing, Rest, RetryPolicy};
use serenity::model::gateway::GatewayIntents;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// How the adapter paces itself against Discord. [`Tuning::default`] is what production uses;
/// tests shorten the waits.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// How a server other than discord.com is retried when it answers 429 (against
    /// discord.com serenity's rate limiter paces the calls).
    pub retry: RetryPolicy,
    /// How long a quick command may take before it is deferred (Discord allows 3 s).
    /// Long-running commands are deferred at once (see [`commands::ack_plan`]).
    pub quick_answer_budget: Duration,
    /// How long an interaction token may be used to edit the reply before progress moves to a
    /// normal channel message (Discord's tokens live 15 minutes).
    pub interaction_token_lifetime: Duration,
    /// The least time between two edits of one progress message.
    pub min_edit_interval: Duration,
    /// How long the gateway may take to connect and say READY before it is started over
    /// (serenity sets no timeout on the WebSocket; see `supervise_websocket`).
    pub gateway_ready: Duration,
    /// The first wait before the gateway is started over (it doubles, up to 5 minutes).
    pub gateway_backoff: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            quick_answer_budget: Duration::from_millis(1500),
            interaction_token_lifetime: Duration::from_secs(14 * 60),
            min_edit_interval: Duration::from_secs(1),
            gateway_ready: crate::clients::outbound::WEBSOCKET_READY_TIMEOUT,
            gateway_backoff: Duration::from_secs(2),
        }
    }
}

/// What the adapter's parts share.
pub(crate) struct Shared {
    /// Whether the gateway session is up now (for `/readyz`).
    pub gateway_up: Arc<AtomicBool>,
    pub http: Rest,
    pub engine: EngineHandle,
    pub config: Arc<Config>,
    pub settings: DiscordConfig,
    pub tuning: Tuning,
    pub clock: Arc<dyn Clock>,
    pub book: CommandBook,
    /// The bot's own user id, from READY (0 until then).
    pub bot_id: AtomicU64,
    /// The serial reaction worker.
    pub reactions: mpsc::UnboundedSender<reactions::Job>,
    /// Interaction ids being handled now (the engine remembers the finished ones).
    pub in_flight: std::sync::Mutex<HashSet<u64>>,
    /// The origin's branches for ref autocomplete, briefly cached.
    pub branches: autocomplete::BranchCache,
}

impl Shared {
    pub(crate) fn bot_id(&self) -> Option<u64> {
        Some(self.bot_id.load(Ordering::Acquire)).filter(|id| *id != 0)
    }
}

/// A started Discord adapter.
pub struct Running {
    /// Whether the gateway session is up now (for `/readyz`).
    pub gateway_up: Arc<AtomicBool>,
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

/// Checks what the adapter needs beyond the config's own validation and says who paces REST
/// calls. [`crate::serve::validate`] runs it for `check-config` and `serve` alike.
pub fn check(settings: &DiscordConfig) -> Result<Pacing> {
    Pacing::for_settings(settings)
}

/// Starts the adapter for `settings` (the config file's `[discord]` section): the REST client,
/// the reaction worker, announcements, the optional HTTP endpoint and the gateway connection.
///
/// With `discord.api_base_url` pointing anywhere but discord.com, REST and the gateway (whose
/// URL the server gives) go there, after one loud warning.
pub async fn start(app: &App, settings: &DiscordConfig, clock: Arc<dyn Clock>, tuning: Tuning) -> Result<Running> {
    let settings = settings.clone();
    let pacing = check(&settings)?;
    if let Some(warning) = pacing.warning() {
        tracing::warn!("⚠️ {warning}");
    }
    let http = Rest::new(&settings, &pacing, tuning.retry)?;
    let (reactions_tx, reactions_rx) = mpsc::unbounded_channel();
    let gateway_up = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        gateway_up: gateway_up.clone(),
        http,
        engine: app.engine.clone(),
        config: app.config.clone(),
        settings: settings.clone(),
        tuning,
        clock,
        book: CommandBook::builtin(),
        bot_id: AtomicU64::new(0),
        reactions: reactions_tx,
        in_flight: std::sync::Mutex::new(HashSet::new()),
        branches: Default::default(),
    });
    tokio::spawn(reactions::run(shared.clone(), reactions_rx));
    tokio::spawn(announce::run(shared.clone(), app.engine.announcements(), app.interrupted.clone()));
    let endpoint = settings.public_key.is_some().then(|| endpoint::routes(shared.clone()));
    // serenity's client owns its REST client; it uses it only to ask for the gateway URL. Each
    // attempt to bring the gateway up gets a fresh one, on the attempt's own runtime.
    let (ready, backoff) = (shared.tuning.gateway_ready, shared.tuning.gateway_backoff);
    let gateway = tokio::spawn(async move {
        crate::clients::outbound::supervise_websocket("Discord's gateway", ready, backoff, move |greeted| {
            gateway::run(shared.clone(), rest::serenity_http(&settings, &pacing), greeted)
        })
        .await
    });
    Ok(Running { endpoint, gateway, gateway_up })
}
