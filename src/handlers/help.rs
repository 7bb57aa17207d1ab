//! `/help`, from the command specs.

use crate::command::help;
use crate::engine::{Engine, Handled, Reply, Visibility};

impl Engine {
    pub(crate) fn command_help(&self, topic: Option<&str>) -> Handled {
        Handled::Reply {
            reply: Reply::text(Visibility::Ephemeral, help::render(&self.book, topic)),
            decision: "answered".into(),
        }
    }
}
