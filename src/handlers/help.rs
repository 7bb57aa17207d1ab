//! `/help`, from the command specs.

use super::*;
use crate::command::help;

pub(crate) fn help(ctx: &Context, topic: Option<&str>) -> Decision {
    Decision {
        reply: Reply::text(Visibility::Ephemeral, help::render(&ctx.book, &ctx.config.environments, topic)),
        decision: "answered".into(),
    }
}
