//! The redaction choke points: everything the engine sends out of the process passes here.
//!
//! - Replies: [`redact_reply`] runs in `engine::Engine::commit`, the one place replies are sent.
//! - Progress of a followed deploy: in [`super::Context::forward`].
//! - Announcements: every sender holds an [`Announcer`], which redacts in [`Announcer::send`];
//!   there is no other way to announce.
//! - The audit log: [`crate::store::Store::audit`] redacts with the store's redactor.
//!
//! Redacting at these few places, rather than where text is built, means no new path can
//! forget it.

use super::reply::{Announcement, DirectNotice, EnvironmentStatus, ProgressUpdate, PromotionView, Reply, ReplyBody};
use crate::redact::Redactor;
use crate::release::approvals::RequestState;
use crate::release::deploy::{DeployRecord, Outcome};
use tokio::sync::broadcast;

/// The team channel's sender: announcements are redacted before any adapter sees them.
#[derive(Clone)]
pub struct Announcer {
    sender: broadcast::Sender<Announcement>,
    redactor: Redactor,
}

impl Announcer {
    /// An announcer keeping the last `capacity` announcements for slow adapters.
    pub fn new(capacity: usize, redactor: Redactor) -> Self {
        Self { sender: broadcast::channel(capacity).0, redactor }
    }

    /// Redacts and sends to every subscribed adapter; `Err` when none is subscribed.
    pub fn send(&self, announcement: Announcement) -> Result<usize, broadcast::error::SendError<Announcement>> {
        self.sender.send(redact_announcement(&self.redactor, announcement))
    }

    /// A new adapter's subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Announcement> {
        self.sender.subscribe()
    }
}

/// The reply with every text that may carry host output or error messages redacted.
pub(crate) fn redact_reply(redactor: &Redactor, reply: Reply) -> Reply {
    let r = |text: String| redactor.redact(&text);
    let body = match reply.body {
        ReplyBody::Refused(text) => ReplyBody::Refused(r(text)),
        ReplyBody::Text(text) => ReplyBody::Text(r(text)),
        ReplyBody::Deploy(record) => ReplyBody::Deploy(redact_record(redactor, record)),
        ReplyBody::History(records) => {
            ReplyBody::History(records.into_iter().map(|d| redact_record(redactor, d)).collect())
        }
        ReplyBody::Status(mut report) => {
            report.environments = report.environments.into_iter().map(|e| redact_environment(redactor, e)).collect();
            report.protection = report.protection.map(r);
            ReplyBody::Status(report)
        }
        ReplyBody::DryRun(mut plan) => {
            for step in &mut plan.steps {
                step.command = r(std::mem::take(&mut step.command));
                step.script = r(std::mem::take(&mut step.script));
            }
            ReplyBody::DryRun(plan)
        }
        ReplyBody::Schedule(mut view) => {
            view.notices = view.notices.into_iter().map(&r).collect();
            view.marks = view.marks.into_iter().map(|(i, line)| (i, r(line))).collect();
            ReplyBody::Schedule(view)
        }
    };
    Reply { visibility: reply.visibility, body }
}

fn redact_environment(redactor: &Redactor, mut env: EnvironmentStatus) -> EnvironmentStatus {
    env.freeze = env.freeze.map(|line| redactor.redact(&line));
    env.live = env.live.map(|d| redact_record(redactor, d));
    env.latest = env.latest.map(|d| redact_record(redactor, d));
    env.last_failure = env.last_failure.map(|d| redact_record(redactor, d));
    if let Some(observed) = &mut env.observed
        && let Err(error) = &mut observed.head
    {
        *error = redactor.redact(error);
    }
    env
}

/// A deploy record with its step output and failure reason redacted.
pub(crate) fn redact_record(redactor: &Redactor, mut record: DeployRecord) -> DeployRecord {
    for step in &mut record.steps {
        step.tail = redactor.redact(&step.tail);
    }
    if let Outcome::Failed { reason, .. } = &mut record.outcome {
        *reason = redactor.redact(reason);
    }
    record
}

/// A progress update with its record redacted.
pub(crate) fn redact_progress(redactor: &Redactor, update: ProgressUpdate) -> ProgressUpdate {
    ProgressUpdate { event: update.event, record: redact_record(redactor, update.record) }
}

fn redact_announcement(redactor: &Redactor, announcement: Announcement) -> Announcement {
    match announcement {
        Announcement::Text(text) => Announcement::Text(redactor.redact(&text)),
        Announcement::Deploy(update) => Announcement::Deploy(Box::new(redact_progress(redactor, *update))),
        Announcement::Promotion(view) => {
            let PromotionView { mut request, messages } = *view;
            request.notes = redactor.redact(&request.notes);
            match &mut request.state {
                RequestState::Void { why } | RequestState::Failed { why } => *why = redactor.redact(why),
                _ => {}
            }
            Announcement::Promotion(Box::new(PromotionView { request, messages }))
        }
        Announcement::Direct(notice) => {
            let DirectNotice { platform, user_id, text, fallback } = *notice;
            let (text, fallback) = (redactor.redact(&text), redactor.redact(&fallback));
            Announcement::Direct(Box::new(DirectNotice { platform, user_id, text, fallback }))
        }
    }
}
