//! Plain-text rendering of replies and progress, for the console (and as the fallback text of
//! richer platforms).

use crate::engine::reply::{CalendarView, EnvironmentStatus, JiraView, ScheduleView, StatusReport};
use crate::engine::{ProgressUpdate, Reply, ReplyBody};
use crate::release::approvals::PromotionRequest;
use crate::release::calendar::WindowState;
pub use crate::release::calendar::firing_words;
use crate::release::deploy::{DeployEvent, DeployRecord, Drift, Observation, Outcome, StepResult, Trigger};
use crate::release::migrations::MigrationDebt;
use crate::release::plan::DeployPlan;
use crate::release::{age, duration_words};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Lines of a failing step's output shown with the failure.
const TAIL_LINES: usize = 12;

/// A reply as text. `tz` is the team's time zone.
pub fn reply(reply: &Reply, tz: Tz) -> String {
    match &reply.body {
        ReplyBody::Refused(text) => format!("✋ {text}"),
        ReplyBody::Text(text) => text.clone(),
        ReplyBody::Deploy(record) => deploy_started(record, tz),
        ReplyBody::DryRun(plan) => dry_run(plan),
        ReplyBody::Status(report) => status(report, tz),
        ReplyBody::History(records) => history(records, tz),
        ReplyBody::Schedule(view) => schedule(view),
    }
}

fn schedule(view: &ScheduleView) -> String {
    let mut out: String = view.notices.iter().map(|line| format!("{line}\n")).collect();
    if view.entries.is_empty() {
        out.push_str("Nothing is scheduled in that time.");
        return out;
    }
    out.push_str(&format!("Coming up (times in {}):\n", view.timezone));
    for (i, firing) in view.entries.iter().enumerate() {
        let mark = view.marks.get(&i).map(|m| format!("  ({m})")).unwrap_or_default();
        out.push_str(&format!("  {}  {}{mark}\n", when(firing.at, view.timezone), firing_words(firing)));
    }
    out.trim_end().to_owned()
}

/// A personal branch's migrations still applied on an environment.
pub fn migration_debt_line(debt: &MigrationDebt, env: &str) -> String {
    let names: Vec<String> = debt.migrations.added.iter().map(ToString::to_string).collect();
    format!(
        "{} (by {}, from `{}`); undone before {env} gets other code",
        names.join(", "),
        debt.owner_name,
        debt.git_ref
    )
}

/// The drag window and the next slots, one line each.
pub fn calendar_lines(view: &CalendarView, now: DateTime<Utc>) -> String {
    let tz = view.timezone;
    let mut out = match view.window {
        WindowState::Open { closes_at, .. } => {
            format!("Ticket-drag window: OPEN until {} ({} left)\n", when(closes_at, tz), age(closes_at, now))
        }
        WindowState::Closed { opens_at, closes_at } => format!(
            "Ticket-drag window: closed; opens {} (in {}), until {}\n",
            when(opens_at, tz),
            age(opens_at, now),
            when(closes_at, tz)
        ),
    };
    for (env, next) in &view.next_slots {
        if let Some(next) = next {
            out.push_str(&format!("Next {env} slot: {} (in {})\n", when(*next, tz), age(*next, now)));
        }
    }
    out.trim_end().to_owned()
}

fn deploy_started(record: &DeployRecord, tz: Tz) -> String {
    let mut out = deploy_started_line(record);
    if let Some(claim) = claim_line(record, tz) {
        out.push(' ');
        out.push_str(&claim);
    }
    if let Some(migrations) = &record.migrations {
        out.push(' ');
        out.push_str(&migrations.summary(&record.env));
    }
    if let Some(links) = links_line(record) {
        out.push('\n');
        out.push_str(&links);
    }
    out
}

/// A deploy's links as plain text (`commit a1b2c3d4 https://…`), for terminals: `None` when
/// there are none.
pub fn links_line(record: &DeployRecord) -> Option<String> {
    plain_links(&record.links)
}

/// Links as plain text (`commit a1b2c3d4 https://…`): `None` when there are none.
pub fn plain_links(links: &crate::release::deploy::DeployLinks) -> Option<String> {
    let links = links.labelled();
    (!links.is_empty()).then(|| {
        let parts: Vec<String> =
            links.iter().map(|(label, link)| format!("{label} {} {}", link.text, link.url)).collect();
        format!("Links: {}", parts.join(" · "))
    })
}

/// "dev is now yours until `/release dev` or 17:30 EAT", when the deploy claimed its
/// environment: the requester learns both ways the claim ends. `tz` is the team's zone.
pub fn claim_line(record: &DeployRecord, tz: Tz) -> Option<String> {
    let until = record.claimed_until?;
    let local = until.with_timezone(&tz);
    let same_day = local.date_naive() == record.started_at.with_timezone(&tz).date_naive();
    let at = if same_day { local.format("%H:%M %Z") } else { local.format("%a %d %b %H:%M %Z") };
    let env = &record.env;
    Some(format!("{env} is now yours until `/release {env}` or {at}."))
}

fn deploy_started_line(record: &DeployRecord) -> String {
    let verb = match record.trigger {
        Trigger::Command => "Deploying",
        Trigger::Release => "Releasing: redeploying",
        Trigger::Scheduled => "Scheduled deploy of",
        Trigger::Rollback => "Rolling back: redeploying",
        Trigger::Promotion => "Promotion: deploying",
        Trigger::Merge => "Merged: deploying",
    };
    format!(
        "🚀 {verb} `{}` to {} at {} (deploy #{}, requested by {}).",
        record.git_ref,
        record.env,
        record.sha.short(),
        record.id,
        record.requested_by_name
    )
}

fn dry_run(plan: &DeployPlan) -> String {
    let mut out =
        format!("Dry run: `{}` on {} resolves to {}. These steps would run:\n", plan.git_ref, plan.env, plan.sha);
    for (i, step) in plan.steps.iter().enumerate() {
        out.push_str(&format!("  {}. {}: {}  (limit {}s)\n", i + 1, step.name, step.command, step.timeout.as_secs()));
    }
    for line in dry_run_ending(plan) {
        out.push_str(&format!("  {line}\n"));
    }
    out.truncate(out.trim_end().len());
    if let Some(migrations) = &plan.migrations {
        out.push('\n');
        out.push_str(&migrations.summary(&plan.env));
        if !migrations.conflicts.is_empty() {
            out.push_str(&format!(
                " ⚠️ Conflicting migrations in {} (deploying needs --force).",
                migrations.conflicts.join(", ")
            ));
        }
    }
    out
}

/// How a dry run ends, one line each: the HEAD check, the health check, that nothing
/// changed, and whether the real deploy would be refused now (and why).
pub fn dry_run_ending(plan: &DeployPlan) -> Vec<String> {
    let mut lines = vec!["then HEAD is checked against the commit.".to_owned()];
    if let Some((url, limit)) = &plan.health {
        lines.push(format!("then the health check: {url} must answer 2xx within {}s.", limit.as_secs()));
    }
    lines.push("Nothing was changed.".into());
    if let Some(refusal) = &plan.would_refuse {
        lines.push(format!("⚠️ A real deploy would be refused now: {refusal}"));
    }
    lines
}

/// Seconds with one decimal.
fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn when(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%a %d %b %H:%M %Z").to_string()
}

/// One line about how a deploy ended (or stands).
pub fn outcome_line(record: &DeployRecord, now: DateTime<Utc>) -> String {
    let head = format!("#{} `{}` at {} by {}", record.id, record.git_ref, record.sha.short(), record.requested_by_name);
    match &record.outcome {
        Outcome::Running => format!("⏳ {head}: running for {}", duration_words(record.elapsed_ms(now) / 1000)),
        Outcome::Succeeded => format!("✅ {head}, {} ago", age(now, record.finished_at.unwrap_or(record.started_at))),
        Outcome::Failed { step, reason, state_unknown } => {
            let unknown = if *state_unknown {
                " The host's state is unknown: `/status ENV --live` reads HEAD, a redeploy settles it."
            } else {
                ""
            };
            format!("❌ {head} failed at step \"{step}\" ({reason}), {} ago.{unknown}", age(now, record.started_at))
        }
        Outcome::Interrupted => format!(
            "⚠️ {head} was interrupted when Shipday stopped, {} ago. The host's state is unknown: redeploy.",
            age(now, record.started_at)
        ),
        Outcome::Cancelled { .. } => {
            format!("🛑 {head} was cancelled, {} ago. {}", age(now, record.started_at), cancelled_words(record))
        }
    }
}

/// A commit id as [`crate::release::gitref::Sha::short`] shows it (8 characters).
fn short(sha: &str) -> String {
    sha.chars().take(8).collect()
}

/// What a cancelled deploy left on the host: who cancelled it, the step it stopped (or kept
/// from starting), the steps that ran, and HEAD as read at its end.
pub fn cancelled_words(record: &DeployRecord) -> String {
    let Outcome::Cancelled { by, step, stopped_running, head } = &record.outcome else { return String::new() };
    let stopped = if *stopped_running {
        format!("stopped \"{step}\" on the host (its whole process group)")
    } else {
        format!("stopped it before \"{step}\" started")
    };
    let ran = record.completed_steps();
    let ran = if ran.is_empty() {
        "no step ran to the end".to_owned()
    } else {
        format!("steps that ran: {}", ran.join(", "))
    };
    let head = match head {
        Some(Ok(sha)) if *sha == record.sha.as_str() => {
            format!("host HEAD now: {} (this deploy's commit, not verified)", short(sha))
        }
        Some(Ok(sha)) => format!("host HEAD now: {} (not this deploy's commit)", short(sha)),
        Some(Err(error)) => format!("host HEAD could not be read: {error}"),
        None => "host HEAD was not read: `/status ENV --live` reads it".to_owned(),
    };
    let undo = if step.starts_with("undo ") || ran.contains("undo ") {
        " Migrations this deploy was undoing stay recorded as applied: the next deploy undoes them first."
    } else {
        ""
    };
    format!("{by} {stopped}; {ran}; {head}. No later step ran: redeploy to settle what runs.{undo}")
}

fn status(report: &StatusReport, tz: Tz) -> String {
    let mut parts: Vec<String> =
        report.environments.iter().map(|env| environment_status(env, report.now, tz)).collect();
    parts.push(calendar_lines(&report.calendar, report.now));
    if let Some(jira) = &report.jira {
        parts.extend(jira_lines(jira, report.now, tz));
    }
    parts.extend(report.protection.clone());
    parts.join("\n")
}

/// Jira in `/status`: moves on their way, moves given up, and drift in Staging.
fn jira_lines(jira: &JiraView, now: DateTime<Utc>, tz: Tz) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(next) = jira.pending.first() {
        let retrying = next
            .last_error
            .as_ref()
            .map(|e| format!(", retrying after {} failed attempt(s): {e}", next.attempts))
            .unwrap_or_default();
        lines.push(format!(
            "Jira: {} ticket move(s) on their way; next: {} ({}{retrying})",
            jira.pending.len(),
            next.describe(),
            next.reason
        ));
    }
    for given_up in &jira.given_up {
        if let crate::release::ticket_flow::MoveState::GivenUp { why, at } = &given_up.state {
            lines.push(format!(
                "⚠️ Jira: Shipday gave up moving {} ({}), {} ago: {why}. Move it by hand.",
                given_up.describe(),
                given_up.reason,
                age(now, *at)
            ));
        }
    }
    if let Some(view) = &jira.staging
        && !view.check.drift.is_empty()
    {
        lines.push(format!(
            "⚠️ Jira drift at the window's close ({}): in Staging, but Shipday never deployed their code to {} or {}: {}",
            when(view.at, tz),
            view.dev,
            view.staging,
            view.check.drift.join(", ")
        ));
    }
    lines
}

fn environment_status(env: &EnvironmentStatus, now: DateTime<Utc>, tz: Tz) -> String {
    let mut out = format!("{} (branch {})\n", env.name, env.branch);
    let label = if host_changed_since_live(env) { "last successful deploy" } else { "live" };
    match &env.live {
        Some(live) => out.push_str(&format!(
            "  {label}: `{}` at {} by {}, {} ({} ago)\n",
            live.git_ref,
            live.sha.short(),
            live.requested_by_name,
            when(live.finished_at.unwrap_or(live.started_at), tz),
            age(now, live.finished_at.unwrap_or(live.started_at))
        )),
        None => out.push_str("  live: nothing deployed by Shipday yet\n"),
    }
    if let Some(active) = &env.active {
        out.push_str(&format!(
            "  deploying: `{}` by {} (#{}, {} so far)\n",
            active.git_ref,
            active.who_name,
            active.deploy_id,
            age(now, active.since)
        ));
    }
    if let Some(latest) = &env.latest
        && env.active.as_ref().is_none_or(|a| a.deploy_id != latest.id)
    {
        out.push_str(&format!("  latest: {}\n", outcome_line(latest, now)));
    }
    if let Some(failure) = &env.last_failure {
        out.push_str(&format!("  last failure: {}\n", outcome_line(failure, now)));
    }
    if let Some(debt) = &env.migration_debt {
        out.push_str(&format!("  branch-only migrations applied: {}\n", migration_debt_line(debt, &env.name)));
    }
    if let Some(line) = host_line(env, now) {
        out.push_str(&format!("  {line}\n"));
    }
    if let Some(line) = interrupted_line(env) {
        out.push_str(&format!("  {line}\n"));
    }
    if let Some(freeze) = &env.freeze {
        out.push_str(&format!("  🧊 {freeze}\n"));
    }
    if let Some(skip) = &env.skip {
        out.push_str(&format!("  ⏭️ {skip}\n"));
    }
    if let Some(line) = waiting_line(env, now) {
        out.push_str(&format!("  {line}\n"));
    }
    match &env.hold {
        Some(hold) => out.push_str(&format!("  hold: {}\n", hold.describe(&env.name, now))),
        None => out.push_str("  hold: free\n"),
    }
    out.trim_end().to_owned()
}

/// What the last reading of the host's HEAD says about drift.
/// The newest deploy, when it failed or was interrupted after changing what may run, and the
/// reading of the host's HEAD was taken at its end (or after it).
fn unsuccessful_latest(env: &EnvironmentStatus) -> Option<&DeployRecord> {
    let observed = env.observed.as_ref()?;
    env.latest.as_ref().filter(|l| {
        matches!(l.outcome, Outcome::Failed { .. } | Outcome::Interrupted | Outcome::Cancelled { .. })
            && observed.at >= l.started_at
    })
}

/// Whether the host may run something else than the last successful deploy: a later deploy
/// failed or was interrupted, and HEAD read at its end differs.
fn host_changed_since_live(env: &EnvironmentStatus) -> bool {
    match (unsuccessful_latest(env), env.observed.as_ref().map(|o| &o.head)) {
        (Some(_), Some(Ok(head))) => env.live.as_ref().is_none_or(|live| live.sha != *head),
        (Some(_), _) => true,
        _ => false,
    }
}

/// What the host runs now, in one line: HEAD as last read, labelled with when it was read
/// (at the end of a failed or interrupted deploy, or otherwise compared with the last
/// successful deploy).
pub fn host_line(env: &EnvironmentStatus, now: DateTime<Utc>) -> Option<String> {
    let observed = env.observed.as_ref()?;
    let Some(latest) = unsuccessful_latest(env) else {
        return Some(observation_line(observed, env.live.as_ref(), now));
    };
    let what = match latest.outcome {
        Outcome::Interrupted => "interrupted",
        Outcome::Cancelled { .. } => "cancelled",
        _ => "failed",
    };
    let when =
        format!("read {} ago, after {what} deploy #{} of `{}`", age(now, observed.at), latest.id, latest.git_ref);
    Some(match &observed.head {
        Ok(head) if env.live.as_ref().is_some_and(|l| l.sha == *head) => {
            format!("host HEAD: {} ({when}): still the last successful deploy's commit", head.short())
        }
        Ok(head) if *head == latest.sha => format!(
            "⚠️ host runs: {} ({when}): that deploy's commit, checked out but not verified; the last successful deploy is not what runs",
            head.short()
        ),
        Ok(head) => format!("⚠️ host runs: {} ({when}); the last successful deploy is not what runs", head.short()),
        Err(error) => format!("⚠️ host HEAD could not be read ({when}): {error}"),
    })
}

/// `/status`'s line of who waits for the environment to be free, if anyone does.
pub fn waiting_line(env: &EnvironmentStatus, now: DateTime<Utc>) -> Option<String> {
    if env.waiting.is_empty() {
        return None;
    }
    let who: Vec<String> = env.waiting.iter().map(|w| w.describe(now)).collect();
    Some(format!("⏳ waiting for {} to be free: {}", env.name, who.join("; ")))
}

/// `/status`'s one line about an interrupted environment, if it is one.
pub fn interrupted_line(env: &EnvironmentStatus) -> Option<String> {
    let active = env.interrupted.as_ref()?;
    Some(format!(
        "⚠️ interrupted: deploy #{} of `{}` (by {}) was cut off by a restart and one of its steps may still run on the host; the next deploy first waits for the host's deploy lock to make sure none does (a lead can `/unlock {}` to clear this).",
        active.deploy_id, active.git_ref, active.who_name, env.name
    ))
}

pub fn observation_line(observed: &Observation, live: Option<&DeployRecord>, now: DateTime<Utc>) -> String {
    let when = format!("read {} ago", age(now, observed.at));
    match observed.drift(live) {
        Drift::None => format!("host HEAD: {} ({when}), as deployed", live.map(|l| l.sha.short()).unwrap_or("?")),
        Drift::Differs { deployed: Some(deployed), found } => format!(
            "⚠️ drift: host HEAD is {} ({when}) but Shipday last deployed {}. Someone changed it by hand: redeploy to be sure what runs.",
            found.short(),
            deployed.short()
        ),
        Drift::Differs { deployed: None, found } => {
            format!("host HEAD: {} ({when}); Shipday has not deployed here yet", found.short())
        }
        Drift::Unreadable(error) => format!("⚠️ host HEAD could not be read ({when}): {error}"),
    }
}

fn history(records: &[DeployRecord], tz: Tz) -> String {
    if records.is_empty() {
        return "No deploys recorded yet.".into();
    }
    records
        .iter()
        .map(|r| {
            let result = match &r.outcome {
                Outcome::Running => "running".to_owned(),
                Outcome::Succeeded => {
                    format!("succeeded in {}", seconds(r.elapsed_ms(r.started_at)))
                }
                Outcome::Failed { step, reason, .. } => format!("failed at \"{step}\" ({reason})"),
                Outcome::Interrupted => "interrupted".to_owned(),
                Outcome::Cancelled { by, step, .. } => format!("cancelled by {by} at \"{step}\""),
            };
            let shipped =
                if r.tickets.is_empty() { String::new() } else { format!("; shipped {}", r.tickets.join(", ")) };
            format!(
                "#{} {} `{}` at {} by {}, {}: {result}{shipped}",
                r.id,
                r.env,
                r.git_ref,
                r.sha.short(),
                r.requested_by_name,
                when(r.started_at, tz)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One progress event as a line (or a few), for a terminal that prints as things happen.
pub fn progress(update: &ProgressUpdate, now: DateTime<Utc>) -> Option<String> {
    let record = &update.record;
    let tag = format!("[#{} {}]", record.id, record.env);
    match update.event {
        DeployEvent::Accepted => None,
        DeployEvent::StepStarted { index } => Some(format!("  ⏳ {tag} {}…", record.steps.get(index)?.name)),
        DeployEvent::StepFinished { index } => {
            let step = record.steps.get(index)?;
            let took = step.duration_ms.map(seconds).unwrap_or_default();
            match &step.result {
                Some(StepResult::Ok) => Some(format!("  ✅ {tag} {} ({took})", step.name)),
                Some(result) => {
                    let tail: Vec<&str> = step.tail.lines().collect();
                    let shown = tail
                        .iter()
                        .skip(tail.len().saturating_sub(TAIL_LINES))
                        .map(|l| format!("     │ {l}"))
                        .collect::<Vec<_>>()
                        .join("\n");
                    let mut line = format!("  ❌ {tag} {}: {} ({took})", step.name, result.describe());
                    if !shown.is_empty() {
                        line.push('\n');
                        line.push_str(&shown);
                    }
                    Some(line)
                }
                None => None,
            }
        }
        DeployEvent::Finished => Some(match &record.outcome {
            Outcome::Succeeded => format!(
                "✅ Deploy #{} of `{}` to {} succeeded: HEAD is {} ({}).",
                record.id,
                record.git_ref,
                record.env,
                record.sha.short(),
                seconds(record.elapsed_ms(now))
            ),
            _ => format!("Deploy {}", outcome_line(record, now)),
        })
        .map(|line| match links_line(record) {
            Some(links) => format!("{line}\n{links}"),
            None => line,
        }),
    }
}

/// What the bot says at start-up about deploys a crash interrupted.
pub fn interrupted_notice(records: &[DeployRecord]) -> Option<String> {
    if records.is_empty() {
        return None;
    }
    let lines: Vec<String> = records
        .iter()
        .map(|r| {
            let at = r.steps.last().map(|s| format!(" during step \"{}\"", s.name)).unwrap_or_default();
            format!(
                "⚠️ Shipday stopped while deploy #{} of `{}` to {} (by {}) was running{at}. It is marked interrupted and {}'s state is unknown: check `/status {}` and redeploy.",
                r.id, r.git_ref, r.env, r.requested_by_name, r.env, r.env
            )
        })
        .collect();
    Some(lines.join("\n"))
}

/// A promotion request as the team sees it: what, which commit, the notes, and the votes.
pub fn promotion(request: &PromotionRequest, tz: Tz) -> String {
    promotion_linked(request, tz, plain_links(&request.links).as_deref(), &|text: &str| text.to_owned())
}

/// A promotion request with `links` (already in the platform's link syntax) on the line after
/// its headline, before the notes, so a long message's clipping never drops them; `escape`
/// applies the platform's escaping to everything else.
pub fn promotion_linked(
    request: &PromotionRequest,
    tz: Tz,
    links: Option<&str>,
    escape: &dyn Fn(&str) -> String,
) -> String {
    let plain = promotion_text(request, tz);
    match (links, plain.split_once('\n')) {
        (Some(links), Some((headline, rest))) => {
            format!("{}\n{links}\n{}", escape(headline), escape(rest))
        }
        (Some(links), None) => format!("{}\n{links}", escape(&plain)),
        (None, _) => escape(&plain),
    }
}

fn promotion_text(request: &PromotionRequest, tz: Tz) -> String {
    let target =
        request.target_sha.as_ref().map(|s| format!(" ({} runs {})", request.to, s.short())).unwrap_or_default();
    let mut out = format!(
        "📦 Promotion #{}: {} → {} at {}{target}, requested by {} ({}).\n",
        request.id,
        request.from,
        request.to,
        request.sha.short(),
        request.requester_name,
        when(request.created_at, tz)
    );
    if let Some(reason) = &request.emergency {
        out.push_str(&format!("🚨 Emergency: {reason}\n"));
    }
    if !request.notes.trim().is_empty() {
        out.push_str(request.notes.trim_end());
        out.push('\n');
    }
    out.push_str(&request.tally(tz));
    out
}
