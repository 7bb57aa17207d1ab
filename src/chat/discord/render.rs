//! Replies and progress as Discord messages: short content plus embeds, as the API's JSON.
//!
//! Embeds read well on desktop and mobile: a title that says what happened, one line per step,
//! inline fields for the facts people scan for (commit, who, deploy number), and Discord's
//! `<t:…>` timestamps so everyone reads times in their own zone.

use crate::chat::text;
use crate::command::CommandNames;
use crate::command::spec::{CommandBook, MinRole};
use crate::engine::reply::{EnvironmentStatus, StatusReport};
use crate::engine::{ProgressUpdate, Reply, ReplyBody, Visibility};
use crate::release::deploy::{DeployRecord, Drift, Outcome, StepRecord, StepResult, Trigger};
use crate::release::plan::DeployPlan;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Embed colours: running, succeeded, failed, interrupted or drifted, and neutral.
const BLUE: u32 = 0x3498db;
const GREEN: u32 = 0x2ecc71;
const RED: u32 = 0xe74c3c;
const ORANGE: u32 = 0xe67e22;
const BLURPLE: u32 = 0x5865f2;

/// Discord's limits on message parts (characters).
const CONTENT_MAX: usize = 2000;
const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 4096;
const FIELD_VALUE_MAX: usize = 1024;
const FIELDS_MAX: usize = 25;

/// Lines of a failing step's output shown in its embed.
const TAIL_LINES: usize = 12;

/// Discord's `EPHEMERAL` message flag.
pub const EPHEMERAL: u64 = 1 << 6;

/// A message to send or edit: content, embeds, and who may see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Plain text above the embeds.
    pub content: String,
    /// Embed objects, as Discord's JSON.
    pub embeds: Vec<Value>,
    /// Whether only the person who asked sees it.
    pub ephemeral: bool,
    /// User ids this message may ping; nobody else is pinged, whatever the text says.
    pub pings: Vec<String>,
}

impl Message {
    /// A plain-text message.
    pub fn text(content: impl Into<String>, ephemeral: bool) -> Self {
        Self { content: clip(&content.into(), CONTENT_MAX), embeds: Vec::new(), ephemeral, pings: Vec::new() }
    }

    fn embed(embed: Value, ephemeral: bool) -> Self {
        Self { content: String::new(), embeds: vec![embed], ephemeral, pings: Vec::new() }
    }

    /// The message with its canonical command references (`/status`) named as registered on
    /// Discord (`[discord] commands`): applied where messages leave the adapter.
    pub fn localized(&self, names: &CommandNames) -> Self {
        fn walk(value: &mut Value, names: &CommandNames) {
            match value {
                Value::String(text) => *text = names.localize(text),
                Value::Array(items) => items.iter_mut().for_each(|v| walk(v, names)),
                Value::Object(map) => map.values_mut().for_each(|v| walk(v, names)),
                _ => {}
            }
        }
        let mut embeds = self.embeds.clone();
        embeds.iter_mut().for_each(|embed| walk(embed, names));
        Self { content: names.localize(&self.content), embeds, ephemeral: self.ephemeral, pings: self.pings.clone() }
    }

    /// The JSON body for creating or editing a message. Mentions ping only `pings`: user text
    /// (a lock reason, a ref) can never ping `@everyone`.
    pub fn body(&self) -> Value {
        json!({
            "content": self.content,
            "embeds": self.embeds,
            "allowed_mentions": { "parse": [], "users": self.pings },
        })
    }

    /// The body with the ephemeral flag, for interaction responses and follow-ups.
    pub fn flagged_body(&self) -> Value {
        let mut body = self.body();
        if self.ephemeral
            && let Some(fields) = body.as_object_mut()
        {
            fields.insert("flags".into(), json!(EPHEMERAL));
        }
        body
    }
}

/// What the person asked, so `/help` can be laid out from the specs.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// Command name.
    pub command: &'a str,
    /// `/help`'s topic, if any.
    pub topic: Option<&'a str>,
    /// The line naming the environments and their aliases, for `/help`
    /// ([`crate::command::help::environments_line`]).
    pub environments: &'a str,
}

/// An engine reply as a Discord message.
pub fn reply(reply: &Reply, asked: Asked, book: &CommandBook, now: DateTime<Utc>) -> Message {
    let ephemeral = reply.visibility == Visibility::Ephemeral;
    match &reply.body {
        ReplyBody::Refused(text) => Message::text(format!("✋ {text}"), ephemeral),
        ReplyBody::Text(_) if asked.command == "help" => {
            Message::embed(help(book, asked.topic, asked.environments), ephemeral)
        }
        ReplyBody::Text(text) => Message::text(text.clone(), ephemeral),
        ReplyBody::Deploy(record) => Message::embed(deploy(record, now), ephemeral),
        ReplyBody::DryRun(plan) => Message::embed(dry_run(plan), ephemeral),
        ReplyBody::Status(report) => Message::embed(status(report), ephemeral),
        ReplyBody::History(records) => Message::embed(history(records), ephemeral),
        ReplyBody::Schedule(view) => Message::text(text::reply(reply, view.timezone), ephemeral),
    }
}

/// A deploy as it now stands, for the message that follows it.
pub fn progress(update: &ProgressUpdate, now: DateTime<Utc>) -> Message {
    Message::embed(deploy(&update.record, now), false)
}

fn deploy(record: &DeployRecord, now: DateTime<Utc>) -> Value {
    let what = format!("`{}` to {}", record.git_ref, record.env);
    let (title, colour) = match (&record.outcome, record.trigger) {
        (Outcome::Running, Trigger::Command) => (format!("🚀 Deploying {what}"), BLUE),
        (Outcome::Running, Trigger::Release) => (format!("🚀 Releasing {}: redeploying {what}", record.env), BLUE),
        (Outcome::Running, Trigger::Scheduled) => (format!("🚀 Scheduled deploy of {what}"), BLUE),
        (Outcome::Running, Trigger::Rollback) => (format!("⏪ Rolling back: redeploying {what}"), BLUE),
        (Outcome::Running, Trigger::Promotion) => (format!("📦 Promotion: deploying {what}"), BLUE),
        (Outcome::Running, Trigger::Merge) => (format!("🔀 Merged: deploying {what}"), BLUE),
        (Outcome::Succeeded, _) => (format!("✅ Deployed {what}"), GREEN),
        (Outcome::Failed { .. }, _) => (format!("❌ Deploy of {what} failed"), RED),
        (Outcome::Interrupted, _) => (format!("⚠️ Deploy of {what} was interrupted"), ORANGE),
        (Outcome::Cancelled { .. }, _) => (format!("🛑 Deploy of {what} was cancelled"), ORANGE),
    };
    let mut description: Vec<String> = record.steps.iter().map(step_line).collect();
    match &record.outcome {
        Outcome::Running if record.steps.is_empty() => description.push("⏳ starting…".into()),
        Outcome::Failed { step, reason, state_unknown } => {
            description.push(format!("\n**Failed at \"{step}\"**: {reason}."));
            if *state_unknown {
                description.push(
                    "The host's state is unknown: `/status ENV --live` reads HEAD, a redeploy settles it.".into(),
                );
            }
            if let Some(tail) = record.steps.last().map(|s| tail(&s.tail)).filter(|t| !t.is_empty()) {
                description.push(format!("```\n{tail}\n```"));
            }
        }
        Outcome::Interrupted => {
            description.push("\nShipday stopped while this ran; the host's state is unknown. Redeploy.".into())
        }
        Outcome::Cancelled { .. } => description.push(format!("\n{}", text::cancelled_words(record))),
        _ => {}
    }
    let elapsed = format!("{:.1}s", record.elapsed_ms(now) as f64 / 1000.0);
    let mut fields = vec![
        field("Commit", &format!("`{}`", record.sha.short()), true),
        field("Requested by", &record.requested_by_name, true),
        field("Deploy", &format!("#{} · {elapsed}", record.id), true),
    ];
    if let Some(links) = links(&record.links) {
        fields.push(field("Links", &links, false));
    }
    if let Some(until) = record.claimed_until {
        // Discord shows a timestamp tag in each reader's own zone (the team's, for the team).
        let env = &record.env;
        let text = format!("{env} is now yours until `/release {env}` or <t:{}:t>.", until.timestamp());
        fields.push(field("Claim", &text, false));
    }
    json!({
        "title": clip(&title, TITLE_MAX),
        "description": clip(&description.join("\n"), DESCRIPTION_MAX),
        "color": colour,
        "fields": fields,
        "timestamp": record.started_at.to_rfc3339(),
    })
}

fn step_line(step: &StepRecord) -> String {
    let took = step.duration_ms.map(|ms| format!(" · {:.1}s", ms as f64 / 1000.0)).unwrap_or_default();
    match &step.result {
        None => format!("⏳ {}…", step.name),
        Some(StepResult::Ok) => format!("✅ {}{took}", step.name),
        Some(result) => format!("❌ {} · {}{took}", step.name, result.describe()),
    }
}

/// The last lines of a step's output, with code fences defused so they cannot end the block.
fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let skipped = lines.len().saturating_sub(TAIL_LINES);
    let shown = lines.iter().skip(skipped).copied().collect::<Vec<_>>().join("\n").replace("```", "ˋˋˋ");
    let chars = shown.chars().count();
    shown.chars().skip(chars.saturating_sub(1500)).collect()
}

fn dry_run(plan: &DeployPlan) -> Value {
    let mut lines: Vec<String> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!("{}. **{}** `{}` (limit {}s)", i + 1, s.name, s.command.replace('`', "ˋ"), s.timeout.as_secs())
        })
        .collect();
    lines.extend(text::dry_run_ending(plan).into_iter().map(|l| format!("…{l}")));
    json!({
        "title": clip(&format!("Dry run: `{}` on {}", plan.git_ref, plan.env), TITLE_MAX),
        "description": clip(&lines.join("\n"), DESCRIPTION_MAX),
        "color": BLURPLE,
        "fields": [field("Resolves to", &format!("`{}`", plan.sha), false)],
    })
}

fn status(report: &StatusReport) -> Value {
    let troubled = report.environments.iter().any(|e| {
        e.latest.as_ref().is_some_and(|l| {
            matches!(l.outcome, Outcome::Failed { .. } | Outcome::Interrupted | Outcome::Cancelled { .. })
        }) || e.observed.as_ref().is_some_and(|o| !matches!(o.drift(e.live.as_ref()), Drift::None))
    });
    let mut fields: Vec<Value> = report
        .environments
        .iter()
        .take(FIELDS_MAX - 1)
        .map(|env| field(&format!("{} · branch {}", env.name, env.branch), &environment(env, report.now), false))
        .collect();
    let mut calendar = text::calendar_lines(&report.calendar, report.now);
    if let Some(protection) = &report.protection {
        calendar.push('\n');
        calendar.push_str(protection);
    }
    fields.push(field("Calendar", &calendar, false));
    json!({
        "title": "Status",
        "color": if troubled { ORANGE } else { GREEN },
        "fields": fields,
        "timestamp": report.now.to_rfc3339(),
    })
}

fn environment(env: &EnvironmentStatus, now: DateTime<Utc>) -> String {
    let mut lines = Vec::new();
    match &env.live {
        Some(live) => {
            let at = live.finished_at.unwrap_or(live.started_at);
            lines.push(format!(
                "**Live:** `{}` at `{}` by {}, {}",
                live.git_ref,
                live.sha.short(),
                live.requested_by_name,
                stamp(at)
            ));
        }
        None => lines.push("**Live:** nothing deployed by Shipday yet".into()),
    }
    if let Some(active) = &env.active {
        lines.push(format!(
            "**Deploying:** `{}` by {} (#{}, since {})",
            active.git_ref,
            active.who_name,
            active.deploy_id,
            stamp(active.since)
        ));
    }
    if let Some(latest) = &env.latest
        && env.active.as_ref().is_none_or(|a| a.deploy_id != latest.id)
    {
        lines.push(format!("**Latest:** {}", text::outcome_line(latest, now)));
    }
    if let Some(failure) = &env.last_failure {
        lines.push(format!("**Last failure:** {}", text::outcome_line(failure, now)));
    }
    if let Some(line) = text::host_line(env, now) {
        lines.push(line);
    }
    if let Some(line) = text::interrupted_line(env) {
        lines.push(line);
    }
    if let Some(freeze) = &env.freeze {
        lines.push(format!("**Frozen:** 🧊 {freeze}"));
    }
    if let Some(skip) = &env.skip {
        lines.push(format!("**Skipped:** ⏭️ {skip}"));
    }
    if let Some(line) = text::waiting_line(env, now) {
        lines.push(line);
    }
    if let Some(debt) = &env.migration_debt {
        lines.push(format!("**Branch migrations:** {}", text::migration_debt_line(debt, &env.name)));
    }
    match &env.hold {
        Some(hold) => lines.push(format!("**Hold:** {}", hold.describe(&env.name, now))),
        None => lines.push("**Hold:** free".into()),
    }
    lines.join("\n")
}

fn history(records: &[DeployRecord]) -> Value {
    let description = if records.is_empty() {
        "No deploys recorded yet.".to_owned()
    } else {
        records
            .iter()
            .map(|r| {
                let (mark, result) = match &r.outcome {
                    Outcome::Running => ("⏳", "running".to_owned()),
                    Outcome::Succeeded => ("✅", format!("{:.1}s", r.elapsed_ms(r.started_at) as f64 / 1000.0)),
                    Outcome::Failed { step, reason, .. } => ("❌", format!("failed at \"{step}\" ({reason})")),
                    Outcome::Interrupted => ("⚠️", "interrupted".to_owned()),
                    Outcome::Cancelled { by, step, .. } => ("🛑", format!("cancelled by {by} at \"{step}\"")),
                };
                format!(
                    "{mark} **#{}** {} `{}` at `{}` by {}, {} · {result}",
                    r.id,
                    r.env,
                    r.git_ref,
                    r.sha.short(),
                    r.requested_by_name,
                    stamp(r.started_at)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    json!({ "title": "Recent deploys", "description": clip(&description, DESCRIPTION_MAX), "color": BLURPLE })
}

/// A deploy's links in Discord's markdown, `[text](url)`: `None` when there are none.
pub fn links(links: &crate::release::deploy::DeployLinks) -> Option<String> {
    let labelled = links.labelled();
    (!labelled.is_empty()).then(|| {
        labelled
            .iter()
            .map(|(label, link)| {
                let text = link.text.replace(['[', ']'], "");
                let url = link.url.replace('(', "%28").replace(')', "%29").replace(' ', "%20");
                format!("{label} [{text}]({url})")
            })
            .collect::<Vec<_>>()
            .join(" · ")
    })
}

/// `/help` from the specs: every command, or one explained.
fn help(book: &CommandBook, topic: Option<&str>, environments: &str) -> Value {
    match topic.and_then(|t| book.get(t.trim_start_matches('/'))) {
        None => {
            let fields: Vec<Value> =
                book.specs().iter().take(FIELDS_MAX).map(|s| field(&s.usage, &s.summary, false)).collect();
            json!({
                "title": "Shipday commands",
                "description": format!("{environments}\nType `/help COMMAND` for details."),
                "color": BLURPLE,
                "fields": fields,
            })
        }
        Some(spec) => {
            let mut description = spec.summary.clone();
            if !spec.details.is_empty() {
                description.push_str(&format!("\n\n{}", spec.details.trim()));
            }
            let options: Vec<String> = spec
                .options
                .iter()
                .map(|o| {
                    let name = spec.option_label(o);
                    let optional = if o.required { "" } else { " (optional)" };
                    format!("`{name}` {}{optional}", o.description)
                })
                .collect();
            let who = match spec.who {
                MinRole::Anyone => "Anyone",
                MinRole::Developer => "Configured developers and leads",
                MinRole::Lead => "Leads only",
            };
            let examples: Vec<String> =
                spec.examples.iter().filter(|e| e.expect.is_some()).map(|e| format!("`{}`", e.input)).collect();
            let mut fields = Vec::new();
            if !options.is_empty() {
                fields.push(field("Options", &options.join("\n"), false));
            }
            fields.push(field("Who", who, true));
            if !examples.is_empty() {
                fields.push(field("Examples", &examples.join("\n"), true));
            }
            json!({
                "title": clip(&spec.usage, TITLE_MAX),
                "description": clip(&description, DESCRIPTION_MAX),
                "color": BLURPLE,
                "fields": fields,
            })
        }
    }
}

/// An announcement for the team channel; `@{id}` markers become pings of those people.
pub fn announcement(text: &str, config: &crate::config::Config) -> Message {
    let content = crate::chat::mentions(text, config, |p| p.discord.as_ref().map(|id| format!("<@{id}>")));
    let pings = config
        .people
        .iter()
        .filter(|p| text.contains(&format!("@{{{}}}", p.id)))
        .filter_map(|p| p.discord.clone())
        .collect();
    Message { pings, ..Message::text(content, false) }
}

fn field(name: &str, value: &str, inline: bool) -> Value {
    let value = if value.is_empty() { "—" } else { value };
    json!({ "name": clip(name, TITLE_MAX), "value": clip(value, FIELD_VALUE_MAX), "inline": inline })
}

/// A Discord timestamp: shown in each reader's own time zone, with a relative hint on hover.
fn stamp(at: DateTime<Utc>) -> String {
    format!("<t:{}:R>", at.timestamp())
}

/// Cuts `text` to `max` characters, marking the cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::gitref::{GitRef, Sha};

    fn record(outcome: Outcome, steps: Vec<StepRecord>) -> DeployRecord {
        let at = DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z").unwrap().with_timezone(&Utc);
        DeployRecord {
            id: 7,
            env: "dev".into(),
            git_ref: GitRef::parse("feature/login").unwrap(),
            sha: Sha::parse("0123456789abcdef0123456789abcdef01234567").unwrap(),
            requested_by: "grace".into(),
            requested_by_name: "Grace".into(),
            trigger: Trigger::Command,
            emergency: None,
            migrations: None,
            tickets: Vec::new(),
            claimed_until: None,
            links: Default::default(),
            started_at: at,
            finished_at: None,
            steps,
            outcome,
        }
    }

    fn step(name: &str, result: Option<StepResult>, tail: &str) -> StepRecord {
        StepRecord {
            name: name.into(),
            started_at: Utc::now(),
            duration_ms: result.as_ref().map(|_| 1200),
            result,
            tail: tail.into(),
            output_bytes: 0,
        }
    }

    #[test]
    fn a_deploy_that_claims_dev_says_until_when() {
        let mut r = record(Outcome::Running, vec![]);
        assert!(!deploy(&r, r.started_at).to_string().contains("Claim"));
        r.claimed_until = Some(r.started_at + chrono::Duration::hours(8));
        let embed = deploy(&r, r.started_at);
        let claim = embed["fields"].as_array().unwrap().iter().find(|f| f["name"] == "Claim").unwrap();
        let until = (r.started_at + chrono::Duration::hours(8)).timestamp();
        assert_eq!(claim["value"], format!("dev is now yours until `/release dev` or <t:{until}:t>."));
    }

    #[test]
    fn a_running_deploy_shows_each_step_and_the_facts() {
        let r = record(Outcome::Running, vec![step("fetch", Some(StepResult::Ok), ""), step("checkout", None, "")]);
        let embed = deploy(&r, r.started_at + chrono::Duration::seconds(3));
        assert_eq!(embed["title"], "🚀 Deploying `feature/login` to dev");
        assert_eq!(embed["description"], "✅ fetch · 1.2s\n⏳ checkout…");
        assert_eq!(embed["color"], BLUE);
        assert_eq!(embed["fields"][0]["value"], "`01234567`");
        assert_eq!(embed["fields"][2]["value"], "#7 · 3.0s");
    }

    #[test]
    fn a_failed_deploy_names_the_step_and_shows_its_output_safely() {
        let failed = Outcome::Failed { step: "migrate".into(), reason: "exit code 3".into(), state_unknown: false };
        let r = record(failed, vec![step("migrate", Some(StepResult::Exit { code: 3 }), "no such table\n```oops")]);
        let embed = deploy(&r, r.started_at);
        let description = embed["description"].as_str().unwrap();
        assert!(description.starts_with("❌ migrate · exit code 3 · 1.2s"), "{description}");
        assert!(description.contains("**Failed at \"migrate\"**: exit code 3."), "{description}");
        assert!(description.contains("no such table") && description.matches("```").count() == 2, "{description}");
        assert_eq!(embed["color"], RED);
    }

    #[test]
    fn mentions_never_ping_anyone_but_the_named_people() {
        let message = Message::text("@everyone look", true);
        assert_eq!(message.flagged_body()["allowed_mentions"], json!({ "parse": [], "users": [] }));
        assert_eq!(message.flagged_body()["flags"], EPHEMERAL);
        assert!(Message::text("x", false).flagged_body().get("flags").is_none());
    }

    #[test]
    fn help_is_laid_out_from_the_specs() {
        let book = CommandBook::builtin();
        let all = help(&book, None, "Environments: dev, production (also prod).");
        assert!(all["description"].as_str().unwrap().starts_with("Environments: dev, production (also prod).\n"));
        assert_eq!(all["fields"].as_array().unwrap().len(), book.specs().len());
        assert_eq!(all["fields"][0]["name"], book.specs()[0].usage.as_str());
        let one = help(&book, Some("deploy"), "");
        assert!(one["fields"][0]["value"].as_str().unwrap().contains("`--dry-run`"));
    }

    #[test]
    fn announcements_ping_exactly_the_people_they_name() {
        let config = crate::config::Config::from_toml(
            r#"
state_dir = "s"
[[people]]
id = "grace"
name = "Grace"
discord = "53908232506183680"
[[people]]
id = "linus"
name = "Linus"
[[environments]]
name = "dev"
branch = "dev"
transport = { kind = "local", dir = "/x" }
"#,
            std::path::Path::new("/"),
        )
        .unwrap();
        let message = announcement("@{grace} and @{linus}: the window closes in 60m. @everyone", &config);
        assert_eq!(message.content, "<@53908232506183680> and Linus: the window closes in 60m. @everyone");
        assert_eq!(message.body()["allowed_mentions"], json!({ "parse": [], "users": ["53908232506183680"] }));
    }

    #[test]
    fn long_text_is_clipped_to_discords_limits() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(Message::text("x".repeat(3000), false).content.chars().count(), CONTENT_MAX);
    }
}
