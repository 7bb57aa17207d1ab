//! What each command says, word for word, on the console, Slack and Discord: one snapshot per
//! command and platform. The engine's reply is rendered the way each adapter renders it (the
//! console's text, Slack's blocks named as the workspace registers the commands, Discord's
//! content and embeds), with what changes from run to run (commit SHAs, step durations)
//! replaced by placeholders. Review a changed snapshot as you would review the reply itself.

use testkit as common;

use chrono::{DateTime, TimeZone, Utc};
use common::{Bot, World};
use serde_json::Value;
use shipday::chat::discord::render::{self as discord, Asked};
use shipday::chat::slack::{names, render as slack};
use shipday::command::{CommandBook, CommandNames};
use shipday::engine::{ProgressUpdate, Reply, ReplyBody};
use std::collections::BTreeMap;

/// A Wednesday morning in Nairobi (the playground's zone), so every time shown is fixed.
fn wednesday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 7, 0, 0).unwrap()
}

/// A bot on the playground started at [`wednesday`], a minute later, once it has read every
/// host's HEAD at start-up (so that reading is older than anything the test then does).
async fn bot(world: &World) -> Bot {
    let bot = Bot::start_at(&world.config_path(), wednesday() - chrono::Duration::minutes(1));
    common::eventually(common::PATIENCE, "the start-up reading of every host's HEAD", || {
        ["dev", "staging", "production"].iter().all(|env| bot.app.store.observation(env).unwrap().is_some())
    })
    .await;
    bot.clock.set(wednesday());
    bot
}

/// What changes between runs: commit SHAs and how long a step took. (Discord's `<t:UNIX:…>`
/// timestamps come from the fixed clock and stay.)
fn stable(text: &str) -> String {
    let sha = regex::Regex::new(r"(<t:)?\b([0-9a-f]{8}|[0-9a-f]{40})\b").unwrap();
    let seconds = regex::Regex::new(r"\b\d+\.\ds\b").unwrap();
    let millis = regex::Regex::new(r"\b\d+ ?ms\b").unwrap();
    let text = sha.replace_all(text, |found: &regex::Captures| match found.get(1) {
        Some(_) => found[0].to_owned(),
        None => "SHA".to_owned(),
    });
    let text = seconds.replace_all(&text, "N.Ns");
    millis.replace_all(&text, "N ms").into_owned()
}

/// Every piece of text in a message's JSON (Slack blocks, Discord embeds), one per line: the
/// words a person reads, without the layout keys. Within an object the keys come in
/// alphabetical order (an embed's `description`, `fields`, `footer`, then `title`).
fn words(value: &Value) -> String {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(text) => out.push(text.clone()),
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Object(map) => {
                for (key, value) in map {
                    if !["type", "style", "emoji", "verbatim", "color", "flags", "block_id", "inline"]
                        .contains(&key.as_str())
                    {
                        walk(value, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut out);
    out.join("\n")
}

/// The reply as each platform shows it: `(console, slack, discord)`.
fn rendered(bot: &Bot, text: &str, reply: &Reply) -> (String, String, String) {
    let tz = bot.app.config.timezone;
    let now = wednesday();
    let book = CommandBook::builtin();
    let visibility = format!("[{:?}]\n", reply.visibility);
    let environments = shipday::command::help::environments_line(&bot.app.config.environments);

    let console = format!("{visibility}{}", bot.show(reply));

    // As the Slack adapter answers: /help as blocks from the specs, else the reply's blocks,
    // then every command named as Slack registers it.
    let line = text.trim_start_matches('/');
    let (command, topic) = line.split_once(' ').map_or((line, None), |(c, t)| (c, Some(t.trim())));
    let blocks = if command == "help" && matches!(reply.body, ReplyBody::Text(_)) {
        slack::help(&book, topic, &environments, &shipday::chat::text::reply(reply, tz))
    } else {
        slack::reply(reply, tz, now)
    };
    let slack_names = names::names(&book, &BTreeMap::new()).unwrap();
    let blocks = serde_json::to_value(slack::localize(&blocks, &slack_names)).unwrap();
    let slack = format!("{visibility}{}", words(&blocks));

    // As the Discord adapter answers an interaction.
    let discord_names = CommandNames::new(&book, &[], &BTreeMap::new(), "discord.commands").unwrap();
    let message = discord::reply(reply, Asked { command, topic, environments: &environments }, &book, now)
        .localized(&discord_names);
    let discord = format!("{visibility}{}", words(&message.body()));

    (stable(&console), stable(&slack), stable(&discord))
}

/// Says `text` as `user` and snapshots the reply on every platform as `NAME@console`,
/// `NAME@slack` and `NAME@discord`; returns the reply and its progress.
async fn snapshot(bot: &Bot, name: &str, user: &str, text: &str) -> (Reply, Vec<ProgressUpdate>) {
    let (reply, progress) = bot.say(user, text).await;
    let (console, slack, discord) = rendered(bot, text, &reply);
    insta::assert_snapshot!(format!("{name}@console"), console, text);
    insta::assert_snapshot!(format!("{name}@slack"), slack, text);
    insta::assert_snapshot!(format!("{name}@discord"), discord, text);
    (reply, progress)
}

/// A deploy's last word (its finished record) as each platform edits its message to show it.
fn snapshot_finished(bot: &Bot, name: &str, progress: &[ProgressUpdate]) {
    let last = progress.last().expect("a deploy reports progress");
    let tz = bot.app.config.timezone;
    let console = shipday::chat::text::progress(last, wednesday()).unwrap_or_default();
    let slack = words(&serde_json::to_value(slack::deploy(&last.record, wednesday(), tz)).unwrap());
    let discord = words(&discord::progress(last, wednesday()).body());
    insta::assert_snapshot!(format!("{name}@console"), stable(&console));
    insta::assert_snapshot!(format!("{name}@slack"), stable(&slack));
    insta::assert_snapshot!(format!("{name}@discord"), stable(&discord));
}

#[bounded::test]
async fn help_lists_every_command_and_explains_one() {
    let world = World::new();
    let bot = bot(&world).await;
    snapshot(&bot, "help", "grace", "/help").await;
    snapshot(&bot, "help_status", "grace", "/help status").await;
}

#[bounded::test]
async fn deploy_accepted_finished_refused_and_dry_run() {
    let world = World::new();
    let bot = bot(&world).await;
    let (_, progress) = snapshot(&bot, "deploy_accepted", "grace", "/deploy dev feature/login").await;
    snapshot_finished(&bot, "deploy_finished", &progress);
    snapshot(&bot, "deploy_refused_while_claimed", "linus", "/deploy dev feature/search").await;
    snapshot(&bot, "deploy_dry_run", "grace", "/deploy dev feature/search --dry-run").await;
    snapshot(&bot, "deploy_unknown_environment", "grace", "/deploy qa feature/login").await;
}

#[bounded::test]
async fn status_and_history_after_a_deploy() {
    let world = World::new();
    let bot = bot(&world).await;
    bot.say("grace", "/deploy dev feature/login").await;
    snapshot(&bot, "status", "linus", "/status").await;
    snapshot(&bot, "status_dev", "linus", "/status dev").await;
    snapshot(&bot, "history", "linus", "/history dev 5").await;
    bot.say("grace", "/deploy dev feature/search").await;
    snapshot(&bot, "rollback", "grace", "/rollback dev").await;
}

#[bounded::test]
async fn release_lock_and_unlock() {
    let world = World::new();
    let bot = bot(&world).await;
    bot.say("grace", "/deploy dev feature/login").await;
    snapshot(&bot, "release_not_the_holder", "linus", "/release dev").await;
    snapshot(&bot, "release", "grace", "/release dev").await;
    snapshot(&bot, "lock_not_a_lead", "grace", "/lock staging tests").await;
    snapshot(&bot, "lock", "ada", "/lock staging QA for release 42").await;
    snapshot(&bot, "deploy_refused_while_locked", "grace", "/deploy staging staging").await;
    snapshot(&bot, "unlock", "ada", "/unlock staging").await;
}

#[bounded::test]
async fn schedule_promote_rollback_ticket_and_the_umbrella() {
    let world = World::new();
    let bot = bot(&world).await;
    snapshot(&bot, "schedule", "grace", "/schedule").await;
    snapshot(&bot, "promote", "ada", "/promote staging production").await;
    snapshot(&bot, "rollback_nothing_to_roll_back_to", "ada", "/rollback dev").await;
    snapshot(&bot, "ticket", "grace", "/ticket SHOP-3 pass").await;
    snapshot(&bot, "shipday_umbrella", "grace", "/shipday status dev").await;
}

#[bounded::test]
async fn freeze_unfreeze_skip_and_unskip() {
    let world = World::new();
    let bot = bot(&world).await;
    snapshot(&bot, "freeze_not_a_lead", "grace", "/freeze staging incident 42").await;
    snapshot(&bot, "freeze", "ada", "/freeze staging incident 42 --until 18:00").await;
    snapshot(&bot, "deploy_refused_while_frozen", "grace", "/deploy staging staging").await;
    snapshot(&bot, "unfreeze", "ada", "/unfreeze staging").await;
    snapshot(&bot, "skip", "ada", "/skip dev").await;
    snapshot(&bot, "unskip", "ada", "/unskip dev").await;
    snapshot(&bot, "unskip_nothing_skipped", "ada", "/unskip dev").await;
}

#[bounded::test]
async fn cancel_and_waiting_for_a_free_environment() {
    let world = World::new();
    let go = common::Gate::new(world.path(), "go");
    let steps = format!(
        "  {{ name = \"checkout\", run = \"git checkout --quiet --detach {{{{sha}}}}\" }},\n  \
         {{ name = \"migrate\", run = \"{}\" }},\n  \
         {{ name = \"restart app\", run = \"true\" }},",
        go.shell()
    );
    let config = world.config_with_dev_steps(&steps);
    let bot = Bot::start_at(&config, wednesday() - chrono::Duration::minutes(1));
    common::eventually(common::PATIENCE, "the start-up reading of every host's HEAD", || {
        ["dev", "staging", "production"].iter().all(|env| bot.app.store.observation(env).unwrap().is_some())
    })
    .await;
    bot.clock.set(wednesday());
    let (_, mut updates) = bot.send("grace", "/deploy dev feature/login").await;
    go.reached().await;
    snapshot(&bot, "cancel_not_the_requester", "linus", "/cancel dev").await;
    snapshot(&bot, "cancel", "grace", "/cancel dev").await;
    let mut progress = Vec::new();
    while let Some(update) = updates.recv().await {
        progress.push(update);
    }
    snapshot_finished(&bot, "deploy_cancelled", &progress);

    bot.say("ada", "/lock staging QA for release 42").await;
    snapshot(&bot, "deploy_when_free", "grace", "/deploy staging staging --when-free").await;
    snapshot(&bot, "deploy_notify", "linus", "/deploy staging staging --notify").await;
    snapshot(&bot, "status_waiting", "linus", "/status staging").await;
}
