//! The optional HTTP interactions endpoint: `POST /discord/interactions`.
//!
//! Every request must carry a valid Ed25519 signature of timestamp + raw body and a timestamp
//! within five minutes, or it gets 401 and nothing runs. Commands then take the same path as
//! gateway interactions, with the first response written into the HTTP response body.

use super::interaction::{self, FIRST_RESPONSE_LIMIT, FirstResponse};
use super::{Shared, verify};
use crate::listener::{RouteLimit, guard};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use serenity::all::Interaction;
use std::sync::Arc;
use tokio::sync::oneshot;

/// The route Discord's "Interactions Endpoint URL" points at.
pub const PATH: &str = "/discord/interactions";

/// An interaction is a few KiB of JSON (the member, the command and its options); a component
/// interaction adds the message acted on (2,000 characters and up to 10 embeds of 6,000).
pub const LIMIT: RouteLimit = RouteLimit { max_body: 64 * 1024, concurrency: 64 };

/// The endpoint's route behind its limits, for the one listener to serve.
pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    guard(Router::new().route(PATH, post(interactions)), LIMIT).with_state(shared)
}

async fn interactions(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(rejected) = authentic(&shared, &headers, &body) {
        tracing::warn!(%rejected, "rejected an HTTP interaction");
        return (StatusCode::UNAUTHORIZED, "invalid request signature").into_response();
    }
    let kind = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("type").and_then(Value::as_u64));
    match kind {
        Some(1) => axum::Json(json!({ "type": 1 })).into_response(),
        Some(2) => command(shared, &body).await,
        Some(4) => match serde_json::from_slice::<Interaction>(&body) {
            Ok(Interaction::Autocomplete(asked)) => {
                axum::Json(super::autocomplete::answer(&shared, &asked).await).into_response()
            }
            Ok(_) | Err(_) => (StatusCode::BAD_REQUEST, "malformed autocomplete interaction").into_response(),
        },
        _ => {
            (StatusCode::BAD_REQUEST, "Shipday only takes pings, application commands and autocomplete").into_response()
        }
    }
}

fn authentic(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<(), verify::Rejected> {
    let key = shared.settings.public_key.as_ref().ok_or(verify::Rejected::Malformed)?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).ok_or(verify::Rejected::Malformed);
    let timestamp = header("x-signature-timestamp")?;
    verify::signature(key, header("x-signature-ed25519")?, timestamp, body)?;
    verify::fresh(timestamp, shared.clock.now())
}

async fn command(shared: Arc<Shared>, body: &[u8]) -> Response {
    let command = match serde_json::from_slice::<Interaction>(body) {
        Ok(Interaction::Command(command)) => command,
        Ok(_) | Err(_) => {
            tracing::warn!("an HTTP interaction of type 2 did not parse as an application command");
            return (StatusCode::BAD_REQUEST, "malformed application command").into_response();
        }
    };
    let (first, response) = oneshot::channel();
    tokio::spawn(interaction::handle(shared, command, FirstResponse::HttpBody(first)));
    match tokio::time::timeout(FIRST_RESPONSE_LIMIT, response).await {
        Ok(Ok(body)) => axum::Json(body).into_response(),
        _ => {
            tracing::error!("no first response for an HTTP interaction in time");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
