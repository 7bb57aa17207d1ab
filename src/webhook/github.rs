//! `POST /github/webhook`: GitHub's pushes and merged pull requests, handed to the engine.
//!
//! 1. The signature is checked on the raw body; a delivery that fails gets 401 and nothing
//!    else happens.
//! 2. The payload becomes a [`GitHubEvent`] (or a ping, or is ignored with a reason).
//! 3. A delivery already handled (`X-GitHub-Delivery`, durably marked by the engine) is
//!    answered 200 and not handed on again.
//! 4. The event goes to the engine with a oneshot; the engine answers once it has durably
//!    recorded it. Only then is the delivery marked handled and 200 sent. If the engine does not answer
//!    within a few seconds the answer is 202 and the delivery is *not* recorded, so a redelivery
//!    is processed: at least once, never lost. The delivery id is not covered by the signature,
//!    so the engine also dedupes on content: one deploy per merged commit, never an older one
//!    (see `handlers/merge_stream.rs`).

pub mod event;
pub mod signature;

pub use event::{Delivery, GitHubEvent};

use crate::clients::github::GitHubConfig;
use crate::clock::Clock;
use crate::config::Secret;
use crate::engine::EngineHandle;
use crate::listener::{RouteLimit, guard};
use anyhow::{Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// The route path (the webhook's Payload URL is `https://HOST/github/webhook`).
pub const WEBHOOK_PATH: &str = "/github/webhook";

/// How long the engine has to confirm an event before GitHub gets a 202 (GitHub itself gives
/// up after 10 seconds).
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(5);

/// GitHub caps payloads at 25 MB, but the events Shipday takes are far smaller: a merged pull
/// request is its description (at most 65,536 characters) and three repository objects, well
/// under 256 KiB; a push lists at most 2,048 commits, and pushes to the branches Shipday watches
/// list a few. A push larger than 1 MiB is refused with 413; its merge still arrives as the
/// pull request delivery. Deliveries come one or two at a time.
pub const LIMIT: RouteLimit = RouteLimit { max_body: 1024 * 1024, concurrency: 8 };

/// Where events go: each with the oneshot the engine answers once the event is durable.
pub type EventSender = mpsc::UnboundedSender<(GitHubEvent, oneshot::Sender<()>)>;

/// Everything the route needs. Built only with a webhook secret.
#[derive(Clone)]
pub struct WebhookState {
    secret: Secret,
    /// `owner/repo`: deliveries about any other repository are ignored.
    repository: String,
    /// Asked which deliveries were handled, and told when one is.
    engine: EngineHandle,
    clock: Arc<dyn Clock>,
    events: EventSender,
    handoff_timeout: Duration,
    /// Deliveries being handled right now, so a concurrent duplicate is not handed on twice.
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl WebhookState {
    /// Loads `github.webhook_secret`; without one this fails, so the route cannot exist
    /// unsigned.
    pub fn new(
        config: &GitHubConfig,
        base: &Path,
        engine: EngineHandle,
        clock: Arc<dyn Clock>,
        events: EventSender,
    ) -> Result<Self> {
        let Some(secret) = &config.webhook_secret else {
            bail!(
                "github.webhook_secret: the GitHub webhook route needs a secret (the one set on the \
                 webhook in GitHub); Shipday does not accept unsigned deliveries"
            );
        };
        let secret = secret.load("github.webhook_secret", base)?;
        Ok(Self {
            secret,
            repository: format!("{}/{}", config.owner, config.repo),
            engine,
            clock,
            events,
            handoff_timeout: HANDOFF_TIMEOUT,
            in_flight: Arc::default(),
        })
    }

    /// Sets how long the engine has to confirm an event (tests shorten it).
    pub fn with_handoff_timeout(mut self, timeout: Duration) -> Self {
        self.handoff_timeout = timeout;
        self
    }

    /// Claims a delivery: `None` if it was handled before or is being handled now.
    fn claim(&self, delivery: &str) -> Result<Option<Claim>> {
        let key = format!("github:delivery:{delivery}");
        if !self.in_flight.lock().expect("in-flight lock").insert(key.clone()) {
            return Ok(None);
        }
        let claim = Claim { in_flight: self.in_flight.clone(), key };
        if self.engine.delivery_handled(&claim.key)? {
            return Ok(None);
        }
        Ok(Some(claim))
    }
}

/// A delivery being handled; dropping it lets a later redelivery in.
struct Claim {
    in_flight: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.in_flight.lock().expect("in-flight lock").remove(&self.key);
    }
}

/// The webhook route behind its limits, for the one listener (`crate::listener`) to serve.
pub fn routes(state: WebhookState) -> Router {
    guard(Router::new().route(WEBHOOK_PATH, post(receive)), LIMIT).with_state(state)
}

async fn receive(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let delivery = header("x-github-delivery").unwrap_or_default();
    let event = header("x-github-event").unwrap_or_default();
    let span =
        tracing::info_span!("github_webhook", delivery = %delivery.escape_debug(), event = %event.escape_debug());
    let signature = header(signature::HEADER);
    let content_type = header(header::CONTENT_TYPE.as_str()).unwrap_or_default();
    async move {
        if let Err(rejected) = signature::verify(&state.secret, signature.as_deref(), &body) {
            tracing::warn!(reason = %rejected, "rejected a delivery that is not verifiably from GitHub");
            crate::metrics::webhook_delivery("rejected");
            return (StatusCode::UNAUTHORIZED, "invalid signature").into_response();
        }
        if delivery.is_empty() || delivery.len() > 100 || event.is_empty() {
            crate::metrics::webhook_delivery("rejected");
            return (StatusCode::BAD_REQUEST, "missing X-GitHub-Delivery or X-GitHub-Event").into_response();
        }
        let Some(payload) = json_payload(&content_type, &body) else {
            crate::metrics::webhook_delivery("rejected");
            return (StatusCode::BAD_REQUEST, "no payload").into_response();
        };
        match event::parse(&event, &payload, &state.repository) {
            Ok(Delivery::Ping) => {
                crate::metrics::webhook_delivery("ignored");
                (StatusCode::OK, "pong").into_response()
            }
            Ok(Delivery::Ignored(why)) => {
                crate::metrics::webhook_delivery("ignored");
                tracing::debug!(why, "delivery ignored");
                (StatusCode::OK, format!("ignored: {why}")).into_response()
            }
            Ok(Delivery::Event(event)) => hand_on(&state, &delivery, event).await,
            Err(error) => {
                tracing::warn!(%error, "a signed delivery could not be read");
                crate::metrics::webhook_delivery("rejected");
                (StatusCode::BAD_REQUEST, error.to_string()).into_response()
            }
        }
    }
    .instrument(span)
    .await
}

/// The JSON payload: the body itself, or the `payload` field of a form-encoded delivery (the
/// hook's other content type).
fn json_payload(content_type: &str, body: &Bytes) -> Option<Bytes> {
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Some(body.clone());
    }
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    fields.into_iter().find(|(key, _)| key == "payload").map(|(_, value)| Bytes::from(value))
}

/// Hands an event to the engine and answers once it is durable (or says it is not yet).
async fn hand_on(state: &WebhookState, delivery: &str, event: GitHubEvent) -> Response {
    let claim = match state.claim(delivery) {
        Ok(Some(claim)) => claim,
        Ok(None) => {
            tracing::info!("duplicate delivery; not handed on again");
            crate::metrics::webhook_delivery("duplicate");
            return (StatusCode::OK, "already handled").into_response();
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot read delivery records");
            crate::metrics::webhook_delivery("failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot check this delivery; redeliver it").into_response();
        }
    };
    match &event {
        GitHubEvent::Merged { base, merge_sha, number, .. } => {
            tracing::info!(%base, sha = %merge_sha, pr = number, "handing a merge to the engine");
        }
        GitHubEvent::Pushed { branch, after, forced, .. } => {
            tracing::info!(%branch, sha = %after, forced, "handing a push to the engine");
        }
    }
    let (done, recorded) = oneshot::channel();
    if state.events.send((event, done)).is_err() {
        tracing::error!("the engine is not running; delivery not handled");
        crate::metrics::webhook_delivery("failed");
        return (StatusCode::SERVICE_UNAVAILABLE, "Shipday is shutting down; redeliver later").into_response();
    }
    match tokio::time::timeout(state.handoff_timeout, recorded).await {
        Ok(Ok(())) => {
            if let Err(error) = state.engine.mark_delivery_handled(&claim.key, state.clock.now()).await {
                // The engine has recorded the event; only a redelivery of this one could repeat it.
                tracing::error!(error = format!("{error:#}"), "cannot record the delivery as handled");
            }
            crate::metrics::webhook_delivery("accepted");
            (StatusCode::OK, "handled").into_response()
        }
        Ok(Err(_)) => {
            tracing::error!("the engine dropped the event without recording it");
            crate::metrics::webhook_delivery("failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "not recorded; redeliver it").into_response()
        }
        Err(_) => {
            tracing::warn!(timeout = ?state.handoff_timeout, "the engine has not confirmed the event yet");
            crate::metrics::webhook_delivery("unconfirmed");
            (StatusCode::ACCEPTED, "accepted, not yet confirmed; redeliver if nothing happens").into_response()
        }
    }
}
