//! One application command, from acknowledgement to the last progress edit.
//!
//! Discord invalidates an interaction that is not answered within 3 seconds. The command goes
//! to the engine at once. A long-running command (a deploy, a promotion, `--live`…) is deferred
//! at once, so its answer always edits `@original`; a quick one whose answer comes within a short
//! budget gets that answer as the response, with the right visibility. Otherwise the
//! interaction is deferred (`type 5`) with the visibility the answer most likely has, and the
//! answer then edits `@original`, or replaces it with a follow-up when the guess was wrong (an
//! error the user can fix is always ephemeral).
//! A deploy's progress keeps editing the same message; before the interaction token expires
//! the progress moves to a normal channel message.

use super::commands::{self, OptionValue};
use super::render::{self, Asked, Message};
use super::{PLATFORM, Shared, reactions};
use crate::config::Role;
use crate::engine::{Invocation, MessageRef, ProgressUpdate, ReplyBody, Visibility};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use serenity::all::{ChannelId, CommandDataOptionValue, CommandInteraction, InteractionId, MessageId};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// How the first response reaches Discord.
pub(crate) enum FirstResponse {
    /// Gateway interactions: `POST /interactions/{id}/{token}/callback`.
    Callback,
    /// HTTP interactions: the body of the pending HTTP response.
    HttpBody(oneshot::Sender<Value>),
}

/// Handles one command interaction to the end.
pub(crate) async fn handle(shared: Arc<Shared>, command: CommandInteraction, first: FirstResponse) {
    let span = tracing::info_span!(
        "discord_command",
        interaction = %command.id,
        user = %command.user.id,
        command = %command.data.name
    );
    run(shared, command, first).instrument(span).await
}

async fn run(shared: Arc<Shared>, command: CommandInteraction, first: FirstResponse) {
    let mut responder = Responder {
        shared: shared.clone(),
        id: command.id,
        token: command.token.clone(),
        channel: command.channel_id,
        first: Some(first),
        deferred: None,
        started: Instant::now(),
        last_public: std::sync::Mutex::new(None),
    };
    let _claim = match Claim::take(&shared, command.id.get()) {
        Ok(Some(claim)) => claim,
        Ok(None) => {
            tracing::info!("interaction already handled; not running it twice");
            responder.say(Message::text("This command was already handled.", true)).await;
            return;
        }
        Err(()) => {
            // Fail closed: without the record there is no telling whether this is a replay.
            let text = "Shipday cannot read its store right now, so it ran nothing. Try again in a moment.";
            responder.say(Message::text(text, true)).await;
            return;
        }
    };
    if !shared.settings.accepts(command.guild_id.map(|g| g.get())) {
        tracing::warn!(guild = ?command.guild_id, "command from a server or DM Shipday is not set up for");
        let text = "✋ Shipday only takes commands in its team's server. Ask there.";
        responder.say(Message::text(text, true)).await;
        return;
    }
    // The registered name back to the canonical one; the umbrella's subcommand is the command.
    let (name, given) =
        commands::invoked(&shared.book, &shared.settings.commands, &command.data.name, &command.data.options);
    let options = option_values(given);
    let line = match commands::command_line(&shared.book, &name, &options) {
        Ok(line) => line,
        Err(problem) => return responder.say(Message::text(format!("✋ {problem}"), true)).await,
    };
    let plan = commands::ack_plan(&name, &options);
    let (progress, updates) = mpsc::unbounded_channel();
    let invocation = Invocation {
        platform: PLATFORM.into(),
        user_id: command.user.id.to_string(),
        text: line,
        progress: Some(progress),
        platform_roles: lead_roles(&shared, &command),
    };
    let submit = shared.engine.submit(invocation);
    tokio::pin!(submit);
    // A long-running command shows "thinking…" (type 5) at once and its answer edits
    // `@original`; a quick one is answered directly if it is quick enough.
    let budget = if plan.long_running { Duration::ZERO } else { shared.tuning.quick_answer_budget };
    // A zero budget defers before the engine is even asked, so the order is certain.
    let quick = if budget.is_zero() { None } else { tokio::time::timeout(budget, &mut submit).await.ok() };
    let reply = match quick {
        Some(reply) => reply,
        None => {
            responder.defer(plan.likely).await;
            submit.await
        }
    };
    // The engine made its decision durable before answering: from here on a replay of this
    // interaction must not run it again.
    if let Err(error) = shared.engine.mark_delivery_handled(&delivery_key(command.id), shared.clock.now()).await {
        tracing::error!(error = format!("{error:#}"), "cannot record the interaction as handled");
    }
    let topic = options.iter().find(|(n, _)| *n == "command").and_then(|(_, v)| match v {
        OptionValue::Text(t) => Some(*t),
        _ => None,
    });
    let environments = crate::command::help::environments_line(&shared.config.environments);
    let asked = Asked { command: &name, topic, environments: &environments };
    let message = render::reply(&reply, asked, &shared.book, shared.clock.now()).localized(&shared.settings.commands);
    let target = responder.answer(&message).await;
    if let ReplyBody::Deploy(record) = &reply.body {
        // Where the deploy is shown is recorded before its progress is followed.
        remember_deploy_message(&responder, record.id, target, &mut None).await;
        if let Some(last) = follow(&mut responder, target, updates).await {
            tell_requester(&shared, command.user.id, &last).await;
        }
    }
}

/// A direct message to whoever asked for the deploy, once it ended, with its outcome and
/// links, unless their config says `dm = false`. Best effort: a failure is logged.
async fn tell_requester(shared: &Shared, user: serenity::all::UserId, record: &crate::release::deploy::DeployRecord) {
    let id = user.to_string();
    let wants = shared.config.people.iter().any(|p| p.discord.as_deref() == Some(id.as_str()) && p.dm);
    if !wants || !record.is_finished() {
        return;
    }
    let update = ProgressUpdate { record: record.clone(), event: crate::release::deploy::DeployEvent::Finished };
    let message = render::progress(&update, shared.clock.now()).localized(&shared.settings.commands);
    let sent = async {
        let channel = shared.http.create_dm_channel(user).await?;
        shared.http.send_message(channel, &message.body()).await
    }
    .await;
    if let Err(error) = sent {
        tracing::warn!(deploy = record.id, error = format!("{error:#}"), "cannot send the requester a direct message");
    }
}

/// The delivery key that marks an interaction as handled.
fn delivery_key(id: InteractionId) -> String {
    format!("discord:interaction:{id}")
}

/// Marks an interaction as in flight; dropping it clears the mark.
struct Claim {
    shared: Arc<Shared>,
    id: u64,
}

impl Claim {
    /// `Ok(None)` for a duplicate; `Err` when the delivery records cannot be read, in which
    /// case the interaction is not handled (fail closed).
    fn take(shared: &Arc<Shared>, id: u64) -> Result<Option<Self>, ()> {
        let seen = shared.engine.delivery_handled(&delivery_key(InteractionId::new(id))).map_err(|error| {
            tracing::error!(
                error = format!("{error:#}"),
                "cannot read delivery records; the interaction is not handled"
            );
        })?;
        let fresh = shared.in_flight.lock().expect("in-flight lock").insert(id);
        Ok(match (seen, fresh) {
            (false, true) => Some(Self { shared: shared.clone(), id }),
            (_, true) => {
                shared.in_flight.lock().expect("in-flight lock").remove(&id);
                None
            }
            (_, false) => None,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.shared.in_flight.lock().expect("in-flight lock").remove(&self.id);
    }
}

/// The options as the command-line builder takes them.
fn option_values(options: &[serenity::all::CommandDataOption]) -> Vec<(&str, OptionValue<'_>)> {
    options
        .iter()
        .map(|option| {
            let value = match &option.value {
                CommandDataOptionValue::String(text) => OptionValue::Text(text),
                CommandDataOptionValue::Boolean(flag) => OptionValue::Flag(*flag),
                CommandDataOptionValue::Integer(n) => OptionValue::Integer(*n),
                _ => OptionValue::Unsupported,
            };
            (option.name.as_str(), value)
        })
        .collect()
}

/// The lead role, when the member data Discord sent carries the configured role id.
fn lead_roles(shared: &Shared, command: &CommandInteraction) -> Vec<Role> {
    let is_lead = match (shared.settings.lead_role, &command.member) {
        (Some(role), Some(member)) => member.roles.iter().any(|r| r.get() == role),
        _ => false,
    };
    if is_lead { vec![Role::Lead] } else { Vec::new() }
}

/// The message a deploy's progress edits.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The interaction's `@original` response.
    Original,
    /// A follow-up message of the interaction.
    Followup(MessageId),
    /// A normal channel message: after the interaction token's lifetime.
    Channel(ChannelId, MessageId),
    /// Nothing to edit (posting failed).
    Nowhere,
}

struct Responder {
    shared: Arc<Shared>,
    id: InteractionId,
    token: String,
    channel: ChannelId,
    first: Option<FirstResponse>,
    /// The visibility of the deferred response, once deferred.
    deferred: Option<Visibility>,
    started: Instant,
    /// The public message this interaction last wrote, once known (a deploy's is remembered
    /// so a restart can edit it).
    last_public: std::sync::Mutex<Option<(ChannelId, MessageId)>>,
}

impl Responder {
    /// Sends the initial response (exactly once per interaction).
    async fn initial(&mut self, body: Value) -> Result<()> {
        let first = self.first.take().context("the interaction was already answered")?;
        crate::metrics::acknowledged("discord", self.started.elapsed());
        match first {
            FirstResponse::Callback => {
                self.shared.http.create_interaction_response(self.id, &self.token, &body).await?;
            }
            FirstResponse::HttpBody(reply) => {
                let _ = reply.send(body);
            }
        }
        Ok(())
    }

    /// Acknowledges with "thinking…", visible to `visibility`.
    async fn defer(&mut self, visibility: Visibility) {
        let mut body = json!({ "type": 5 });
        if visibility == Visibility::Ephemeral
            && let Some(fields) = body.as_object_mut()
        {
            fields.insert("data".into(), json!({ "flags": render::EPHEMERAL }));
        }
        match self.initial(body).await {
            Ok(()) => self.deferred = Some(visibility),
            Err(error) => tracing::error!(error = format!("{error:#}"), "cannot defer the interaction"),
        }
    }

    /// Answers with a message that nothing will edit later.
    async fn say(&mut self, message: Message) {
        let _ = self.answer(&message).await;
    }

    /// Answers the interaction with `message` and says where it can be edited later.
    async fn answer(&mut self, message: &Message) -> Target {
        match self.try_answer(message).await {
            Ok(target) => target,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot answer the interaction");
                Target::Nowhere
            }
        }
    }

    async fn try_answer(&mut self, message: &Message) -> Result<Target> {
        let visibility = if message.ephemeral { Visibility::Ephemeral } else { Visibility::Public };
        let http = &self.shared.http;
        match self.deferred {
            None => {
                self.initial(json!({ "type": 4, "data": message.flagged_body() })).await?;
                Ok(Target::Original)
            }
            Some(deferred) if deferred == visibility => {
                let posted = http.edit_original_interaction_response(&self.token, &message.body()).await?;
                self.track(visibility, posted.channel_id, posted.id);
                Ok(Target::Original)
            }
            Some(_) => {
                // Visibility cannot change after a defer: replace the placeholder.
                http.delete_original_interaction_response(&self.token).await?;
                let posted = http.create_followup_message(&self.token, &message.flagged_body()).await?;
                self.track(visibility, posted.channel_id, posted.id);
                Ok(Target::Followup(posted.id))
            }
        }
    }

    /// Public messages are where people react: remember them for reconciliation.
    fn track(&self, visibility: Visibility, channel: ChannelId, id: MessageId) {
        if visibility == Visibility::Public {
            if let Ok(mut last) = self.last_public.lock() {
                *last = Some((channel, id));
            }
            let message = MessageRef { channel: channel.to_string(), id: id.to_string() };
            let _ = self.shared.reactions.send(reactions::Job::Track(message));
        }
    }

    /// Edits `target` with `message`, moving to a channel message once the token is too old.
    async fn edit(&mut self, target: Target, message: &Message) -> Result<Target> {
        let http = &self.shared.http;
        let token_expiring = self.started.elapsed() >= self.shared.tuning.interaction_token_lifetime;
        match target {
            Target::Original | Target::Followup(_) if token_expiring => {
                let posted = http.send_message(self.channel, &message.body()).await?;
                self.track(Visibility::Public, posted.channel_id, posted.id);
                let note = Message::text("⏩ This deploy's progress continues in a new message below.", false);
                if let Err(error) = self.edit_interaction_message(target, &note).await {
                    tracing::warn!(error = format!("{error:#}"), "cannot point the old message to the new one");
                }
                tracing::info!(message = %posted.id, "interaction token ageing: progress moved to a channel message");
                Ok(Target::Channel(posted.channel_id, posted.id))
            }
            Target::Original | Target::Followup(_) => {
                self.edit_interaction_message(target, message).await?;
                Ok(target)
            }
            Target::Channel(channel, id) => {
                http.edit_message(channel, id, &message.body()).await?;
                Ok(target)
            }
            Target::Nowhere => Ok(target),
        }
    }

    async fn edit_interaction_message(&self, target: Target, message: &Message) -> Result<()> {
        let http = &self.shared.http;
        let posted = match target {
            Target::Followup(id) => http.edit_followup_message(&self.token, id, &message.body()).await?,
            _ => http.edit_original_interaction_response(&self.token, &message.body()).await?,
        };
        self.track(Visibility::Public, posted.channel_id, posted.id);
        Ok(())
    }
}

/// Edits the deploy's message as progress arrives, at most once per `min_edit_interval`, always
/// showing the newest state and always the final one.
/// Returns the deploy's last record once it finished (`None` if the updates stopped first).
async fn follow(
    responder: &mut Responder,
    mut target: Target,
    mut updates: mpsc::UnboundedReceiver<ProgressUpdate>,
) -> Option<crate::release::deploy::DeployRecord> {
    let pace = responder.shared.tuning.min_edit_interval;
    let mut last_edit: Option<Instant> = None;
    let mut remembered = None;
    while let Some(mut update) = updates.recv().await {
        if let Some(wait) = last_edit.map(|at| pace.saturating_sub(at.elapsed())).filter(|w| !w.is_zero()) {
            tokio::time::sleep(wait).await;
        }
        while let Ok(newer) = updates.try_recv() {
            update = newer;
        }
        let message =
            render::progress(&update, responder.shared.clock.now()).localized(&responder.shared.settings.commands);
        match responder.edit(target, &message).await {
            Ok(next) => {
                target = next;
                remember_deploy_message(responder, update.record.id, target, &mut remembered).await;
            }
            Err(error) => tracing::warn!(
                deploy = update.record.id,
                error = format!("{error:#}"),
                "cannot edit the progress message; the deploy goes on and /status shows its outcome"
            ),
        }
        last_edit = Some(Instant::now());
        // The last update: letting go of the channel now tells a shutting-down engine that the
        // message is final.
        if matches!(update.event, crate::release::deploy::DeployEvent::Finished) {
            return Some(update.record);
        }
    }
    None
}

/// Records (once per message) where deploy `deploy_id` is shown, so that after a crash the
/// restarted bot edits it to say the deploy was interrupted.
async fn remember_deploy_message(
    responder: &Responder,
    deploy_id: u64,
    target: Target,
    remembered: &mut Option<(ChannelId, MessageId)>,
) {
    let shown = match target {
        Target::Channel(channel, id) => Some((channel, id)),
        _ => responder.last_public.lock().ok().and_then(|last| *last),
    };
    let Some((channel, id)) = shown.filter(|s| Some(*s) != *remembered) else { return };
    let message = MessageRef { channel: channel.to_string(), id: id.to_string() };
    match responder.shared.engine.remember_deploy_message(deploy_id, super::PLATFORM, &message).await {
        Ok(()) => *remembered = Some((channel, id)),
        Err(error) => {
            tracing::warn!(deploy = deploy_id, error = format!("{error:#}"), "cannot record a deploy's message")
        }
    }
}

/// How long the HTTP endpoint waits for the first response; Discord allows 3 s in all.
pub(crate) const FIRST_RESPONSE_LIMIT: Duration = Duration::from_millis(2500);
