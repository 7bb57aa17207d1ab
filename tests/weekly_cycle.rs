//! The team's whole week in one story, with a controlled clock: a merged pull request reaches
//! dev, its ticket moves to Dev Testing, the drag window opens and the developer passes it, the
//! staging slot promotes dev to staging by itself, the production slot asks for approval, two
//! leads approve by reacting (one on Slack, one on Discord), production ships exactly the merged
//! commit, and the tickets are Done. Staging requires the `ci/test` check: the merged commit
//! passed it, so its promotion went through; the next week's merge failed it, so a lead's
//! request to promote it to staging is refused, naming the check and its link.

use testkit as common;

use chrono::{DateTime, TimeZone, Utc};
use common::fake_github::{FakeGitHub, OWNER, REPO};
use common::fake_jira::{EMAIL, FakeJira};
use common::{Bot, World, real_merge};
use shipday::engine::{Announcement, MessageRef, Reaction};
use shipday::release::approvals::RequestState;
use shipday::release::deploy::{Outcome, Trigger};
use shipday::release::gitref::Sha;
use shipday::scheduler::Scheduler;
use shipday::webhook::github::GitHubEvent;
use std::sync::Arc;

fn eat(month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    chrono_tz::Africa::Nairobi.with_ymd_and_hms(2026, month, day, hour, minute, 0).unwrap().with_timezone(&Utc)
}

async fn settle_moves(bot: &Bot) {
    common::eventually(common::PATIENCE, "the ticket moves to settle", || {
        bot.app.store.ticket_scans().unwrap().is_empty() && bot.app.store.pending_jira_moves().unwrap().is_empty()
    })
    .await;
}

#[bounded::test]
async fn the_whole_weekly_cycle() {
    let world = World::new();
    // GitHub mirrors the origin; its merges are real merge commits there.
    let github = FakeGitHub::start().await;
    common::mirror_origin(&world, &github);
    // The team's board.
    let jira = FakeJira::start().await;
    jira.add_issue("SHOP-3", "Log in with email", "Pull Request", Some(("acc-grace", "Grace Hopper")));
    std::fs::write(world.path().join("jira.token"), common::fake_jira::TOKEN).unwrap();
    std::fs::write(world.path().join("github-token"), common::fake_github::TOKEN).unwrap();
    let config = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace("name = \"Ada\"\nroles = [\"lead\"]", "name = \"Ada\"\nroles = [\"lead\"]\nslack = \"UADA\"")
        .replace("name = \"Grace\"\n", "name = \"Grace\"\njira = \"acc-grace\"\n")
        .replace("requires_approval = true", "requires_approval = true\napprovals = 2")
        .replace(
            "name = \"staging\"\n",
            "name = \"staging\"\nrequired_checks = [\"ci/test\"]\nci_wait = \"30m\"\nci_poll = \"1s\"\n",
        );
    let config = format!(
        "{config}\n[[people]]\nid = \"bob\"\nname = \"Bob\"\nroles = [\"lead\"]\ndiscord = \"4242\"\n\n\
         [github]\napi_base_url = \"{}\"\nowner = \"{OWNER}\"\nrepo = \"{REPO}\"\ntoken = {{ file = \"github-token\" }}\n\n\
         [jira]\nbase_url = \"{}\"\nemail = \"{EMAIL}\"\ntoken = {{ file = \"jira.token\" }}\nprojects = [\"SHOP\"]\nmax_attempts = 1\ntimeout = \"1s\"\n",
        github.url, jira.url
    );
    let path = world.path().join("week.toml");
    std::fs::write(&path, config).unwrap();

    let bot = Bot::start(&path);
    bot.clock.set(eat(11, 27, 10, 0)); // Friday
    common::eventually(common::PATIENCE, "the start-up observation of every environment", || {
        ["dev", "staging", "production"].iter().all(|e| bot.app.store.observation(e).unwrap().is_some())
    })
    .await;
    let scheduler =
        Scheduler::new(bot.app.config.calendar.clone(), bot.app.engine.clone(), Arc::new(bot.clock.clone()));
    scheduler.tick().await.unwrap();
    let mut heard = bot.app.engine.announcements();

    // Friday: Grace's pull request is merged into dev; the webhook deploys that exact commit.
    let merged = real_merge(
        world.path(),
        &world.tip("dev"),
        &world.tip("feature/login"),
        "Merge pull request #3 from grace/feature/login",
    );
    let merged = Sha::parse(&merged).unwrap();
    github.add_commit_with_sha("dev", &merged, "Merge pull request #3", "grace-gh", &["login.py"]);
    github.set_status(merged.as_str(), "ci/test", "success", Some("https://ci.example.com/builds/3"));
    bot.app
        .engine
        .github_event(GitHubEvent::Merged {
            base: "dev".into(),
            merge_sha: merged.clone(),
            number: 3,
            title: "SHOP-3 Log in with email".into(),
            body: String::new(),
            author: "grace-gh".into(),
            head_ref: "feature/login".into(),
        })
        .await;
    let dev = common::announced(&mut heard, "dev's merge deploy", |a| match a {
        Announcement::Deploy(u) if u.record.is_finished() => Some(u.record.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (dev.trigger, dev.outcome.clone(), dev.sha.clone()),
        (Trigger::Merge, Outcome::Succeeded, merged.clone())
    );
    settle_moves(&bot).await;
    assert_eq!(jira.status("SHOP-3"), "Dev Testing", "merged and on dev: ready to test");

    // Sunday 20:00: the drag window opens (Grace's ticket is listed) and dev's slot deploys dev.
    bot.clock.set(eat(11, 29, 19, 25));
    scheduler.tick().await.unwrap();
    bot.clock.set(eat(11, 29, 20, 0));
    scheduler.tick().await.unwrap();
    common::announced(&mut heard, "the window reminder with Grace's ticket", |a| match a {
        Announcement::Text(t) if t.contains("SHOP-3") && t.contains("@{grace}") => Some(()),
        _ => None,
    })
    .await;
    bot.clock.set(eat(11, 29, 20, 30));
    let (reply, _) = bot.say("grace", "/ticket SHOP-3 pass").await;
    assert!(!matches!(reply.body, shipday::engine::ReplyBody::Refused(_)), "{}", bot.show(&reply));
    assert_eq!(jira.status("SHOP-3"), "Staging");

    // Monday 08:30: the staging slot promotes dev to staging by itself.
    bot.clock.set(eat(11, 30, 8, 30));
    scheduler.tick().await.unwrap();
    let staging = common::announced(&mut heard, "the staging promotion", |a| match a {
        Announcement::Promotion(v)
            if v.request.to == "staging"
                && matches!(v.request.state, RequestState::Done { .. } | RequestState::Failed { .. }) =>
        {
            Some(v.request.clone())
        }
        _ => None,
    })
    .await;
    assert!(matches!(staging.state, RequestState::Done { .. }), "{:?}", staging.state);
    assert_eq!(world.head("staging"), github.branch("staging").unwrap().as_str());

    // Wednesday 07:30 on a production week: the request is posted; two leads approve.
    bot.clock.set(eat(12, 2, 7, 30));
    scheduler.tick().await.unwrap();
    let request = common::announced(&mut heard, "the production request", |a| match a {
        Announcement::Promotion(v) if v.request.to == "production" && v.request.state == RequestState::Pending => {
            Some(v.request.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(request.quorum, 2);
    let message = MessageRef { channel: "C-RELEASES".into(), id: "1764649800.000100".into() };
    for platform in ["slack", "discord"] {
        bot.app.engine.bind_message(request.id, platform, message.clone()).await;
    }
    for (platform, user, emoji) in [("slack", "UADA", "white_check_mark"), ("discord", "4242", "✅")] {
        bot.app
            .engine
            .react(Reaction {
                platform: platform.into(),
                user_id: user.into(),
                platform_roles: vec![],
                emoji: emoji.into(),
                message: message.clone(),
                added: true,
                at: Utc::now(),
            })
            .await;
    }
    let shipped = common::announced(&mut heard, "production shipped", |a| match a {
        Announcement::Promotion(v)
            if v.request.id == request.id
                && matches!(v.request.state, RequestState::Done { .. } | RequestState::Failed { .. }) =>
        {
            Some(v.request.clone())
        }
        _ => None,
    })
    .await;
    let RequestState::Done { deploy_id } = shipped.state else { panic!("{:?}", shipped.state) };
    assert!(
        shipped.tally(chrono_tz::UTC).contains("Ada") && shipped.tally(chrono_tz::UTC).contains("Bob"),
        "{}",
        shipped.tally(chrono_tz::UTC)
    );
    let production = bot.app.store.deploy(deploy_id).unwrap().unwrap();
    assert_eq!(production.sha, github.branch("master").unwrap(), "production runs exactly the merge");
    assert_eq!(world.head("production"), production.sha.as_str());
    settle_moves(&bot).await;
    assert_eq!(jira.status("SHOP-3"), "Done");

    // Thursday: the next pull request reaches dev, but its commit failed `ci/test`: a lead's
    // request to promote it to staging is refused, naming the check and its link.
    bot.clock.set(eat(12, 3, 10, 0));
    let next = real_merge(
        world.path(),
        &world.tip("dev"),
        &world.tip("feature/search"),
        "Merge pull request #4 from grace/feature/search",
    );
    let next = Sha::parse(&next).unwrap();
    github.add_commit_with_sha("dev", &next, "Merge pull request #4", "grace-gh", &["search.py"]);
    github.set_status(next.as_str(), "ci/test", "failure", Some("https://ci.example.com/builds/4"));
    bot.app
        .engine
        .github_event(GitHubEvent::Merged {
            base: "dev".into(),
            merge_sha: next.clone(),
            number: 4,
            title: "Search the catalogue".into(),
            body: String::new(),
            author: "grace-gh".into(),
            head_ref: "feature/search".into(),
        })
        .await;
    let dev = common::announced(&mut heard, "dev's second merge deploy", |a| match a {
        Announcement::Deploy(u) if u.record.is_finished() && u.record.sha == next => Some(u.record.clone()),
        _ => None,
    })
    .await;
    assert_eq!(dev.outcome, Outcome::Succeeded, "dev has no gate");
    let staging_before = world.head("staging");
    let (reply, _) = bot.say("ada", "/promote dev staging").await;
    let refusal = common::refused(&reply);
    assert!(refusal.contains("`ci/test` failure") && refusal.contains("https://ci.example.com/builds/4"), "{refusal}");
    assert_eq!(world.head("staging"), staging_before, "nothing was promoted");
    assert!(bot.app.store.open_promotions().unwrap().is_empty());

    // ---- Freeze and skip (issue 17) ----
    // After the release, Ada skips next Sunday's dev slot and freezes staging for the retro.
    let (reply, _) = bot.say("ada", "/skip dev").await;
    assert!(bot.show(&reply).contains("Ada skipped dev's next automatic deploy"), "{}", bot.show(&reply));
    let (reply, _) = bot.say("ada", "/freeze staging release retro --until 2026-12-08 09:00").await;
    assert!(bot.show(&reply).contains("Ada froze staging until Tue 08 Dec 09:00 EAT"), "{}", bot.show(&reply));
    let (reply, _) = bot.say("grace", "/schedule 7").await;
    let schedule = bot.show(&reply);
    assert!(schedule.contains("🧊 staging is frozen by Ada") && schedule.contains("⏭️ skipped by Ada"), "{schedule}");
    let (dev_before, staging_before) = (world.head("dev"), world.head("staging"));
    // Sunday 20:00: dev's slot is skipped.
    bot.clock.set(eat(12, 6, 20, 0));
    scheduler.tick().await.unwrap();
    common::announced(&mut heard, "the skipped dev slot", |a| match a {
        Announcement::Text(t) if t.starts_with("⏭️ dev's slot") && t.contains("skipped by Ada") => Some(()),
        _ => None,
    })
    .await;
    // Monday 08:30: staging's slot meets the freeze; nothing is promoted.
    bot.clock.set(eat(12, 7, 8, 30));
    scheduler.tick().await.unwrap();
    common::announced(&mut heard, "the frozen staging slot", |a| match a {
        Announcement::Text(t) if t.starts_with("🧊 staging's slot") && t.contains("release retro") => Some(()),
        _ => None,
    })
    .await;
    let (reply, _) = bot.say("ada", "/deploy staging staging").await;
    assert!(common::refused(&reply).contains("staging is frozen by Ada"), "{reply:?}");
    assert_eq!((world.head("dev"), world.head("staging")), (dev_before, staging_before), "nothing ran");
    // ---- end of freeze and skip ----
}
