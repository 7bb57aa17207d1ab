//! `/status`: what runs where, who holds what, what failed or was interrupted.

use crate::engine::reply::{EnvironmentStatus, StatusReport};
use crate::engine::{Engine, Handled, Reply, ReplyBody, Visibility};
use chrono::{DateTime, Utc};

impl Engine {
    pub(crate) fn command_status(&self, env: Option<&str>, now: DateTime<Utc>) -> Handled {
        match self.status_report(env, now) {
            Ok(report) => Handled::Reply {
                reply: Reply { visibility: Visibility::Ephemeral, body: ReplyBody::Status(report) },
                decision: "answered".into(),
            },
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot read status");
                Handled::refused("Shipday cannot read its store right now. An operator can check its logs.")
            }
        }
    }

    /// Reads the status of one or every environment from the store.
    pub fn status_report(&self, env: Option<&str>, now: DateTime<Utc>) -> anyhow::Result<StatusReport> {
        let mut environments = Vec::new();
        for environment in self.config.environments.iter().filter(|e| env.is_none_or(|n| n == e.name)) {
            let name = &environment.name;
            let live = self.store.last_ok(name)?;
            let latest = self.store.latest_deploy(name)?.filter(|l| Some(l.id) != live.as_ref().map(|d| d.id));
            let last_failure = self.store.last_failure(name)?.filter(|f| Some(f.id) != latest.as_ref().map(|d| d.id));
            environments.push(EnvironmentStatus {
                name: name.clone(),
                branch: environment.branch.to_string(),
                live,
                latest,
                last_failure,
                hold: self.store.hold(name)?,
                active: self.store.active(name)?,
            });
        }
        Ok(StatusReport { now, environments })
    }
}
