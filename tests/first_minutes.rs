//! The rough edges a developer meets in their first five minutes with Shipday (issue 12,
//! point 5): what the bot logs at start, what it says when it refuses, and how its replies
//! read. Wording is snapshotted with insta.

use testkit as common;

use chrono::{DateTime, TimeZone, Utc};
use common::fake_github::{FakeGitHub, FakeProtection, OWNER, REPO};
use common::sshd::{KeyType, Sshd};
use common::{Bot, World, refused};
use shipday::engine::{Announcement, MessageRef, Reaction, ReplyBody};
use shipday::release::approvals::RequestState;
use shipday::release::deploy::{DeployRecord, Outcome, Trigger};
use shipday::release::gitref::Sha;
use shipday::webhook::github::GitHubEvent;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

const SSH_STEPS: &str = r#"
  { name = "fetch", run = "git fetch --all --prune --quiet" },
  { name = "checkout", run = "git checkout --quiet --detach {{sha}}" },"#;

/// Everything this test binary logs (tests run in parallel: each looks for its own markers).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    common::captured_logs()
}

/// Commit ids, which differ from run to run, for snapshots.
fn shas() -> regex::Regex {
    regex::Regex::new("\\b[0-9a-f]{8,40}\\b").unwrap()
}

fn text(logs: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&logs.lock().unwrap()).into_owned()
}

/// Waits (under a timeout) until `done` holds.
async fn until(what: &str, done: impl FnMut() -> bool) {
    common::eventually(common::PATIENCE, what, done).await
}

#[bounded::test]
async fn a_fresh_start_reads_the_hosts_without_warning_of_drift_where_shipday_never_deployed() {
    let logs = logs();
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    // The start-up check has read every host once it recorded what it saw.
    until("the start-up HEAD reads", || {
        ["dev", "staging", "production"].iter().all(|env| bot.app.store.observation(env).unwrap().is_some())
    })
    .await;
    let head = world.head("dev");
    let ours = |logged: &str| -> Vec<String> {
        logged.lines().filter(|l| l.contains(&format!("found={head}"))).map(String::from).collect()
    };
    until("the start-up read of dev to be logged", || !ours(&text(&logs)).is_empty()).await;
    let lines = ours(&text(&logs));
    assert!(lines.iter().all(|l| !l.contains("WARN") && !l.contains("drift")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("INFO") && l.contains("nothing to compare")), "{lines:#?}");
}

#[bounded::test]
async fn a_bad_branch_name_is_refused_saying_what_is_wrong_once() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let (reply, _) = bot.say("grace", "/deploy dev feature;login").await;
    insta::assert_snapshot!(refused(&reply));
}

#[bounded::test]
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
    let said = common::texts_so_far(&mut heard);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(!said[0].contains("reminder:"), "{}", said[0]);
    insta::assert_snapshot!(said[0]);
}

fn scheduler(bot: &Bot) -> shipday::scheduler::Scheduler {
    shipday::scheduler::Scheduler::new(
        bot.app.config.calendar.clone(),
        bot.app.engine.clone(),
        Arc::new(bot.clock.clone()),
    )
}

async fn restart(config: &std::path::Path, at: DateTime<Utc>) -> Bot {
    let bot = Bot::restart(config).await;
    bot.clock.set(at);
    bot
}

#[bounded::test]
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

#[bounded::test]
async fn a_changed_host_key_is_logged_once_per_refusal() {
    let logs = logs();
    let world = World::new();
    let sshd = Sshd::start();
    let known_hosts = sshd.pin();
    let config = world.ssh_config(&sshd, &known_hosts, SSH_STEPS, "");
    let sshd = sshd.rotate_host_key();
    let bot = Bot::start(&config);
    // The start-up read of dev's HEAD is refused too, and says so once.
    until("the start-up read of dev", || bot.app.store.observation("dev").unwrap().is_some()).await;
    // This host's refusals, in the log every test of this binary writes to.
    let marker = format!("[127.0.0.1]:{} has CHANGED", sshd.port);
    let refusals = || text(&logs).matches(&marker).count();
    until("the start-up refusal to be logged", || refusals() > 0).await;
    assert_eq!(refusals(), 1, "{}", text(&logs));
    let (reply, _) = bot.say("grace", "/deploy dev feature/login").await;
    assert!(refused(&reply).contains("has CHANGED"));
    assert_eq!(refusals(), 2, "one more for the deploy: {}", text(&logs));
    drop(sshd);
}

#[bounded::test]
async fn a_host_offering_another_key_type_is_refused_with_the_fingerprint_it_offered() {
    let world = World::new();
    let sshd = Sshd::start_with(KeyType::Ecdsa);
    // Pin an ed25519 key (made for this test) for the host, which only has an ECDSA key.
    let other = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(other.path().join("k"))
        .status()
        .unwrap();
    assert!(made.success());
    let line = std::fs::read_to_string(other.path().join("k.pub")).unwrap();
    let known_hosts = sshd.pin_line(line.trim());
    let pinned = std::fs::read_to_string(&known_hosts).unwrap();
    // What `ssh-keygen -lf` says of the host's real key, as an operator would check it.
    let host_key = sshd.path().join("host_key.pub");
    let listed = std::process::Command::new("ssh-keygen").arg("-lf").arg(&host_key).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let fingerprint = listed.split_whitespace().nth(1).unwrap().to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{listed}");

    let bot = Bot::start(&world.ssh_config(&sshd, &known_hosts, SSH_STEPS, ""));
    let (reply, progress) = bot.say("grace", "/deploy dev feature/login").await;
    let text = refused(&reply);
    assert!(text.contains(&fingerprint), "no {fingerprint} in: {text}");
    assert!(text.contains("ecdsa-sha2-nistp256") && text.contains("pinned key is ssh-ed25519"), "{text}");
    assert!(progress.is_empty());
    assert!(world.restarts().is_empty());
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), pinned, "the bot never learns a key");
}

/// The next finished deploy announced to the team (one no command follows).
async fn finished_deploy(heard: &mut broadcast::Receiver<Announcement>) -> DeployRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, heard.recv()).await.expect("timed out waiting for a deploy");
        if let Ok(Announcement::Deploy(update)) = next
            && update.record.is_finished()
        {
            return update.record;
        }
    }
}

#[bounded::test]
async fn deploys_shipday_starts_itself_say_why_they_ran() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let mut heard = bot.app.engine.announcements();

    // Dev's slot, Sunday 20:00 EAT.
    let sunday_20_eat = Utc.with_ymd_and_hms(2026, 11, 29, 17, 0, 0).unwrap();
    bot.clock.set(sunday_20_eat - chrono::Duration::minutes(1));
    let scheduler = scheduler(&bot);
    scheduler.tick().await.unwrap();
    bot.clock.set(sunday_20_eat);
    scheduler.tick().await.unwrap();
    let slot = finished_deploy(&mut heard).await;
    assert_eq!((slot.trigger, slot.outcome.clone()), (Trigger::Scheduled, Outcome::Succeeded));

    // A pull request merged into dev on GitHub.
    let merged = common::real_merge(
        world.path(),
        &world.tip("dev"),
        &world.tip("feature/login"),
        "Merge pull request #7 from acme/feature/login",
    );
    bot.app
        .engine
        .github_event(GitHubEvent::Merged {
            base: "dev".into(),
            merge_sha: Sha::parse(&merged).unwrap(),
            number: 7,
            title: "Log in".into(),
            body: String::new(),
            author: "grace-gh".into(),
            head_ref: "feature/login".into(),
        })
        .await;
    let merge = finished_deploy(&mut heard).await;
    assert_eq!((merge.trigger, merge.sha.as_str()), (Trigger::Merge, merged.as_str()));

    // Grace's claim of dev runs out, and Shipday gives dev back.
    bot.say("grace", "/deploy dev feature/search").await;
    bot.clock.advance(chrono::Duration::hours(9));
    bot.app.engine.tick().await;
    let expired = finished_deploy(&mut heard).await;
    assert_eq!(expired.trigger, Trigger::Release);

    let requesters: Vec<&str> = [&slot, &merge, &expired].iter().map(|r| r.requested_by_name.as_str()).collect();
    assert_eq!(
        requesters,
        ["Shipday (dev's deploy slot)", "Shipday (merge of PR #7)", "Shipday (Grace's claim of dev expired)"]
    );
    let (history, _) = bot.say("grace", "/history dev 3").await;
    insta::assert_snapshot!("history_of_deploys_shipday_started", shas().replace_all(&bot.show(&history), "SHA"));
}

/// The playground with the fake GitHub (mirroring the origin) and Ada, a lead, on Slack.
async fn with_github(world: &World) -> (FakeGitHub, std::path::PathBuf) {
    let github = FakeGitHub::start().await;
    common::mirror_origin(world, &github);
    std::fs::write(world.path().join("github-token"), format!("{}\n", common::fake_github::TOKEN)).unwrap();
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    let text = format!(
        "{text}\n[github]\napi_base_url = \"{}\"\nowner = \"{OWNER}\"\nrepo = \"{REPO}\"\ntoken = {{ file = \"github-token\" }}\n",
        github.url
    )
    .replace(
        "[[people]]\nid = \"ada\"\nname = \"Ada\"\nroles = [\"lead\"]",
        "[[people]]\nid = \"ada\"\nname = \"Ada\"\nroles = [\"lead\"]\nslack = \"UADA\"",
    );
    let config = world.path().join("github.toml");
    std::fs::write(&config, text).unwrap();
    (github, config)
}

#[bounded::test]
async fn a_promotion_shows_approval_times_in_the_teams_zone_and_its_deploy_names_the_request() {
    let world = World::new();
    let (github, config) = with_github(&world).await;
    let bot = Bot::start(&config);
    // Wednesday 2 Dec 2026, 07:40 EAT: production's slot.
    bot.clock.set(Utc.with_ymd_and_hms(2026, 12, 2, 4, 40, 0).unwrap());
    bot.say("ada", "/deploy staging staging").await;
    let mut heard = bot.app.engine.announcements();
    bot.say("grace", "/promote staging production").await;
    let request = promotion_until(&mut heard, |s| *s == RequestState::Pending).await;
    let message = MessageRef { channel: "C-RELEASES".into(), id: "1700000000.000001".into() };
    bot.app.engine.bind_message(request.id, "slack", message.clone()).await;
    bot.app
        .engine
        .react(Reaction {
            platform: "slack".into(),
            user_id: "UADA".into(),
            platform_roles: vec![],
            emoji: "white_check_mark".into(),
            message,
            added: true,
            at: Utc::now(),
        })
        .await;
    let done =
        promotion_until(&mut heard, |s| matches!(s, RequestState::Done { .. } | RequestState::Failed { .. })).await;
    let RequestState::Done { deploy_id } = done.state else { panic!("{:?}", done.state) };
    let tally = done.tally(bot.app.config.timezone);
    assert!(tally.contains("approved by Ada (07:40 EAT)"), "{tally}");
    let record = bot.app.store.deploy(deploy_id).unwrap().unwrap();
    assert_eq!(record.requested_by_name, format!("Shipday (promotion request #{})", request.id));
    insta::assert_snapshot!(
        "promotion_done",
        shas()
            .replace_all(&shipday::chat::text::promotion(&done, bot.app.config.timezone), "SHA")
            .replace(github.url.as_str(), "http://fake-github")
    );
}

/// Waits for an announced promotion request to reach a state matching `done`.
async fn promotion_until(
    heard: &mut broadcast::Receiver<Announcement>,
    done: impl Fn(&RequestState) -> bool,
) -> shipday::release::approvals::PromotionRequest {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, heard.recv()).await.expect("timed out waiting for the promotion");
        if let Ok(Announcement::Promotion(view)) = next
            && done(&view.request.state)
        {
            return view.request;
        }
    }
}

#[bounded::test]
async fn a_deploy_that_claims_an_environment_says_until_when_in_the_teams_zone() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    // Monday 30 Nov 2026, 09:30 EAT.
    bot.clock.set(Utc.with_ymd_and_hms(2026, 11, 30, 6, 30, 0).unwrap());
    let (reply, _) = bot.say("grace", "/deploy dev feature/login").await;
    insta::assert_snapshot!("claiming_deploy_reply", shas().replace_all(&bot.show(&reply), "SHA"));
    // Deploying dev's own branch claims nothing, and says nothing about it.
    let (reply, _) = bot.say("grace", "/release dev").await;
    assert!(!bot.show(&reply).contains("yours"), "{}", bot.show(&reply));
}

#[bounded::test]
async fn a_dry_run_while_someone_holds_the_environment_runs_and_says_the_real_deploy_would_be_refused() {
    let world = World::new();
    let healthy = common::http_server(200).await;
    let config = world.config_path();
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "claim_ttl = \"8h\"",
        &format!("claim_ttl = \"8h\"\nhealth_url = \"{healthy}\"\nhealth_timeout = \"2s\""),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let bot = Bot::start(&config);
    bot.clock.set(Utc.with_ymd_and_hms(2026, 11, 30, 6, 30, 0).unwrap());
    bot.say("grace", "/deploy dev feature/login").await;
    let before = world.head("dev");
    let hold = bot.app.store.hold("dev").unwrap();

    let (reply, progress) = bot.say("linus", "/deploy dev feature/search --dry-run").await;
    let ReplyBody::DryRun(plan) = &reply.body else { panic!("{reply:?}") };
    assert_eq!(plan.sha.as_str(), world.tip("feature/search"));
    assert!(progress.is_empty());
    assert_eq!(world.head("dev"), before, "nothing changed");
    assert_eq!(bot.app.store.hold("dev").unwrap(), hold, "Grace still holds dev");
    let shown = shas().replace_all(&bot.show(&reply), "SHA").replace(&healthy, "http://HOST/health");
    insta::assert_snapshot!("dry_run_while_held", shown);
}

#[bounded::test]
async fn a_dry_run_lists_the_undo_of_another_branchs_migrations_first() {
    let world = common::django::DjangoWorld::new();
    let sshd = Sshd::start();
    let bot = Bot::start(&world.config(&sshd, &sshd.pin()));
    let (_, progress) = bot.say("grace", "/deploy dev feature/discount").await;
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);
    let applied = world.applied();

    // Ada may look at what deploying dev's own branch would do while Grace holds dev.
    let (reply, _) = bot.say("ada", "/deploy dev dev --dry-run").await;
    let ReplyBody::DryRun(plan) = &reply.body else { panic!("{reply:?}") };
    assert!(plan.steps[0].name.starts_with("undo orders migrations"), "{:?}", plan.steps[0].name);
    let shown = bot.show(&reply);
    assert!(shown.contains("manage.py migrate orders 0001_initial --noinput"), "{shown}");
    assert!(shown.contains("A real deploy would be refused now: dev is claimed by Grace"), "{shown}");
    assert_eq!(world.applied(), applied, "nothing was undone");
}

#[bounded::test]
async fn status_shows_dev_protected_once_it_is_protected_on_github_without_a_restart() {
    let world = World::new();
    let (github, config) = with_github(&world).await;
    let bot = Bot::start(&config);
    let status = || async { bot.show(&bot.say("grace", "/status").await.0) };
    common::eventually_async(common::PATIENCE, "the start-up protection check in /status", || async {
        status().await.contains("`dev` is NOT protected on GitHub").then_some(())
    })
    .await;

    // A lead protects dev on GitHub. Within a few minutes /status tells the truth.
    github.protect("dev", FakeProtection { requires_pull_request: true, ..FakeProtection::default() });
    bot.clock.advance(chrono::Duration::minutes(6));
    let shown = common::eventually_async(common::PATIENCE, "/status to say dev is protected", || async {
        let shown = status().await;
        shown.contains("`dev` is protected on GitHub: changes reach it only through pull requests.").then_some(shown)
    })
    .await;
    assert!(!shown.contains("NOT protected"), "{shown}");
}
