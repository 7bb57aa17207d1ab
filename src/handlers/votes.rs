//! Reactions on promotion requests become votes; every change is recorded, then shown by
//! editing the messages that show the request.

use crate::config::Person;
use crate::engine::{Announcement, Engine, PromotionView, Reaction};
use crate::release::approvals::{PromotionRequest, VoteOutcome};

impl Engine {
    /// Applies a reaction to the promotion request its message shows, if any.
    pub(crate) async fn vote(&mut self, reaction: &Reaction, person: Option<Person>) {
        let Ok(Some(id)) = self.store.promotion_for_message(&reaction.platform, &reaction.message) else { return };
        let Ok(Some(mut request)) = self.store.promotion(id) else { return };
        let now = self.clock.now();
        let was = request.state.clone();
        let outcome = request.react(person.as_ref(), &reaction.emoji, reaction.added, now);
        tracing::info!(request = id, user = %reaction.user_id, emoji = %reaction.emoji, ?outcome, "vote");
        if matches!(outcome, VoteOutcome::Ignored(_)) && request.state == was {
            return;
        }
        self.save_promotion(&request).await;
        if outcome == VoteOutcome::Approved {
            self.promotion_approved(request).await;
        }
    }

    /// Records a request durably, then shows it (posting it where it is not shown yet).
    pub(crate) async fn save_promotion(&mut self, request: &PromotionRequest) {
        let written = match self.store.put_promotion(request) {
            Ok(()) => self.store.flush().await,
            Err(e) => Err(e),
        };
        if let Err(error) = written {
            tracing::error!(error = format!("{error:#}"), "cannot record a promotion request");
        }
        let messages = self.store.promotion_messages(request.id).unwrap_or_default();
        self.announce(Announcement::Promotion(Box::new(PromotionView { request: request.clone(), messages })));
    }
}
