//! `/freeze` and `/unfreeze`, and the freeze check every deploy Shipday starts goes through
//! (the rules are in [`crate::release::freeze`]).

use super::*;
use crate::release::Refusal;
use crate::release::freeze::{ALL, ActiveFreeze, Freeze, FreezeCheck, active_freeze, check_freeze, local, parse_until};
use crate::store::AuditEntry;
use chrono::{DateTime, Utc};

/// `/freeze ENV|all REASON [--until TIME]`, by a lead: recorded in the store (flushed with the
/// answer) before the reply says so.
pub(crate) fn freeze(
    ctx: &Context,
    scope: &str,
    reason: &str,
    until: Option<&str>,
    pending: &WaitingCommand,
    now: DateTime<Utc>,
) -> Decision {
    let Some(person) = pending.person.as_ref() else {
        return Decision::refused("Only a lead can freeze deploys.");
    };
    let tz = ctx.config.calendar.timezone();
    let until = match until.map(|text| parse_until(text, tz, now)).transpose() {
        Ok(until) => until,
        Err(sentence) => return Decision::refused(format!("{sentence} Nothing was frozen.")),
    };
    let before = match ctx.store.freezes() {
        Ok(freezes) => freezes.into_iter().find(|f| f.scope == scope && f.is_active(now)),
        Err(error) => return Decision::store_trouble("read the freezes", &error),
    };
    let freeze = Freeze {
        scope: scope.to_owned(),
        reason: reason.to_owned(),
        by: person.id.clone(),
        by_name: person.name.clone(),
        since: now,
        until,
    };
    if let Err(error) = ctx.store.set_freeze(scope, Some(&freeze)) {
        return Decision::store_trouble("record a freeze", &error);
    }
    let what = if scope == ALL { "every environment".to_owned() } else { scope.to_owned() };
    let ends = match until {
        Some(until) => format!("until {} (in {})", local(tz, until), crate::release::age(until, now)),
        None => format!("until a lead runs `/unfreeze {scope}`"),
    };
    let replaced =
        before.map(|b| format!(" (This replaces {}'s freeze: {}.)", b.by_name, b.reason)).unwrap_or_default();
    let text = format!(
        "🧊 {} froze {what} {ends}: {reason}. Nothing deploys there meanwhile: no /deploy, /rollback or /promote, no \
         slot deploy and no merge auto-deploy. A lead can still deploy with `--emergency \"reason\"` (recorded and \
         announced); `/unfreeze {scope}` lifts it.{replaced}",
        person.name
    );
    Decision { decision: format!("accepted: {text}"), reply: Reply::text(Visibility::Public, text) }
}

/// `/unfreeze ENV|all`, by a lead: lifts a lead's freeze (`all`: every one of them). A
/// calendar freeze stays; the reply says so.
pub(crate) fn unfreeze(ctx: &Context, scope: &str, pending: &WaitingCommand, now: DateTime<Utc>) -> Decision {
    let Some(person) = pending.person.as_ref() else {
        return Decision::refused("Only a lead can lift a freeze.");
    };
    let freezes = match ctx.store.freezes() {
        Ok(freezes) => freezes,
        Err(error) => return Decision::store_trouble("read the freezes", &error),
    };
    let lifted: Vec<&Freeze> =
        freezes.iter().filter(|f| (scope == ALL || f.scope == scope) && f.is_active(now)).collect();
    for freeze in freezes.iter().filter(|f| scope == ALL || f.scope == scope) {
        if let Err(error) = ctx.store.set_freeze(&freeze.scope, None) {
            return Decision::store_trouble("lift a freeze", &error);
        }
    }
    let tz = ctx.config.calendar.timezone();
    // What still stops deploys after this: a freeze of all, or the calendar.
    let still = |env: &str| active_freeze(&[], ctx.config.calendar.freezes(), tz, env, now);
    let remaining: Vec<String> = if scope == ALL {
        ctx.config.environments.iter().filter_map(|e| still(&e.name).map(|f| f.describe(&e.name, tz, now))).collect()
    } else {
        let all = freezes.iter().find(|f| f.scope == ALL && f.is_active(now)).cloned().map(ActiveFreeze::Manual);
        all.or_else(|| still(scope)).map(|f| f.describe(scope, tz, now)).into_iter().collect()
    };
    let remaining = if remaining.is_empty() {
        String::new()
    } else {
        let config = if remaining.iter().any(|r| r.contains("by the calendar")) {
            " A calendar freeze is lifted by changing `[[calendar.freezes]]` in the config; until then a lead deploys with `--emergency \"reason\"`."
        } else {
            ""
        };
        format!(" Still frozen: {}.{config}", remaining.join("; "))
    };
    if lifted.is_empty() {
        let what = if scope == ALL {
            "Nothing is frozen by a lead".to_owned()
        } else {
            format!("{scope} is not frozen by a lead")
        };
        return Decision {
            decision: format!("answered: {what}"),
            reply: Reply::text(Visibility::Ephemeral, format!("{what}.{remaining}")),
        };
    }
    let names: Vec<String> = lifted
        .iter()
        .map(|f| format!("{} ({} by {})", if f.scope == ALL { "all" } else { &f.scope }, f.reason, f.by_name))
        .collect();
    let text =
        format!("☀️ {} lifted the freeze of {}. Deploys may go ahead again.{remaining}", person.name, names.join(", "));
    Decision { decision: format!("accepted: {text}"), reply: Reply::text(Visibility::Public, text) }
}

/// The freeze that stops deploys to `env` at `now`, if any (a lead's or the calendar's).
pub(crate) fn frozen(ctx: &Context, env: &str, now: DateTime<Utc>) -> anyhow::Result<Option<ActiveFreeze>> {
    let manual = ctx.store.freezes()?;
    Ok(active_freeze(&manual, ctx.config.calendar.freezes(), ctx.config.calendar.timezone(), env, now))
}

/// Whether a deploy to `env` by `who` may go ahead with the freezes as they are: a refusal
/// says who froze it, why, until when and how to override. A lead's `--emergency` through a
/// freeze is written to the audit log and announced here, before anything runs (it becomes
/// durable with the deploy's own answer, which is flushed before the first step). `automatic`:
/// a slot or merge deploy, which never overrides.
pub(crate) fn check_deploy_freeze(
    ctx: &Context,
    env: &str,
    pending: &WaitingCommand,
    emergency: Option<&str>,
    automatic: bool,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let Some(who) = pending.person.as_ref() else {
        return Err(Refusal::new("Shipday does not know you, so you cannot deploy."));
    };
    let manual = ctx.store.freezes().map_err(|e| Refusal::new(UserError::store("read the freezes", &e).0))?;
    let tz = ctx.config.calendar.timezone();
    let checked = check_freeze(&manual, ctx.config.calendar.freezes(), tz, env, who, emergency, automatic, now)?;
    if let FreezeCheck::Overridden { freeze, reason } = checked {
        let text = format!(
            "🚨 {} is deploying to {env} through a freeze (emergency: {reason}). {}.",
            who.name,
            freeze.describe(env, tz, now)
        );
        let entry = AuditEntry {
            at: now,
            platform: pending.invocation.platform.clone(),
            user_id: pending.invocation.user_id.clone(),
            person: Some(who.id.clone()),
            text: pending.invocation.text.clone(),
            decision: format!("freeze overridden: {text}"),
        };
        if let Err(error) = ctx.store.audit(&entry) {
            return Err(Refusal::new(UserError::store("audit a freeze override", &error).0));
        }
        ctx.announce(Announcement::Text(text));
    }
    Ok(())
}

/// Removes leads' freezes whose `--until` has passed, and tells the team (on the tick).
pub(crate) async fn end_expired_freezes(ctx: &mut Context, now: DateTime<Utc>) {
    let freezes = match ctx.store.freezes() {
        Ok(freezes) => freezes,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot read the freezes");
            return;
        }
    };
    let tz = ctx.config.calendar.timezone();
    let mut ended = false;
    for freeze in freezes.iter().filter(|f| f.until.is_some_and(|until| until <= now)) {
        if let Err(error) = ctx.store.set_freeze(&freeze.scope, None) {
            tracing::error!(error = format!("{error:#}"), "cannot end an expired freeze");
            continue;
        }
        ended = true;
        let what = if freeze.scope == ALL { "every environment" } else { &freeze.scope };
        let at = freeze.until.map(|u| local(tz, u)).unwrap_or_default();
        ctx.announce(Announcement::Text(format!(
            "☀️ The freeze of {what} ({}, by {}) ended at {at}. Deploys may go ahead again.",
            freeze.reason, freeze.by_name
        )));
    }
    if ended && let Err(error) = ctx.store.flush().await {
        tracing::error!(error = format!("{error:#}"), "cannot record ended freezes");
    }
}

/// Lines for people about every freeze standing at `now` (for `/schedule` and reminders).
pub(crate) fn freeze_lines(ctx: &Context, now: DateTime<Utc>) -> Vec<String> {
    let tz = ctx.config.calendar.timezone();
    let manual = ctx.store.freezes().unwrap_or_else(|error| {
        tracing::error!(error = format!("{error:#}"), "cannot read the freezes");
        Vec::new()
    });
    ctx.config
        .environments
        .iter()
        .filter_map(|e| {
            active_freeze(&manual, ctx.config.calendar.freezes(), tz, &e.name, now)
                .map(|f| f.describe(&e.name, tz, now))
        })
        .map(|line| format!("🧊 {line}"))
        .collect()
}
