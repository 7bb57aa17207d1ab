//! Block Kit rendering of replies and deploy progress. Every message also carries the plain
//! text from [`crate::chat::text`] as its `text`, which Slack shows in notifications and in
//! clients that cannot draw blocks.
//!
//! Everything shown is escaped for Slack's mrkdwn (`&`, `<`, `>`), so a ref or a lock reason
//! cannot become a `<!channel>` ping or a link.

use crate::chat::text;
use crate::command::spec::MinRole;
use crate::command::{CommandBook, CommandNames};
use crate::engine::reply::{EnvironmentStatus, StatusReport};
use crate::engine::{Reply, ReplyBody};
use crate::release::deploy::{DeployRecord, Outcome, StepResult, Trigger};
use crate::release::plan::DeployPlan;
use crate::release::{age, duration_words};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use slack_morphism::prelude::*;

/// Slack's limit for a section's text.
const SECTION_MAX: usize = 3000;
/// Slack's limit for a header.
const HEADER_MAX: usize = 150;
/// Slack truncates `text` beyond this.
const TEXT_MAX: usize = 3500;
/// Lines of a failed step's output shown in the message.
const TAIL_LINES: usize = 12;
/// History rows shown as blocks (Slack allows 50 blocks).
const HISTORY_MAX: usize = 40;

/// A reply to a command. `now` is for ages; `tz` is the team's time zone.
pub fn reply(reply: &Reply, tz: Tz, now: DateTime<Utc>) -> SlackMessageContent {
    let fallback = text::reply(reply, tz);
    let blocks = match &reply.body {
        ReplyBody::Refused(refusal) => vec![section(&format!("✋ {}", escape(refusal)))],
        ReplyBody::Text(answer) => vec![section(&escape(answer))],
        ReplyBody::Deploy(record) => return deploy(record, now, tz),
        ReplyBody::DryRun(plan) => dry_run(plan),
        ReplyBody::Status(report) => status(report, tz),
        ReplyBody::History(records) => history(records, tz),
        ReplyBody::Schedule(_) => vec![section(&escape(&fallback))],
    };
    content(&fallback, blocks)
}

/// Plain words as a message (acks, notices, announcements). `mrkdwn` must already be escaped.
pub fn note(mrkdwn: &str) -> SlackMessageContent {
    content(mrkdwn, vec![section(mrkdwn)])
}

/// `/help` as blocks, built from the same specs the engine's plain-text help uses.
/// `environments` is the line naming the environments and their aliases
/// ([`crate::command::help::environments_line`]).
pub fn help(book: &CommandBook, topic: Option<&str>, environments: &str, fallback: &str) -> SlackMessageContent {
    let mut blocks = Vec::new();
    match topic.and_then(|t| book.get(t)) {
        None => {
            blocks.push(header("Shipday commands"));
            let lines: Vec<String> =
                book.specs().iter().map(|s| format!("`{}`\n{}", escape(&s.usage), escape(&s.summary))).collect();
            blocks.push(section(&lines.join("\n")));
            blocks.push(context(&format!("{} Type `/help COMMAND` for details.", escape(environments))));
        }
        Some(spec) => {
            blocks.push(header(&format!("/{}", spec.name)));
            let mut lines = vec![format!("`{}`", escape(&spec.usage)), escape(&spec.summary)];
            if !spec.details.is_empty() {
                lines.push(escape(&spec.details.trim().replace('\n', " ")));
            }
            blocks.push(section(&lines.join("\n")));
            let options: Vec<String> = spec
                .options
                .iter()
                .map(|o| {
                    let name = spec.option_label(o);
                    let optional = if o.required { "" } else { " _(optional)_" };
                    format!("• `{name}` {}{optional}", escape(&o.description))
                })
                .collect();
            if !options.is_empty() {
                blocks.push(section(&options.join("\n")));
            }
            let who = match spec.who {
                MinRole::Anyone => "Anyone may use it.",
                MinRole::Developer => "Configured developers and leads may use it.",
                MinRole::Lead => "Leads only.",
            };
            let examples: Vec<String> = spec
                .examples
                .iter()
                .filter(|e| e.expect.is_some())
                .map(|e| format!("`{}`", escape(&e.input)))
                .collect();
            let mut footer = who.to_owned();
            if !examples.is_empty() {
                footer.push_str(&format!(" Examples: {}", examples.join(" · ")));
            }
            blocks.push(context(&footer));
        }
    }
    content(fallback, blocks)
}

/// The one message of a deploy, as it stands: each step with its status, the commit, who,
/// elapsed time, and the outcome once there is one.
pub fn deploy(record: &DeployRecord, now: DateTime<Utc>, tz: Tz) -> SlackMessageContent {
    let verb = match record.trigger {
        Trigger::Command => "Deploy",
        Trigger::Release => "Release (redeploy)",
        Trigger::Scheduled => "Scheduled deploy",
        Trigger::Rollback => "Rollback",
        Trigger::Promotion => "Promotion",
        Trigger::Merge => "Merge deploy",
    };
    let mut blocks =
        vec![header(&format!("{} {verb} #{} to {}", outcome_emoji(&record.outcome), record.id, record.env))];
    blocks.push(fields(&[
        format!("*Ref*\n`{}`", escape(record.git_ref.as_str())),
        format!("*Commit*\n`{}`", record.sha.short()),
        format!("*Requested by*\n{}", escape(&record.requested_by_name)),
        format!("*Elapsed*\n{}", seconds(record.elapsed_ms(now))),
    ]));
    let steps: Vec<String> = record.steps.iter().map(step_line).collect();
    if !steps.is_empty() {
        blocks.push(section(&steps.join("\n")));
    }
    if let Some(links) = links(&record.links) {
        blocks.push(context(&links));
    }
    if let Some(failed) = record.steps.iter().find(|s| s.result.as_ref().is_some_and(|r| !r.is_ok())) {
        let lines: Vec<&str> = failed.tail.lines().collect();
        let tail = lines.iter().skip(lines.len().saturating_sub(TAIL_LINES)).copied().collect::<Vec<_>>().join("\n");
        if !tail.trim().is_empty() {
            blocks.push(section(&format!("```{}```", escape(&tail))));
        }
    }
    let summary = match &record.outcome {
        Outcome::Running => {
            format!("⏳ Deploying `{}` ({}) to {}…", escape(record.git_ref.as_str()), record.sha.short(), record.env)
        }
        Outcome::Succeeded => format!(
            "✅ Succeeded: {} now runs `{}` ({}), in {}.",
            record.env,
            escape(record.git_ref.as_str()),
            record.sha.short(),
            seconds(record.elapsed_ms(now))
        ),
        _ => escape(&text::outcome_line(record, now)),
    };
    blocks.push(context(&summary));
    if let Some(claim) = text::claim_line(record, tz) {
        blocks.push(context(&escape(&claim)));
    }
    let fallback = match &record.outcome {
        Outcome::Running => format!(
            "⏳ Deploy #{} of `{}` ({}) to {} by {} is running.",
            record.id,
            record.git_ref,
            record.sha.short(),
            record.env,
            record.requested_by_name
        ),
        _ => text::outcome_line(record, now),
    };
    content(&fallback, blocks)
}

fn outcome_emoji(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Running => "🚀",
        Outcome::Succeeded => "✅",
        Outcome::Failed { .. } => "❌",
        Outcome::Interrupted => "⚠️",
        Outcome::Cancelled { .. } => "🛑",
    }
}

/// A deploy's links in Slack's syntax, `<url|text>`: `None` when there are none.
pub fn links(links: &crate::release::deploy::DeployLinks) -> Option<String> {
    let labelled = links.labelled();
    (!labelled.is_empty()).then(|| {
        labelled
            .iter()
            .map(|(label, link)| format!("{label} <{}|{}>", slack_url(&link.url), escape(&link.text).replace('|', "¦")))
            .collect::<Vec<_>>()
            .join(" · ")
    })
}

/// A URL made safe inside `<…|…>`: Slack ends the link at `|` or `>`.
fn slack_url(url: &str) -> String {
    url.replace('&', "&amp;").replace('<', "%3C").replace('>', "%3E").replace('|', "%7C")
}

fn step_line(step: &crate::release::deploy::StepRecord) -> String {
    let took = step.duration_ms.map(|ms| format!(" ({})", seconds(ms))).unwrap_or_default();
    let name = escape(&step.name);
    match &step.result {
        None => format!("⏳ {name}…"),
        Some(StepResult::Ok) => format!("✅ {name}{took}"),
        Some(result) => format!("❌ {name}: {}{took}", escape(&result.describe())),
    }
}

fn dry_run(plan: &DeployPlan) -> Vec<SlackBlock> {
    let steps: Vec<String> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!("{}. *{}* `{}` (limit {}s)", i + 1, escape(&s.name), escape(&s.command), s.timeout.as_secs())
        })
        .collect();
    vec![
        header(&format!("Dry run: {} to {}", plan.git_ref, plan.env)),
        section(&format!("`{}` resolves to `{}`. These steps would run:", escape(plan.git_ref.as_str()), plan.sha)),
        section(&steps.join("\n")),
        context(&escape(&text::dry_run_ending(plan).join(" "))),
    ]
}

/// `/status`: a table with one row per environment, then what needs attention.
fn status(report: &StatusReport, tz: Tz) -> Vec<SlackBlock> {
    let now = report.now;
    let mut rows: Vec<Vec<SlackTableCell>> =
        vec![["Environment", "Live ref", "Commit", "By", "When", "Hold"].into_iter().map(Into::into).collect()];
    for env in &report.environments {
        let live = env.live.as_ref();
        let when = live.map(|l| l.finished_at.unwrap_or(l.started_at));
        rows.push(vec![
            format!("{} ({})", env.name, env.branch).into(),
            live.map(|l| l.git_ref.to_string()).unwrap_or_else(|| "—".into()).into(),
            live.map(|l| l.sha.short().to_owned()).unwrap_or_else(|| "—".into()).into(),
            live.map(|l| l.requested_by_name.clone()).unwrap_or_else(|| "—".into()).into(),
            when.map(|w| format!("{} ago", age(now, w))).unwrap_or_else(|| "never".into()).into(),
            hold_cell(env, now).into(),
        ]);
    }
    let mut blocks = vec![header("Environments"), SlackBlock::Table(SlackTableBlock::new(rows))];
    for env in &report.environments {
        let notes = attention(env, now);
        if !notes.is_empty() {
            blocks.push(section(&format!("*{}*\n{}", env.name, notes.join("\n"))));
        }
    }
    blocks.push(section(&escape(&text::calendar_lines(&report.calendar, now))));
    if let Some(protection) = &report.protection {
        blocks.push(section(&escape(protection)));
    }
    blocks.push(context(&format!("As of {} · `/status ENV --live` reads HEAD on the host", when(now, tz))));
    blocks
}

fn hold_cell(env: &EnvironmentStatus, now: DateTime<Utc>) -> String {
    use crate::release::locks::HoldKind;
    match &env.hold {
        None => "free".into(),
        Some(hold) => match &hold.kind {
            HoldKind::Claim { expires_at, .. } if *expires_at <= now => {
                format!("claim by {} (expired)", hold.holder_name)
            }
            HoldKind::Claim { expires_at, .. } => {
                format!("claimed by {} ({} left)", hold.holder_name, age(*expires_at, now))
            }
            HoldKind::Lock { reason } => format!("locked by {}: {reason}", hold.holder_name),
        },
    }
}

/// What a reader should notice about one environment beyond the table row.
fn attention(env: &EnvironmentStatus, now: DateTime<Utc>) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(active) = &env.active {
        notes.push(format!(
            "⏳ deploying `{}` by {} (#{}, {} so far)",
            escape(active.git_ref.as_str()),
            escape(&active.who_name),
            active.deploy_id,
            age(now, active.since)
        ));
    }
    if let Some(latest) = &env.latest
        && env.active.as_ref().is_none_or(|a| a.deploy_id != latest.id)
    {
        notes.push(format!("latest: {}", escape(&text::outcome_line(latest, now))));
    }
    if let Some(failure) = &env.last_failure {
        notes.push(format!("last failure: {}", escape(&text::outcome_line(failure, now))));
    }
    if let Some(line) = text::host_line(env, now) {
        notes.push(escape(&line));
    }
    if let Some(line) = text::interrupted_line(env) {
        notes.push(escape(&line));
    }
    if let Some(freeze) = &env.freeze {
        notes.push(format!("🧊 {}", escape(freeze)));
    }
    if let Some(skip) = &env.skip {
        notes.push(format!("⏭️ {}", escape(skip)));
    }
    if let Some(line) = text::waiting_line(env, now) {
        notes.push(escape(&line));
    }
    if let Some(debt) = &env.migration_debt {
        notes.push(format!("branch-only migrations applied: {}", escape(&text::migration_debt_line(debt, &env.name))));
    }
    notes
}

fn history(records: &[DeployRecord], tz: Tz) -> Vec<SlackBlock> {
    if records.is_empty() {
        return vec![section("No deploys recorded yet.")];
    }
    let mut blocks = vec![header("Recent deploys")];
    let lines: Vec<String> = records
        .iter()
        .take(HISTORY_MAX)
        .map(|r| {
            let result = match &r.outcome {
                Outcome::Running => "⏳ running".to_owned(),
                Outcome::Succeeded => format!("✅ in {}", seconds(r.elapsed_ms(r.started_at))),
                Outcome::Failed { step, reason, .. } => format!("❌ at \"{}\" ({})", escape(step), escape(reason)),
                Outcome::Interrupted => "⚠️ interrupted".to_owned(),
                Outcome::Cancelled { by, step, .. } => {
                    format!("🛑 cancelled by {} at \"{}\"", escape(by), escape(step))
                }
            };
            format!(
                "*#{}* {} `{}` `{}` by {}, {}: {result}",
                r.id,
                r.env,
                escape(r.git_ref.as_str()),
                r.sha.short(),
                escape(&r.requested_by_name),
                when(r.started_at, tz)
            )
        })
        .collect();
    // Several sections, so no one section passes Slack's length limit.
    for chunk in lines.chunks(10) {
        blocks.push(section(&chunk.join("\n")));
    }
    blocks
}

fn when(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%a %d %b %H:%M %Z").to_string()
}

fn seconds(ms: u64) -> String {
    if ms >= 60_000 { duration_words(ms / 1000) } else { format!("{:.1}s", ms as f64 / 1000.0) }
}

/// `content` with every canonical command reference (`/status`) in its text and blocks named as
/// the workspace registers it (`/ship-status`): the one place Slack's names enter a message.
/// Works on the wire form, so no kind of block can be missed.
pub fn localize(content: &SlackMessageContent, names: &CommandNames) -> SlackMessageContent {
    fn walk(value: &mut serde_json::Value, names: &CommandNames) {
        match value {
            serde_json::Value::String(text) => *text = names.localize(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, names)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| walk(v, names)),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(content) else {
        return content.clone();
    };
    walk(&mut value, names);
    serde_json::from_value(value).unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot rename commands in a message; sending it with canonical names");
        content.clone()
    })
}

/// Escapes text for mrkdwn: Slack reads `<…>` as links and mentions.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn content(fallback: &str, blocks: Vec<SlackBlock>) -> SlackMessageContent {
    SlackMessageContent::new().with_text(clip(fallback, TEXT_MAX)).with_blocks(blocks)
}

fn section(mrkdwn: &str) -> SlackBlock {
    SlackSectionBlock::new().with_text(SlackBlockMarkDownText::new(clip(mrkdwn, SECTION_MAX)).into()).into()
}

fn fields(items: &[String]) -> SlackBlock {
    let fields = items.iter().map(|f| SlackBlockMarkDownText::new(clip(f, 2000)).into()).collect();
    SlackSectionBlock::new().with_fields(fields).into()
}

fn header(plain: &str) -> SlackBlock {
    SlackHeaderBlock::new(SlackBlockPlainText::new(clip(plain, HEADER_MAX)).into()).into()
}

fn context(mrkdwn: &str) -> SlackBlock {
    SlackContextBlock::new(vec![SlackBlockMarkDownText::new(clip(mrkdwn, SECTION_MAX)).into()]).into()
}

/// Cuts `text` to at most `max` characters, marking the cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}
