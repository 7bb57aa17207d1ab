//! Jira follows the code, end to end: real deploys (local transport, real git) move the tickets
//! they shipped on the stateful fake Jira through the durable outbox, `/ticket` passes, fails
//! and looks up tickets, and the drag-window reminders list who has what to test.

use testkit as common;

use chrono::{DateTime, TimeZone, Utc};
use common::fake_jira::{EMAIL, FakeJira, Fault, TOKEN};
use common::{Bot, World, git, refused};
use shipday::engine::{Announcement, Visibility};
use shipday::release::deploy::Outcome;
use shipday::release::ticket_flow::MoveState;
use shipday::scheduler::Scheduler;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::broadcast;

const ISSUE_2: &str = "/rest/api/3/issue/SHOP-2";

/// The world's config with `[jira]` pointing at the fake (plus `extra` TOML inside the table),
/// and Grace and Linus mapped to their Jira accounts.
fn jira_config(world: &World, jira: &FakeJira, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    let text = text
        .replace("name = \"Grace\"\n", "name = \"Grace\"\njira = \"acc-grace\"\n")
        .replace("name = \"Linus\"\n", "name = \"Linus\"\njira = \"acc-linus\"\n");
    std::fs::write(world.path().join("jira.token"), TOKEN).unwrap();
    let table = format!(
        "\n[jira]\nbase_url = \"{}\"\nemail = \"{EMAIL}\"\ntoken = {{ file = \"jira.token\" }}\n\
         projects = [\"SHOP\"]\nmax_attempts = 1\ntimeout = \"1s\"\n{extra}\n",
        jira.url
    );
    let path = world.path().join("jira.toml");
    std::fs::write(&path, format!("{text}{table}")).unwrap();
    path
}

/// The team's board with the playground's tickets: SHOP-1 (on staging's branch), SHOP-2 (on
/// dev's), SHOP-3 and SHOP-4 (personal branches).
async fn board() -> FakeJira {
    let jira = FakeJira::start().await;
    jira.add_issue("SHOP-1", "Add the cart page", "Staging", Some(("acc-linus", "Linus Torvalds")));
    jira.add_issue("SHOP-2", "Add search box", "Pull Request", Some(("acc-grace", "Grace Hopper")));
    jira.add_issue("SHOP-3", "Log in with email", "Pull Request", Some(("acc-grace", "Grace Hopper")));
    jira.add_issue("SHOP-4", "Search by name", "Pull Request", Some(("acc-linus", "Linus Torvalds")));
    jira
}

/// Puts an environment's checkout on `branch`'s commit, as if it ran that before Shipday.
fn runs(world: &World, env: &str, branch: &str) {
    git(&world.path().join("envs").join(env), &["checkout", "--quiet", "--detach", &world.tip(branch)]);
}

/// Starts the bot and waits for its start-up HEAD reads (the first deploy compares with them).
async fn start(config: &Path) -> Bot {
    let bot = Bot::start(config);
    let store = bot.app.store.clone();
    eventually("the start-up HEAD reads", || {
        ["dev", "staging", "production"].iter().all(|env| store.observation(env).unwrap().is_some()).then_some(())
    })
    .await;
    bot
}

/// Polls `check` until it gives a value, under a timeout.
async fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    common::eventually_some(common::PATIENCE, what, check).await
}

/// Waits until every deploy's commits were read and every ticket move left the outbox.
async fn moves_settled(bot: &Bot) {
    let store = bot.app.store.clone();
    eventually("the ticket moves", || {
        (store.ticket_scans().unwrap().is_empty() && store.pending_jira_moves().unwrap().is_empty()).then_some(())
    })
    .await;
}

fn eat(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    chrono_tz::Africa::Nairobi.with_ymd_and_hms(2026, 11, day, hour, minute, 0).unwrap().with_timezone(&Utc)
}

#[bounded::test]
async fn a_dev_deploy_of_dev_moves_its_ticket_to_dev_testing_and_mentions_the_assignee() {
    let world = World::new();
    runs(&world, "dev", "staging");
    let jira = board().await;
    let bot = start(&jira_config(&world, &jira, "")).await;
    let mut news = bot.app.engine.announcements();

    let record = bot.deployed("linus", "/deploy dev dev").await;
    moves_settled(&bot).await;
    assert_eq!(jira.status("SHOP-2"), "Dev Testing");
    let said = common::announced(&mut news, "🧪 SHOP-2", common::text_containing("🧪 SHOP-2")).await;
    assert!(said.contains("on dev and in Dev Testing: @{grace}, it is yours to test"), "{said}");
    assert_eq!(jira.status("SHOP-1"), "Staging", "already ahead of dev: never dragged back");
    let stored = bot.app.store.deploy(record.id).unwrap().unwrap();
    assert_eq!(stored.tickets, ["SHOP-2"], "the deploy lists the ticket it shipped");
    let moves = bot.app.store.recent_jira_moves(10).unwrap();
    assert!(matches!(&moves[0].state, MoveState::Done { outcome, .. } if outcome == "moved from Pull Request"));
    assert!(moves[0].reason.contains(&format!("deploy #{} of `dev` to dev", record.id)), "{:?}", moves[0]);
}

/// The operator's log of a deploy's ticket moves: the outbox delivers them later, on its own
/// task, and each line about one (here "ticket move delivered") still names the deploy that
/// queued it, its environment and who asked for it; the deploy's own lines carry the command's
/// platform and user.
#[bounded::test]
async fn a_deploys_ticket_moves_are_logged_with_its_deploy_id_env_and_person() {
    let logs = common::captured_logs();
    let world = World::new();
    runs(&world, "dev", "staging");
    let jira = board().await;
    let bot = start(&jira_config(&world, &jira, "")).await;
    let record = bot.deployed("linus", "/deploy dev dev").await;
    moves_settled(&bot).await;
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let id = record.id;
    let delivered = text
        .lines()
        .find(|l| {
            l.contains("ticket move delivered")
                && l.contains("key=SHOP-2")
                && l.contains(&format!("deploy_id={id} env=dev person=linus"))
        })
        .unwrap_or_else(|| panic!("no ticket move line with deploy #{id}:\n{text}"));
    assert!(delivered.contains("ticket move{"), "{delivered}");
    let finished = format!("platform=console user=linus person=linus text=/deploy dev dev env=dev deploy_id={id}}}");
    assert!(
        text.lines().any(|l| l.contains(&finished) && l.contains("deploy finished")),
        "the deploy's end in its command's span:\n{text}"
    );
}

#[bounded::test]
async fn a_personal_branch_deploy_moves_nothing() {
    let world = World::new();
    runs(&world, "dev", "staging");
    let jira = board().await;
    let bot = start(&jira_config(&world, &jira, "")).await;
    let record = bot.deployed("grace", "/deploy dev feature/login").await;
    assert!(bot.app.store.ticket_scans().unwrap().is_empty(), "nothing to read");
    assert!(bot.app.store.recent_jira_moves(10).unwrap().is_empty());
    assert!(bot.app.store.deploy(record.id).unwrap().unwrap().tickets.is_empty());
    assert_eq!((jira.status("SHOP-2"), jira.status("SHOP-3")), ("Pull Request".into(), "Pull Request".into()));
    assert!(jira.requests().is_empty(), "Jira was not even asked");
}

#[bounded::test]
async fn a_staging_deploy_moves_staging_tickets_to_the_next_column_and_production_to_done() {
    let world = World::new();
    runs(&world, "staging", "master");
    runs(&world, "production", "master");
    let jira = board().await;
    jira.add_transition("61", "Ready to release", "Staging", "Ready for Release");
    jira.add_transition("71", "Released", "Ready for Release", "Done");
    jira.set_status("SHOP-2", "Dev Testing");
    let bot = start(&jira_config(&world, &jira, "[jira.columns]\nafter_staging = \"Ready for Release\"")).await;

    bot.deployed("grace", "/deploy staging staging").await;
    moves_settled(&bot).await;
    assert_eq!(jira.status("SHOP-1"), "Ready for Release");

    // Staging's branch reaches master, and production ships it (a lead, in an emergency).
    git(&world.path().join("origin.git"), &["update-ref", "refs/heads/master", &world.tip("dev")]);
    let record = bot.deployed("ada", "/deploy production master --emergency \"release 1.2\"").await;
    moves_settled(&bot).await;
    assert_eq!(bot.app.store.deploy(record.id).unwrap().unwrap().tickets, ["SHOP-1", "SHOP-2"]);
    assert_eq!(jira.status("SHOP-1"), "Done");
    // SHOP-2 is still in Dev Testing: untested, so production leaves it there (never forced).
    assert_eq!(jira.status("SHOP-2"), "Dev Testing");
}

#[bounded::test]
async fn a_ticket_already_in_its_column_is_a_no_op() {
    let world = World::new();
    runs(&world, "dev", "staging");
    let jira = board().await;
    jira.set_status("SHOP-2", "Dev Testing");
    let bot = start(&jira_config(&world, &jira, "")).await;
    bot.deployed("linus", "/deploy dev dev").await;
    moves_settled(&bot).await;
    let moves = bot.app.store.recent_jira_moves(10).unwrap();
    assert!(matches!(&moves[0].state, MoveState::Done { outcome, .. } if outcome == "already there"), "{moves:?}");
    assert!(jira.requests().iter().all(|r| r.method == "GET"), "nothing was posted");
}

/// Adds a commit with `message` on top of `branch` in the origin (same tree): a merged piece of
/// work whose message names its ticket.
fn commit_on(world: &World, branch: &str, message: &str) {
    let origin = world.path().join("origin.git");
    let tip = world.tip(branch);
    let tree = git(&origin, &["rev-parse", &format!("{tip}^{{tree}}")]);
    let commit = git(
        &origin,
        &[
            "-c",
            "user.name=Grace",
            "-c",
            "user.email=grace@team.example",
            "commit-tree",
            &tree,
            "-p",
            &tip,
            "-m",
            message,
        ],
    );
    git(&origin, &["update-ref", &format!("refs/heads/{branch}"), &commit]);
}

/// A release of five tickets to production on the team's linear board (Pull Request → Dev
/// Testing → Staging → Done), wherever each card happens to be: SHOP-1 and SHOP-5 were passed
/// to Staging, SHOP-2 is still in Dev Testing, SHOP-6 in Pull Request, SHOP-7 already Done.
async fn release_of_five_tickets(extra: &str) -> (World, FakeJira, Bot, broadcast::Receiver<Announcement>, u64) {
    let world = World::new();
    runs(&world, "production", "master");
    let jira = board().await;
    jira.set_status("SHOP-2", "Dev Testing");
    jira.add_issue("SHOP-5", "Fix search paging", "Staging", Some(("acc-grace", "Grace Hopper")));
    jira.add_issue("SHOP-6", "Tidy the footer", "Pull Request", Some(("acc-linus", "Linus Torvalds")));
    jira.add_issue("SHOP-7", "Refunds", "Done", Some(("acc-linus", "Linus Torvalds")));
    git(&world.path().join("origin.git"), &["update-ref", "refs/heads/master", &world.tip("dev")]);
    for message in ["SHOP-5 Fix search paging", "SHOP-6 Tidy the footer", "SHOP-7 Refunds"] {
        commit_on(&world, "master", message);
    }
    let bot = start(&jira_config(&world, &jira, extra)).await;
    let news = bot.app.engine.announcements();
    let record = bot.deployed("ada", "/deploy production master --emergency \"release 1.2\"").await;
    moves_settled(&bot).await;
    let mut shipped = bot.app.store.deploy(record.id).unwrap().unwrap().tickets;
    shipped.sort();
    assert_eq!(shipped, ["SHOP-1", "SHOP-2", "SHOP-5", "SHOP-6", "SHOP-7"]);
    (world, jira, bot, news, record.id)
}

#[bounded::test]
async fn a_production_release_on_a_linear_board_moves_only_the_tickets_in_staging_and_gives_up_none() {
    let (_world, jira, bot, _news, _) = release_of_five_tickets("").await;
    assert_eq!((jira.status("SHOP-1"), jira.status("SHOP-5")), ("Done".into(), "Done".into()));
    // The untested ones stay where the team left them: the workflow has no way to Done from
    // there, and a production deploy must not pretend they were tested.
    assert_eq!(jira.status("SHOP-2"), "Dev Testing");
    assert_eq!(jira.status("SHOP-6"), "Pull Request");
    assert_eq!(jira.status("SHOP-7"), "Done");
    let moves = bot.app.store.recent_jira_moves(10).unwrap();
    let outcome = |key: &str| {
        let found = moves.iter().find(|m| m.key.to_string() == key).unwrap();
        match &found.state {
            MoveState::Done { outcome, .. } => outcome.clone(),
            other => panic!("{key}: {other:?}"),
        }
    };
    assert_eq!(outcome("SHOP-1"), "moved from Staging");
    assert_eq!(outcome("SHOP-2"), "left in Dev Testing");
    assert_eq!(outcome("SHOP-6"), "left in Pull Request");
    assert_eq!(outcome("SHOP-7"), "already there");
    let (status, _) = bot.say("grace", "/status").await;
    assert!(!bot.show(&status).contains("gave up"), "{}", bot.show(&status));
}

#[bounded::test]
async fn every_move_one_deploy_gives_up_is_announced_in_one_message_and_shown_in_status() {
    // The old default, configured on purpose: production moves tickets to Done from anywhere.
    let (_world, jira, bot, mut news, deploy_id) =
        release_of_five_tickets("[jira.on_deploy]\nproduction = { to = \"Done\" }").await;
    assert_eq!((jira.status("SHOP-1"), jira.status("SHOP-5")), ("Done".into(), "Done".into()));

    let said = common::announced(&mut news, "gave up moving", common::text_containing("gave up moving")).await;
    assert!(said.starts_with("⚠️ Shipday gave up moving 2 tickets in Jira"), "{said}");
    assert!(said.contains(&format!("(deploy #{deploy_id} of `master` to production)")), "{said}");
    assert!(said.contains("• SHOP-2 to Done: ") && said.contains("• SHOP-6 to Done: "), "{said}");
    assert!(said.contains("SHOP-2 cannot move from `Dev Testing` to `Done`"), "{said}");
    assert!(said.contains("the workflow offers only `Staging`, `Pull Request`"), "{said}");
    assert!(said.contains("Move them by hand"), "{said}");
    // Everything was settled before that message: nothing else about this deploy follows.
    while let Ok(more) = news.try_recv() {
        if let Announcement::Text(text) = more {
            assert!(!text.contains("gave up"), "a second give-up message: {text}");
        }
    }
    let (status, _) = bot.say("grace", "/status").await;
    let text = bot.show(&status);
    for key in ["SHOP-2", "SHOP-6"] {
        let line =
            format!("⚠️ Jira: Shipday gave up moving {key} to Done (deploy #{deploy_id} of `master` to production)");
        assert!(text.contains(&line), "{text}");
    }
}

#[bounded::test]
async fn jira_down_during_a_deploy_the_deploy_succeeds_and_the_move_survives_a_restart() {
    let world = World::new();
    runs(&world, "dev", "staging");
    let jira = board().await;
    jira.fail("GET", ISSUE_2, Fault::ServerError, 1);
    let config = jira_config(&world, &jira, "");
    let bot = start(&config).await;

    bot.deployed("linus", "/deploy dev dev").await;
    let store = bot.app.store.clone();
    let waiting =
        eventually("a failed attempt", || store.pending_jira_moves().unwrap().into_iter().find(|m| m.attempts == 1))
            .await;
    assert!(waiting.last_error.as_deref().unwrap_or_default().contains("500"), "{waiting:?}");
    assert_eq!(jira.status("SHOP-2"), "Pull Request");
    let (status, _) = bot.say("grace", "/status").await;
    assert!(
        bot.show(&status)
            .contains("Jira: 1 ticket move(s) on their way; next: SHOP-2 from Pull Request to Dev Testing")
    );
    drop((store, bot));

    // Jira is back; the bot restarts and delivers what it had queued.
    let bot = restart(&config).await;
    bot.clock.set(waiting.next_attempt_at + chrono::Duration::seconds(1));
    bot.app.engine.deliver_ticket_moves();
    moves_settled(&bot).await;
    assert_eq!(jira.status("SHOP-2"), "Dev Testing");
    let moves = bot.app.store.recent_jira_moves(10).unwrap();
    assert_eq!((moves.len(), moves[0].attempts), (1, 2));
}

async fn restart(config: &Path) -> Bot {
    Bot::restart(config).await
}

#[bounded::test]
async fn ticket_pass_inside_the_window_by_the_assignee_moves_it_to_staging() {
    let world = World::new();
    let jira = board().await;
    jira.set_status("SHOP-2", "Dev Testing");
    jira.add_issue("SHOP-5", "Fix search paging", "Dev Testing", Some(("acc-grace", "Grace Hopper")));
    let bot = start(&jira_config(&world, &jira, "")).await;
    bot.clock.set(eat(29, 20, 30));

    let (reply, _) = bot.say("grace", "/ticket shop-2 pass").await;
    assert_eq!(reply.visibility, Visibility::Public);
    assert_eq!(
        bot.show(&reply),
        "✅ SHOP-2 Add search box passed dev testing: Grace moved it from Dev Testing to Staging."
    );
    assert_eq!(jira.status("SHOP-2"), "Staging");

    let (reply, _) = bot.say("linus", "/ticket SHOP-5 pass").await;
    assert_eq!(refused(&reply), "Only the assignee (Grace) or a lead can pass SHOP-5.");
    let (reply, _) = bot.say("grace", "/ticket SHOP-1 pass").await;
    assert_eq!(refused(&reply), "SHOP-1 is in Staging, not Dev Testing.");
    let (reply, _) = bot.say("grace", "/ticket OPS-1 pass").await;
    assert!(refused(&reply).contains("`OPS-1` is not a ticket key like SHOP-123"), "{reply:?}");
    assert_eq!(jira.status("SHOP-5"), "Dev Testing");
    let audit = bot.app.store.audit_tail(4).unwrap();
    assert!(audit[3].decision.starts_with("accepted: moved SHOP-2 from Dev Testing to Staging"), "{audit:?}");
}

#[bounded::test]
async fn ticket_pass_outside_the_window_is_refused_with_the_next_window_and_a_lead_may_override() {
    let world = World::new();
    let jira = board().await;
    jira.set_status("SHOP-4", "Dev Testing");
    let bot = start(&jira_config(&world, &jira, "")).await;
    bot.clock.set(eat(25, 12, 0));
    let mut news = bot.app.engine.announcements();

    let (reply, _) = bot.say("linus", "/ticket SHOP-4 pass").await;
    let text = refused(&reply);
    assert!(text.contains("opens Sun 29 Nov 20:00 EAT") && text.contains("closes Mon 30 Nov 08:30 EAT"), "{text}");
    assert!(text.contains("--override"), "{text}");
    let (reply, _) = bot.say("linus", "/ticket SHOP-4 pass --override \"I am sure\"").await;
    assert_eq!(refused(&reply), "Only a lead can use --override.");
    assert_eq!(jira.status("SHOP-4"), "Dev Testing");
    assert!(jira.requests().is_empty(), "refused before asking Jira");

    let (reply, _) = bot.say("ada", "/ticket SHOP-4 pass --override \"hotfix for the sale\"").await;
    assert!(bot.show(&reply).contains("passed dev testing: Ada moved it"), "{reply:?}");
    assert_eq!(jira.status("SHOP-4"), "Staging");
    let audit = bot.app.store.audit_tail(1).unwrap();
    assert!(audit[0].decision.contains("OVERRIDE outside the drag window: hotfix for the sale"), "{audit:?}");
    let said = common::announced(&mut news, "🚨", common::text_containing("🚨")).await;
    assert_eq!(
        said,
        "🚨 @{ada} passed SHOP-4 to Staging outside the ticket-drag window (it next opens Sun 29 Nov 20:00 EAT). \
         Reason: hotfix for the sale"
    );
}

#[bounded::test]
async fn ticket_fail_comments_with_who_and_why_and_moves_it_back_when_configured() {
    let world = World::new();
    let jira = board().await;
    jira.set_status("SHOP-2", "Dev Testing");
    let bot = start(&jira_config(&world, &jira, "[jira.columns]\nfail_to = \"Pull Request\"")).await;
    let (reply, _) = bot.say("linus", "/ticket SHOP-2 fail the search box crashes on empty input").await;
    assert_eq!(
        bot.show(&reply),
        "❌ SHOP-2 failed dev testing (Linus): the search box crashes on empty input. The comment is on the ticket. \
         It moved back to Pull Request."
    );
    let comments = jira.comments("SHOP-2");
    assert_eq!(comments.len(), 1);
    let words = comments[0].to_string();
    assert!(words.contains("Failed dev testing, reported by Linus with Shipday:"), "{words}");
    assert!(words.contains("the search box crashes on empty input"), "{words}");
    assert_eq!(jira.status("SHOP-2"), "Pull Request");
}

#[bounded::test]
async fn ticket_status_shows_the_column_the_assignee_and_where_the_code_is() {
    let world = World::new();
    runs(&world, "dev", "staging");
    let jira = board().await;
    let bot = start(&jira_config(&world, &jira, "")).await;
    let record = bot.deployed("linus", "/deploy dev dev").await;
    moves_settled(&bot).await;
    let (reply, _) = bot.say("linus", "/ticket SHOP-2 status").await;
    assert_eq!(reply.visibility, Visibility::Ephemeral);
    let text = bot.show(&reply);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..3], ["SHOP-2 Add search box", "Column: Dev Testing", "Assignee: Grace"]);
    let since = format!("dev: shipped there by deploy #{} (`dev` at {}", record.id, record.sha.short());
    assert!(lines[3].starts_with(&since), "{text}");
    assert_eq!(
        lines[4..],
        ["staging: not shipped there by any Shipday deploy", "production: not shipped there by any Shipday deploy"]
    );

    let (reply, _) = bot.say("linus", "/ticket SHOP-404 status").await;
    assert!(refused(&reply).contains("Jira has no SHOP-404"), "{reply:?}");
}

#[bounded::test]
async fn without_jira_ticket_says_so_and_changes_nothing() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let (reply, _) = bot.say("grace", "/ticket SHOP-2 pass").await;
    assert!(refused(&reply).starts_with("Jira is not configured"), "{reply:?}");
    let (reply, _) = bot.say("grace", "/ticket SHOP-2 fail").await;
    assert!(refused(&reply).contains("needs a reason"), "{reply:?}");
}

fn scheduler(bot: &Bot) -> Scheduler {
    let app = &bot.app;
    Scheduler::new(app.config.calendar.clone(), app.engine.clone(), Arc::new(bot.clock.clone()))
}

#[bounded::test]
async fn the_window_reminders_list_each_persons_tickets_and_the_close_flags_drift() {
    let world = World::new();
    let jira = board().await;
    jira.set_status("SHOP-2", "Dev Testing");
    jira.set_status("SHOP-4", "Dev Testing");
    jira.add_issue("SHOP-5", "Fix search paging", "Dev Testing", Some(("acc-grace", "Grace Hopper")));
    jira.add_issue("SHOP-7", "Tidy the footer", "Dev Testing", None);
    jira.add_issue("SHOP-8", "Refunds", "Dev Testing", Some(("acc-kim", "Kim Oduya")));
    let bot = start(&jira_config(&world, &jira, "")).await;
    let scheduler = scheduler(&bot);
    bot.clock.set(eat(29, 19, 59));
    scheduler.tick().await.unwrap();
    let mut news = bot.app.engine.announcements();

    bot.clock.set(eat(29, 20, 0));
    scheduler.tick().await.unwrap();
    let said = common::announced(&mut news, "In Dev Testing", common::text_containing("In Dev Testing")).await;
    assert_eq!(
        said,
        "🧪 In Dev Testing, to test on dev and pass in the window with `/ticket KEY pass`:\n\
         • @{grace}: SHOP-2 Add search box; SHOP-5 Fix search paging\n\
         • @{linus}: SHOP-4 Search by name\n\
         • not assigned: SHOP-7 Tidy the footer\n\
         • Kim Oduya: SHOP-8 Refunds"
    );
    assert!(jira.requests_to("POST", "/rest/api/3/search/jql").len() >= 3, "paged through every page");

    bot.say("grace", "/ticket SHOP-2 pass").await;
    bot.clock.set(eat(30, 7, 30));
    scheduler.tick().await.unwrap();
    let said = common::announced(&mut news, "Still untested", common::text_containing("Still untested")).await;
    assert!(said.contains("• @{grace}: SHOP-5 Fix search paging\n"), "{said}");
    assert!(!said.contains("SHOP-2"), "{said}");

    bot.clock.set(eat(30, 8, 30));
    scheduler.tick().await.unwrap();
    let said =
        common::announced(&mut news, "At the window's close", common::text_containing("At the window's close")).await;
    assert!(said.contains("2 ticket(s) are in Staging"), "{said}");
    assert!(
        said.contains("Drift: in Staging, but Shipday never deployed their code to dev or staging (were they tested?): SHOP-1, SHOP-2"),
        "{said}"
    );
    let (status, _) = bot.say("grace", "/status").await;
    assert!(
        bot.show(&status).contains("⚠️ Jira drift at the window's close (Mon 30 Nov 08:30 EAT)"),
        "{}",
        bot.show(&status)
    );
}

/// GitHub's `pull_request` delivery (the contract sample) of PR `number`, merged into dev as
/// `merge_sha`, from branch `head_ref`, titled `title`.
fn merged_pull(number: u64, merge_sha: &str, head_ref: &str, title: &str) -> Vec<u8> {
    let path = common::fixture("contracts/github/pull_request.closed.merged.json");
    let mut payload: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    payload["number"] = number.into();
    payload["pull_request"]["number"] = number.into();
    payload["pull_request"]["merge_commit_sha"] = merge_sha.into();
    payload["pull_request"]["base"]["ref"] = "dev".into();
    payload["pull_request"]["head"]["ref"] = head_ref.into();
    payload["pull_request"]["title"] = title.into();
    payload["pull_request"]["body"] = "No ticket named here.".into();
    serde_json::to_vec(&payload).unwrap()
}

const HOOK_SECRET: &str = "It's a Secret to Everybody";

async fn deliver(url: &str, delivery: &str, body: &[u8]) {
    assert_eq!(common::deliver_github(url, "pull_request", delivery, body, HOOK_SECRET).await, 200);
}

/// Squash-merged pull requests whose ticket is named only in the branch name, or only in the
/// title (never in a commit message): the merge auto-deploys dev and each ticket moves, once.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_pull_request_moves_the_ticket_named_only_in_its_branch_or_only_in_its_title() {
    let world = World::new();
    let jira = board().await;
    jira.add_issue("SHOP-8", "Discount codes", "Pull Request", Some(("acc-grace", "Grace Hopper")));
    jira.add_issue("SHOP-9", "Gift cards", "Pull Request", Some(("acc-linus", "Linus Torvalds")));
    let bot = start(&jira_config(&world, &jira, "")).await;
    let hook = tempfile::tempdir().unwrap();
    let url = common::github_webhook(&bot, hook.path(), HOOK_SECRET).await;

    // Pull request `number` from `head_ref`, titled `title`, merged as a commit saying `commit`.
    let merge = |number: u64, head_ref: &'static str, title: &'static str, commit: &'static str| {
        let (world, bot, url) = (&world, &bot, &url);
        async move {
            commit_on(world, "dev", commit);
            let sha = world.tip("dev");
            deliver(url, &format!("guid-{number}"), &merged_pull(number, &sha, head_ref, title)).await;
            let shipped = eventually(&format!("#{number}'s deploy and its tickets"), || {
                let latest = bot.app.store.latest_deploy("dev").unwrap()?;
                (latest.sha.as_str() == sha && !latest.tickets.is_empty()).then_some(latest)
            })
            .await;
            moves_settled(bot).await;
            shipped
        }
    };

    let shipped =
        merge(8, "feature/SHOP-8-discount", "Discount codes at checkout", "Discount codes at checkout (#8)").await;
    assert_eq!(shipped.outcome, Outcome::Succeeded);
    assert_eq!(shipped.tickets, ["SHOP-8"], "named only in the branch");
    assert_eq!(jira.status("SHOP-8"), "Dev Testing");
    assert_eq!(jira.status("SHOP-9"), "Pull Request");

    let shipped = merge(9, "gift-cards", "SHOP-9: Gift cards", "Gift cards (#9)").await;
    assert_eq!(shipped.tickets, ["SHOP-9"], "named only in the title; SHOP-8 shipped before");
    assert_eq!(jira.status("SHOP-9"), "Dev Testing");
    let moves = bot.app.store.recent_jira_moves(10).unwrap();
    for key in ["SHOP-8", "SHOP-9"] {
        assert_eq!(moves.iter().filter(|m| m.key.to_string() == key).count(), 1, "{key} moved once: {moves:#?}");
    }
}
