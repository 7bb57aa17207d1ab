//! Announcements in the team channel: reminders and notices, and deploys nobody's command
//! follows (one message per deploy, edited as it progresses).

use super::{Slack, render};
use crate::chat::{mentions, text};
use crate::engine::{Announcement, MessageRef};
use crate::release::approvals::RequestState;
use anyhow::Result;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Posts announcements until the engine goes away. Posting failures are logged and skipped:
/// an announcement is never worth stopping the adapter for.
pub(crate) async fn run(
    slack: Arc<Slack>,
    mut announcements: broadcast::Receiver<Announcement>,
    interrupted: Option<String>,
) -> Result<()> {
    let channel = slack.settings.channel.clone();
    if let Some(notice) = interrupted
        && let Err(error) = slack.api.post_message(&channel, &render::note(&render::escape(&notice))).await
    {
        tracing::error!(%error, "cannot tell the team channel about interrupted deploys");
    }
    let mut deploys: HashMap<u64, MessageRef> = HashMap::new();
    // Promotion messages this loop posted: a second save can be announced before the engine
    // has recorded the first post's message, and must edit it, not post another.
    let mut promotions: HashMap<u64, MessageRef> = HashMap::new();
    loop {
        let announcement = match announcements.recv().await {
            Ok(announcement) => announcement,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "announcements came faster than Slack took them; some were skipped");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        };
        match announcement {
            Announcement::Text(text) => {
                // Escape first: the mentions written afterwards are the only `<…>` allowed.
                let mrkdwn =
                    mentions(&render::escape(&text), &slack.config, |p| p.slack.as_ref().map(|id| format!("<@{id}>")));
                if let Err(error) = slack.api.post_message(&channel, &render::note(&mrkdwn)).await {
                    tracing::error!(%error, "cannot post an announcement");
                }
            }
            Announcement::Direct(notice) => {
                if notice.platform != "slack" {
                    continue;
                }
                let direct = render::note(&render::escape(&notice.text));
                if let Err(error) = slack.api.direct_message(&notice.user_id, &direct).await {
                    // Not delivered privately: told in the team channel instead, still once.
                    tracing::warn!(%error, "cannot send a direct message; mentioning them in the team channel");
                    let mrkdwn = mentions(&render::escape(&notice.fallback), &slack.config, |p| {
                        p.slack.as_ref().map(|id| format!("<@{id}>"))
                    });
                    if let Err(error) = slack.api.post_message(&channel, &render::note(&mrkdwn)).await {
                        tracing::error!(%error, "cannot post an announcement");
                    }
                }
            }
            Announcement::Promotion(view) => {
                let links = render::links(&view.request.links).map(|links| format!("Links: {links}"));
                let content = render::note(&text::promotion_linked(
                    &view.request,
                    slack.config.timezone,
                    links.as_deref(),
                    &render::escape,
                ));
                let shown = view
                    .messages
                    .iter()
                    .find(|(platform, _)| platform == "slack")
                    .map(|(_, m)| m.clone())
                    .or_else(|| promotions.get(&view.request.id).cloned());
                let result = match shown {
                    Some(at) => slack.api.update(&at, &content).await,
                    None => match slack.api.post_message(&channel, &content).await {
                        Ok(at) => {
                            promotions.insert(view.request.id, at.clone());
                            slack.engine.bind_message(view.request.id, "slack", at).await;
                            Ok(())
                        }
                        Err(error) => Err(error),
                    },
                };
                if !view.request.is_live() && !matches!(view.request.state, RequestState::Executing { .. }) {
                    // Finished: the store knows its message from here on.
                    promotions.remove(&view.request.id);
                }
                if let Err(error) = result {
                    tracing::warn!(%error, request = view.request.id, "cannot show a promotion request");
                }
            }
            Announcement::Deploy(update) => {
                let record = &update.record;
                let content = render::deploy(record, slack.clock.now(), slack.config.timezone);
                let result = match deploys.get(&record.id) {
                    Some(at) => slack.api.update(at, &content).await,
                    None => match slack.api.post_message(&channel, &content).await {
                        Ok(at) => {
                            // Recorded, so that after a crash the restarted bot edits this
                            // message to say the deploy was interrupted.
                            remember_deploy_message(&slack, record.id, &at).await;
                            deploys.insert(record.id, at);
                            Ok(())
                        }
                        Err(error) => Err(error),
                    },
                };
                if let Err(error) = result {
                    tracing::warn!(%error, deploy = record.id, "cannot show an announced deploy");
                }
                if record.is_finished() {
                    deploys.remove(&record.id);
                }
            }
        }
    }
}

/// Records where announced deploy `deploy` is shown (as a command's deploy message is).
async fn remember_deploy_message(slack: &Slack, deploy: u64, at: &MessageRef) {
    if let Err(error) = slack.engine.remember_deploy_message(deploy, "slack", at).await {
        tracing::warn!(deploy, error = format!("{error:#}"), "cannot record an announced deploy's message");
    }
}
