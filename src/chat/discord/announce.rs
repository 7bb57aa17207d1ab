//! Announcements in the team channel: reminders and warnings as text with real mentions, and
//! deploys nobody's command follows as one message per deploy, edited as they progress.

use super::render::{self, Message};
use super::{Shared, reactions};
use crate::chat::text;
use crate::engine::{Announcement, DirectNotice, MessageRef, ProgressUpdate, PromotionView};
use crate::release::deploy::{DeployEvent, DeployRecord};
use anyhow::{Context as _, Result};
use serenity::all::{ChannelId, MessageId, UserId};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Posts announcements until the engine stops. Starts by telling the team about deploys a
/// previous crash interrupted.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut announcements: broadcast::Receiver<Announcement>,
    interrupted: Vec<DeployRecord>,
) {
    let mut poster = Poster { channel: ChannelId::new(shared.settings.channel), shared, deploys: HashMap::new() };
    // Each interrupted deploy's own message says so (not only the notice below).
    for record in &interrupted {
        poster.mark_interrupted(record).await;
    }
    if let Some(notice) = text::interrupted_notice(&interrupted) {
        poster.post(&Message::text(notice, false)).await;
    }
    let mut promotions: HashMap<u64, MessageRef> = HashMap::new();
    loop {
        match announcements.recv().await {
            Ok(Announcement::Text(text)) => {
                let message = render::announcement(&text, &poster.shared.config);
                poster.post(&message).await;
            }
            Ok(Announcement::Deploy(update)) => poster.deploy(&update).await,
            Ok(Announcement::Direct(notice)) if notice.platform == super::PLATFORM => poster.direct(&notice).await,
            Ok(Announcement::Direct(_)) => {}
            Ok(Announcement::Promotion(view)) => {
                // A second save can be announced before the engine recorded the first post's
                // message: it edits that message rather than posting another.
                let mut view = *view;
                let id = view.request.id;
                if !view.messages.iter().any(|(platform, _)| platform == super::PLATFORM)
                    && let Some(posted) = promotions.get(&id)
                {
                    view.messages.push((super::PLATFORM.to_owned(), posted.clone()));
                }
                if let Some(posted) = poster.promotion(&view).await {
                    promotions.insert(id, posted);
                }
                if !view.request.is_live()
                    && !matches!(view.request.state, crate::release::approvals::RequestState::Executing { .. })
                {
                    promotions.remove(&id);
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "Discord fell behind on announcements; some were not posted")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

struct Poster {
    shared: Arc<Shared>,
    channel: ChannelId,
    /// The message of each deploy being announced.
    deploys: HashMap<u64, MessageId>,
}

impl Poster {
    async fn post(&self, message: &Message) -> Option<MessageId> {
        let body = message.localized(&self.shared.settings.commands).body();
        match self.shared.http.send_message(self.channel, &body).await {
            Ok(posted) => {
                let tracked = MessageRef { channel: posted.channel_id.to_string(), id: posted.id.to_string() };
                let _ = self.shared.reactions.send(reactions::Job::Track(tracked));
                Some(posted.id)
            }
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "cannot post an announcement to the Discord team channel"
                );
                None
            }
        }
    }

    /// Sends `notice` to its person by direct message; when that fails, mentions them in the
    /// team channel instead, so they are still told once.
    async fn direct(&self, notice: &DirectNotice) {
        let sent = async {
            let user = notice.user_id.parse::<u64>().ok().filter(|id| *id != 0).context("not a Discord user id")?;
            let channel = self.shared.http.create_dm_channel(UserId::new(user)).await?;
            let message = render::announcement(&notice.text, &self.shared.config);
            let body = message.localized(&self.shared.settings.commands).body();
            self.shared.http.send_message(channel, &body).await
        }
        .await;
        if let Err(error) = sent {
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot send a direct message; mentioning them in the team channel"
            );
            self.post(&render::announcement(&notice.fallback, &self.shared.config)).await;
        }
    }

    async fn deploy(&mut self, update: &ProgressUpdate) {
        let id = update.record.id;
        let message = render::progress(update, self.shared.clock.now());
        match self.deploys.get(&id).copied() {
            Some(posted) => {
                if let Err(error) = self.edit(posted, &message).await {
                    tracing::warn!(deploy = id, error = format!("{error:#}"), "cannot edit a deploy announcement");
                }
            }
            None => {
                if let Some(posted) = self.post(&message).await {
                    self.deploys.insert(id, posted);
                    let shown = MessageRef { channel: self.channel.to_string(), id: posted.to_string() };
                    if let Err(error) = self.shared.engine.remember_deploy_message(id, super::PLATFORM, &shown).await {
                        tracing::warn!(deploy = id, error = format!("{error:#}"), "cannot record a deploy's message");
                    }
                }
            }
        }
        if update.event == DeployEvent::Finished {
            self.deploys.remove(&id);
        }
    }

    /// Posts a promotion request once (binding the message so reactions vote), then edits it.
    /// Shows a promotion request: edits its message, or posts it and returns the new message.
    async fn promotion(&self, view: &PromotionView) -> Option<MessageRef> {
        let links = render::links(&view.request.links).map(|links| format!("Links: {links}"));
        let content =
            text::promotion_linked(&view.request, self.shared.config.timezone, links.as_deref(), &|t: &str| {
                t.to_owned()
            });
        let message = Message::text(content, false);
        match view.messages.iter().find(|(platform, _)| platform == super::PLATFORM) {
            Some((_, posted)) => match posted.id.parse::<u64>() {
                Ok(id) => {
                    if let Err(error) = self.edit(MessageId::new(id), &message).await {
                        tracing::warn!(
                            request = view.request.id,
                            error = format!("{error:#}"),
                            "cannot edit a promotion request"
                        );
                    }
                }
                Err(_) => tracing::warn!(request = view.request.id, "a bound Discord message id is not a snowflake"),
            },
            None => {
                if let Some(posted) = self.post(&message).await {
                    let message = MessageRef { channel: self.channel.to_string(), id: posted.to_string() };
                    self.shared.engine.bind_message(view.request.id, super::PLATFORM, message.clone()).await;
                    return Some(message);
                }
            }
        }
        None
    }

    /// Edits the messages that showed `record` (a deploy a crash interrupted) to say so.
    async fn mark_interrupted(&self, record: &DeployRecord) {
        let shown = match self.shared.engine.deploy_messages(record.id, super::PLATFORM) {
            Ok(shown) => shown,
            Err(error) => {
                tracing::warn!(deploy = record.id, error = format!("{error:#}"), "cannot read a deploy's messages");
                return;
            }
        };
        let update = ProgressUpdate { event: DeployEvent::Finished, record: record.clone() };
        let message = render::progress(&update, self.shared.clock.now()).localized(&self.shared.settings.commands);
        for shown in shown {
            let (Ok(channel), Ok(id)) = (shown.channel.parse::<u64>(), shown.id.parse::<u64>()) else { continue };
            let edited =
                self.shared.http.edit_message(ChannelId::new(channel), MessageId::new(id), &message.body()).await;
            if let Err(error) = edited {
                tracing::warn!(
                    deploy = record.id,
                    error = format!("{error:#}"),
                    "cannot mark a deploy's message interrupted"
                );
            }
        }
    }

    async fn edit(&self, id: MessageId, message: &Message) -> Result<()> {
        let body = message.localized(&self.shared.settings.commands).body();
        self.shared.http.edit_message(self.channel, id, &body).await?;
        Ok(())
    }
}
