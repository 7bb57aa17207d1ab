//! The operator's routes on the shared listener: `GET /metrics` (Prometheus).
//!
//! Counters and histograms come from [`crate::metrics`]; the delivery figures (DORA's four
//! keys) are computed from the store at each scrape ([`App::delivery_figures`]).

use crate::app::App;
use crate::clock::Clock;
use crate::listener::{RouteLimit, guard};
use crate::metrics::{Figure, render};
use crate::release::delivery::DeliveryFigures;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct Operations {
    app: Arc<App>,
    clock: Arc<dyn Clock>,
}

/// `GET /metrics`.
/// `/metrics` reads no body and is scraped every few seconds by one or two Prometheus servers;
/// each scrape reads the deploy records, so only a few run at once.
const METRICS_LIMIT: RouteLimit = RouteLimit { max_body: 1024, concurrency: 4 };

/// `GET /metrics`, behind its limits.
pub fn routes(app: Arc<App>, clock: Arc<dyn Clock>) -> Router {
    guard(Router::new().route("/metrics", get(metrics)).with_state(Operations { app, clock }), METRICS_LIMIT)
}

async fn metrics(State(ops): State<Operations>) -> Response {
    let now = ops.clock.now();
    let app = ops.app.clone();
    // The store read is blocking I/O: off the listener's threads.
    let figures = tokio::task::spawn_blocking(move || app.delivery_figures(now)).await;
    let figures = match figures {
        Ok(Ok(figures)) => delivery(&figures),
        Ok(Err(error)) => {
            tracing::warn!(error = format!("{error:#}"), "cannot read the deploy records for /metrics");
            Vec::new()
        }
        Err(error) => {
            tracing::warn!(%error, "computing the delivery figures failed");
            Vec::new()
        }
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], render(&figures)).into_response()
}

/// The delivery figures as gauges (only those that have a value).
fn delivery(figures: &DeliveryFigures) -> Vec<Figure> {
    let per_env = |pick: fn(&crate::release::delivery::EnvironmentFigures) -> Option<f64>| {
        figures.environments.iter().filter_map(|e| Some((e.env.clone(), pick(e)?))).collect::<Vec<_>>()
    };
    vec![
        Figure {
            name: "delivery_deploys_per_day",
            help: "Successful deploys per day over the last 30 days, by environment (DORA deploy frequency)",
            values: per_env(|e| Some(e.deploys_per_day)),
        },
        Figure {
            name: "delivery_change_failure_ratio",
            help: "Failed or interrupted deploys among finished ones over the last 30 days, by environment (DORA change failure rate)",
            values: per_env(|e| e.change_failure_rate),
        },
        Figure {
            name: "delivery_time_to_restore_seconds",
            help: "Median time from a failed deploy to the next successful one over the last 30 days, by environment (DORA time to restore)",
            values: per_env(|e| e.time_to_restore_seconds),
        },
        Figure {
            name: "delivery_lead_time_seconds",
            help: "Median time from merge to production over the last 30 days (DORA lead time for changes)",
            values: figures.lead_time_seconds.map(|s| (String::new(), s)).into_iter().collect(),
        },
    ]
}
