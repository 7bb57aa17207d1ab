//! `shipday serve`: the bot for real. Starts every configured chat adapter (and the scheduler)
//! on one engine, serves every inbound HTTP route on one listener, and runs until SIGINT or
//! SIGTERM.

use crate::app::App;
use crate::clock::Clock;
use crate::listener::{Limits, Listener};
use crate::operations::Check;
use crate::scheduler::Scheduler;
use crate::settings::Adapters;
use anyhow::{Context, Result, bail};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinSet;

/// Everything `serve` checks about a loaded config file ([`crate::settings::Settings`]) before
/// it starts anything: the transports and each chat adapter's needs. `check-config` runs
/// exactly this, so the two agree on what is valid.
pub fn validate(config: &crate::config::Config, adapters: &Adapters) -> Result<()> {
    crate::app::transports(config)?;
    if let Some(discord) = &adapters.discord {
        crate::chat::discord::check(discord)?;
    }
    Ok(())
}

/// Runs the configured adapters until a shutdown signal, or until one of them fails. On
/// SIGTERM or SIGINT it shuts down gracefully (see [`wait`]) and returns `Ok`.
pub async fn run(app: App, adapters: &Adapters, clock: Arc<dyn Clock>) -> Result<()> {
    let started = start(&app, adapters, clock, Default::default()).await?;
    wait(&app, started).await
}

/// What [`start`] started: the adapters, the scheduler and the one HTTP listener.
pub struct Started {
    /// Where the listener is bound (`None` only when the default address was busy and
    /// `/healthz` was its only route).
    pub listening: Option<SocketAddr>,
    /// The running tasks; dropping them stops everything.
    pub tasks: JoinSet<Result<()>>,
    /// The scheduler's task (one of `tasks`): a shutdown stops it first, so no slot deploy
    /// starts while running deploys drain.
    pub scheduler: tokio::task::AbortHandle,
}

/// Starts every configured adapter (each with its own section of the config file) and the
/// scheduler, and serves every inbound route (Slack's HTTP mode, Discord's interactions
/// endpoint, GitHub's webhook, `/healthz`) on the one listener at `[server] listen`. `discord` is how the
/// Discord adapter paces itself (tests shorten it).
pub async fn start(
    app: &App,
    adapters: &Adapters,
    clock: Arc<dyn Clock>,
    discord: crate::chat::discord::Tuning,
) -> Result<Started> {
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    let mut routes: Vec<(&str, Router)> = Vec::new();
    // Each chat adapter that is configured adds its task (and its routes) here, and how
    // `/readyz` asks whether it is connected.
    let mut checks: Vec<(&'static str, Check)> = Vec::new();
    if let Some(settings) = &adapters.discord {
        let mut running = crate::chat::discord::start(app, settings, clock.clone(), discord).await?;
        if let Some(endpoint) = running.endpoint.take() {
            routes.push(("Discord interactions", endpoint));
        }
        let up = running.gateway_up.clone();
        checks.push((
            "discord",
            Arc::new(move || {
                let up = up.load(std::sync::atomic::Ordering::Relaxed);
                Box::pin(
                    async move { up.then_some(()).ok_or_else(|| "the gateway session is not connected".to_owned()) },
                )
            }),
        ));
        tasks.spawn(running.wait());
    }
    if let Some(settings) = &adapters.slack {
        let slack = crate::chat::slack::SlackAdapter::start(app, settings, clock.clone()).await?;
        if let Some(slack_routes) = slack.routes() {
            routes.push(("Slack commands, events and interactivity", slack_routes));
        }
        let readiness = slack.readiness();
        checks.push((
            "slack",
            Arc::new(move || {
                let readiness = readiness.clone();
                Box::pin(async move { readiness.check().await })
            }),
        ));
        tasks.spawn(slack.run());
    }
    if tasks.is_empty() {
        bail!(
            "no chat platform is configured: add a [slack] or [discord] section to the config \
             (see the README), or talk to Shipday with `shipday console --as NAME`"
        );
    }
    if let Some(github) = &app.config.github
        && github.webhook_secret.is_some()
    {
        let (webhook, forwarding) = github_webhook(app, clock.clone())?;
        routes.push(("GitHub webhook", webhook));
        tasks.spawn(forwarding);
    }
    // Liveness is always served, so a health check works in Socket Mode too. With no other
    // route and no `listen` in the config, a busy default port is logged, not fatal: the chat
    // still works, and the health check failing says the rest.
    let health_only = routes.is_empty();
    routes.push(("health (GET /healthz)", crate::listener::health()));
    routes.push((
        "metrics and readiness (GET /metrics, GET /readyz)",
        crate::operations::routes(Arc::new(app.clone()), clock.clone(), checks),
    ));
    let server = &adapters.server;
    let listening = match Listener::bind(server.listen, Limits::for_server(server)).await {
        Err(error) if health_only && !server.listen_set => {
            tracing::error!(
                error = format!("{error:#}"),
                "cannot serve /healthz on the default address; set [server] listen to a free address"
            );
            None
        }
        Err(error) => return Err(error),
        Ok(listener) => {
            let bound = listener.local_addr()?;
            let names: Vec<&str> = routes.iter().map(|(name, _)| *name).collect();
            let merged = routes.into_iter().fold(Router::new(), |all, (_, routes)| all.merge(routes));
            tracing::info!(
                %bound,
                routes = %names.join("; "),
                max_connections = listener.limits().max_connections,
                "listening for every inbound route"
            );
            tasks.spawn(async move { listener.serve(merged).await.context("the HTTP listener stopped") });
            Some(bound)
        }
    };
    // `shipday backup` asks the running bot through this socket: the store is locked to it.
    // Without it the bot still serves; only a backup then needs the bot stopped.
    match app.engine.control_socket(&app.config.state_dir) {
        Ok(control) => drop(tasks.spawn(control)),
        Err(error) => tracing::warn!(
            error = format!("{error:#}"),
            "no control socket: `shipday backup` works only with the bot stopped"
        ),
    }
    let scheduler = Scheduler::new(app.config.calendar.clone(), app.engine.clone(), clock);
    let scheduler = tasks.spawn(scheduler.run());
    Ok(Started { listening, tasks, scheduler })
}

/// GitHub's webhook route, and the task that hands each verified event to the engine. The
/// route refuses to exist without a webhook secret.
pub fn github_webhook(
    app: &App,
    clock: Arc<dyn Clock>,
) -> Result<(Router, impl std::future::Future<Output = Result<()>> + Send + 'static)> {
    use crate::webhook::github::{WebhookState, routes};
    let github = app.config.github.as_ref().context("no [github] section")?;
    let (events, inbox) = tokio::sync::mpsc::unbounded_channel();
    let state = WebhookState::new(github, &app.config.base_dir, app.engine.clone(), clock, events)?;
    Ok((routes(state), forward_github_events(app, inbox)))
}

/// Hands each verified webhook event to the engine, and tells the route once the engine has
/// recorded it (the route answers GitHub's delivery only then).
pub fn forward_github_events(
    app: &App,
    mut inbox: tokio::sync::mpsc::UnboundedReceiver<(
        crate::webhook::github::GitHubEvent,
        tokio::sync::oneshot::Sender<()>,
    )>,
) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
    let engine = app.engine.clone();
    async move {
        while let Some((event, recorded)) = inbox.recv().await {
            engine.github_event(event).await;
            let _ = recorded.send(());
        }
        Ok(())
    }
}

/// Waits for a shutdown signal or the first adapter to stop. On SIGTERM or SIGINT: the
/// scheduler stops, commands are answered "Shipday is restarting" at once (the adapters and the
/// listener keep running for that), running deploys may finish within `shutdown_grace`, after
/// which each stops before its next step; once their messages are edited, everything stops.
async fn wait(app: &App, started: Started) -> Result<()> {
    let Started { mut tasks, scheduler, .. } = started;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let signal = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
        Some(result) = tasks.join_next() => {
            return match result {
                Ok(Ok(())) => bail!("a chat adapter stopped unexpectedly"),
                Ok(Err(error)) => Err(error),
                Err(panic) => bail!("a chat adapter crashed: {panic}"),
            };
        }
    };
    let grace = app.config.shutdown_grace;
    tracing::info!(signal, grace = ?grace, "shutting down: new commands are refused, running deploys may finish");
    scheduler.abort();
    let report = app.engine.shut_down(grace, signal).await;
    tracing::info!(stopped_deploys = report.stopped_deploys, messages_edited = report.messages_edited, "shut down");
    tasks.shutdown().await;
    Ok(())
}
