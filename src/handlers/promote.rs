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

impl Engine {
    /// Quorum was reached. Carrying a promotion out needs the GitHub integration (to merge the
    /// source commit into the target branch); without it, the approval stays recorded and the
    /// team is told what to do by hand.
    pub(crate) async fn promotion_approved(&mut self, request: crate::release::approvals::PromotionRequest) {
        self.announce(crate::engine::Announcement::Text(format!(
            "Promotion #{} of {} to {} is approved, but this installation has no GitHub integration to merge it. \
             A lead merges {} into {}'s branch and runs `/deploy {} BRANCH`.",
            request.id,
            request.sha.short(),
            request.to,
            request.sha,
            request.to,
            request.to
        )));
    }
}
