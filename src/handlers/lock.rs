//! `/lock` and `/unlock`.

use super::*;
use crate::release::locks::{admit_lock, admit_unlock};
use chrono::{DateTime, Utc};

pub(crate) fn lock(ctx: &Context, env: &str, reason: &str, pending: &WaitingCommand, now: DateTime<Utc>) -> Decision {
    let environment = ctx.config.environment(env).expect("parser checked the environment");
    let person = pending.person.as_ref().expect("policy lets only configured people lock");
    let result = ctx.store.hold(env).map(|hold| admit_lock(now, environment, person, reason, hold.as_ref()));
    match result {
        Ok(Ok(hold)) => match ctx.store.set_hold(env, Some(&hold)) {
            Ok(()) => {
                let text = format!("🔒 {}. Others cannot deploy until `/unlock {env}`.", hold.describe(env, now));
                Decision { decision: format!("accepted: {text}"), reply: Reply::text(Visibility::Public, text) }
            }
            Err(error) => store_error(error),
        },
        Ok(Err(refusal)) => Decision::refused(refusal.0),
        Err(error) => store_error(error),
    }
}

pub(crate) fn unlock(ctx: &Context, env: &str, pending: &WaitingCommand) -> Decision {
    let environment = ctx.config.environment(env).expect("parser checked the environment");
    let person = pending.person.as_ref().expect("policy lets only configured people unlock");
    if let Some(handled) = force_interrupted(ctx, env, person) {
        return handled;
    }
    let result = ctx.store.hold(env).map(|hold| (admit_unlock(environment, person, hold.as_ref()), hold));
    match result {
        Ok((Ok(()), hold)) => match ctx.store.set_hold(env, None) {
            Ok(()) => {
                let was = hold.map(|h| format!(" (was held by {})", h.holder_name)).unwrap_or_default();
                let text = format!("🔓 {} unlocked {env}{was}. Anyone may deploy to it again.", person.name);
                Decision { decision: format!("accepted: {text}"), reply: Reply::text(Visibility::Public, text) }
            }
            Err(error) => store_error(error),
        },
        Ok((Err(refusal), _)) => Decision::refused(refusal.0),
        Err(error) => store_error(error),
    }
}

fn store_error(error: anyhow::Error) -> Decision {
    Decision::store_trouble("read or write a hold", &error)
}

/// A lead's `/unlock` of an environment a crash left *interrupted* (and not otherwise
/// held): Shipday stops waiting to make sure no old step still runs. The decision, with
/// the deploy it concerned, goes to the audit log like every answer.
fn force_interrupted(ctx: &Context, env: &str, person: &crate::config::Person) -> Option<Decision> {
    let interrupted = match ctx.store.interrupted(env) {
        Ok(found) => found?,
        Err(error) => return Some(store_error(error)),
    };
    if !person.has(crate::config::Role::Lead) {
        // Only a lead forces it; others unlock what they hold, as always.
        return None;
    }
    let cleared = ctx.store.set_interrupted(env, None).and_then(|()| match ctx.store.hold(env)? {
        Some(_) => ctx.store.set_hold(env, None),
        None => Ok(()),
    });
    if let Err(error) = cleared {
        return Some(store_error(error));
    }
    let text = format!(
        "🔓 {} cleared {env}'s interrupted hold (deploy #{} of `{}` by {}), without Shipday checking the host. The host's deploy lock still keeps new steps from running alongside an old one.",
        person.name, interrupted.deploy_id, interrupted.git_ref, interrupted.who_name
    );
    Some(Decision { decision: format!("accepted (forced): {text}"), reply: Reply::text(Visibility::Public, text) })
}
