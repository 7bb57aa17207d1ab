//! The rough edges a developer meets in their first five minutes with Shipday (issue 12,
//! point 5): what the bot logs at start, what it says when it refuses, and how its replies
//! read. Wording is snapshotted with insta.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::{Bot, World, refused};
use shipday::engine::Announcement;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Everything logged on this thread (at DEBUG) while the guard lives. Tests run on tokio's
/// current-thread runtime, so the engine's tasks log on this thread too.
fn capture_logs() -> (tracing::subscriber::DefaultGuard, Arc<Mutex<Vec<u8>>>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || Writer(writer.clone()))
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (guard, buffer)
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn text(logs: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&logs.lock().unwrap()).into_owned()
}

/// Waits (under a timeout) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn texts(rx: &mut broadcast::Receiver<Announcement>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(announcement) = rx.try_recv() {
        if let Announcement::Text(text) = announcement {
            out.push(text);
        }
    }
    out
}

#[tokio::test]
async fn a_fresh_start_reads_the_hosts_without_warning_of_drift_where_shipday_never_deployed() {
    let (_guard, logs) = capture_logs();
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    // The start-up check has read every host once it recorded what it saw.
    until("the start-up HEAD reads", || {
        ["dev", "staging", "production"].iter().all(|env| bot.app.store.observation(env).unwrap().is_some())
    })
    .await;
    until("the start-up reads to be logged", || text(&logs).matches("nothing to compare").count() == 3).await;
    let logged = text(&logs);
    let warnings: Vec<&str> = logged.lines().filter(|l| l.contains("WARN") && l.contains("drift")).collect();
    assert!(warnings.is_empty(), "a fresh start warns of drift:\n{logged}");
    assert!(!logged.contains("deployed=nothing"), "{logged}");
    let line = logged.lines().find(|l| l.contains("env=dev") && l.contains("nothing to compare")).unwrap();
    assert!(line.contains("INFO"), "{line}");
}

#[tokio::test]
async fn a_bad_branch_name_is_refused_saying_what_is_wrong_once() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let (reply, _) = bot.say("grace", "/deploy dev feature;login").await;
    insta::assert_snapshot!(refused(&reply));
}

#[tokio::test]
async fn a_missed_reminder_is_named_in_words_not_by_its_job_id() {
    let world = World::new();
    let config = world.config_path();
    // Up at Monday 07:00 EAT, then down until 10:40 EAT: the reminders and edges of 07:30
    // and 08:30 are too late to run.
    let monday_7 = Utc.with_ymd_and_hms(2026, 11, 30, 4, 0, 0).unwrap();
    let bot = Bot::start(&config);
    bot.clock.set(monday_7);
    scheduler(&bot).tick().await.unwrap();
    drop(bot);
    let bot = restart(&config, monday_7 + chrono::Duration::minutes(220)).await;
    let mut heard = bot.app.engine.announcements();
    scheduler(&bot).tick().await.unwrap();
    let said = texts(&mut heard);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(!said[0].contains("reminder:"), "{}", said[0]);
    insta::assert_snapshot!(said[0]);
}

fn scheduler(bot: &Bot) -> shipday::scheduler::Scheduler {
    shipday::scheduler::Scheduler::new(
        bot.app.config.calendar.clone(),
        bot.app.store.clone(),
        bot.app.engine.clone(),
        Arc::new(bot.clock.clone()),
    )
}

async fn restart(config: &std::path::Path, at: DateTime<Utc>) -> Bot {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Bot::try_start(config) {
            Ok(bot) => {
                bot.clock.set(at);
                return bot;
            }
            Err(error) => assert!(Instant::now() < deadline, "the store stayed locked: {error:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn help_keeps_its_columns_with_long_usages_and_shows_options_as_they_are_typed() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let (list, _) = bot.say("grace", "/help").await;
    insta::assert_snapshot!("help", bot.show(&list));
    let (deploy, _) = bot.say("grace", "/help deploy").await;
    let deploy = bot.show(&deploy);
    assert!(deploy.contains("--emergency REASON  A lead's reason"), "{deploy}");
    insta::assert_snapshot!("help_deploy", deploy);
}
