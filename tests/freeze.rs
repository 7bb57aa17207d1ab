//! Freezes and skips, end to end through the console adapter, with dev on a real sshd: a
//! freeze refuses deploys (and nothing runs on the host), a lead's `--emergency` goes through
//! (audited and announced), `/unfreeze` and `--until` lift it, a calendar freeze stops a slot
//! deploy, `/skip` skips the next slot (shown in `/schedule`), and `/unskip` withdraws it.

use testkit as common;

use chrono::{DateTime, TimeZone, Utc};
use common::fake_github::{FakeGitHub, OWNER, REPO};
use common::sshd::Sshd;
use common::{Bot, World, refused};
use shipday::engine::{Announcement, ReplyBody};
use shipday::release::deploy::Outcome;
use shipday::scheduler::Scheduler;
use std::path::PathBuf;
use std::sync::Arc;

const STEPS: &str = r#"
  { name = "fetch", run = "git fetch --all --prune --quiet" },
  { name = "checkout", run = "git checkout --quiet --detach {{sha}}" },
  { name = "restart app", run = "echo restarted {{env}} $(git rev-parse --short HEAD) >> ../restarts.log" },"#;

/// An instant on the team's wall clock (East Africa Time), December 2026.
fn eat(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    chrono_tz::Africa::Nairobi.with_ymd_and_hms(2026, 12, day, hour, minute, 0).unwrap().with_timezone(&Utc)
}

/// The playground with dev deployed over SSH to `sshd`, plus `extra` TOML at the end.
fn config(world: &World, sshd: &Sshd, extra: &str) -> PathBuf {
    let path = world.ssh_config(sshd, &sshd.pin(), STEPS, "");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

/// The scheduler of `bot`'s calendar, on its clock (ticked by hand).
fn scheduler(bot: &Bot) -> Scheduler {
    Scheduler::new(bot.app.config.calendar.clone(), bot.app.engine.clone(), Arc::new(bot.clock.clone()))
}

/// The next deploy announced as finished.
async fn finished_deploy(
    announced: &mut tokio::sync::broadcast::Receiver<Announcement>,
    what: &str,
) -> shipday::release::deploy::DeployRecord {
    common::announced(announced, what, |a| match a {
        Announcement::Deploy(u) if u.record.is_finished() => Some(u.record.clone()),
        _ => None,
    })
    .await
}

/// A bot on Saturday 5 December, 10:00 EAT, its scheduler ticked once.
async fn saturday_morning(world: &World, sshd: &Sshd) -> (Bot, Scheduler) {
    let bot = Bot::start_at(&config(world, sshd, ""), eat(5, 10, 0));
    let scheduler = scheduler(&bot);
    scheduler.tick().await.unwrap();
    (bot, scheduler)
}

/// At `at`, the scheduler's tick deploys dev's slot, and dev then runs its branch's tip.
async fn slot_deploys_dev(
    bot: &Bot,
    scheduler: &Scheduler,
    announced: &mut tokio::sync::broadcast::Receiver<Announcement>,
    world: &World,
    at: DateTime<Utc>,
) {
    bot.clock.set(at);
    scheduler.tick().await.unwrap();
    let deployed = finished_deploy(announced, "the slot's deploy").await;
    assert_eq!(deployed.outcome, Outcome::Succeeded);
    assert_eq!(world.head("dev"), world.tip("dev"));
}

fn reply_text(bot: &Bot, reply: &shipday::engine::Reply) -> String {
    bot.show(reply)
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_refuses_deploys_until_a_leads_emergency_or_unfreeze() {
    let world = World::new();
    let sshd = Sshd::start();
    let bot = Bot::start_at(&config(&world, &sshd, ""), eat(2, 16, 0));
    let mut announced = bot.app.engine.announcements();
    let before = world.head("dev");

    // Only leads freeze.
    let (reply, _) = bot.say("grace", "/freeze dev I broke it").await;
    assert!(refused(&reply).contains("Only a lead can use /freeze"), "{reply:?}");
    assert!(bot.app.store.freezes().unwrap().is_empty());

    // A bad --until changes nothing.
    let (reply, _) = bot.say("ada", "/freeze dev incident 42 --until next week").await;
    assert!(refused(&reply).contains("`--until tomorrow 09:00`"), "{reply:?}");
    assert!(bot.app.store.freezes().unwrap().is_empty());

    let (reply, _) = bot.say("ada", "/freeze dev incident 42: payments are down --until tomorrow 09:00").await;
    assert!(matches!(reply.body, ReplyBody::Text(_)), "{reply:?}");
    insta::assert_snapshot!("freeze_accepted", reply_text(&bot, &reply));
    let stored = bot.app.store.freezes().unwrap();
    assert_eq!(stored.len(), 1, "durable in the store before the reply");
    assert_eq!(stored[0].until, Some(eat(3, 9, 0)), "tomorrow 09:00 in the team's zone");

    // A developer's deploy is refused: who, why, until when, how to override. Nothing runs.
    let (reply, progress) = bot.say("grace", "/deploy dev feature/login").await;
    insta::assert_snapshot!("deploy_refused_by_freeze", refused(&reply));
    assert!(progress.is_empty());
    assert_eq!(world.head("dev"), before, "nothing ran on the host");
    assert!(world.restarts().is_empty());
    assert!(bot.app.store.hold("dev").unwrap().is_none(), "the refused deploy claimed nothing");

    // A developer cannot override it.
    let (reply, _) = bot.say("grace", "/deploy dev feature/login --emergency \"it is urgent\"").await;
    assert!(refused(&reply).contains("Only a lead can deploy through a freeze"), "{reply:?}");
    assert!(world.restarts().is_empty());

    // /status shows it.
    let (reply, _) = bot.say("linus", "/status dev").await;
    let shown = reply_text(&bot, &reply);
    assert!(shown.contains("🧊 dev is frozen by Ada") && shown.contains("incident 42"), "{shown}");

    // A lead's emergency deploy goes through: audited and announced.
    let (reply, progress) = bot.say("ada", "/deploy dev dev --emergency \"hotfix for incident 42\"").await;
    let ReplyBody::Deploy(accepted) = &reply.body else { panic!("{reply:?}") };
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);
    assert_eq!(world.head("dev"), accepted.sha.as_str(), "the emergency deploy ran on the host");
    let said =
        common::announced(&mut announced, "the override announcement", common::text_containing("through a freeze"))
            .await;
    assert!(said.contains("Ada is deploying to dev") && said.contains("hotfix for incident 42"), "{said}");
    let audit = bot.app.store.audit_tail(20).unwrap();
    assert!(
        audit.iter().any(|e| e.person.as_deref() == Some("ada") && e.decision.starts_with("freeze overridden")),
        "{audit:#?}"
    );

    // /unfreeze lifts it; a developer deploys again.
    let (reply, _) = bot.say("grace", "/unfreeze dev").await;
    assert!(refused(&reply).contains("Only a lead"), "{reply:?}");
    let (reply, _) = bot.say("ada", "/unfreeze dev").await;
    assert!(reply_text(&bot, &reply).contains("Ada lifted the freeze of dev"), "{reply:?}");
    assert!(bot.app.store.freezes().unwrap().is_empty());
    bot.deployed("grace", "/deploy dev feature/login").await;
    assert_eq!(world.head("dev"), world.tip("feature/login"));
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_of_all_ends_by_itself_at_its_until_time() {
    let world = World::new();
    let sshd = Sshd::start();
    let bot = Bot::start_at(&config(&world, &sshd, ""), eat(2, 16, 0));
    let mut announced = bot.app.engine.announcements();
    let (reply, _) = bot.say("ada", "/freeze all release freeze --until 2h").await;
    assert!(reply_text(&bot, &reply).contains("froze every environment until Wed 02 Dec 18:00 EAT"), "{reply:?}");
    let (reply, _) = bot.say("grace", "/deploy dev feature/login").await;
    assert!(refused(&reply).contains("dev is frozen (all environments) by Ada"), "{reply:?}");
    assert!(refused(&reply).contains("`/unfreeze all`"), "{reply:?}");
    let (reply, _) = bot.say("ada", "/promote staging production").await;
    assert!(refused(&reply).contains("production is frozen"), "promotions too: {reply:?}");
    assert!(world.restarts().is_empty());

    // At 18:00 it no longer stands; the tick forgets it and tells the team.
    bot.clock.set(eat(2, 18, 0));
    let scheduler = scheduler(&bot);
    scheduler.tick().await.unwrap();
    let said = common::announced(&mut announced, "the freeze's end", common::text_containing("ended at")).await;
    assert!(said.contains("The freeze of every environment (release freeze, by Ada)"), "{said}");
    assert!(bot.app.store.freezes().unwrap().is_empty());
    bot.deployed("grace", "/deploy dev feature/login").await;
    assert_eq!(world.head("dev"), world.tip("feature/login"));
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calendar_freeze_stops_the_slot_deploy_and_shows_in_schedule() {
    let world = World::new();
    let sshd = Sshd::start();
    let holidays =
        "[[calendar.freezes]]\nfrom = 2026-12-06\nto = 2026-12-07\nreason = \"team offsite\"\nenvs = [\"dev\"]\n";
    let bot = Bot::start_at(&config(&world, &sshd, holidays), eat(5, 10, 0));
    let scheduler = scheduler(&bot);
    scheduler.tick().await.unwrap();
    let mut announced = bot.app.engine.announcements();
    let before = world.head("dev");

    let (reply, _) = bot.say("linus", "/schedule 3").await;
    let shown = reply_text(&bot, &reply);
    assert!(shown.contains("🧊 dev frozen from 2026-12-06 to 2026-12-07 (calendar): team offsite"), "{shown}");
    assert!(shown.contains("dev deploy slot  (🧊 frozen: team offsite, will not run)"), "{shown}");

    // Sunday 20:00: dev's slot would deploy dev; the calendar freeze stops it.
    bot.clock.set(eat(6, 20, 0));
    scheduler.tick().await.unwrap();
    let said = common::announced(&mut announced, "the frozen slot", common::text_containing("slot at")).await;
    assert!(
        said.contains("🧊 dev's slot at Sun 06 Dec 20:00 EAT did not run: dev is frozen by the calendar"),
        "{said}"
    );
    assert!(said.contains("team offsite"), "{said}");
    // The window's reminder at the same time carries the freeze.
    let reminder =
        common::announced(&mut announced, "the window reminder", common::text_containing("ticket-drag window is open"))
            .await;
    assert!(
        reminder.contains("🧊 dev is frozen by the calendar (2026-12-06 to 2026-12-07): team offsite"),
        "{reminder}"
    );
    assert_eq!(world.head("dev"), before, "nothing ran on the host");
    assert!(world.restarts().is_empty());
    assert!(bot.app.store.history(Some("dev"), 5).unwrap().is_empty(), "no deploy was recorded");

    // A lead's /deploy is refused too, and told a calendar freeze cannot be /unfreeze'd.
    let (reply, _) = bot.say("ada", "/deploy dev dev").await;
    assert!(refused(&reply).contains("frozen by the calendar"), "{reply:?}");
    let (reply, _) = bot.say("ada", "/unfreeze dev").await;
    assert!(reply_text(&bot, &reply).contains("[[calendar.freezes]]"), "{reply:?}");
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_skips_the_next_slot_and_schedule_shows_it() {
    let world = World::new();
    let sshd = Sshd::start();
    let (bot, scheduler) = saturday_morning(&world, &sshd).await;
    let mut announced = bot.app.engine.announcements();
    let before = world.head("dev");

    let (reply, _) = bot.say("grace", "/skip dev").await;
    assert!(refused(&reply).contains("Only a lead can use /skip"), "{reply:?}");
    let (reply, _) = bot.say("ada", "/skip dev").await;
    insta::assert_snapshot!("skip_accepted", reply_text(&bot, &reply));
    assert!(bot.app.store.skip("dev").unwrap().is_some(), "recorded");
    let (reply, _) = bot.say("ada", "/skip dev").await;
    assert!(reply_text(&bot, &reply).contains("already skipped by Ada"), "{reply:?}");

    let (reply, _) = bot.say("linus", "/schedule 8").await;
    let shown = reply_text(&bot, &reply);
    insta::assert_snapshot!("schedule_with_skip", shown);
    let (reply, _) = bot.say("linus", "/status dev").await;
    assert!(reply_text(&bot, &reply).contains("⏭️ next automatic deploy skipped by Ada"), "{reply:?}");

    // Sunday 20:00: the slot is skipped, and says so; nothing runs.
    bot.clock.set(eat(6, 20, 0));
    scheduler.tick().await.unwrap();
    let said = common::announced(&mut announced, "the skipped slot", common::text_containing("was skipped")).await;
    assert!(said.contains("dev's slot at Sun 06 Dec 20:00 EAT was skipped: skipped by Ada"), "{said}");
    assert_eq!(world.head("dev"), before);
    assert!(world.restarts().is_empty());
    assert!(bot.app.store.skip("dev").unwrap().is_none(), "a skip is used once");

    // The slot after it runs as usual.
    slot_deploys_dev(&bot, &scheduler, &mut announced, &world, eat(13, 20, 0)).await;
}

/// A lead skips dev's slot, thinks again, and withdraws the skip: the slot deploys as usual.
/// A developer cannot withdraw it, and withdrawing a skip that is not there says so.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn unskip_withdraws_a_skip_and_the_slot_runs_as_usual() {
    let world = World::new();
    let sshd = Sshd::start();
    let (bot, scheduler) = saturday_morning(&world, &sshd).await;
    let mut announced = bot.app.engine.announcements();

    let (reply, _) = bot.say("ada", "/unskip dev").await;
    insta::assert_snapshot!("unskip_nothing_to_withdraw", reply_text(&bot, &reply));
    bot.say("ada", "/skip dev").await;
    let (reply, _) = bot.say("grace", "/unskip dev").await;
    assert!(refused(&reply).contains("Only a lead can use /unskip"), "{reply:?}");
    assert!(bot.app.store.skip("dev").unwrap().is_some(), "a refused /unskip changes nothing");
    let (reply, _) = bot.say("ada", "/unskip dev").await;
    insta::assert_snapshot!("unskip_accepted", reply_text(&bot, &reply));
    assert!(bot.app.store.skip("dev").unwrap().is_none(), "withdrawn");
    let (reply, _) = bot.say("linus", "/status dev").await;
    assert!(!reply_text(&bot, &reply).contains("skipped"), "{reply:?}");

    // Sunday 20:00: the slot deploys.
    slot_deploys_dev(&bot, &scheduler, &mut announced, &world, eat(6, 20, 0)).await;
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_skips_a_merges_auto_deploy_and_a_freeze_refuses_the_next() {
    let world = World::new();
    let sshd = Sshd::start();
    let github = FakeGitHub::start().await;
    common::mirror_origin(&world, &github);
    std::fs::write(world.path().join("github-token"), common::fake_github::TOKEN).unwrap();
    let section = format!(
        "[github]\napi_base_url = \"{}\"\nowner = \"{OWNER}\"\nrepo = \"{REPO}\"\ntoken = {{ file = \"github-token\" }}\n",
        github.url
    );
    let bot = Bot::start_at(&config(&world, &sshd, &section), eat(2, 16, 0));
    let mut announced = bot.app.engine.announcements();
    let before = world.head("dev");
    let merge = |number: u64, branch: &str, title: &str| {
        let sha = common::real_merge(
            world.path(),
            &world.tip("dev"),
            &world.tip(branch),
            &format!("Merge pull request #{number} from grace/{branch}"),
        );
        let sha = shipday::release::gitref::Sha::parse(&sha).unwrap();
        github.add_commit_with_sha("dev", &sha, title, "grace-gh", &["login.py"]);
        shipday::webhook::github::GitHubEvent::Merged {
            base: "dev".into(),
            merge_sha: sha,
            number,
            title: title.into(),
            body: String::new(),
            author: "grace-gh".into(),
            head_ref: branch.into(),
        }
    };

    let (reply, _) = bot.say("ada", "/skip dev").await;
    assert!(reply_text(&bot, &reply).contains("or the next merge's auto-deploy"), "{reply:?}");
    bot.app.engine.github_event(merge(7, "feature/login", "Log in with email")).await;
    let said =
        common::announced(&mut announced, "the skipped auto-deploy", common::text_containing("did not auto-deploy"))
            .await;
    assert!(said.contains("skipped by Ada") && said.contains("#7"), "{said}");
    assert_eq!(world.head("dev"), before, "nothing ran on the host");
    assert!(bot.app.store.skip("dev").unwrap().is_none(), "used once");

    // A freeze refuses the next merge's auto-deploy, and says so.
    let (reply, _) = bot.say("ada", "/freeze dev incident 42").await;
    assert!(matches!(reply.body, ReplyBody::Text(_)), "{reply:?}");
    bot.app.engine.github_event(merge(8, "feature/search", "Search")).await;
    let said =
        common::announced(&mut announced, "the frozen auto-deploy", common::text_containing("did not auto-deploy"))
            .await;
    assert!(said.contains("🧊 dev is frozen by Ada") && said.contains("#8"), "{said}");
    assert_eq!(world.head("dev"), before, "nothing ran on the host");
    assert!(world.restarts().is_empty());
}
