//! Reactions on the bot's messages, handled one at a time by one worker.
//!
//! Live gateway events become engine [`Reaction`]s. The worker also has the engine keep the
//! bot's recent public messages with the reactions last handed to the engine. A new gateway
//! session (a restart, or a reconnect that could not resume) may have missed events, so on
//! every READY the worker re-reads those messages' reactions over REST and hands the engine the
//! difference. One worker does both, so a live event and a re-read never interleave.
//!
//! serenity runs each gateway event on its own task, so an add and a remove made within
//! milliseconds can arrive swapped. An event that contradicts the recorded state (removing a
//! reaction never recorded, adding one already there) is therefore not trusted: the worker
//! re-reads that message a moment later and hands over what Discord really shows.

use super::{PLATFORM, Shared};
use crate::config::Role;
use crate::engine::{MessageRef, Reaction, TrackedMessage};
use anyhow::{Context, Result};
use serenity::all::{ChannelId, GuildId, MessageId, ReactionType, UserId};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument;

/// How many of the bot's messages are tracked (the newest).
const MAX_TRACKED: usize = 100;
/// How many of them are re-read after a gap: each costs a few REST calls.
const RECONCILE_LIMIT: usize = 25;
/// Discord's page size for reaction users.
const PAGE: u8 = 100;
/// How long after a contradictory event its message is re-read, so the event that overtook
/// it has arrived too.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// Work for the reaction worker.
pub(crate) enum Job {
    /// A reaction event from the gateway.
    Live {
        /// As serenity parsed it.
        reaction: Box<serenity::all::Reaction>,
        /// Added or removed.
        added: bool,
    },
    /// The bot posted a public message whose reactions matter.
    Track(MessageRef),
    /// A new gateway session began: re-read reactions.
    Reconcile,
    /// An event contradicted the recorded state: re-read this message.
    Recheck(MessageRef),
}

/// Runs the worker until the adapter is dropped.
pub(crate) async fn run(shared: Arc<Shared>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let worker = Worker { shared };
    while let Some(job) = jobs.recv().await {
        let result = match job {
            Job::Live { reaction, added } => worker.live(*reaction, added).await,
            Job::Track(message) => worker.track(message),
            Job::Reconcile => worker.reconcile().await,
            Job::Recheck(message) => worker.recheck(&message).await,
        };
        if let Err(error) = result {
            tracing::error!(error = format!("{error:#}"), "cannot handle a Discord reaction");
        }
    }
}

/// The name the engine sees: the character of a unicode emoji, the name of a custom one.
pub fn emoji_name(emoji: &ReactionType) -> String {
    match emoji {
        ReactionType::Unicode(text) => text.clone(),
        ReactionType::Custom { name: Some(name), .. } => name.clone(),
        ReactionType::Custom { id, .. } => id.to_string(),
        other => other.as_data(),
    }
}

struct Worker {
    shared: Arc<Shared>,
}

impl Worker {
    fn track(&self, message: MessageRef) -> Result<()> {
        if self.shared.engine.tracked_message(PLATFORM, &message)?.is_none() {
            let tracked = TrackedMessage { message, since: self.shared.clock.now(), reactions: BTreeSet::new() };
            self.shared.engine.track_message(PLATFORM, &tracked, MAX_TRACKED)?;
        }
        Ok(())
    }

    async fn live(&self, reaction: serenity::all::Reaction, added: bool) -> Result<()> {
        let Some(user) = reaction.user_id else { return Ok(()) };
        let bot = self.shared.bot_id();
        if bot == Some(user.get()) {
            tracing::debug!("ignored the bot's own reaction");
            return Ok(());
        }
        if !self.shared.settings.accepts(reaction.guild_id.map(|g| g.get())) {
            return Ok(());
        }
        let message = MessageRef { channel: reaction.channel_id.to_string(), id: reaction.message_id.to_string() };
        let tracked = self.shared.engine.tracked_message(PLATFORM, &message)?;
        let bots_message = match (&tracked, reaction.message_author_id) {
            (Some(_), _) => true,
            (None, Some(author)) => Some(author.get()) == bot,
            (None, None) => self.authored_by_bot(reaction.channel_id, reaction.message_id).await,
        };
        if !bots_message {
            return Ok(());
        }
        let emoji = emoji_name(&reaction.emoji);
        let key = (user.to_string(), emoji.clone());
        if tracked.as_ref().is_some_and(|t| t.reactions.contains(&key) == added) {
            tracing::info!(%emoji, added, "reaction event contradicts the recorded state; re-reading the message");
            let jobs = self.shared.reactions.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RECHECK_AFTER).await;
                let _ = jobs.send(Job::Recheck(message));
            });
            return Ok(());
        }
        let roles = match &reaction.member {
            Some(member) => self.lead_roles(&member.roles),
            None => Vec::new(), // REMOVE events carry no member; roles only matter for adding.
        };
        self.hand_over(&message, &key, roles, added).await;
        // A removal on an untracked message is passed on but not tracked: what else is on it is
        // unknown, so a re-read would guess.
        if tracked.is_some() || added {
            let mut tracked = tracked.unwrap_or_else(|| TrackedMessage {
                message: message.clone(),
                since: self.shared.clock.now(),
                reactions: BTreeSet::new(),
            });
            set(&mut tracked.reactions, key, added);
            self.shared.engine.track_message(PLATFORM, &tracked, MAX_TRACKED)?;
        }
        Ok(())
    }

    /// Hands one reaction to the engine and waits until it is recorded.
    async fn hand_over(&self, message: &MessageRef, (user, emoji): &(String, String), roles: Vec<Role>, added: bool) {
        let span = tracing::info_span!("discord_reaction", %user, %emoji, added, message = %message.id);
        self.shared
            .engine
            .react(Reaction {
                platform: PLATFORM.into(),
                user_id: user.clone(),
                platform_roles: roles,
                emoji: emoji.clone(),
                message: message.clone(),
                added,
                at: self.shared.clock.now(),
            })
            .instrument(span)
            .await;
    }

    fn lead_roles(&self, roles: &[serenity::all::RoleId]) -> Vec<Role> {
        match self.shared.settings.lead_role {
            Some(lead) if roles.iter().any(|r| r.get() == lead) => vec![Role::Lead],
            _ => Vec::new(),
        }
    }

    async fn authored_by_bot(&self, channel: ChannelId, message: MessageId) -> bool {
        match self.shared.http.get_message(channel, message).await {
            Ok(found) => Some(found.author.id.get()) == self.shared.bot_id(),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot read a reacted message to see who wrote it; ignoring the reaction"
                );
                false
            }
        }
    }

    /// Re-reads the tracked messages' reactions and hands the engine what changed.
    async fn reconcile(&self) -> Result<()> {
        let tracked = self.shared.engine.tracked_messages(PLATFORM)?;
        if tracked.is_empty() {
            return Ok(());
        }
        tracing::info!(messages = tracked.len().min(RECONCILE_LIMIT), "re-reading reactions missed between sessions");
        let mut roles = HashMap::new();
        for message in tracked.into_iter().take(RECONCILE_LIMIT) {
            let id = message.message.id.clone();
            if let Err(error) = self.reconcile_one(message, &mut roles).await {
                tracing::warn!(message = %id, error = format!("{error:#}"), "cannot re-read reactions");
            }
        }
        Ok(())
    }

    async fn recheck(&self, message: &MessageRef) -> Result<()> {
        match self.shared.engine.tracked_message(PLATFORM, message)? {
            Some(tracked) => self.reconcile_one(tracked, &mut HashMap::new()).await,
            None => Ok(()),
        }
    }

    async fn reconcile_one(&self, mut tracked: TrackedMessage, roles: &mut HashMap<String, Vec<Role>>) -> Result<()> {
        let channel = ChannelId::new(tracked.message.channel.parse().context("tracked channel id")?);
        let id = MessageId::new(tracked.message.id.parse().context("tracked message id")?);
        let now = match self.current(channel, id).await {
            Ok(Some(now)) => now,
            Ok(None) => {
                tracing::info!(message = %id, "tracked message was deleted; forgetting it");
                return self.shared.engine.forget_tracked_message(PLATFORM, &tracked.message);
            }
            Err(error) => return Err(error),
        };
        let added: Vec<_> = now.difference(&tracked.reactions).cloned().collect();
        let removed: Vec<_> = tracked.reactions.difference(&now).cloned().collect();
        for key in added {
            let user_roles = match roles.get(&key.0) {
                Some(known) => known.clone(),
                None => {
                    let found = self.member_roles(&key.0).await;
                    roles.insert(key.0.clone(), found.clone());
                    found
                }
            };
            tracing::info!(user = %key.0, emoji = %key.1, message = %id, "found a reaction added during the gap");
            self.hand_over(&tracked.message, &key, user_roles, true).await;
            set(&mut tracked.reactions, key, true);
            self.shared.engine.track_message(PLATFORM, &tracked, MAX_TRACKED)?;
        }
        for key in removed {
            tracing::info!(user = %key.0, emoji = %key.1, message = %id, "found a reaction removed during the gap");
            self.hand_over(&tracked.message, &key, Vec::new(), false).await;
            set(&mut tracked.reactions, key, false);
            self.shared.engine.track_message(PLATFORM, &tracked, MAX_TRACKED)?;
        }
        Ok(())
    }

    /// The message's reactions now, by user and emoji; `None` when the message is gone.
    async fn current(&self, channel: ChannelId, id: MessageId) -> Result<Option<BTreeSet<(String, String)>>> {
        let http = &self.shared.http;
        let message = match http.get_message(channel, id).await {
            Ok(message) => message,
            Err(error) if super::rest::is_not_found(&error) => return Ok(None),
            Err(error) => return Err(error.context("cannot read the message")),
        };
        let bot = self.shared.bot_id();
        let mut now = BTreeSet::new();
        for reaction in &message.reactions {
            let emoji = emoji_name(&reaction.reaction_type);
            let mut after = None;
            loop {
                let users = http
                    .get_reaction_users(channel, id, &reaction.reaction_type, PAGE, after)
                    .await
                    .context("cannot list who reacted")?;
                for user in &users {
                    if Some(user.id.get()) != bot {
                        now.insert((user.id.to_string(), emoji.clone()));
                    }
                }
                match users.last() {
                    Some(last) if users.len() == usize::from(PAGE) => after = Some(last.id.get()),
                    _ => break,
                }
            }
        }
        Ok(Some(now))
    }

    /// The roles a user holds in the team's server, read over REST (reactions listed over REST
    /// carry no member data).
    async fn member_roles(&self, user: &str) -> Vec<Role> {
        let Ok(user_id) = user.parse::<u64>() else { return Vec::new() };
        let guild = GuildId::new(self.shared.settings.guild_id);
        match self.shared.http.get_member(guild, UserId::new(user_id)).await {
            Ok(member) => self.lead_roles(&member.roles),
            Err(error) => {
                tracing::warn!(%user, error = format!("{error:#}"), "cannot read a member's roles; counting no lead role");
                Vec::new()
            }
        }
    }
}

fn set(reactions: &mut BTreeSet<(String, String)>, key: (String, String), present: bool) {
    if present {
        reactions.insert(key);
    } else {
        reactions.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_emoji_keep_their_character_and_custom_ones_their_name() {
        assert_eq!(emoji_name(&ReactionType::Unicode("✅".into())), "✅");
        let custom: ReactionType = serde_json::from_str(r#"{"id":"41771983429993937","name":"shipit"}"#).unwrap();
        assert_eq!(emoji_name(&custom), "shipit");
    }
}
