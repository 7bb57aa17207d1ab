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
