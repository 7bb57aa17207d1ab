//! `/history`: recent deploys, newest first.

use super::*;

pub(crate) fn history(ctx: &Context, env: Option<&str>, limit: usize) -> Decision {
    match ctx.store.history(env, limit) {
        Ok(records) => Decision {
            reply: Reply { visibility: Visibility::Ephemeral, body: ReplyBody::History(records) },
            decision: "answered".into(),
        },
        Err(error) => Decision::store_trouble("read the history", &error),
    }
}
