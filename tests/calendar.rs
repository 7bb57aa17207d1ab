//! The release calendar at work, with a controlled clock: reminders, missed jobs, the dev
//! slot's scheduled deploy, and production's slot. Default calendar, East Africa Time.

use testkit as common;

use chrono::{DateTime, TimeZone, Utc};
use common::{Bot, World, refused};
use shipday::engine::{Announcement, ReplyBody};
use shipday::release::deploy::{Outcome, Trigger};
use shipday::scheduler::Scheduler;
use std::sync::Arc;

/// Sunday 29 Nov 2026, 20:00 EAT: the dev slot and the drag window open.
fn sunday_20_eat() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 17, 0, 0).unwrap()
}

fn scheduler(bot: &Bot) -> Scheduler {
    Scheduler::new(bot.app.config.calendar.clone(), bot.app.engine.clone(), Arc::new(bot.clock.clone()))
}

async fn restart(config: &std::path::Path, at: DateTime<Utc>) -> Bot {
    let bot = Bot::restart(config).await;
    bot.clock.set(at);
    bot
}

#[bounded::test]
async fn the_window_reminder_is_sent_once_across_two_restarts_in_the_same_minute() {
    let world = World::new();
    let config = world.config_path();
    let bot = Bot::start(&config);
    bot.clock.set(sunday_20_eat() - chrono::Duration::seconds(30));
    scheduler(&bot).tick().await.unwrap();
    let mut heard = bot.app.engine.announcements();
    bot.clock.set(sunday_20_eat() + chrono::Duration::seconds(5));
    let report = scheduler(&bot).tick().await.unwrap();
    assert!(report.fired.iter().any(|f| f.job == "reminder:window_opens:0m"), "{report:?}");
    let said = common::texts_so_far(&mut heard);
    assert_eq!(
        said.iter().filter(|t| t.contains("drag window is open until Mon 30 Nov 08:30 EAT")).count(),
        1,
        "{said:?}"
    );
    drop((heard, bot));

    for seconds in [20, 40] {
        let bot = restart(&config, sunday_20_eat() + chrono::Duration::seconds(seconds)).await;
        // Even if the cursor were lost, the claimed firings stop a second send.
        bot.app.store.set_scheduler_cursor(sunday_20_eat() - chrono::Duration::minutes(1)).await.unwrap();
        let mut heard = bot.app.engine.announcements();
        let report = scheduler(&bot).tick().await.unwrap();
        assert!(report.fired.is_empty() && report.missed.is_empty(), "{report:?}");
        assert!(common::texts_so_far(&mut heard).iter().all(|t| !t.contains("drag window is open")));
    }
}

#[bounded::test]
async fn a_reminder_missed_by_ten_minutes_is_sent_once_and_one_missed_by_three_hours_is_reported() {
    let world = World::new();
    let config = world.config_path();
    let bot = Bot::start(&config);
    bot.clock.set(sunday_20_eat() - chrono::Duration::minutes(5));
    scheduler(&bot).tick().await.unwrap();
    drop(bot);
    // Down across 20:00; back at 20:10.
    let bot = restart(&config, sunday_20_eat() + chrono::Duration::minutes(10)).await;
    let mut heard = bot.app.engine.announcements();
    let report = scheduler(&bot).tick().await.unwrap();
    let fired: Vec<&str> = report.fired.iter().map(|f| f.job.as_str()).collect();
    assert!(fired.contains(&"reminder:window_opens:0m") && fired.contains(&"slot:dev"), "{fired:?}");
    assert!(common::texts_so_far(&mut heard).iter().any(|t| t.contains("drag window is open")));
    let report = scheduler(&bot).tick().await.unwrap();
    assert!(report.fired.is_empty(), "sent once");
    drop((heard, bot));

    // Down from Monday 07:00 EAT to 10:40 EAT: the 07:30 "closes in 60 minutes" reminder
    // and the 08:30 edges are three hours late.
    let monday_7 = Utc.with_ymd_and_hms(2026, 11, 30, 4, 0, 0).unwrap();
    let bot = restart(&config, monday_7).await;
    scheduler(&bot).tick().await.unwrap();
    drop(bot);
    let bot = restart(&config, monday_7 + chrono::Duration::minutes(220)).await;
    let mut heard = bot.app.engine.announcements();
    let report = scheduler(&bot).tick().await.unwrap();
    assert!(report.fired.is_empty(), "{report:?}");
    let missed: Vec<&str> = report.missed.iter().map(|f| f.job.as_str()).collect();
    assert!(missed.contains(&"reminder:window_closes:-60m") && missed.contains(&"slot:staging"), "{missed:?}");
    let said = common::texts_so_far(&mut heard);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("too late to run now") && said[0].contains("staging deploy slot at Mon 30 Nov 08:30 EAT"));
    let at = report.missed[0].at;
    assert_eq!(bot.app.store.firing(&report.missed[0].job, at).unwrap().as_deref(), Some("missed"));
}

#[bounded::test]
async fn the_dev_slot_deploys_devs_tip() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    bot.clock.set(sunday_20_eat() - chrono::Duration::minutes(1));
    let scheduler = scheduler(&bot);
    scheduler.tick().await.unwrap();
    let mut heard = bot.app.engine.announcements();
    bot.clock.set(sunday_20_eat());
    scheduler.tick().await.unwrap();
    // The deploy runs as a task; its progress is announced to the team.
    let mut finished = None;
    while finished.is_none() {
        if let Ok(Announcement::Deploy(update)) = heard.recv().await
            && update.record.is_finished()
        {
            finished = Some(update.record.clone());
        }
    }
    let record = finished.unwrap();
    assert_eq!((record.trigger, record.outcome.clone()), (Trigger::Scheduled, Outcome::Succeeded));
    assert_eq!(record.requested_by, "shipday");
    assert_eq!(world.head("dev"), world.tip("dev"));
}

#[bounded::test]
async fn the_dev_slot_waits_for_a_claim_pings_the_holder_and_runs_after_release() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    bot.clock.set(sunday_20_eat() - chrono::Duration::minutes(1));
    let scheduler = scheduler(&bot);
    scheduler.tick().await.unwrap();
    bot.say("grace", "/deploy dev feature/login").await;
    let mut heard = bot.app.engine.announcements();
    bot.clock.set(sunday_20_eat());
    scheduler.tick().await.unwrap();
    let said = common::texts_so_far(&mut heard);
    assert!(
        said.iter().any(|t| t.contains("scheduled deploy is waiting") && t.contains("@{grace} holds dev")),
        "{said:?}"
    );
    assert_eq!(world.head("dev"), world.tip("feature/login"), "not silently replaced");
    assert_eq!(bot.app.store.slot_waits().unwrap().len(), 1);

    bot.say("grace", "/release dev").await;
    bot.clock.set(sunday_20_eat() + chrono::Duration::minutes(20));
    scheduler.tick().await.unwrap();
    assert!(bot.app.store.slot_waits().unwrap().is_empty());
    let record = loop {
        if let Ok(Announcement::Deploy(update)) = heard.recv().await
            && update.record.is_finished()
        {
            break update.record.clone();
        }
    };
    assert_eq!((record.trigger, record.outcome), (Trigger::Scheduled, Outcome::Succeeded));
}

#[bounded::test]
async fn the_dev_slot_deploy_is_skipped_with_the_reason_if_the_claim_outlasts_the_slot() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    bot.clock.set(sunday_20_eat() - chrono::Duration::minutes(1));
    let scheduler = scheduler(&bot);
    scheduler.tick().await.unwrap();
    bot.say("grace", "/deploy dev feature/login").await;
    bot.clock.set(sunday_20_eat());
    scheduler.tick().await.unwrap();
    let mut heard = bot.app.engine.announcements();
    bot.clock.set(sunday_20_eat() + chrono::Duration::hours(2) + chrono::Duration::minutes(1));
    scheduler.tick().await.unwrap();
    let said = common::texts_so_far(&mut heard);
    assert!(
        said.iter().any(|t| t.contains("scheduled deploy for the slot at Sun 29 Nov 20:00 EAT was skipped")
            && t.contains("claimed by Grace")),
        "{said:?}"
    );
    assert!(bot.app.store.slot_waits().unwrap().is_empty());
    assert_eq!(bot.app.store.history(Some("dev"), 5).unwrap().len(), 1, "only Grace's deploy");
}

#[bounded::test]
async fn production_is_refused_off_slot_and_a_leads_emergency_is_recorded_and_announced() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    // Wednesday 25 Nov 07:40 EAT: a Wednesday, but an off-week for production.
    bot.clock.set(Utc.with_ymd_and_hms(2026, 11, 25, 4, 40, 0).unwrap());
    let (reply, _) = bot.say("ada", "/deploy production master").await;
    let text = refused(&reply);
    assert!(text.contains("only in its slot") && text.contains("Wed 02 Dec 07:30 EAT"), "{text}");
    let (reply, _) = bot.say("grace", "/deploy production master --emergency \"hotfix\"").await;
    assert!(refused(&reply).contains("needs a lead"), "{reply:?}");

    let mut heard = bot.app.engine.announcements();
    let (reply, progress) = bot.say("ada", "/deploy production master --emergency \"payments are down\"").await;
    assert!(matches!(reply.body, ReplyBody::Deploy(_)), "{reply:?}");
    let record = &progress.last().unwrap().record;
    assert_eq!(record.outcome, Outcome::Succeeded);
    assert_eq!(record.emergency.as_deref(), Some("payments are down"));
    let audit = bot.app.store.audit_tail(1).unwrap();
    assert!(audit[0].decision.contains("EMERGENCY outside the slot: payments are down"), "{audit:?}");
    assert!(
        common::texts_so_far(&mut heard)
            .iter()
            .any(|t| t.contains("🚨 Emergency deploy: @{ada}") && t.contains("payments are down"))
    );

    // In its slot (Wednesday 2 Dec, 07:45 EAT) a lead deploys without a reason.
    bot.clock.set(Utc.with_ymd_and_hms(2026, 12, 2, 4, 45, 0).unwrap());
    let (reply, _) = bot.say("ada", "/deploy production master").await;
    assert!(matches!(reply.body, ReplyBody::Deploy(_)), "{reply:?}");
}

#[bounded::test]
async fn status_and_schedule_show_the_window_and_the_next_slots() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    bot.clock.set(sunday_20_eat() + chrono::Duration::minutes(30));
    let (reply, _) = bot.say("grace", "/status").await;
    let text = bot.show(&reply);
    assert!(text.contains("Ticket-drag window: OPEN until Mon 30 Nov 08:30 EAT (12h 0m left)"), "{text}");
    assert!(text.contains("Next production slot: Wed 02 Dec 07:30 EAT"), "{text}");
    let (reply, _) = bot.say("grace", "/schedule 10").await;
    let text = bot.show(&reply);
    assert!(text.contains("Mon 30 Nov 08:30 EAT  staging deploy slot"), "{text}");
    assert!(text.contains("Mon 30 Nov 08:30 EAT  ticket-drag window closes"), "{text}");
    assert!(text.contains("Wed 02 Dec 07:30 EAT  production deploy slot"), "{text}");
    assert!(!text.contains("Wed 09 Dec"), "the off-week production slot is not listed: {text}");
}

/// The host's TZ must not change any outcome: the binary prints the same schedule and status
/// under UTC and under America/New_York on the day its DST ends.
#[bounded::test]
fn the_hosts_time_zone_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = shipday::playground::prepare(&dir.path().join("pg")).unwrap();
    let run = |tz: &str, now: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shipday"))
            .args(["console", "--config", config.to_str().unwrap(), "--as", "grace", "--now", now])
            .env("TZ", tz)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"/schedule 21\n/status\n").unwrap();
        let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        // The start-up HEAD check races with /status; it has nothing to do with time zones.
        out.lines().filter(|l| !l.contains("host HEAD")).collect::<Vec<_>>().join("\n")
    };
    for now in ["2026-11-01T05:59:00Z", "2026-11-01T06:01:00Z", "2026-03-08T06:59:00Z"] {
        let utc = run("UTC", now);
        let new_york = run("America/New_York", now);
        assert!(utc.contains("EAT  dev deploy slot"), "{utc}");
        assert_eq!(utc, new_york, "at {now}");
    }
}
