//! `/skip ENV`: the next automatic deploy of ENV (its calendar slot, or a merge's
//! auto-deploy) does not run. Recorded in the store; the slot or merge that meets it says it
//! was skipped, and by whom. `/unskip ENV` withdraws it.

use super::*;
use crate::release::freeze::Skip;
use crate::release::policy::{calendar_time, previous_environment, when};
use chrono::{DateTime, Utc};

/// `/skip ENV`, by a lead.
pub(crate) fn skip(ctx: &Context, env: &str, pending: &WaitingCommand, now: DateTime<Utc>) -> Decision {
    let Some(person) = pending.person.as_ref() else {
        return Decision::refused("Only a lead can skip a deploy.");
    };
    let calendar = &ctx.config.calendar;
    let auto_deploys = previous_environment(&ctx.config.environments, env).is_none() && ctx.config.github.is_some();
    if !calendar.has_slot(env) && !auto_deploys {
        return Decision::refused(format!(
            "{env} has no deploy slot and no merge auto-deploy, so there is nothing to skip. To stop every deploy to \
             it, use `/freeze {env} REASON`."
        ));
    }
    let tz = calendar.timezone();
    match ctx.store.skip(env) {
        Ok(Some(existing)) => {
            let text = format!("{env}'s next automatic deploy is already {}.", existing.describe(tz));
            return Decision { decision: format!("answered: {text}"), reply: Reply::text(Visibility::Ephemeral, text) };
        }
        Ok(None) => {}
        Err(error) => return Decision::store_trouble("read the skips", &error),
    }
    // A slot deploy already waiting for a hold is the next one: it is dropped now.
    let waiting = match ctx.store.slot_waits() {
        Ok(waits) => waits.into_iter().find(|(name, _)| name == env).map(|(_, slot)| slot),
        Err(error) => return Decision::store_trouble("read the waiting slot deploys", &error),
    };
    if let Some(slot) = waiting {
        if let Err(error) = ctx.store.set_slot_wait(env, None) {
            return Decision::store_trouble("drop a waiting slot deploy", &error);
        }
        let text = format!(
            "⏭️ {} skipped {env}'s slot deploy of {}, which was waiting for {env} to be free: it will not run.",
            person.name,
            calendar_time(calendar, slot)
        );
        return Decision { decision: format!("accepted: {text}"), reply: Reply::text(Visibility::Public, text) };
    }
    let skip = Skip { by: person.id.clone(), by_name: person.name.clone(), at: now };
    if let Err(error) = ctx.store.set_skip(env, Some(&skip)) {
        return Decision::store_trouble("record a skip", &error);
    }
    let next = match (calendar.next_slot(env, now), auto_deploys) {
        (Some(at), true) => {
            format!("its slot {} or the next merge's auto-deploy, whichever comes first", when(calendar, at, now))
        }
        (Some(at), false) => format!("its slot {}", when(calendar, at, now)),
        (None, _) => "the next merge's auto-deploy".to_owned(),
    };
    let text = format!(
        "⏭️ {} skipped {env}'s next automatic deploy: {next}. It will not run; the deploys after it run as usual.",
        person.name
    );
    Decision { decision: format!("accepted: {text}"), reply: Reply::text(Visibility::Public, text) }
}

/// `/unskip ENV`, by a lead: the `/skip` waiting for ENV's next automatic deploy is
/// withdrawn, so that deploy runs as usual.
pub(crate) fn unskip(ctx: &Context, env: &str, pending: &WaitingCommand) -> Decision {
    let Some(person) = pending.person.as_ref() else {
        return Decision::refused("Only a lead can withdraw a skip.");
    };
    let existing = match ctx.store.skip(env) {
        Ok(Some(existing)) => existing,
        Ok(None) => {
            let text = format!(
                "{env}'s next automatic deploy is not skipped, so there is nothing to withdraw. A slot deploy dropped \
                 by `/skip` while it waited does not come back: deploy it with `/deploy {env} BRANCH`."
            );
            return Decision { decision: format!("answered: {text}"), reply: Reply::text(Visibility::Ephemeral, text) };
        }
        Err(error) => return Decision::store_trouble("read the skips", &error),
    };
    if let Err(error) = ctx.store.set_skip(env, None) {
        return Decision::store_trouble("withdraw a skip", &error);
    }
    let text = format!(
        "▶️ {} withdrew the skip of {env}'s next automatic deploy (set by {}, {}): it runs as usual.",
        person.name,
        existing.by_name,
        crate::release::freeze::local(ctx.config.calendar.timezone(), existing.at)
    );
    Decision { decision: format!("accepted: {text}"), reply: Reply::text(Visibility::Public, text) }
}

/// Takes (and clears, durably) the `/skip` waiting for `env`'s next automatic deploy.
pub(crate) async fn take_skip(ctx: &Context, env: &str) -> Option<Skip> {
    let skip = match ctx.store.skip(env) {
        Ok(skip) => skip?,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot read the skips");
            return None;
        }
    };
    let cleared = match ctx.store.set_skip(env, None) {
        Ok(()) => ctx.store.flush().await,
        Err(error) => Err(error),
    };
    if let Err(error) = cleared {
        tracing::error!(error = format!("{error:#}"), "cannot clear a used skip");
    }
    Some(skip)
}
