//! The operator's routes on the shared listener: `GET /metrics` (Prometheus) and `GET /readyz`
//! (readiness: the store takes a write, the scheduler ticked lately, each platform answers).
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
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One platform adapter's readiness check: `Ok`, or what is wrong, in a few seconds at most.
pub type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The scheduler ticks at least every 30 s: three missed ticks make Shipday not ready.
const SCHEDULER_STALE: std::time::Duration = std::time::Duration::from_secs(90);

/// How long the store's readiness write may take.
const STORE_CHECK: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Clone)]
struct Operations {
    app: Arc<App>,
    clock: Arc<dyn Clock>,
    checks: Arc<Vec<(&'static str, Check)>>,
}

/// `GET /metrics`.
/// `/metrics` reads no body and is scraped every few seconds by one or two Prometheus servers;
/// each scrape reads the deploy records, so only a few run at once.
const METRICS_LIMIT: RouteLimit = RouteLimit { max_body: 1024, concurrency: 4 };

/// `GET /metrics` and `GET /readyz`, behind their limits. `checks` name each configured
/// platform adapter and how to ask it whether it is connected.
pub fn routes(app: Arc<App>, clock: Arc<dyn Clock>, checks: Vec<(&'static str, Check)>) -> Router {
    let state = Operations { app, clock, checks: Arc::new(checks) };
    guard(Router::new().route("/metrics", get(metrics)).route("/readyz", get(readyz)).with_state(state), METRICS_LIMIT)
}

/// 200 `ready` when every check passes; otherwise 503 naming what is not ready. Either way one
/// line per check follows.
async fn readyz(State(ops): State<Operations>) -> Response {
    let mut lines = Vec::new();
    let store = match tokio::time::timeout(STORE_CHECK, ops.app.store.check_writable(ops.clock.now())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("{error:#}")),
        Err(_) => Err(format!("a write did not become durable within {}s", STORE_CHECK.as_secs())),
    };
    lines.push(("store", store));
    let scheduler = match crate::metrics::since_scheduler_ticked() {
        Some(since) if since <= SCHEDULER_STALE => Ok(()),
        Some(since) => Err(format!("the scheduler last ticked {}s ago", since.as_secs())),
        None => Err("the scheduler has not ticked yet".to_owned()),
    };
    lines.push(("scheduler", scheduler));
    for (name, check) in ops.checks.iter() {
        lines.push((name, check().await));
    }
    let failing: Vec<&str> = lines.iter().filter(|(_, result)| result.is_err()).map(|(name, _)| *name).collect();
    let mut body =
        if failing.is_empty() { "ready\n".to_owned() } else { format!("not ready: {}\n", failing.join(", ")) };
    for (name, result) in &lines {
        match result {
            Ok(()) => body.push_str(&format!("{name}: ok\n")),
            Err(why) => body.push_str(&format!("{name}: {why}\n")),
        }
    }
    if failing.is_empty() {
        (StatusCode::OK, body).into_response()
    } else {
        tracing::warn!(failing = %failing.join(", "), "not ready");
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
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
