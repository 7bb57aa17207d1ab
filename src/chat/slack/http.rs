//! HTTP mode: axum routes for slash commands, the Events API and interactivity, at the paths
//! `shipday manifest slack --request-url` writes. Every request's signature is checked on the
//! raw body before anything is parsed; a request that fails gets 401 and nothing runs.

use super::{Slack, verify};
use crate::config::Secret;
use crate::listener::{RouteLimit, guard};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use slack_morphism::prelude::*;
use std::sync::Arc;

/// The route paths, shared with the manifest.
pub const COMMANDS_PATH: &str = "/slack/commands";
/// Events API requests.
pub const EVENTS_PATH: &str = "/slack/events";
/// Interactivity requests.
pub const INTERACTIVITY_PATH: &str = "/slack/interactivity";

/// Slash command forms: about 20 short fields and the command text, a few KiB at most.
pub const COMMANDS_LIMIT: RouteLimit = RouteLimit { max_body: 64 * 1024, concurrency: 64 };
/// Events API JSON: a reaction event is about 1 KiB, but a message event may carry up to
/// 40,000 characters of text and its blocks.
pub const EVENTS_LIMIT: RouteLimit = RouteLimit { max_body: 256 * 1024, concurrency: 32 };
/// Interactivity forms carry the whole message acted on, blocks included.
pub const INTERACTIVITY_LIMIT: RouteLimit = RouteLimit { max_body: 256 * 1024, concurrency: 16 };

#[derive(Clone)]
struct Routes {
    slack: Arc<Slack>,
    signing_secret: Arc<Secret>,
}

/// The three routes, each behind its own limits, for the one listener to serve.
pub(crate) fn routes(slack: Arc<Slack>, signing_secret: Secret) -> Router {
    let routes = Routes { slack, signing_secret: Arc::new(signing_secret) };
    let route = |path: &str, handler, limit| guard(Router::new().route(path, handler), limit);
    Router::new()
        .merge(route(COMMANDS_PATH, post(commands), COMMANDS_LIMIT))
        .merge(route(EVENTS_PATH, post(events), EVENTS_LIMIT))
        .merge(route(INTERACTIVITY_PATH, post(interactivity), INTERACTIVITY_LIMIT))
        .with_state(routes)
}

impl Routes {
    /// Checks the signature and the timestamp window, logging why a request fails.
    fn verified(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let checked = verify::verify(
            &self.signing_secret,
            header("x-slack-request-timestamp"),
            header("x-slack-signature"),
            body,
            self.slack.clock.now(),
        );
        if let Err(rejected) = &checked {
            tracing::warn!(reason = %rejected, "rejected a request that is not verifiably from Slack");
        }
        checked.is_ok()
    }
}

/// The one answer to a request that fails verification: nothing about why.
fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "invalid or stale request signature").into_response()
}

async fn commands(State(routes): State<Routes>, headers: HeaderMap, body: Bytes) -> Response {
    if !routes.verified(&headers, &body) {
        return unauthorized();
    }
    // Slack occasionally checks a command URL's certificate with a signed `ssl_check=1`.
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if fields.iter().any(|(key, value)| key == "ssl_check" && value == "1") {
        return StatusCode::OK.into_response();
    }
    let event: SlackCommandEvent = match serde_urlencoded::from_bytes(&body) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%error, "a signed slash command could not be read");
            return (StatusCode::BAD_REQUEST, "unreadable slash command").into_response();
        }
    };
    let ack = routes.slack.command(event.into()).await;
    json(&SlackCommandEventResponse::new(ack).with_response_type(SlackMessageResponseType::Ephemeral))
}

async fn events(State(routes): State<Routes>, headers: HeaderMap, body: Bytes) -> Response {
    if !routes.verified(&headers, &body) {
        return unauthorized();
    }
    let retry = headers.get("x-slack-retry-num").and_then(|v| v.to_str().ok()?.parse().ok());
    let event: SlackPushEvent = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%error, "a signed event could not be read");
            return (StatusCode::BAD_REQUEST, "unreadable event").into_response();
        }
    };
    match event {
        SlackPushEvent::UrlVerification(check) => {
            ([(header::CONTENT_TYPE, "text/plain")], check.challenge).into_response()
        }
        SlackPushEvent::EventCallback(callback) => match routes.slack.event(callback, retry).await {
            Ok(()) => StatusCode::OK.into_response(),
            Err(error) => {
                // Not 2xx, so Slack delivers it again.
                tracing::error!(error = format!("{error:#}"), "an event was not handled");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        },
        SlackPushEvent::AppRateLimited(limited) => {
            tracing::warn!(team = %limited.team_id, "Slack is rate limiting events to this app");
            StatusCode::OK.into_response()
        }
    }
}

/// Interactivity requests are verified and acknowledged. Shipday's messages have no buttons
/// yet (approvals are by reaction), so there is nothing to act on.
async fn interactivity(State(routes): State<Routes>, headers: HeaderMap, body: Bytes) -> Response {
    if !routes.verified(&headers, &body) {
        return unauthorized();
    }
    #[derive(Deserialize)]
    struct Form {
        payload: String,
    }
    let payload = serde_urlencoded::from_bytes::<Form>(&body)
        .ok()
        .and_then(|form| serde_json::from_str::<serde_json::Value>(&form.payload).ok());
    let Some(payload) = payload else {
        return (StatusCode::BAD_REQUEST, "unreadable interaction").into_response();
    };
    let at = |pointer: &str| payload.pointer(pointer).and_then(serde_json::Value::as_str);
    let team = at("/team/id").or(at("/user/team_id")).unwrap_or_default();
    if team != routes.slack.settings.team_id {
        tracing::warn!(%team, "ignored an interaction from another workspace");
    } else {
        let kind = payload.get("type").unwrap_or(&serde_json::Value::Null);
        tracing::info!(%kind, "ignored an interaction: Shipday's messages have no interactive elements");
    }
    StatusCode::OK.into_response()
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode a response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
