//! Jira at work in the engine: the tickets a finished deploy shipped (read on the host, recorded
//! on the deploy, and their moves queued for the outbox), the ticket lists the drag-window
//! reminders get, and what `/status` shows about Jira.
//!
//! Jira itself is only ever called from tasks and from the outbox worker, never from the
//! engine loop, so a slow or absent Jira delays nothing else.

use super::reply::{JiraView, StagingView};
use super::*;
use crate::clients::jira::{JiraIssue, jql_quote};
use crate::config::Config;
use crate::jira_outbox::assignee_mention;
use crate::release::calendar::ReminderEvent;
use crate::release::deploy::DeployRecord;
use crate::release::ticket_flow::{
    MoveState, TicketMove, TicketScan, check_staging, parse_scan, scan_base, ships_tickets, where_tickets_are,
};
use crate::release::tickets::{TicketKey, shipped_keys};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;

/// How many of an environment's deploys are read to find where a ticket's code is.
const LOOK_BACK: usize = 200;

/// How long a given-up move stays in `/status`.
const GIVEN_UP_SHOWN_DAYS: i64 = 7;

/// Where ticket keys were found: ticket → each environment with the newest deploy there that
/// shipped it.
pub(crate) type TicketPlaces = BTreeMap<String, Vec<(String, DeployRecord)>>;

/// Called as a deploy finishes: a successful deploy that is not a personal branch gets its
/// commits read for ticket keys. The scan is recorded first (flushed with the deploy), so
/// a restart before it is read only delays it.
pub(crate) fn queue_ticket_scan(ctx: &Context, record: &DeployRecord) {
    if ctx.jira.is_none() {
        return;
    }
    let Some(environment) = ctx.config.environment(&record.env) else { return };
    if !ships_tickets(environment, record) {
        return;
    }
    let found = ctx.store.history(Some(&record.env), LOOK_BACK).and_then(|history| {
        let observed = ctx.store.observation(&record.env)?;
        Ok(scan_base(environment, record, &history, observed.as_ref()))
    });
    let base = match found {
        Ok(Some(base)) => base,
        Ok(None) => {
            tracing::info!(deploy = record.id, env = %record.env, "no earlier commit to compare with: no tickets read");
            return;
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot read the deploys before this one");
            return;
        }
    };
    let scan = TicketScan { deploy_id: record.id, env: record.env.clone(), base, head: record.sha.clone() };
    if let Err(error) = ctx.store.put_ticket_scan(&scan) {
        tracing::error!(error = format!("{error:#}"), "cannot record a ticket scan");
        return;
    }
    start_ticket_scan(ctx, scan);
}

/// At start-up: reads the commits of deploys whose tickets were not read before a restart.
pub(crate) fn resume_ticket_scans(ctx: &Context) {
    if ctx.jira.is_none() {
        return;
    }
    let scans = match ctx.store.ticket_scans() {
        Ok(scans) => scans,
        Err(error) => return tracing::error!(error = format!("{error:#}"), "cannot read ticket scans"),
    };
    for scan in scans {
        if ctx.config.environment(&scan.env).is_some() {
            start_ticket_scan(ctx, scan);
        } else if let Err(error) = ctx.store.remove_ticket_scan(scan.deploy_id) {
            // The environment left the config: its commits can no longer be read.
            tracing::error!(error = format!("{error:#}"), "cannot drop a ticket scan");
        }
    }
}

/// Reads `git log base..head` on the environment's host in a task, and reports the keys.
fn start_ticket_scan(ctx: &Context, scan: TicketScan) {
    let (Some(jira), Some(environment)) = (&ctx.config.jira, ctx.config.environment(&scan.env)) else {
        return;
    };
    let Some(transport) = ctx.transports.get(&scan.env).cloned() else { return };
    let Some(events) = ctx.jobs.reporter() else { return };
    let projects = jira.projects.clone();
    let script = scan.script(environment);
    let redactor = ctx.redactor.clone();
    // Merged pull requests' branch names and titles count for the commits they merged.
    let pulls = ctx.store.merged_pulls().unwrap_or_else(|error| {
        tracing::error!(error = format!("{error:#}"), "cannot read merged pull requests; reading commit messages only");
        Vec::new()
    });
    tokio::spawn(async move {
        let result = match run_script(transport.as_ref(), &scan.env, &script, Duration::from_secs(60), 1 << 20).await {
            Ok(ran) if ran.result.is_ok() => Ok(shipped_keys(&projects, &parse_scan(&ran.output), &pulls)),
            Ok(ran) => Err(format!("git log: {}: {}", ran.result.describe(), redactor.redact(ran.output.trim()))),
            Err(error) => Err(error),
        };
        let _ = events.send(Report::TicketsFound { scan, result });
    });
}

/// A deploy's tickets are known: recorded on the deploy, and the configured move queued for
/// each, in one flush; then the outbox is woken.
pub(crate) async fn tickets_found(ctx: &mut Context, scan: TicketScan, result: Result<Vec<TicketKey>, String>) {
    let keys = match result {
        Ok(keys) => keys,
        Err(why) => {
            tracing::warn!(deploy = scan.deploy_id, env = %scan.env, %why, "cannot read the commits a deploy shipped; retried at the next start");
            return;
        }
    };
    tracing::info!(deploy = scan.deploy_id, env = %scan.env, tickets = ?keys.iter().map(ToString::to_string).collect::<Vec<_>>(), "tickets shipped");
    if let Err(error) = queue_moves(ctx, &scan, &keys) {
        tracing::error!(error = format!("{error:#}"), "cannot queue ticket moves");
        return;
    }
    if let Err(error) = ctx.store.flush().await {
        tracing::error!(error = format!("{error:#}"), "cannot flush ticket moves");
        return;
    }
    if let Some(outbox) = &ctx.outbox {
        outbox.wake();
    }
}

fn queue_moves(ctx: &Context, scan: &TicketScan, keys: &[TicketKey]) -> anyhow::Result<()> {
    let tickets: Vec<String> = keys.iter().map(ToString::to_string).collect();
    ctx.store.set_deploy_tickets(scan.deploy_id, &tickets)?;
    let rule = ctx
        .config
        .jira
        .as_ref()
        .and_then(|jira| jira.deploy_moves(&ctx.config.environment_names()).get(&scan.env).cloned());
    if let Some(rule) = rule {
        let record = ctx.store.deploy(scan.deploy_id)?;
        let reason = match &record {
            Some(record) => format!("deploy #{} of `{}` to {}", record.id, record.git_ref, record.env),
            None => format!("deploy #{} to {}", scan.deploy_id, scan.env),
        };
        // The first environment is where developers test their tickets.
        let is_dev = ctx.config.environments.first().is_some_and(|e| e.name == scan.env);
        let now = ctx.clock.now();
        for key in keys {
            let id = ctx.store.next_jira_move_id()?;
            let mut ticket_move =
                TicketMove::new(id, key.clone(), rule.from.clone(), rule.to.clone(), reason.clone(), now);
            ticket_move.deploy_id = Some(scan.deploy_id);
            ticket_move.env = Some(scan.env.clone());
            ticket_move.mention_assignee = is_dev;
            ctx.store.put_jira_move(&ticket_move)?;
        }
    }
    ctx.store.remove_ticket_scan(scan.deploy_id)
}

/// Where Shipday's deploy records say each ticket's code is.
pub(crate) fn ticket_places(ctx: &Context) -> anyhow::Result<TicketPlaces> {
    let mut history = Vec::new();
    for environment in &ctx.config.environments {
        history.push((environment.name.clone(), ctx.store.history(Some(&environment.name), LOOK_BACK)?));
    }
    Ok(where_tickets_are(&history))
}

/// The drag-window reminders get ticket lists: at (or before) the opening and before the
/// closing, who has what in Dev Testing; at the closing, what is in Staging and whether its
/// code is there. Searched in a task and announced when Jira answers.
pub(crate) fn list_tickets_for_reminder(
    ctx: &Context,
    event: &ReminderEvent,
    offset_minutes: i64,
    fired: DateTime<Utc>,
) {
    if ctx.jira.is_none() {
        return;
    }
    match event {
        ReminderEvent::WindowOpens => announce_dev_testing(ctx, false),
        ReminderEvent::WindowCloses if offset_minutes < 0 => announce_dev_testing(ctx, true),
        ReminderEvent::WindowCloses => announce_staging_check(ctx, fired),
        ReminderEvent::Slot { .. } => {}
    }
}

/// Lists each person's tickets in Dev Testing, mentioning them.
fn announce_dev_testing(ctx: &Context, closing: bool) {
    let (Some(jira), Some(client)) = (&ctx.config.jira, ctx.jira.clone()) else { return };
    let column = jira.columns.dev_testing.clone();
    let jql = in_column(&jira.projects, &column);
    let (config, announcements) = (ctx.config.clone(), ctx.announcements.clone());
    tokio::spawn(async move {
        let text = match client.search(&jql, &[]).await {
            Ok(issues) => dev_testing_list(&config, &column, &issues, closing),
            Err(error) => search_failed(&column, &error),
        };
        let _ = announcements.send(Announcement::Text(text));
    });
}

/// At the window's close: the tickets in Staging, sorted by where their code is, drift
/// flagged. The list is kept for `/status`.
fn announce_staging_check(ctx: &Context, fired: DateTime<Utc>) {
    let (Some(jira), Some(client)) = (&ctx.config.jira, ctx.jira.clone()) else { return };
    let (Some(dev), Some(staging)) = (ctx.config.environments.first(), ctx.config.environments.get(1)) else {
        return;
    };
    let (dev, staging) = (dev.name.clone(), staging.name.clone());
    let places = match ticket_places(ctx) {
        Ok(places) => places,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot read deploys");
            return;
        }
    };
    let column = jira.columns.staging.clone();
    let jql = in_column(&jira.projects, &column);
    let (store, announcements) = (ctx.store.clone(), ctx.announcements.clone());
    tokio::spawn(async move {
        let text = match client.search(&jql, &[]).await {
            Ok(issues) => {
                let tickets: Vec<String> = issues.into_iter().map(|issue| issue.key).collect();
                let kept = match store.set_staging_snapshot(fired, &tickets) {
                    Ok(()) => store.flush().await,
                    Err(e) => Err(e),
                };
                if let Err(error) = kept {
                    tracing::error!(error = format!("{error:#}"), "cannot keep the Staging tickets for /status");
                }
                staging_summary(&column, &tickets, &places, &dev, &staging)
            }
            Err(error) => search_failed(&column, &error),
        };
        let _ = announcements.send(Announcement::Text(text));
    });
}

/// What `/status` shows about Jira: moves still to deliver, moves given up lately, and the
/// Staging tickets of the last window's close checked against the deploys known now.
pub(crate) fn jira_view(ctx: &Context, now: DateTime<Utc>) -> anyhow::Result<Option<JiraView>> {
    if ctx.config.jira.is_none() {
        return Ok(None);
    }
    let pending = ctx.store.pending_jira_moves()?;
    let since = now - chrono::Duration::days(GIVEN_UP_SHOWN_DAYS);
    let given_up = ctx
        .store
        .recent_jira_moves(LOOK_BACK)?
        .into_iter()
        .filter(|m| matches!(&m.state, MoveState::GivenUp { at, .. } if *at >= since))
        .collect();
    let staging = match (ctx.store.staging_snapshot()?, ctx.config.environments.first(), ctx.config.environments.get(1))
    {
        (Some((at, tickets)), Some(dev), Some(staging)) => Some(StagingView {
            at,
            dev: dev.name.clone(),
            staging: staging.name.clone(),
            check: check_staging(&tickets, &ticket_places(ctx)?, &dev.name, &staging.name),
        }),
        _ => None,
    };
    Ok(Some(JiraView { pending, given_up, staging }))
}

/// The Dev Testing list: each person's tickets on one line, mentioning them.
fn dev_testing_list(config: &Config, column: &str, issues: &[JiraIssue], closing: bool) -> String {
    if issues.is_empty() {
        return if closing {
            format!("✅ Nothing is left in {column}.")
        } else {
            format!("🧪 Nothing is waiting in {column}.")
        };
    }
    let mut by_person: Vec<(String, Vec<String>)> = Vec::new();
    for issue in issues {
        let who = match &issue.assignee {
            Some(assignee) => assignee_mention(config, assignee),
            None => "not assigned".to_owned(),
        };
        let line = format!("{} {}", issue.key, issue.summary);
        match by_person.iter_mut().find(|(w, _)| *w == who) {
            Some((_, lines)) => lines.push(line),
            None => by_person.push((who, vec![line])),
        }
    }
    let head = if closing {
        format!("⏳ Still untested in {column} (`/ticket KEY pass` before the window closes):")
    } else {
        format!("🧪 In {column}, to test on dev and pass in the window with `/ticket KEY pass`:")
    };
    let lines: Vec<String> =
        by_person.into_iter().map(|(who, tickets)| format!("• {who}: {}", tickets.join("; "))).collect();
    format!("{head}\n{}", lines.join("\n"))
}

/// The closing summary: the Staging tickets sorted by where their code is, drift flagged.
fn staging_summary(column: &str, tickets: &[String], places: &TicketPlaces, dev: &str, staging: &str) -> String {
    if tickets.is_empty() {
        return format!("🔎 Nothing is in {column} at the window's close.");
    }
    let check = check_staging(tickets, places, dev, staging);
    let mut lines = vec![format!("🔎 At the window's close, {} ticket(s) are in {column}.", tickets.len())];
    if !check.on_staging.is_empty() {
        lines.push(format!("• Their code is on {staging}: {}", check.on_staging.join(", ")));
    }
    if !check.waiting.is_empty() {
        lines.push(format!(
            "• Going out with {staging}'s next deploy (their code is on {dev}): {}",
            check.waiting.join(", ")
        ));
    }
    if !check.drift.is_empty() {
        lines.push(format!(
            "• ⚠️ Drift: in {column}, but Shipday never deployed their code to {dev} or {staging} (were they tested?): {}",
            check.drift.join(", ")
        ));
    }
    lines.join("\n")
}

/// JQL for the configured projects' tickets in `column`, every value quoted.
fn in_column(projects: &[String], column: &str) -> String {
    let projects: Vec<String> = projects.iter().map(|p| jql_quote(p)).collect();
    format!("project in ({}) AND status = {} ORDER BY key ASC", projects.join(", "), jql_quote(column))
}

fn search_failed(column: &str, error: &anyhow::Error) -> String {
    tracing::warn!(error = format!("{error:#}"), "Jira search failed");
    format!("⚠️ Shipday could not list the tickets in {column}: {error:#}")
}
