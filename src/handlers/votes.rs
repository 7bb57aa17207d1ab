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
        if outcome == VoteOutcome::TooLate {
            self.vote_too_late(&request, reaction, person.as_ref()).await;
            return;
        }
        if matches!(outcome, VoteOutcome::Ignored(_)) && request.state == was {
            return;
        }
        self.save_promotion(&request).await;
        if outcome == VoteOutcome::Approved {
            crate::crashpoint::hit("promotion-approved");
            self.promotion_approved(request).await;
        }
    }

    /// A lead voted after execution started: the vote is recorded (in the audit log) but
    /// changes nothing, and the team channel is told why.
    async fn vote_too_late(&mut self, request: &PromotionRequest, reaction: &Reaction, person: Option<&Person>) {
        let name = person.map(|p| p.name.clone()).unwrap_or_else(|| reaction.user_id.clone());
        let what = if reaction.added { "reacted" } else { "removed" };
        let entry = crate::store::AuditEntry {
            at: self.clock.now(),
            platform: reaction.platform.clone(),
            user_id: reaction.user_id.clone(),
            person: person.map(|p| p.id.clone()),
            text: format!("{what} :{}: on promotion #{}", reaction.emoji.trim_matches(':'), request.id),
            decision: format!("vote recorded, no effect: promotion #{} was already being carried out", request.id),
        };
        if let Err(error) = self.store.audit(&entry) {
            tracing::error!(error = format!("{error:#}"), "cannot record a late vote");
        }
        let _ = self.store.flush().await;
        let since = match &request.state {
            crate::release::approvals::RequestState::Executing { .. } => "it is already being carried out",
            _ => "it had already been carried out",
        };
        self.announce(Announcement::Text(format!(
            "ℹ️ {name} {what} :{}: on promotion #{}: recorded, but it changes nothing because {since}. \
             Votes count only until execution starts.",
            reaction.emoji.trim_matches(':'),
            request.id
        )));
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
