//! `/history`: recent deploys, newest first.

use crate::engine::{Engine, Handled, Reply, ReplyBody, Visibility};

impl Engine {
    pub(crate) fn command_history(&self, env: Option<&str>, limit: usize) -> Handled {
        match self.store.history(env, limit) {
            Ok(records) => Handled::Reply {
                reply: Reply { visibility: Visibility::Ephemeral, body: ReplyBody::History(records) },
                decision: "answered".into(),
            },
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot read history");
                Handled::refused("Shipday cannot read its store right now. An operator can check its logs.")
            }
        }
    }
}
