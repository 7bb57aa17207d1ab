//! Socket Mode: slack-morphism opens the WebSocket (the URL comes from `apps.connections.open`
//! on the configured API base URL), reconnects when Slack asks, and acks each envelope with
//! what our callbacks return. The callbacks hand payloads to the same [`Slack`] core as HTTP
//! mode, so both transports behave the same.

use super::Slack;
use super::api::Connector;
use crate::clients::outbound::{Greeted, supervise_websocket};
use crate::config::Secret;
use anyhow::{Context, Result};
use slack_morphism::prelude::*;
use std::sync::Arc;

type Client = Arc<SlackClient<Connector>>;
/// slack-morphism's callback error type (its own alias is crate-private).
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Connects and serves until the task is stopped. slack-morphism opens the WebSocket without a
/// timeout, so a session that has not said `hello` within `ready` is started over (see
/// [`supervise_websocket`]), after `backoff` (doubling).
pub(crate) async fn run(
    slack: Arc<Slack>,
    app_token: Secret,
    ready: std::time::Duration,
    backoff: std::time::Duration,
) -> Result<()> {
    supervise_websocket("Slack Socket Mode", ready, backoff, move |greeted| {
        connect(slack.clone(), app_token.clone(), greeted)
    })
    .await
}

async fn connect(slack: Arc<Slack>, app_token: Secret, greeted: Greeted) -> Result<()> {
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(slack.api.client())
            .with_error_handler(on_error)
            .with_user_state(slack.clone())
            .with_user_state(greeted),
    );
    let callbacks = SlackSocketModeListenerCallbacks::new()
        // Slack greets every new connection (`hello`): the session is up. (The event's type is
        // not exported by slack-morphism, hence the closure.)
        .with_hello_events(|_, _, state| async move {
            if let Some(greeted) = state.read().await.get_user_state::<Greeted>() {
                greeted.greeted();
            }
        })
        .with_command_events(on_command)
        .with_push_events(on_push_event)
        .with_interaction_events(on_interaction);
    let listener =
        Arc::new(SlackClientSocketModeListener::new(&SlackClientSocketModeConfig::new(), environment, callbacks));
    listener
        .listen_for(&SlackApiToken::new(app_token.expose().into()))
        .await
        .context("cannot register the Socket Mode app token")?;
    let _stop = StopOnDrop(listener.clone());
    listener.start().await;
    tracing::info!("Slack Socket Mode started");
    // slack-morphism's own tasks hold the connections and reconnect; this task only keeps
    // them alive until the adapter stops.
    std::future::pending().await
}

/// Closes the WebSockets when the adapter's task stops.
struct StopOnDrop(Arc<SlackClientSocketModeListener<Connector>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let listener = self.0.clone();
            runtime.spawn(async move { listener.shutdown().await });
        }
    }
}

async fn slack_of(state: &SlackClientEventsUserState) -> Result<Arc<Slack>, BoxError> {
    let storage = state.read().await;
    storage.get_user_state::<Arc<Slack>>().cloned().ok_or_else(|| "the Slack adapter state is missing".into())
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Client,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let ack = slack_of(&state).await?.command(event.into()).await;
    Ok(SlackCommandEventResponse::new(ack).with_response_type(SlackMessageResponseType::Ephemeral))
}

/// An `Err` here withholds the ack (see [`on_error`]), so Slack redelivers the event.
async fn on_push_event(
    event: SlackPushEventCallback,
    _client: Client,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    slack_of(&state).await?.event(event, None).await.map_err(Into::into)
}

/// Shipday's messages have no interactive elements yet: acknowledge and move on.
async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Client,
    _state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let kind = serde_json::to_value(&event).ok().and_then(|v| v.get("type")?.as_str().map(String::from));
    tracing::info!(
        kind = kind.as_deref().unwrap_or("?"),
        "ignored an interaction: Shipday's messages have no interactive elements"
    );
    Ok(())
}

/// A failed callback is logged and not acknowledged, so Slack delivers it again.
fn on_error(error: BoxError, _client: Client, _state: SlackClientEventsUserState) -> HttpStatusCode {
    tracing::error!(%error, "a Socket Mode delivery was not handled");
    HttpStatusCode::INTERNAL_SERVER_ERROR
}
