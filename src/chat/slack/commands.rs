//! Slash commands: acknowledged within Slack's 3 seconds, then worked on.
//!
//! The ack waits a little for the engine's answer. A quick answer meant only for the requester
//! (a refusal, `/status`, `/help`) goes back in the ack itself. A public answer (a deploy, a
//! lock) is acked with an ephemeral "accepted" and posted as one channel message, which a
//! deploy then edits in place as its progress arrives. A slow answer is acked with "working on
//! it" and delivered when it comes.

use super::{Delivery, Slack, render};
use crate::chat::text;
use crate::command::{Command, parse};
use crate::engine::{Invocation, ProgressUpdate, Reply, ReplyBody, Visibility};
use chrono::{DateTime, Utc};
use slack_morphism::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument;

/// How long the ack waits for the engine before answering "working on it": well inside
/// Slack's 3 seconds, leaving room for the network.
const ACK_BUDGET: Duration = Duration::from_millis(1500);
/// Slack allows this many posts to one `response_url`…
const RESPONSE_URL_USES: u8 = 5;
/// …within this long of the command.
const RESPONSE_URL_MINUTES: i64 = 30;

/// Most `response_url`s remembered at once: the oldest are forgotten first (their commands
/// are then answered with `chat.postEphemeral` instead).
pub(crate) const RESPONSE_URLS_MAX: usize = 1024;

/// Remembers a command's `response_url`, forgetting expired ones and, past
/// [`RESPONSE_URLS_MAX`], the oldest: one entry per command must not grow without bound.
pub(crate) fn remember_response_url(
    urls: &mut std::collections::HashMap<String, ResponseUrlUses>,
    url: &str,
    now: DateTime<Utc>,
) {
    urls.retain(|_, uses| now - uses.since < chrono::Duration::minutes(RESPONSE_URL_MINUTES));
    while urls.len() >= RESPONSE_URLS_MAX {
        let Some(oldest) = urls.iter().min_by_key(|(_, uses)| uses.since).map(|(url, _)| url.clone()) else { break };
        urls.remove(&oldest);
    }
    urls.insert(url.to_owned(), ResponseUrlUses { since: now, uses: 0 });
}

/// A slash command as both transports deliver it.
#[derive(Debug, Clone)]
pub(crate) struct SlashCommand {
    pub team_id: String,
    pub channel_id: String,
    pub user_id: String,
    /// With its slash: `/deploy`.
    pub command: String,
    pub text: String,
    pub response_url: String,
    /// Unique per invocation: the dedupe key.
    pub trigger_id: String,
}

impl From<SlackCommandEvent> for SlashCommand {
    fn from(event: SlackCommandEvent) -> Self {
        Self {
            team_id: event.team_id.0,
            channel_id: event.channel_id.0,
            user_id: event.user_id.0,
            command: event.command.0,
            text: event.text.unwrap_or_default(),
            response_url: event.response_url.0.to_string(),
            trigger_id: event.trigger_id.0,
        }
    }
}

/// Posts made to one `response_url` so far.
pub(crate) struct ResponseUrlUses {
    since: DateTime<Utc>,
    uses: u8,
}

impl Slack {
    /// Handles a slash command and returns the ack, which only the requester sees.
    pub(crate) async fn command(self: &Arc<Self>, command: SlashCommand) -> SlackMessageContent {
        let span = tracing::info_span!(
            "slack_command",
            user = %command.user_id,
            channel = %command.channel_id,
            text = %format!("{} {}", command.command, command.text).escape_debug()
        );
        let arrived = std::time::Instant::now();
        let ack = self.clone().acknowledge(command).instrument(span).await;
        crate::metrics::acknowledged("slack", arrived.elapsed());
        render::localize(&ack, &self.settings.commands)
    }

    /// The command as the engine reads it: the workspace's names (`/ship-status`) turned back
    /// into canonical ones (`/status`).
    fn canonical_line(&self, command: &SlashCommand) -> String {
        let line = format!("{} {}", command.command, command.text);
        self.settings.commands.canonical_line(&self.book, &line)
    }

    async fn acknowledge(self: Arc<Self>, command: SlashCommand) -> SlackMessageContent {
        if command.team_id != self.settings.team_id {
            tracing::warn!(team = %command.team_id, "refused a command from another workspace");
            return render::note("✋ This Shipday serves another Slack workspace, so it ran nothing.");
        }
        let delivery = match self.claim(format!("slack:command:{}", command.trigger_id)) {
            Ok(Some(delivery)) => delivery,
            Ok(None) => {
                tracing::info!(trigger = %command.trigger_id, "duplicate delivery of a command; not run again");
                return render::note("This command was already received. It runs once.");
            }
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot read delivery records");
                return render::note(
                    "Shipday cannot read its store right now, so it ran nothing. An operator can check its logs.",
                );
            }
        };
        let now = self.clock.now();
        remember_response_url(&mut self.response_urls.lock().expect("response_url lock"), &command.response_url, now);
        let (progress, updates) = mpsc::unbounded_channel();
        let invocation = Invocation {
            platform: "slack".into(),
            user_id: command.user_id.clone(),
            text: self.canonical_line(&command),
            progress: Some(progress),
            platform_roles: Vec::new(),
        };
        let engine = self.engine.clone();
        let mut answer = tokio::spawn(async move { engine.submit(invocation).await });
        match tokio::time::timeout(ACK_BUDGET, &mut answer).await {
            Ok(reply) => {
                let reply = reply
                    .unwrap_or_else(|_| Reply::refused("Shipday could not answer. An operator can check its logs."));
                self.answered(command, delivery, reply, updates, true).await
            }
            Err(_) => {
                let span = tracing::Span::current();
                tokio::spawn(
                    async move {
                        let reply = answer.await.unwrap_or_else(|_| {
                            Reply::refused("Shipday could not answer. An operator can check its logs.")
                        });
                        self.answered(command, delivery, reply, updates, false).await;
                    }
                    .instrument(span),
                );
                render::note("⏳ Working on it…")
            }
        }
    }

    /// The engine answered, so its decision is durable: mark the delivery handled, then show
    /// the answer. Returns the ack when the answer came in time for it.
    async fn answered(
        self: Arc<Self>,
        command: SlashCommand,
        delivery: Delivery,
        reply: Reply,
        updates: mpsc::UnboundedReceiver<ProgressUpdate>,
        in_ack: bool,
    ) -> SlackMessageContent {
        if let Err(error) = delivery.done().await {
            // The decision stands; only a retry of this very delivery could run it again.
            tracing::error!(error = format!("{error:#}"), "cannot record the command as handled");
        }
        let content = self.render_reply(&command, &reply);
        match reply.visibility {
            Visibility::Ephemeral if in_ack => content,
            Visibility::Ephemeral => {
                self.ephemeral(&command, &content).await;
                content
            }
            Visibility::Public => {
                let channel = command.channel_id.clone();
                let accepted = render::note(&format!(
                    "✅ Accepted: `{}`. Following it in <#{channel}>.",
                    render::escape(&self.canonical_line(&command))
                ));
                let deploy = match &reply.body {
                    ReplyBody::Deploy(record) => Some(record.id),
                    _ => None,
                };
                tokio::spawn(self.public(command, content, deploy, updates).instrument(tracing::Span::current()));
                accepted
            }
        }
    }

    fn render_reply(&self, command: &SlashCommand, reply: &Reply) -> SlackMessageContent {
        let now = self.clock.now();
        // `/help`, or `/shipday` alone: the same specs as blocks (named as registered on the way out).
        if matches!(reply.body, ReplyBody::Text(_))
            && let Ok(Command::Help { topic }) =
                parse(&self.book, &self.config.environments, &self.canonical_line(command))
        {
            let environments = crate::command::help::environments_line(&self.config.environments);
            return render::help(
                &self.book,
                topic.as_deref(),
                &environments,
                &text::reply(reply, self.config.timezone),
            );
        }
        render::reply(reply, self.config.timezone, now)
    }

    /// Posts the one public message of a command in its channel and edits it as progress
    /// arrives. Posting failures are logged: the deploy goes on and its outcome is in the store
    /// for `/status`; nothing is ever run again because Slack was unreachable.
    async fn public(
        self: Arc<Self>,
        command: SlashCommand,
        content: SlackMessageContent,
        deploy: Option<u64>,
        mut updates: mpsc::UnboundedReceiver<ProgressUpdate>,
    ) {
        let mut message = self.post_in_channel(&command, &content).await;
        if let (Some(deploy), Some(at)) = (deploy, &message) {
            self.remember_deploy_message(deploy, at).await;
        }
        while let Some(mut update) = updates.recv().await {
            // Each update carries the whole record: when Slack is slower than the deploy, only
            // the newest state is worth sending.
            while let Ok(newer) = updates.try_recv() {
                update = newer;
            }
            let content = render::deploy(&update.record, self.clock.now(), self.config.timezone);
            message = match message {
                Some(at) => {
                    if let Err(error) = self.api.update(&at, &content).await {
                        tracing::warn!(%error, deploy = update.record.id, "cannot edit the deploy message");
                    }
                    Some(at)
                }
                None => {
                    let posted = self.post_in_channel(&command, &content).await;
                    if let Some(at) = &posted {
                        self.remember_deploy_message(update.record.id, at).await;
                    }
                    posted
                }
            };
            // The last update: letting go of the channel now tells a shutting-down engine that
            // the message is final.
            if matches!(update.event, crate::release::deploy::DeployEvent::Finished) {
                self.tell_requester(&command, &update.record).await;
                break;
            }
        }
    }

    /// A direct message to whoever asked for the deploy, once it ended, with its outcome and
    /// links, unless their config says `dm = false`. Best effort: a failure is logged.
    async fn tell_requester(&self, command: &SlashCommand, record: &crate::release::deploy::DeployRecord) {
        let wants = self.config.people.iter().any(|p| p.slack.as_deref() == Some(command.user_id.as_str()) && p.dm);
        if !wants || !record.is_finished() {
            return;
        }
        let content = render::deploy(record, self.clock.now(), self.config.timezone);
        if let Err(error) = self.api.direct_message(&command.user_id, &content).await {
            tracing::warn!(%error, deploy = record.id, "cannot send the requester a direct message");
        }
    }

    /// Records where deploy `deploy` is shown, so that after a crash the restarted bot edits
    /// it to say the deploy was interrupted.
    async fn remember_deploy_message(&self, deploy: u64, at: &crate::engine::MessageRef) {
        if let Err(error) = self.engine.remember_deploy_message(deploy, "slack", at).await {
            tracing::warn!(deploy, error = format!("{error:#}"), "cannot record a deploy's message");
        }
    }

    /// Posts in the command's channel, or in the team channel when the bot is not a member
    /// there (telling the requester where to look).
    async fn post_in_channel(
        &self,
        command: &SlashCommand,
        content: &SlackMessageContent,
    ) -> Option<crate::engine::MessageRef> {
        let error = match self.api.post_message(&command.channel_id, content).await {
            Ok(at) => return Some(at),
            Err(error) => error,
        };
        let team = &self.settings.channel;
        if matches!(error.code(), Some("not_in_channel" | "channel_not_found")) && command.channel_id != *team {
            match self.api.post_message(team, content).await {
                Ok(at) => {
                    let note = render::note(&format!(
                        "I am not a member of this channel, so I posted in <#{team}>. `/invite @Shipday` to have me here."
                    ));
                    self.ephemeral(command, &note).await;
                    return Some(at);
                }
                Err(error) => tracing::error!(%error, "cannot post in the team channel either"),
            }
        } else {
            tracing::error!(%error, "cannot post the command's public message");
        }
        None
    }

    /// Shows `content` to the requester only: through the command's `response_url` while
    /// Slack's limits allow, else with `chat.postEphemeral`.
    async fn ephemeral(&self, command: &SlashCommand, content: &SlackMessageContent) {
        if let Some(url) = self.api.trusted_response_url(&command.response_url)
            && self.use_response_url(&command.response_url)
        {
            match self.api.respond(&url, content).await {
                Ok(()) => return,
                Err(error) => tracing::warn!(%error, "cannot answer through response_url"),
            }
        }
        if let Err(error) = self.api.post_ephemeral(&command.channel_id, &command.user_id, content).await {
            tracing::error!(%error, "cannot show the requester their answer");
        }
    }

    /// Counts one use of a `response_url`, or says it is used up or expired.
    fn use_response_url(&self, url: &str) -> bool {
        let now = self.clock.now();
        let fresh = |since: DateTime<Utc>| now - since < chrono::Duration::minutes(RESPONSE_URL_MINUTES);
        let mut urls = self.response_urls.lock().expect("response_url lock");
        urls.retain(|_, uses| fresh(uses.since));
        match urls.get_mut(url) {
            Some(entry) if entry.uses < RESPONSE_URL_USES => {
                entry.uses += 1;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_urls_stay_bounded_and_expire() {
        let start = Utc::now();
        let mut urls = std::collections::HashMap::new();
        for i in 0..(RESPONSE_URLS_MAX * 3) {
            let at = start + chrono::Duration::milliseconds(i as i64);
            remember_response_url(&mut urls, &format!("https://hooks.slack.com/commands/T/{i}"), at);
            assert!(urls.len() <= RESPONSE_URLS_MAX);
        }
        let newest = format!("https://hooks.slack.com/commands/T/{}", RESPONSE_URLS_MAX * 3 - 1);
        assert!(urls.contains_key(&newest) && !urls.contains_key("https://hooks.slack.com/commands/T/0"));
        let later = start + chrono::Duration::minutes(RESPONSE_URL_MINUTES + 1);
        remember_response_url(&mut urls, "https://hooks.slack.com/commands/T/late", later);
        assert_eq!(urls.len(), 1, "expired entries are forgotten");
    }
}
