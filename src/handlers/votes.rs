//! Reactions on promotion requests become votes; every change is recorded, then shown by
//! editing the messages that show the request.

use super::*;
use crate::config::{Person, Role};
use crate::release::approvals::{PromotionRequest, VoteOutcome};

/// A reaction on one of the bot's messages: recorded, then applied as a vote. A vote on a
/// message not bound to a request yet is kept until it is ([`keep_early_reaction`]).
pub(crate) async fn reaction(ctx: &mut Context, reaction: Reaction) {
    let person = ctx.person(&reaction.platform, &reaction.user_id, &reaction.platform_roles);
    let entry = crate::store::AuditEntry {
        at: reaction.at,
        platform: reaction.platform.clone(),
        user_id: reaction.user_id.clone(),
        person: person.as_ref().map(|p| p.id.clone()),
        text: format!(
            "{} :{}: on message {} in {}",
            if reaction.added { "reacted" } else { "removed reaction" },
            reaction.emoji,
            reaction.message.id,
            reaction.message.channel
        ),
        decision: "recorded".into(),
    };
    let result = match ctx.store.audit(&entry) {
        Ok(()) => ctx.store.flush().await,
        Err(e) => Err(e),
    };
    if let Err(error) = result {
        tracing::error!(error = format!("{error:#}"), "cannot record a reaction");
    }
    if vote(ctx, &reaction, person).await {
        keep_early_reaction(ctx, &reaction).await;
    }
}

/// An adapter posted promotion request `request` as `message`: reactions on it become votes
/// (those that arrived first are applied now).
pub(crate) async fn bind_message(ctx: &mut Context, request: u64, platform: &str, message: &super::MessageRef) {
    if let Err(error) = ctx.store.bind_promotion_message(platform, message, request) {
        tracing::error!(error = format!("{error:#}"), "cannot bind a promotion message");
    }
    let _ = ctx.store.flush().await;
    apply_early_reactions(ctx, platform, message).await;
}

/// Applies a reaction to the promotion request its message shows, if any. Returns `true`
/// when the reaction votes but its message is not bound to a request (yet): an adapter
/// records the message it posted only once the platform answered, and a reaction can
/// arrive first (it is then kept, see [`keep_early_reaction`]).
pub(crate) async fn vote(ctx: &mut Context, reaction: &Reaction, person: Option<Person>) -> bool {
    let Ok(found) = ctx.store.promotion_for_message(&reaction.platform, &reaction.message) else { return false };
    let Some(id) = found else {
        return crate::release::approvals::Vote::from_emoji(&reaction.emoji).is_some();
    };
    let Ok(Some(mut request)) = ctx.store.promotion(id) else { return false };
    let now = ctx.clock.now();
    let was = request.state.clone();
    let outcome = request.react(person.as_ref(), &reaction.emoji, reaction.added, now);
    tracing::info!(request = id, user = %reaction.user_id, emoji = %reaction.emoji, ?outcome, "vote");
    if outcome == VoteOutcome::TooLate {
        vote_too_late(ctx, &request, reaction, person.as_ref()).await;
        return false;
    }
    if matches!(outcome, VoteOutcome::Ignored(_)) && request.state == was {
        return false;
    }
    save_promotion(ctx, &request).await;
    match outcome {
        VoteOutcome::Approved => crate::metrics::approval("approved"),
        VoteOutcome::Rejected => crate::metrics::approval("rejected"),
        VoteOutcome::Withdrawn => crate::metrics::approval("withdrawn"),
        _ => {}
    }
    if outcome == VoteOutcome::Approved {
        crate::crashpoint::hit("promotion-approved");
        promotion_approved(ctx, request).await;
    }
    false
}

/// Keeps a vote-shaped reaction on a message not bound to a request yet, durably, so it
/// counts when the message is bound ([`apply_early_reactions`]). Kept for
/// [`crate::store::EARLY_REACTION_TTL`]; then it was on no request.
pub(crate) async fn keep_early_reaction(ctx: &mut Context, reaction: &Reaction) {
    let early = crate::store::EarlyReaction {
        user_id: reaction.user_id.clone(),
        platform_roles: reaction
            .platform_roles
            .iter()
            .map(|role| match role {
                Role::Developer => "developer".to_owned(),
                Role::Lead => "lead".to_owned(),
            })
            .collect(),
        emoji: reaction.emoji.clone(),
        added: reaction.added,
        at: reaction.at,
        recorded_at: ctx.clock.now(),
    };
    let kept = match ctx.store.keep_early_reaction(&reaction.platform, &reaction.message, &early) {
        Ok(()) => ctx.store.flush().await,
        Err(error) => Err(error),
    };
    if let Err(error) = kept {
        tracing::error!(error = format!("{error:#}"), "cannot keep a reaction on a message not bound yet");
    }
}

/// `message` was just bound to a request: the reactions kept for it vote now, in the order
/// they arrived, once each.
pub(crate) async fn apply_early_reactions(ctx: &mut Context, platform: &str, message: &super::MessageRef) {
    let kept = match ctx.store.take_early_reactions(platform, message) {
        Ok(kept) => kept,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot read the reactions kept for a message");
            return;
        }
    };
    for early in kept {
        let reaction = Reaction {
            platform: platform.to_owned(),
            user_id: early.user_id,
            platform_roles: early
                .platform_roles
                .iter()
                .filter_map(|role| match role.as_str() {
                    "developer" => Some(Role::Developer),
                    "lead" => Some(Role::Lead),
                    _ => None,
                })
                .collect(),
            emoji: early.emoji,
            message: message.clone(),
            added: early.added,
            at: early.at,
        };
        let person = ctx.person(platform, &reaction.user_id, &reaction.platform_roles);
        vote(ctx, &reaction, person).await;
    }
    if let Err(error) = ctx.store.flush().await {
        tracing::error!(error = format!("{error:#}"), "cannot record that kept reactions were applied");
    }
}

/// A lead voted after execution started: the vote is recorded (in the audit log) but
/// changes nothing, and the team channel is told why.
async fn vote_too_late(ctx: &mut Context, request: &PromotionRequest, reaction: &Reaction, person: Option<&Person>) {
    let name = person.map(|p| p.name.clone()).unwrap_or_else(|| reaction.user_id.clone());
    let what = if reaction.added { "reacted" } else { "removed" };
    let entry = crate::store::AuditEntry {
        at: ctx.clock.now(),
        platform: reaction.platform.clone(),
        user_id: reaction.user_id.clone(),
        person: person.map(|p| p.id.clone()),
        text: format!("{what} :{}: on promotion #{}", reaction.emoji.trim_matches(':'), request.id),
        decision: format!("vote recorded, no effect: promotion #{} was already being carried out", request.id),
    };
    if let Err(error) = ctx.store.audit(&entry) {
        tracing::error!(error = format!("{error:#}"), "cannot record a late vote");
    }
    let _ = ctx.store.flush().await;
    let since = match &request.state {
        crate::release::approvals::RequestState::Executing { .. } => "it is already being carried out",
        _ => "it had already been carried out",
    };
    ctx.announce(Announcement::Text(format!(
        "ℹ️ {name} {what} :{}: on promotion #{}: recorded, but it changes nothing because {since}. \
         Votes count only until execution starts.",
        reaction.emoji.trim_matches(':'),
        request.id
    )));
}

/// Records a request durably, then shows it (posting it where it is not shown yet).
pub(crate) async fn save_promotion(ctx: &mut Context, request: &PromotionRequest) {
    let written = match ctx.store.put_promotion(request) {
        Ok(()) => ctx.store.flush().await,
        Err(e) => Err(e),
    };
    if let Err(error) = written {
        tracing::error!(error = format!("{error:#}"), "cannot record a promotion request");
    }
    let messages = ctx.store.promotion_messages(request.id).unwrap_or_default();
    ctx.announce(Announcement::Promotion(Box::new(PromotionView { request: request.clone(), messages })));
}
