//! `/ticket KEY pass|fail|status`: a developer passes the ticket they tested on dev (Dev Testing
//! → Staging, in the drag window), fails it with a comment, or asks where it is.
//!
//! What needs only the config and the clock (Jira configured, the key, the window, who may
//! override it) is decided at once; what needs Jira (the column, the assignee) runs as a task
//! whose answer comes back as an event, so the engine loop never waits for Jira.

use super::jira::TicketPlaces;
use super::*;
use crate::clients::jira::{JiraClient, JiraError, MoveOutcome};
use crate::command::TicketAction;
use crate::config::{Config, Person, Role};
use crate::release::calendar::WindowState;
use crate::release::policy::{calendar_time, check_drag_window};
use crate::release::ticket_flow::{TicketMove, check_pass};
use crate::release::tickets::TicketKey;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::Arc;

/// What a Jira task decided: the reply (with its audit decision) and, maybe, news for the team.
type Decided = (Decision, Option<Announcement>);

/// A lead passing a ticket outside the drag window.
struct Override {
    /// Their reason, recorded and announced.
    reason: String,
    /// When the window opens next, for people.
    opens: String,
}

/// `/ticket KEY ACTION`: refused at once, or handed to a Jira task that answers later.
pub(crate) fn ticket(
    ctx: &mut Context,
    key: &str,
    action: TicketAction,
    reason: Option<String>,
    override_reason: Option<String>,
    pending: WaitingCommand,
    now: DateTime<Utc>,
) -> Option<(WaitingCommand, Decision)> {
    let (Some(jira), Some(client)) = (&ctx.config.jira, ctx.jira.clone()) else {
        return Some((
            pending,
            Decision::refused(
                "Jira is not configured in this installation, so /ticket cannot do anything. Nothing was changed.",
            ),
        ));
    };
    let key = match TicketKey::parse(&jira.projects, key) {
        Ok(key) => key,
        Err(error) => return Some((pending, Decision::refused(format!("{error}. Nothing was changed.")))),
    };
    let person = pending.person.clone().expect("policy lets only configured people use /ticket");
    let config = ctx.config.clone();
    match action {
        TicketAction::Pass => {
            let overriding = match pass_window(ctx, &person, override_reason, now) {
                Ok(overriding) => overriding,
                Err(refusal) => return Some((pending, Decision::refused(refusal))),
            };
            in_task(ctx, pending, pass(client, config, key, person, overriding));
        }
        TicketAction::Fail => {
            let reason = reason.unwrap_or_default();
            in_task(ctx, pending, fail(client, config, key, person, reason));
        }
        TicketAction::Status => {
            let places = match ticket_places(ctx) {
                Ok(places) => places,
                Err(error) => return Some((pending, Decision::store_trouble("read the deploys", &error))),
            };
            let moving: Vec<TicketMove> =
                ctx.store.pending_jira_moves().unwrap_or_default().into_iter().filter(|m| m.key == key).collect();
            in_task(ctx, pending, status(client, config, key, places, moving));
        }
    }
    None
}

/// Whether a pass may happen now: inside the drag window, or outside it with a lead's
/// override, returned to record and announce.
fn pass_window(
    ctx: &Context,
    person: &Person,
    override_reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<Option<Override>, String> {
    if override_reason.is_some() && !person.has(Role::Lead) {
        return Err("Only a lead can use --override.".into());
    }
    let calendar = &ctx.config.calendar;
    match (check_drag_window(calendar, now), override_reason, calendar.window(now)) {
        (Ok(()), _, _) => Ok(None),
        (Err(_), Some(reason), WindowState::Closed { opens_at, .. }) => {
            Ok(Some(Override { reason, opens: calendar_time(calendar, opens_at) }))
        }
        (Err(_), Some(reason), WindowState::Open { .. }) => Ok(Some(Override { reason, opens: String::new() })),
        (Err(refusal), None, _) => Err(format!(
            "{} A lead can pass it now with `--override \"reason\"`; the reason is recorded and announced.",
            refusal.0
        )),
    }
}

/// Runs Jira work in a task; its answer is recorded and sent by the engine loop.
fn in_task(ctx: &Context, pending: WaitingCommand, work: impl Future<Output = Decided> + Send + 'static) {
    let Some(events) = ctx.jobs.reporter() else { return };
    tokio::spawn(async move {
        let (handled, announcement) = work.await;
        let _ =
            events.send(Report::Answered(Box::new(TaskAnswer { waiting: pending, decision: handled, announcement })));
    });
}

/// Dev Testing → Staging, if the ticket is there and `person` is its assignee or a lead.
async fn pass(
    client: Arc<JiraClient>,
    config: Arc<Config>,
    key: TicketKey,
    person: Person,
    overriding: Option<Override>,
) -> Decided {
    let columns = &config.jira.as_ref().expect("checked before the task").columns;
    let issue = match client.issue(&key.to_string()).await {
        Ok(issue) => issue,
        Err(error) => return (jira_trouble(&key, &error), None),
    };
    let assignee = issue.assignee.as_ref().map(|a| {
        let name = config.person_by_jira(&a.account_id).map_or(a.display_name.clone(), |p| p.name.clone());
        (a.account_id.clone(), name)
    });
    let assignee = assignee.as_ref().map(|(id, name)| (id.as_str(), name.as_str()));
    if let Err(refusal) = check_pass(&key, &issue.status, assignee, &person, &columns.dev_testing) {
        return (Decision::refused(refusal.0), None);
    }
    match client.move_if_in(&key.to_string(), &columns.dev_testing, &columns.staging).await {
        Ok(MoveOutcome::Moved { .. } | MoveOutcome::AlreadyThere) => {}
        Ok(MoveOutcome::LeftAlone { status }) => {
            return (Decision::refused(format!("{key} moved to {status} meanwhile, so Shipday left it there.")), None);
        }
        Err(error) => return (jira_trouble(&key, &error), None),
    }
    let text = format!(
        "✅ {key} {} passed dev testing: {} moved it from {} to {}.",
        issue.summary, person.name, columns.dev_testing, columns.staging
    );
    let mut decision = format!("accepted: moved {key} from {} to {}", columns.dev_testing, columns.staging);
    let announcement = overriding.map(|Override { reason, opens }| {
        decision.push_str(&format!("; OVERRIDE outside the drag window: {reason}"));
        let opens = if opens.is_empty() { String::new() } else { format!(" (it next opens {opens})") };
        Announcement::Text(format!(
            "🚨 @{{{}}} passed {key} to {} outside the ticket-drag window{opens}. Reason: {reason}",
            person.id, columns.staging
        ))
    });
    (Decision { reply: Reply::text(Visibility::Public, text), decision }, announcement)
}

/// A comment with who failed it and why; then back to `fail_to`, if configured, when it is in
/// Dev Testing.
async fn fail(client: Arc<JiraClient>, config: Arc<Config>, key: TicketKey, person: Person, reason: String) -> Decided {
    let columns = &config.jira.as_ref().expect("checked before the task").columns;
    let comment = format!("Failed dev testing, reported by {} with Shipday:\n{reason}", person.name);
    if let Err(error) = client.comment(&key.to_string(), &comment).await {
        return (jira_trouble(&key, &error), None);
    }
    let moved = match &columns.fail_to {
        None => String::new(),
        Some(back) => match client.move_if_in(&key.to_string(), &columns.dev_testing, back).await {
            Ok(MoveOutcome::Moved { .. } | MoveOutcome::AlreadyThere) => format!(" It moved back to {back}."),
            Ok(MoveOutcome::LeftAlone { status }) => {
                format!(" It is in {status}, not {}, so it stays there.", columns.dev_testing)
            }
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot move a failed ticket back");
                format!(" Shipday could not move it back to {back}: {error:#}")
            }
        },
    };
    let text = format!("❌ {key} failed dev testing ({}): {reason}. The comment is on the ticket.{moved}", person.name);
    let decision = format!("accepted: commented on {key} (failed: {reason}).{moved}");
    (Decision { reply: Reply::text(Visibility::Public, text), decision }, None)
}

/// The column, the assignee, where its code is, and any move on its way.
async fn status(
    client: Arc<JiraClient>,
    config: Arc<Config>,
    key: TicketKey,
    places: TicketPlaces,
    moving: Vec<TicketMove>,
) -> Decided {
    let issue = match client.issue(&key.to_string()).await {
        Ok(issue) => issue,
        Err(error) => return (jira_trouble(&key, &error), None),
    };
    let assignee = match &issue.assignee {
        Some(a) => match config.person_by_jira(&a.account_id) {
            Some(person) => person.name.clone(),
            None => format!("{} (not in Shipday's people)", a.display_name),
        },
        None => "nobody".to_owned(),
    };
    let mut lines = vec![format!("{key} {}", issue.summary), format!("Column: {}", issue.status)];
    lines.push(format!("Assignee: {assignee}"));
    let found = places.get(&key.to_string()).cloned().unwrap_or_default();
    let tz = config.calendar.timezone();
    for environment in &config.environments {
        let line = match found.iter().find(|(env, _)| *env == environment.name) {
            Some((_, record)) => format!(
                "{}: shipped there by deploy #{} (`{}` at {}, {})",
                environment.name,
                record.id,
                record.git_ref,
                record.sha.short(),
                record.finished_at.unwrap_or(record.started_at).with_timezone(&tz).format("%a %d %b %H:%M %Z")
            ),
            None => format!("{}: not shipped there by any Shipday deploy", environment.name),
        };
        lines.push(line);
    }
    for ticket_move in &moving {
        lines.push(format!(
            "On its way: {} ({}, {} attempt(s) so far)",
            ticket_move.describe(),
            ticket_move.reason,
            ticket_move.attempts
        ));
    }
    let reply = Reply::text(Visibility::Ephemeral, lines.join("\n"));
    (Decision { reply, decision: "answered".into() }, None)
}

/// A Jira failure as a reply: its words for the refusals a person can act on, a plain
/// "try again" when Jira is down, the logs for the rest.
fn jira_trouble(key: &TicketKey, error: &anyhow::Error) -> Decision {
    tracing::warn!(error = format!("{error:#}"), %key, "Jira call for /ticket failed");
    let text = match error.downcast_ref::<JiraError>() {
        Some(JiraError::NotFound { .. }) => {
            format!("Jira has no {key}, or Shipday's account cannot see it. Nothing was changed.")
        }
        Some(unavailable @ JiraError::Unavailable { .. }) => {
            format!("Jira is not answering right now ({unavailable}). Nothing was changed; try again in a minute.")
        }
        Some(JiraError::Unauthorized { .. }) => {
            "Jira refused Shipday's credentials: an operator has to check jira.email and jira.token. Nothing was changed."
                .to_owned()
        }
        Some(refused @ (JiraError::TransitionMissing { .. } | JiraError::Rejected { .. })) => {
            format!("{refused}. Nothing was changed; a Jira admin or the config (jira.columns) has to fix this.")
        }
        None => "Shipday could not talk to Jira. Nothing was changed; an operator can check its logs.".to_owned(),
    };
    Decision::refused(text)
}
