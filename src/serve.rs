//! `shipday serve`: the bot for real. Starts every configured chat adapter (and the scheduler)
//! on one engine and runs until SIGINT or SIGTERM.

use crate::app::App;
use crate::clock::Clock;
use crate::scheduler::Scheduler;
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use tokio::task::JoinSet;

/// Runs the configured adapters until a shutdown signal, or until one of them fails.
pub async fn run(app: App, clock: Arc<dyn Clock>) -> Result<()> {
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    // Each chat adapter that is configured adds its task here.
    if app.config.discord.is_some() {
        let discord = crate::chat::discord::start(&app, clock.clone(), Default::default()).await?;
        tasks.spawn(discord.wait());
    }
    if app.config.slack.is_some() {
        let slack = crate::chat::slack::SlackAdapter::start(&app, clock.clone()).await?;
        tasks.spawn(slack.run());
    }
    if tasks.is_empty() {
        bail!(
            "no chat platform is configured: add a [slack] or [discord] section to the config \
             (see the README), or talk to Shipday with `shipday console --as NAME`"
        );
    }
    if let Some(github) = &app.config.github
        && let Some(listen) = &github.listen
    {
        tasks.spawn(github_webhook(&app, clock.clone(), listen.clone())?);
    }
    let scheduler = Scheduler::new(app.config.calendar.clone(), app.store.clone(), app.engine.clone(), clock);
    tasks.spawn(scheduler.run());
    wait(tasks).await
}

/// Serves GitHub's webhook route and hands each verified event to the engine. The route
/// refuses to exist without a webhook secret.
pub fn github_webhook(
    app: &App,
    clock: Arc<dyn Clock>,
    listen: String,
) -> Result<impl std::future::Future<Output = Result<()>> + Send + 'static> {
    use crate::webhook::github::{WebhookState, routes};
    let github = app.config.github.as_ref().context("no [github] section")?;
    let (events, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    let state = WebhookState::new(github, &app.config.base_dir, app.store.clone(), clock, events)?;
    let engine = app.engine.clone();
    Ok(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("github.listen: cannot listen on {listen}"))?;
        tracing::info!(%listen, "GitHub webhook route listening");
        tokio::spawn(async move {
            while let Some((event, recorded)) = inbox.recv().await {
                engine.github_event(event).await;
                let _ = recorded.send(());
            }
        });
        axum::serve(listener, routes(state)).await.context("the GitHub webhook server stopped")
    })
}

/// Waits for a shutdown signal or the first adapter to stop.
async fn wait(mut tasks: JoinSet<Result<()>>) -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = terminate.recv() => tracing::info!("terminated; shutting down"),
        Some(result) = tasks.join_next() => {
            return match result {
                Ok(Ok(())) => bail!("a chat adapter stopped unexpectedly"),
                Ok(Err(error)) => Err(error),
                Err(panic) => bail!("a chat adapter crashed: {panic}"),
            };
        }
    }
    tasks.shutdown().await;
    Ok(())
}
