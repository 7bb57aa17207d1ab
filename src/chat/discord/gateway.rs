//! The gateway connection (serenity): it connects, heartbeats, resumes and re-identifies on its
//! own. The handler only passes events on, because serenity runs each event on its own task and
//! the adapter wants one place that decides what to do with them.

use super::{Shared, interaction, reactions};
use crate::clients::outbound::Greeted;
use anyhow::{Context as _, Result};
use serenity::all::{Context, EventHandler, Interaction, Reaction, Ready, ResumedEvent};
use serenity::client::ClientBuilder;
use serenity::http::Http;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

/// What the handler passes on.
enum GatewayEvent {
    /// A new session: the first, or one after a reconnect that could not resume.
    Ready { bot_id: u64, session: String },
    /// An application command.
    Command(Box<serenity::all::CommandInteraction>),
    /// A reaction added or removed.
    Reaction { reaction: Box<Reaction>, added: bool },
    /// Someone is typing an option registered with autocomplete.
    Autocomplete(Box<serenity::all::CommandInteraction>),
}

struct Handler {
    events: mpsc::UnboundedSender<GatewayEvent>,
    /// Whether the gateway session is up now (for `/readyz`).
    up: Arc<std::sync::atomic::AtomicBool>,
    /// Told when READY arrives: the gateway is up.
    greeted: Greeted,
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _: Context, ready: Ready) {
        self.greeted.greeted();
        self.up.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.events.send(GatewayEvent::Ready { bot_id: ready.user.id.get(), session: ready.session_id });
    }

    async fn shard_stage_update(&self, _: Context, stage: serenity::all::ShardStageUpdateEvent) {
        let up = stage.new == serenity::all::ConnectionStage::Connected;
        if !up {
            tracing::info!(stage = %stage.new, "the Discord gateway session is not connected");
        }
        self.up.store(up, std::sync::atomic::Ordering::Relaxed);
    }

    async fn resume(&self, _: Context, _: ResumedEvent) {
        // A resumed session replays what was missed: nothing to re-read.
        tracing::info!("Discord gateway session resumed");
    }

    async fn interaction_create(&self, _: Context, interaction: Interaction) {
        match interaction {
            Interaction::Command(command) => {
                let _ = self.events.send(GatewayEvent::Command(Box::new(command)));
            }
            Interaction::Autocomplete(command) => {
                let _ = self.events.send(GatewayEvent::Autocomplete(Box::new(command)));
            }
            other => tracing::debug!(kind = ?other.kind(), "ignored an interaction Shipday does not register"),
        }
    }

    async fn reaction_add(&self, _: Context, reaction: Reaction) {
        let _ = self.events.send(GatewayEvent::Reaction { reaction: Box::new(reaction), added: true });
    }

    async fn reaction_remove(&self, _: Context, reaction: Reaction) {
        let _ = self.events.send(GatewayEvent::Reaction { reaction: Box::new(reaction), added: false });
    }
}

/// Connects and runs until the client stops for good.
pub(super) async fn run(shared: Arc<Shared>, http: Http, greeted: Greeted) -> Result<()> {
    let (events, mut inbox) = mpsc::unbounded_channel();
    let mut client = ClientBuilder::new_with_http(http, super::intents())
        .event_handler(Handler { events, greeted, up: shared.gateway_up.clone() })
        .await
        .context("cannot set up the Discord gateway client")?;
    let dispatch = tokio::spawn(async move {
        while let Some(event) = inbox.recv().await {
            dispatch(&shared, event);
        }
    });
    let result = client.start().await.context("the Discord gateway connection stopped");
    dispatch.abort();
    result
}

fn dispatch(shared: &Arc<Shared>, event: GatewayEvent) {
    match event {
        GatewayEvent::Ready { bot_id, session } => {
            let first = shared.bot_id.swap(bot_id, Ordering::AcqRel) == 0;
            tracing::info!(%session, first, "Discord gateway session ready");
            // Every new session may have missed reactions (a restart, or a reconnect that could
            // not resume): re-read the tracked messages.
            let _ = shared.reactions.send(reactions::Job::Reconcile);
        }
        GatewayEvent::Command(command) => {
            tokio::spawn(interaction::handle(shared.clone(), *command, interaction::FirstResponse::Callback));
        }
        GatewayEvent::Reaction { reaction, added } => {
            let _ = shared.reactions.send(reactions::Job::Live { reaction, added });
        }
        GatewayEvent::Autocomplete(command) => {
            let shared = shared.clone();
            tokio::spawn(async move {
                let body = super::autocomplete::answer(&shared, &command).await;
                if let Err(error) = shared.http.create_interaction_response(command.id, &command.token, &body).await {
                    tracing::warn!(error = format!("{error:#}"), "cannot answer an autocomplete interaction");
                }
            });
        }
    }
}
