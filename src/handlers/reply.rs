//! What the engine hands back to adapters: platform-neutral replies and progress.

use crate::config::Role;
use crate::release::approvals::PromotionRequest;
use crate::release::calendar::{Firing, WindowState};
use crate::release::deploy::{DeployEvent, DeployRecord, Observation};
use crate::release::locks::{ActiveDeploy, Hold};
pub use crate::release::message::MessageRef;
use crate::release::migrations::MigrationDebt;
use crate::release::plan::DeployPlan;
use crate::release::ticket_flow::{StagingCheck, TicketMove};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

/// A command as an adapter received it.
#[derive(Debug)]
pub struct Invocation {
    /// `console`, `slack`, `discord`.
    pub platform: String,
    /// The platform's user id (never a display name).
    pub user_id: String,
    /// The command line, for example `/deploy dev feature/login`.
    pub text: String,
    /// Where progress of long-running work goes; `None` if the adapter does not follow it.
    pub progress: Option<mpsc::UnboundedSender<ProgressUpdate>>,
    /// Roles the platform itself vouches for, such as a Discord guild role configured as the
    /// lead role. They add to a configured person's roles; they never make a stranger known.
    pub platform_roles: Vec<Role>,
}

impl Invocation {
    /// A command from `platform` user `user_id`, with no progress follower and no platform roles.
    pub fn new(platform: &str, user_id: &str, text: &str) -> Self {
        Self {
            platform: platform.to_owned(),
            user_id: user_id.to_owned(),
            text: text.to_owned(),
            progress: None,
            platform_roles: Vec::new(),
        }
    }
}

/// A reaction added to or removed from one of the bot's own messages, on any platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// `slack`, `discord`.
    pub platform: String,
    /// The platform's user id of who reacted.
    pub user_id: String,
    /// Roles the platform vouches for (see [`Invocation::platform_roles`]).
    pub platform_roles: Vec<Role>,
    /// The emoji's name without colons (`white_check_mark`, `x`, or the unicode character).
    pub emoji: String,
    /// The bot's message: channel and message id (Slack `ts`, Discord message id).
    pub message: MessageRef,
    /// Added (true) or removed (false).
    pub added: bool,
    /// When the platform says it happened.
    pub at: DateTime<Utc>,
}

/// Who should see a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Only the person who asked: errors they can fix, help, read-only answers.
    Ephemeral,
    /// The whole channel: deploys and their outcomes, locks.
    Public,
}

/// A reply to one invocation.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Who sees it.
    pub visibility: Visibility,
    /// What it says.
    pub body: ReplyBody,
}

/// Reply contents, rendered by each adapter in its own way.
#[derive(Debug, Clone)]
pub enum ReplyBody {
    /// A refusal: what is wrong and what to do instead. Nothing was changed.
    Refused(String),
    /// A plain answer.
    Text(String),
    /// A deploy was accepted; progress follows.
    Deploy(DeployRecord),
    /// A dry run: the resolved commit and the exact steps.
    DryRun(DeployPlan),
    /// `/status`.
    Status(StatusReport),
    /// `/history`.
    History(Vec<DeployRecord>),
    /// `/schedule`: coming slots and windows.
    Schedule(ScheduleView),
}

/// Coming calendar events, for `/schedule`.
#[derive(Debug, Clone)]
pub struct ScheduleView {
    /// When it was read.
    pub now: DateTime<Utc>,
    /// The calendar's zone.
    pub timezone: chrono_tz::Tz,
    /// Slots and window openings/closings, in order.
    pub entries: Vec<Firing>,
    /// What stands over the whole view: freezes, skipped auto-deploys (one line each).
    pub notices: Vec<String>,
    /// A note on one entry (by its index in `entries`): a skipped or frozen slot.
    pub marks: std::collections::BTreeMap<usize, String>,
}

/// The calendar as `/status` shows it.
#[derive(Debug, Clone)]
pub struct CalendarView {
    /// The calendar's zone.
    pub timezone: chrono_tz::Tz,
    /// The ticket-drag window now.
    pub window: WindowState,
    /// Each environment's next slot, if it has one.
    pub next_slots: Vec<(String, Option<DateTime<Utc>>)>,
}

impl Reply {
    /// A refusal only the asker sees.
    pub fn refused(text: impl Into<String>) -> Self {
        Self { visibility: Visibility::Ephemeral, body: ReplyBody::Refused(text.into()) }
    }

    /// A plain answer.
    pub fn text(visibility: Visibility, text: impl Into<String>) -> Self {
        Self { visibility, body: ReplyBody::Text(text.into()) }
    }
}

/// One progress step of a deploy, with the whole record as it now stands.
#[derive(Debug, Clone)]
pub struct ProgressUpdate {
    /// What just happened.
    pub event: DeployEvent,
    /// The deploy as now recorded.
    pub record: DeployRecord,
}

/// Something the bot says without being asked: reminders, scheduled deploys, warnings.
/// Every adapter posts announcements to its configured team channel, except a
/// [`Announcement::Direct`] notice, which only the adapter of its platform delivers.
#[derive(Debug, Clone)]
pub enum Announcement {
    /// Words for the team. `@{id}` marks a mention of the configured person `id`; each
    /// adapter writes it in its platform's own mention syntax (see [`crate::chat::mentions`]).
    Text(String),
    /// Progress of a deploy no command is following (a scheduled or automatic deploy):
    /// adapters post one message per deploy id and edit it as updates arrive.
    Deploy(Box<ProgressUpdate>),
    /// A promotion request, new or changed: adapters post it once (then report the message
    /// with `EngineHandle::bind_message`) and edit that message on every change.
    Promotion(Box<PromotionView>),
    /// Words for one person, by direct message: only the adapter of `platform` acts on it
    /// (the others ignore it), sending `text` to `user_id` privately, or, when that fails,
    /// posting `fallback` (which mentions them) in its team channel. So they are told once.
    Direct(Box<DirectNotice>),
}

/// A notice for one person, sent as a direct message on the platform they use.
#[derive(Debug, Clone)]
pub struct DirectNotice {
    /// The platform to send it on (`slack`, `discord`).
    pub platform: String,
    /// Their user id on that platform.
    pub user_id: String,
    /// The words of the direct message.
    pub text: String,
    /// The words for the team channel (with an `@{id}` mention) if the message cannot be sent.
    pub fallback: String,
}

/// A promotion request as shown, with the messages already showing it on each platform.
#[derive(Debug, Clone)]
pub struct PromotionView {
    /// The request.
    pub request: PromotionRequest,
    /// Where it is already shown: (platform, message).
    pub messages: Vec<(String, MessageRef)>,
}

/// The state of every (or one) environment.
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// When it was read.
    pub now: DateTime<Utc>,
    /// One entry per environment, in configured order.
    pub environments: Vec<EnvironmentStatus>,
    /// The drag window and next slots.
    pub calendar: CalendarView,
    /// Jira's side, when it is configured.
    pub jira: Option<JiraView>,
    /// Whether the first environment's branch is protected on GitHub, when GitHub is configured.
    pub protection: Option<String>,
}

/// What `/status` shows about Jira.
#[derive(Debug, Clone)]
pub struct JiraView {
    /// Ticket moves still to deliver, oldest first.
    pub pending: Vec<TicketMove>,
    /// Moves given up in the last days, newest first: a person has to make them.
    pub given_up: Vec<TicketMove>,
    /// The tickets found in Staging when the drag window last closed, checked against the
    /// deploys known now.
    pub staging: Option<StagingView>,
}

/// The Staging column at the drag window's last close, against the deploys.
#[derive(Debug, Clone)]
pub struct StagingView {
    /// When the window closed.
    pub at: DateTime<Utc>,
    /// The environment developers test on (the first).
    pub dev: String,
    /// The environment after it.
    pub staging: String,
    /// The tickets, by where their code is.
    pub check: StagingCheck,
}

/// The state of one environment.
#[derive(Debug, Clone)]
pub struct EnvironmentStatus {
    /// Name.
    pub name: String,
    /// Its own branch.
    pub branch: String,
    /// The last successful deploy: what is believed to be live.
    pub live: Option<DeployRecord>,
    /// The newest deploy, when it is not the live one (running, failed or interrupted).
    pub latest: Option<DeployRecord>,
    /// The last failure, when it is not the newest deploy.
    pub last_failure: Option<DeployRecord>,
    /// Claim or lock.
    pub hold: Option<Hold>,
    /// Deploy running now.
    pub active: Option<ActiveDeploy>,
    /// The last time HEAD was read on the host, if ever.
    pub observed: Option<Observation>,
    /// Migrations a personal branch applied here that its base branch lacks.
    pub migration_debt: Option<MigrationDebt>,
    /// A deploy a crash interrupted here, while Shipday has not yet made sure on the host that
    /// none of its steps still runs.
    pub interrupted: Option<ActiveDeploy>,
    /// The freeze standing now, in words (who, why, until when).
    pub freeze: Option<String>,
    /// A lead's `/skip` of its next automatic deploy, in words.
    pub skip: Option<String>,
    /// Who waits for it to be free (`/deploy … --notify` or `--when-free`), first come first.
    pub waiting: Vec<crate::release::locks::Waiter>,
}
