//! `/promote`: promotion requests need the GitHub integration, which is not configured in this
//! build. The command answers honestly and changes nothing.

use crate::engine::{Engine, Handled};

impl Engine {
    pub(crate) fn command_promote(&self, from: &str, to: &str) -> Handled {
        Handled::refused(format!(
            "Promotions are not available in this installation yet (they need the GitHub integration). \
             Nothing was changed. A lead can deploy {to}'s own branch with `/deploy {to} BRANCH` after merging {from} into it."
        ))
    }
}
