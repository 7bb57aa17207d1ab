//! `/status`: what runs where, who holds what, what failed or was interrupted.

use super::reply::{CalendarView, EnvironmentStatus, StatusReport};
use super::*;
use crate::release::deploy::{Drift, Observation};
use crate::release::gitref::Sha;
use chrono::{DateTime, Utc};

/// How long what GitHub said about branch protection is trusted before it is asked again.
pub(crate) const PROTECTION_TTL: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Asks GitHub about the first environment's branch protection again when what it said
/// last is older than [`PROTECTION_TTL`] (or always, with `now_anyway`).
/// The answer arrives as an event; until then `/status` shows the previous one.
pub(crate) fn refresh_protection(ctx: &mut Context, now_anyway: bool) {
    if ctx.github.is_none() {
        return;
    }
    let now = ctx.clock.now();
    let stale = ctx.protection_asked.is_none_or(|asked| now - asked >= PROTECTION_TTL);
    if now_anyway || stale {
        ctx.protection_asked = Some(now);
        check_protection(ctx);
    }
}

pub(crate) fn status(ctx: &mut Context, env: Option<&str>, now: DateTime<Utc>) -> Decision {
    refresh_protection(ctx, false);
    match status_report(ctx, env, now) {
        Ok(report) => Decision {
            reply: Reply { visibility: Visibility::Ephemeral, body: ReplyBody::Status(report) },
            decision: "answered".into(),
        },
        Err(error) => Decision::store_trouble("read the status", &error),
    }
}

/// Reads the status of one or every environment from the store.
pub(crate) fn status_report(ctx: &Context, env: Option<&str>, now: DateTime<Utc>) -> anyhow::Result<StatusReport> {
    let mut environments = Vec::new();
    for environment in ctx.config.environments.iter().filter(|e| env.is_none_or(|n| n == e.name)) {
        let name = &environment.name;
        let live = ctx.store.last_ok(name)?;
        let latest = ctx.store.latest_deploy(name)?.filter(|l| Some(l.id) != live.as_ref().map(|d| d.id));
        let last_failure = ctx.store.last_failure(name)?.filter(|f| Some(f.id) != latest.as_ref().map(|d| d.id));
        environments.push(EnvironmentStatus {
            name: name.clone(),
            branch: environment.branch.to_string(),
            live,
            latest,
            last_failure,
            hold: ctx.store.hold(name)?,
            active: ctx.store.active(name)?,
            observed: ctx.store.observation(name)?,
            migration_debt: ctx.store.migration_debt(name)?,
            interrupted: ctx.store.interrupted(name)?,
            freeze: frozen(ctx, name, now)?.map(|f| f.describe(name, ctx.config.calendar.timezone(), now)),
            skip: ctx.store.skip(name)?.map(|s| {
                format!("next automatic deploy {} (`/skip {name}`)", s.describe(ctx.config.calendar.timezone()))
            }),
            waiting: ctx.store.waiters(name)?,
        });
    }
    let calendar = &ctx.config.calendar;
    let next_slots = ctx
        .config
        .environments
        .iter()
        .filter(|e| env.is_none_or(|n| n == e.name) && calendar.has_slot(&e.name))
        .map(|e| (e.name.clone(), calendar.next_slot(&e.name, now)))
        .collect();
    let calendar = CalendarView { timezone: calendar.timezone(), window: calendar.window(now), next_slots };
    let protection = ctx.protection.clone();
    Ok(StatusReport { now, environments, calendar, jira: jira_view(ctx, now)?, protection })
}

/// The start-up checks: drift on the hosts and branch protection. (Promotions resume on the
/// first tick, once the adapters listen.)
pub(crate) fn check_drift(ctx: &mut Context) {
    read_heads(ctx, None, None);
    refresh_protection(ctx, true);
}

/// Reads HEAD on the hosts of one or every environment, in the background.
pub(crate) fn read_heads(ctx: &Context, env: Option<String>, pending: Option<WaitingCommand>) {
    let Some(events) = ctx.jobs.reporter() else { return };
    let targets: Vec<_> = ctx
        .config
        .environments
        .iter()
        .filter(|e| env.as_ref().is_none_or(|n| *n == e.name))
        .map(|e| (e.clone(), ctx.transports.get(&e.name).cloned()))
        .collect();
    let redactor = ctx.redactor.clone();
    tokio::spawn(async move {
        let mut reads = tokio::task::JoinSet::new();
        for (environment, transport) in targets {
            let redactor = redactor.clone();
            reads.spawn(async move {
                let name = environment.name.clone();
                let Some(transport) = transport else { return (name, Err("no transport".to_owned())) };
                let head = read_head(transport.as_ref(), &environment).await;
                // Host output goes into the store and the logs: redacted here, at the source.
                (name, head.map_err(|e| redactor.redact(&e)))
            });
        }
        let mut heads = reads.join_all().await;
        heads.sort_by(|a, b| a.0.cmp(&b.0));
        let _ = events.send(Report::Observed { env, heads, waiting: pending.map(Box::new) });
    });
}

/// Records what the hosts' HEADs are, logs drift, and answers `/status --live`.
pub(crate) async fn observed(
    ctx: &mut Context,
    env: Option<String>,
    heads: Vec<(String, Result<Sha, String>)>,
    pending: Option<WaitingCommand>,
) {
    let now = ctx.clock.now();
    for (name, head) in heads {
        let observation = Observation { at: now, head };
        let last_ok = ctx.store.last_ok(&name).ok().flatten();
        match observation.drift(last_ok.as_ref()) {
            Drift::None => tracing::info!(env = %name, "host HEAD matches the last deploy"),
            // Shipday never deployed here (a fresh install): nothing to compare, not drift.
            Drift::Differs { deployed: None, found } => tracing::info!(
                env = %name,
                found = %found,
                "host HEAD read; Shipday has not deployed here yet, so there is nothing to compare"
            ),
            Drift::Differs { deployed: Some(deployed), found } => tracing::warn!(
                env = %name,
                found = %found,
                deployed = %deployed,
                "drift: the host's HEAD is not what Shipday deployed"
            ),
            Drift::Unreadable(error) => tracing::warn!(env = %name, %error, "cannot read the host's HEAD"),
        }
        if let Err(error) = ctx.store.set_observation(&name, &observation) {
            tracing::error!(error = format!("{error:#}"), "cannot record an observation");
        }
    }
    if let Some(pending) = pending {
        let handled = status(ctx, env.as_deref(), now);
        ctx.answer(pending, handled);
    } else if let Err(error) = ctx.store.flush().await {
        tracing::error!(error = format!("{error:#}"), "cannot flush observations");
    }
}
