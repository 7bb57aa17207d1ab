//! Waiting for an environment to be free. A `/deploy` refused because the environment is held
//! or deploying says how to wait: `--notify` (told once when it is free: by direct message on
//! the platform they asked from, or, on the console or with `dm = false`, by a mention in the
//! team channel) or `--when-free` (the deploy starts then, as that person, with their
//! permissions and the slot checked again at that time). Waiters are durable, first come
//! first served, and shown in `/status`; `/cancel ENV` with no deploy running ends one's wait.

use super::*;
use crate::command::Command;
use crate::command::authorize::{Actor, authorize};
use crate::release::deploy::{DeployEvent, Trigger};
use crate::release::locks::{Waiter, is_free_for};
use chrono::{DateTime, Utc};

/// How someone asked to wait, with `/deploy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// No flag: a refusal says how to wait.
    No,
    /// `--notify`: tell me once it is free.
    Notify,
    /// `--when-free`: deploy it once it is free.
    Deploy,
}

/// Whether `env` is busy for `person`: a deploy runs or is being prepared, or someone else
/// holds it.
fn busy_for(ctx: &Context, env: &str, waiter: &Waiter, now: DateTime<Utc>) -> anyhow::Result<bool> {
    if ctx.starting.contains_key(env) || ctx.running.values().any(|r| r.record.env == env) {
        return Ok(true);
    }
    let hold = ctx.store.hold(env)?;
    let active = ctx.store.active(env)?;
    Ok(!is_free_for(waiter, hold.as_ref(), active.as_ref(), now))
}

/// `/deploy`, with the way to wait when the environment is busy.
pub(crate) fn deploy_or_wait(
    ctx: &mut Context,
    request: DeployRequest,
    wait: Wait,
    pending: WaitingCommand,
    now: DateTime<Utc>,
) -> Option<(WaitingCommand, Decision)> {
    let env = request.env.clone();
    let waiter = pending.person.as_ref().map(|person| Waiter {
        person: person.id.clone(),
        name: person.name.clone(),
        platform: pending.invocation.platform.clone(),
        user_id: pending.invocation.user_id.clone(),
        git_ref: request.git_ref.clone(),
        deploy: wait == Wait::Deploy,
        since: now,
    });
    let busy = match &waiter {
        Some(waiter) if !request.dry_run => match busy_for(ctx, &env, waiter, now) {
            Ok(busy) => busy,
            Err(error) => return Some((pending, Decision::store_trouble("read the locks", &error))),
        },
        _ => false,
    };
    let git_ref = request.git_ref.clone();
    let (pending, refused) = deploy(ctx, request, pending, now)?;
    let Some(waiter) = waiter.filter(|_| busy && matches!(refused.reply.body, ReplyBody::Refused(_))) else {
        return Some((pending, refused));
    };
    let reason = refused.decision.trim_start_matches("refused: ").to_owned();
    let decision = match wait {
        Wait::No => Decision::refused(format!(
            "{reason} To be told when {env} is free, run `/deploy {env} {git_ref} --notify`; to have it deployed then, \
             `/deploy {env} {git_ref} --when-free`."
        )),
        Wait::Notify | Wait::Deploy => match add_waiter(ctx, &env, waiter) {
            Ok(ahead) => {
                let queue = if ahead == 0 { String::new() } else { format!(" ({ahead} waiting before you)") };
                let text = if wait == Wait::Deploy {
                    format!(
                        "⏳ {reason} I'll deploy `{git_ref}` to {env} for you as soon as it is free{queue}, checking \
                         your permissions and the slot again then. `/cancel {env}` stops waiting."
                    )
                } else {
                    format!("⏳ {reason} I'll tell you when {env} is free{queue}. `/cancel {env}` stops waiting.")
                };
                let visibility = if wait == Wait::Deploy { Visibility::Public } else { Visibility::Ephemeral };
                Decision { decision: format!("accepted: waiting: {text}"), reply: Reply::text(visibility, text) }
            }
            Err(error) => Decision::store_trouble("record a wait", &error),
        },
    };
    Some((pending, decision))
}

/// Adds (or, for someone already waiting, replaces) a waiter; returns how many wait before.
fn add_waiter(ctx: &Context, env: &str, waiter: Waiter) -> anyhow::Result<usize> {
    let mut waiters = ctx.store.waiters(env)?;
    let person = waiter.person.clone();
    match waiters.iter().position(|w| w.person == waiter.person) {
        Some(at) => {
            if let Some(slot) = waiters.get_mut(at) {
                *slot = waiter;
            }
        }
        None => waiters.push(waiter.clone()),
    }
    ctx.store.set_waiters(env, &waiters)?;
    Ok(waiters.iter().position(|w| w.person == person).unwrap_or_default())
}

/// `/cancel ENV` when no deploy runs there: ends the asker's wait, if they wait.
pub(crate) fn stop_waiting(ctx: &Context, env: &str, person: &str) -> Option<Decision> {
    let waiters = match ctx.store.waiters(env) {
        Ok(waiters) => waiters,
        Err(error) => return Some(Decision::store_trouble("read who waits", &error)),
    };
    let mine = waiters.iter().find(|w| w.person == person)?.clone();
    let rest: Vec<Waiter> = waiters.into_iter().filter(|w| w.person != person).collect();
    if let Err(error) = ctx.store.set_waiters(env, &rest) {
        return Some(Decision::store_trouble("record a wait", &error));
    }
    let what = if mine.deploy { format!("deploy `{}` when it is free", mine.git_ref) } else { "be told".to_owned() };
    let text = format!("You no longer wait for {env} (you were to {what}).");
    Some(Decision { decision: format!("accepted: {text}"), reply: Reply::text(Visibility::Ephemeral, text) })
}

/// After every event: each environment someone waits for that is free now tells its waiters,
/// in order, up to the first that asked for a deploy, whose deploy starts (it holds the
/// environment again, so those after it wait on). Each is told once: it is removed from the
/// list as it is served.
pub(crate) async fn wake_waiters(ctx: &mut Context) {
    if ctx.shutdown.draining() {
        return;
    }
    let envs = match ctx.store.waited_for() {
        Ok(envs) => envs,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot read who waits");
            return;
        }
    };
    let now = ctx.clock.now();
    for env in envs {
        let Ok(mut waiters) = ctx.store.waiters(&env) else { continue };
        let before = waiters.clone();
        let mut served = false;
        // Notices go out once the wait's end is durable, so nobody is told twice.
        let mut told = Vec::new();
        while let Some(first) = waiters.first().cloned() {
            match busy_for(ctx, &env, &first, now) {
                Ok(false) => {}
                _ => break,
            }
            waiters.remove(0);
            if let Err(error) = ctx.store.set_waiters(&env, &waiters) {
                tracing::error!(error = format!("{error:#}"), "cannot record who waits");
                return;
            }
            served = true;
            if first.deploy {
                deploy_for(ctx, &env, first).await;
                break;
            }
            let to = direct_to(ctx, &first.platform, &first.user_id);
            told.push(notice(
                to,
                format!("🔔 {env} is free now (you asked to be told): `/deploy {env} {}`.", first.git_ref),
                format!(
                    "🔔 @{{{}}} {env} is free now (you asked to be told): `/deploy {env} {}`.",
                    first.person, first.git_ref
                ),
            ));
        }
        if served && let Err(error) = ctx.store.flush().await {
            // Not told: they stay waiting, and are told at the next chance.
            tracing::error!(error = format!("{error:#}"), "cannot flush who waits; they are told at the next chance");
            if let Err(error) = ctx.store.set_waiters(&env, &before) {
                tracing::error!(error = format!("{error:#}"), "cannot record who waits");
            }
            continue;
        }
        for announcement in told {
            ctx.announce(announcement);
        }
    }
}

/// Starts a `--when-free` deploy as the person who queued it, checking again that they may.
async fn deploy_for(ctx: &mut Context, env: &str, waiter: Waiter) {
    let text = format!("/deploy {env} {} --when-free", waiter.git_ref);
    let Some(person) = ctx.person(&waiter.platform, &waiter.user_id, &[]) else {
        ctx.announce(Announcement::Text(format!(
            "🔔 {env} is free, but {} (who queued `{}`) is no longer in Shipday's people list, so it was not deployed.",
            waiter.name, waiter.git_ref
        )));
        return;
    };
    let mention = format!("@{{{}}}", person.id);
    let command = Command::Deploy {
        env: env.to_owned(),
        git_ref: waiter.git_ref.clone(),
        dry_run: false,
        emergency: None,
        force: false,
        force_reason: None,
        notify: false,
        when_free: true,
    };
    let allowed = match ctx.book.get("deploy") {
        Some(spec) => {
            let actor = Actor { person: Some(&person), platform: &waiter.platform, user_id: &waiter.user_id };
            authorize(&ctx.config.environments, spec, actor, &command).map_err(|r| r.0)
        }
        None => Err("the deploy command is missing from the command book".to_owned()),
    };
    let to = direct_to(ctx, &waiter.platform, &waiter.user_id);
    if let Err(reason) = allowed {
        let refused = format!("{env} is free, but your queued deploy of `{}` was refused: {reason}", waiter.git_ref);
        ctx.announce(notice(to, format!("🔔 {refused}"), format!("🔔 {mention} {refused}")));
        return;
    }
    let started = format!("{env} is free: deploying `{}` for you, as you asked (`--when-free`).", waiter.git_ref);
    ctx.announce(notice(to.clone(), format!("🔔 {started}"), format!("🔔 {mention} {started}")));
    let (reply, answered) = tokio::sync::oneshot::channel();
    let (progress, mut updates) = tokio::sync::mpsc::unbounded_channel();
    let invocation = super::Invocation {
        progress: Some(progress),
        ..super::Invocation::new(&waiter.platform, &waiter.user_id, &text)
    };
    let pending = WaitingCommand::new(invocation, Some(person), reply);
    let request = DeployRequest::new(env, waiter.git_ref.clone(), Trigger::Command);
    let now = ctx.clock.now();
    if let Some((pending, handled)) = deploy(ctx, request, pending, now) {
        ctx.answer(pending, handled);
    }
    let announcements = ctx.announcements.clone();
    let git_ref = waiter.git_ref;
    tokio::spawn(async move {
        if let Ok(Reply { body: ReplyBody::Refused(reason), .. }) = answered.await {
            let refused = format!("your queued deploy of `{git_ref}` was refused: {reason}");
            let _ = announcements.send(notice(to, format!("🔔 {refused}"), format!("🔔 {mention} {refused}")));
            return;
        }
        // The team channel follows the deploy as any deploy no command follows (its updates
        // come here already redacted); the person who queued it is told how it ended.
        while let Some(update) = updates.recv().await {
            if matches!(update.event, DeployEvent::Accepted) {
                continue;
            }
            let ended = update.record.is_finished().then(|| ended(&update.record));
            let _ = announcements.send(Announcement::Deploy(Box::new(update)));
            if let Some(ended) = ended {
                let _ = announcements.send(notice(to, format!("🔔 {ended}"), format!("🔔 {mention} {ended}")));
                break;
            }
        }
    });
}

/// How a `--when-free` deploy ended, for the person who queued it.
fn ended(record: &crate::release::deploy::DeployRecord) -> String {
    use crate::release::deploy::Outcome;
    let what = format!("your `--when-free` deploy #{} of `{}` to {}", record.id, record.git_ref, record.env);
    let env = &record.env;
    match &record.outcome {
        Outcome::Succeeded => format!("{what} succeeded: {env} runs {}.", record.sha.short()),
        Outcome::Failed { step, reason, .. } => {
            format!("{what} failed at {step}: {reason}. `/status {env}` says what {env} runs now.")
        }
        Outcome::Cancelled { by, .. } => {
            format!("{what} was cancelled by {by}. `/status {env}` says what {env} runs now.")
        }
        Outcome::Interrupted | Outcome::Running => {
            format!("{what} was interrupted. `/status {env}` says what {env} runs now.")
        }
    }
}

/// Where a notice for someone goes privately: the platform they asked from and their id
/// there, when that platform has direct messages (Slack, Discord; not the console) and they
/// did not opt out with `dm = false`. `None`: a mention in the team channel instead.
fn direct_to(ctx: &Context, platform: &str, user_id: &str) -> Option<(String, String)> {
    let person = ctx.person(platform, user_id, &[])?;
    (person.dm && matches!(platform, "slack" | "discord")).then(|| (platform.to_owned(), user_id.to_owned()))
}

/// A notice for one person: `direct` by direct message when `to` says where, or `mentioned`
/// (which mentions them) in the team channel.
fn notice(to: Option<(String, String)>, direct: String, mentioned: String) -> Announcement {
    match to {
        Some((platform, user_id)) => {
            Announcement::Direct(Box::new(DirectNotice { platform, user_id, text: direct, fallback: mentioned }))
        }
        None => Announcement::Text(mentioned),
    }
}
