//! The release calendar at work: reminders, and what each deploy slot does (`/schedule` is in
//! `schedule.rs`).
//!
//! The first environment in promotion order (dev) is deployed from its own branch at its slot;
//! if someone holds it, the holder is pinged and the deploy waits until the hold is gone or the
//! slot ends, and is then reported as skipped. Later environments' slots are promotions, which
//! need the GitHub integration: until then the slot announces that the promotion is due.

use super::*;
use crate::config::{Person, Role};
use crate::handlers::deploy::ShipdayDeploy;
use crate::release::calendar::{Firing, FiringKind, ReminderEvent, WindowState};
use crate::release::deploy::Trigger;
use crate::release::locks::HoldKind;
use crate::release::policy::{calendar_time, previous_environment, when};
use chrono::{DateTime, Utc};

/// The identity scheduled work runs as.
pub fn scheduler_person() -> Person {
    Person {
        id: "shipday".into(),
        name: "Shipday (schedule)".into(),
        roles: vec![Role::Lead],
        slack: None,
        discord: None,
        github: None,
        jira: None,
        dm: true,
    }
}

/// One firing of the calendar, already claimed in the store by the scheduler.
pub(crate) async fn scheduled(ctx: &mut Context, firing: Firing) {
    let now = ctx.clock.now();
    tracing::info!(job = %firing.job, at = %firing.at, "scheduled job fires");
    match &firing.kind {
        FiringKind::Reminder { event, offset_minutes } => {
            let mut text = reminder_text(ctx, event, *offset_minutes, firing.at, now);
            // Reminders carry what is frozen, so nobody plans a deploy that will be refused.
            for line in freeze_lines(ctx, now) {
                text.push('\n');
                text.push_str(&line);
            }
            ctx.announce(Announcement::Text(text));
            crate::metrics::reminder_sent();
            list_tickets_for_reminder(ctx, event, *offset_minutes, firing.at);
        }
        FiringKind::Slot { env } => slot(ctx, env, firing.at, now).await,
        // The window's own edges change state that policy reads from the calendar; what the
        // team is told comes from the reminders at those edges.
        FiringKind::WindowOpens | FiringKind::WindowCloses => {}
    }
}

fn reminder_text(
    ctx: &Context,
    event: &ReminderEvent,
    offset_minutes: i64,
    fired: DateTime<Utc>,
    now: DateTime<Utc>,
) -> String {
    let calendar = &ctx.config.calendar;
    let event_at = fired - chrono::Duration::minutes(offset_minutes);
    let relative = match offset_minutes {
        0 => "now".to_owned(),
        m if m < 0 => format!("in {} minutes", -m),
        m => format!("{m} minutes ago"),
    };
    match event {
        ReminderEvent::WindowOpens => match calendar.window(now) {
            WindowState::Open { closes_at, .. } => format!(
                "🪟 The ticket-drag window is open until {}. Tested tickets can move from Dev Testing to Staging now.",
                calendar_time(calendar, closes_at)
            ),
            WindowState::Closed { opens_at, .. } => format!(
                "🪟 The ticket-drag window opens {relative}, at {}: get your Dev Testing tickets tested.",
                calendar_time(calendar, opens_at)
            ),
        },
        ReminderEvent::WindowCloses if offset_minutes < 0 => format!(
            "⏳ The ticket-drag window closes {relative} ({}). Move tested tickets from Dev Testing to Staging before then.",
            calendar_time(calendar, event_at)
        ),
        ReminderEvent::WindowCloses => {
            let next = match calendar.window(now) {
                WindowState::Closed { opens_at, .. } => {
                    format!(" It opens again {}.", when(calendar, opens_at, now))
                }
                WindowState::Open { .. } => String::new(),
            };
            format!("🔒 The ticket-drag window is closed: tickets stay where they are until the next one.{next}")
        }
        ReminderEvent::Slot { env } => {
            let what = match previous_environment(&ctx.config.environments, env) {
                None => {
                    let branch = ctx.config.environment(env).map(|e| e.branch.to_string()).unwrap_or_default();
                    let live = ctx
                        .store
                        .last_ok(env)
                        .ok()
                        .flatten()
                        .map(|d| format!(" (live now: `{}` at {})", d.git_ref, d.sha.short()))
                        .unwrap_or_default();
                    format!("{env} is deployed from `{branch}`{live}")
                }
                Some(previous) => {
                    let live = ctx
                        .store
                        .last_ok(previous)
                        .ok()
                        .flatten()
                        .map(|d| format!(" ({previous} runs {})", d.sha.short()))
                        .unwrap_or_default();
                    format!("promoting {previous} to {env} is due{live}")
                }
            };
            format!("🚀 {env}'s deploy slot is {relative} ({}): {what}.", calendar_time(calendar, event_at))
        }
    }
}

/// What an environment's slot does: nothing when a lead skipped it or the environment is
/// frozen (the team is told which); otherwise its deploy or promotion.
async fn slot(ctx: &mut Context, env: &str, slot: DateTime<Utc>, now: DateTime<Utc>) {
    let at = calendar_time(&ctx.config.calendar, slot);
    if let Some(skip) = take_skip(ctx, env).await {
        let tz = ctx.config.calendar.timezone();
        ctx.announce(Announcement::Text(format!(
            "⏭️ {env}'s slot at {at} was skipped: {} with `/skip {env}`. Nothing was deployed; the next slot runs as usual.",
            skip.describe(tz)
        )));
        return;
    }
    match frozen(ctx, env, now) {
        Ok(None) => {}
        Ok(Some(freeze)) => {
            let tz = ctx.config.calendar.timezone();
            ctx.announce(Announcement::Text(format!(
                "🧊 {env}'s slot at {at} did not run: {}. Nothing was deployed.",
                freeze.describe(env, tz, now)
            )));
            return;
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot read the freezes");
            ctx.announce(Announcement::Text(format!(
                "⏭️ {env}'s slot at {at} did not run: Shipday cannot read its freezes. An operator can check its logs."
            )));
            return;
        }
    }
    match previous_environment(&ctx.config.environments, env) {
        None => try_slot_deploy(ctx, env, slot, now, true).await,
        Some(_) if ctx.github.is_some() => {
            if let Err(why) = scheduled_promotion(ctx, env, now) {
                ctx.announce(Announcement::Text(format!("📦 {env}'s slot: no promotion started ({why}).")));
            }
        }
        Some(previous) => {
            let text = format!(
                "📦 It is {env}'s deploy slot ({}): promoting {previous} to {env} is due. Shipday starts promotions \
                 itself once the GitHub integration is configured; until then a lead merges and runs `/deploy {env} {}`.",
                calendar_time(&ctx.config.calendar, slot),
                ctx.config.environment(env).map(|e| e.branch.to_string()).unwrap_or_default()
            );
            ctx.announce(Announcement::Text(text));
        }
    }
}

/// Deploys `env`'s own branch for its slot, or waits while someone holds it.
async fn try_slot_deploy(ctx: &mut Context, env: &str, slot: DateTime<Utc>, now: DateTime<Utc>, first_try: bool) {
    let Some(environment) = ctx.config.environment(env).cloned() else { return };
    let hold = ctx.store.hold(env).ok().flatten().filter(|h| !h.is_expired(now));
    let busy = ctx.starting.contains_key(env) || ctx.store.active(env).ok().flatten().is_some();
    if hold.is_some() || busy {
        if first_try {
            let who = match &hold {
                Some(hold) => format!("@{{{}}} holds {env} ({})", hold.holder, hold.describe(env, now)),
                None => format!("a deploy is running on {env}"),
            };
            ctx.announce(Announcement::Text(format!(
                "⏸️ {env}'s scheduled deploy is waiting: {who}. `/release {env}` lets it run; if {env} is still held \
                 when the slot ends, the scheduled deploy is skipped."
            )));
        }
        if let Err(error) = ctx.store.set_slot_wait(env, Some(slot)) {
            tracing::error!(error = format!("{error:#}"), "cannot record a waiting slot deploy");
        }
        return;
    }
    if let Err(error) = ctx.store.set_slot_wait(env, None) {
        tracing::error!(error = format!("{error:#}"), "cannot clear a waiting slot deploy");
    }
    let deploy = ShipdayDeploy {
        env: env.to_owned(),
        git_ref: environment.branch.clone(),
        trigger: Trigger::Scheduled,
        emergency: None,
        audit_text: format!("/deploy {env} {} (slot)", environment.branch),
        why: format!("{env}'s deploy slot"),
    };
    deploy_as_shipday_or_say_why(ctx, deploy, format!("⏭️ {env}'s scheduled deploy did not run")).await;
}

/// Puts an environment whose claim expired back on its own branch, the safe way: the same
/// release the holder would run, so the branch's migrations are undone first.
async fn release_expired_claims(ctx: &mut Context, now: DateTime<Utc>) {
    let expired: Vec<(String, crate::release::locks::Hold)> = ctx
        .config
        .environments
        .iter()
        .filter(|e| !ctx.starting.contains_key(&e.name))
        .filter(|e| ctx.store.active(&e.name).ok().flatten().is_none())
        .filter_map(|e| ctx.store.hold(&e.name).ok().flatten().map(|h| (e.name.clone(), h)))
        .filter(|(_, h)| h.is_expired(now))
        .collect();
    for (env, hold) in expired {
        let Some(environment) = ctx.config.environment(&env).cloned() else { continue };
        let HoldKind::Claim { git_ref, .. } = &hold.kind else { continue };
        let undo = match ctx.store.migration_debt(&env).ok().flatten() {
            Some(debt) => format!(", undoing the migrations of `{}` first", debt.git_ref),
            None => String::new(),
        };
        ctx.announce(Announcement::Text(format!(
            "⌛ @{{{}}}'s claim on {env} (`{git_ref}`) expired: Shipday is putting `{}` back{undo}.",
            hold.holder, environment.branch
        )));
        let deploy = ShipdayDeploy {
            env: env.clone(),
            git_ref: environment.branch.clone(),
            trigger: Trigger::Release,
            emergency: None,
            audit_text: format!("/release {env} (claim expired)"),
            why: format!("{}'s claim of {env} expired", hold.holder_name),
        };
        deploy_as_shipday_or_say_why(ctx, deploy, format!("⏭️ {env}'s expired claim was not released")).await;
    }
}

/// The scheduler's tick: promotions a restart interrupted resume (on the first tick, once
/// every adapter listens), protection is asked again when stale, expired dedupe records are
/// forgotten, and the periodic work of [`tick`] runs.
pub(crate) async fn on_tick(ctx: &mut Context) {
    if !ctx.resumed_at_start {
        ctx.resumed_at_start = true;
        resume_promotions(ctx, true).await;
    }
    refresh_protection(ctx, false);
    prune_if_due(ctx).await;
    tick(ctx).await;
}

/// Forgets expired dedupe records, at most once an hour (the scheduler ticks every 30 s).
async fn prune_if_due(ctx: &mut Context) {
    let now = ctx.clock.now();
    if ctx.pruned_at.is_some_and(|at| now - at < chrono::Duration::hours(1) && at <= now) {
        return;
    }
    ctx.pruned_at = Some(now);
    match ctx.store.prune(now) {
        Ok(0) => {}
        Ok(removed) => {
            tracing::info!(removed, "forgot expired dedupe records");
            let _ = ctx.store.flush().await;
        }
        Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot prune expired dedupe records"),
    }
}

/// Periodic work: releases claims that expired (undoing their migrations first), retries
/// slot deploys that wait for a hold, and skips those whose slot has ended.
pub(crate) async fn tick(ctx: &mut Context) {
    let now = ctx.clock.now();
    end_expired_freezes(ctx, now).await;
    release_expired_claims(ctx, now).await;
    resume_promotions(ctx, false).await;
    let waits = match ctx.store.slot_waits() {
        Ok(waits) => waits,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot read waiting slot deploys");
            return;
        }
    };
    for (env, slot) in waits {
        if ctx.config.calendar.current_slot(&env, now) == Some(slot) {
            try_slot_deploy(ctx, &env, slot, now, false).await;
            continue;
        }
        let why = match ctx.store.hold(&env).ok().flatten() {
            Some(hold) => hold.describe(&env, now),
            None => format!("a deploy was running on {env}"),
        };
        ctx.announce(Announcement::Text(format!(
            "⏭️ {env}'s scheduled deploy for the slot at {} was skipped: {why} until the slot ended.",
            calendar_time(&ctx.config.calendar, slot)
        )));
        if let Err(error) = ctx.store.set_slot_wait(&env, None) {
            tracing::error!(error = format!("{error:#}"), "cannot clear a waiting slot deploy");
        }
        let _ = ctx.store.flush().await;
    }
}
