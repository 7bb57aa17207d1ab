//! `/lock` and `/unlock`.

use crate::engine::{Engine, Handled, Pending, Reply, Visibility};
use crate::release::locks::{admit_lock, admit_unlock};
use chrono::{DateTime, Utc};

impl Engine {
    pub(crate) fn command_lock(&self, env: &str, reason: &str, pending: &Pending, now: DateTime<Utc>) -> Handled {
        let environment = self.config.environment(env).expect("parser checked the environment");
        let person = pending.person.as_ref().expect("policy lets only configured people lock");
        let result = self.store.hold(env).map(|hold| admit_lock(now, environment, person, reason, hold.as_ref()));
        match result {
            Ok(Ok(hold)) => match self.store.set_hold(env, Some(&hold)) {
                Ok(()) => {
                    let text = format!("🔒 {}. Others cannot deploy until `/unlock {env}`.", hold.describe(env, now));
                    Handled::Reply {
                        decision: format!("accepted: {text}"),
                        reply: Reply::text(Visibility::Public, text),
                    }
                }
                Err(error) => store_error(error),
            },
            Ok(Err(refusal)) => Handled::refused(refusal.0),
            Err(error) => store_error(error),
        }
    }

    pub(crate) fn command_unlock(&self, env: &str, pending: &Pending) -> Handled {
        let environment = self.config.environment(env).expect("parser checked the environment");
        let person = pending.person.as_ref().expect("policy lets only configured people unlock");
        if let Some(handled) = self.force_interrupted(env, person) {
            return handled;
        }
        let result = self.store.hold(env).map(|hold| (admit_unlock(environment, person, hold.as_ref()), hold));
        match result {
            Ok((Ok(()), hold)) => match self.store.set_hold(env, None) {
                Ok(()) => {
                    let was = hold.map(|h| format!(" (was held by {})", h.holder_name)).unwrap_or_default();
                    let text = format!("🔓 {} unlocked {env}{was}. Anyone may deploy to it again.", person.name);
                    Handled::Reply {
                        decision: format!("accepted: {text}"),
                        reply: Reply::text(Visibility::Public, text),
                    }
                }
                Err(error) => store_error(error),
            },
            Ok((Err(refusal), _)) => Handled::refused(refusal.0),
            Err(error) => store_error(error),
        }
    }
}

fn store_error(error: anyhow::Error) -> Handled {
    tracing::error!(error = format!("{error:#}"), "store failure");
    Handled::refused("Shipday cannot use its store right now, so it did nothing. An operator can check its logs.")
}

impl Engine {
    /// A lead's `/unlock` of an environment a crash left *interrupted* (and not otherwise
    /// held): Shipday stops waiting to make sure no old step still runs. The decision, with
    /// the deploy it concerned, goes to the audit log like every answer.
    fn force_interrupted(&self, env: &str, person: &crate::config::Person) -> Option<Handled> {
        let interrupted = match self.store.interrupted(env) {
            Ok(found) => found?,
            Err(error) => return Some(store_error(error)),
        };
        if !person.has(crate::config::Role::Lead) {
            // Only a lead forces it; others unlock what they hold, as always.
            return None;
        }
        let cleared = self.store.set_interrupted(env, None).and_then(|()| match self.store.hold(env)? {
            Some(_) => self.store.set_hold(env, None),
            None => Ok(()),
        });
        if let Err(error) = cleared {
            return Some(store_error(error));
        }
        let text = format!(
            "🔓 {} cleared {env}'s interrupted hold (deploy #{} of `{}` by {}), without Shipday checking the host. The host's deploy lock still keeps new steps from running alongside an old one.",
            person.name, interrupted.deploy_id, interrupted.git_ref, interrupted.who_name
        );
        Some(Handled::Reply {
            decision: format!("accepted (forced): {text}"),
            reply: Reply::text(Visibility::Public, text),
        })
    }
}
