//! Reactions on promotion requests become votes; every change is recorded, then shown by
//! editing the messages that show the request.

use crate::config::Person;
use crate::engine::{Announcement, Engine, PromotionView, Reaction};
use crate::release::approvals::{PromotionRequest, VoteOutcome};
use std::time::Duration;

/// How often, and how far apart, a vote on a message not bound yet is tried (well within the
/// three seconds Slack gives an event's acknowledgement).
const VOTE_TRIES: u8 = 10;
const VOTE_RETRY: Duration = Duration::from_millis(100);

impl Engine {
    /// Applies a reaction to the promotion request its message shows, if any. Returns `true`
    /// when the reaction votes but its message is not bound to a request (yet): an adapter
    /// records the message it posted only once the platform answered, and a reaction can
    /// arrive first.
    pub(crate) async fn vote(&mut self, reaction: &Reaction, person: Option<Person>) -> bool {
        let Ok(found) = self.store.promotion_for_message(&reaction.platform, &reaction.message) else { return false };
        let Some(id) = found else {
            return crate::release::approvals::Vote::from_emoji(&reaction.emoji).is_some();
        };
        let Ok(Some(mut request)) = self.store.promotion(id) else { return false };
        let now = self.clock.now();
        let was = request.state.clone();
        let outcome = request.react(person.as_ref(), &reaction.emoji, reaction.added, now);
        tracing::info!(request = id, user = %reaction.user_id, emoji = %reaction.emoji, ?outcome, "vote");
        if outcome == VoteOutcome::TooLate {
            self.vote_too_late(&request, reaction, person.as_ref()).await;
            return false;
        }
        if matches!(outcome, VoteOutcome::Ignored(_)) && request.state == was {
            return false;
        }
        self.save_promotion(&request).await;
        if outcome == VoteOutcome::Approved {
            crate::crashpoint::hit("promotion-approved");
            self.promotion_approved(request).await;
        }
        false
    }

    /// Tries a vote on a not-yet-bound message again shortly; the delivery is acknowledged
    /// only once it counted, or after [`VOTE_TRIES`] tries (then it was on no request).
    pub(crate) fn vote_again_later(&self, reaction: Reaction, done: tokio::sync::oneshot::Sender<()>, tries: u8) {
        let Some(events) = self.events.upgrade() else {
            let _ = done.send(());
            return;
        };
        tokio::spawn(async move {
            tokio::time::sleep(VOTE_RETRY).await;
            let _ = events.send(crate::engine::Event::VoteAgain { reaction, done, tries });
        });
    }

    /// See [`Engine::vote_again_later`].
    pub(crate) async fn vote_again(&mut self, reaction: Reaction, done: tokio::sync::oneshot::Sender<()>, tries: u8) {
        let person = self.person(&reaction.platform, &reaction.user_id, &reaction.platform_roles);
        if self.vote(&reaction, person).await && tries < VOTE_TRIES {
            self.vote_again_later(reaction, done, tries + 1);
        } else {
            let _ = done.send(());
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
