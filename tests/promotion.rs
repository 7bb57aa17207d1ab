//! Promotions and lead approvals, with a stateful fake GitHub that follows the real git origin
//! the environments deploy from: every merge the fake makes is a real merge commit there.

use testkit as common;

use chrono::{DateTime, TimeZone, Utc};
use common::fake_github::{FakeGitHub, OWNER, REPO};
use common::{Bot, World, git, real_merge, refused};
use shipday::engine::{Announcement, MessageRef, Reaction, ReplyBody};
use shipday::release::approvals::RequestState;
use shipday::release::deploy::{Outcome, Trigger};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::broadcast;

/// Wednesday 2 Dec 2026, 07:40 EAT: production's slot, on a production week.
fn production_slot() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 4, 40, 0).unwrap()
}

struct Setup {
    world: World,
    github: FakeGitHub,
    config: PathBuf,
}

async fn setup() -> Setup {
    let world = World::new();
    let github = FakeGitHub::start().await;
    common::mirror_origin(&world, &github);
    let token = world.path().join("github-token");
    std::fs::write(&token, format!("{}\n", common::fake_github::TOKEN)).unwrap();
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    let text = format!(
        "{text}\n[github]\napi_base_url = \"{}\"\nowner = \"{OWNER}\"\nrepo = \"{REPO}\"\ntoken = {{ file = \"github-token\" }}\n",
        github.url
    )
    .replace("[[people]]\nid = \"ada\"\nname = \"Ada\"\nroles = [\"lead\"]", "[[people]]\nid = \"ada\"\nname = \"Ada\"\nroles = [\"lead\"]\nslack = \"UADA\"")
        + "\n[[people]]\nid = \"bob\"\nname = \"Bob\"\nroles = [\"lead\"]\ndiscord = \"4242\"\n";
    // Approved requests wait for production's fortnightly slot, within their expiry.
    let text = format!("approval_ttl = \"21d\"\n{text}");
    let config = world.path().join("promotion.toml");
    std::fs::write(&config, text).unwrap();
    Setup { world, github, config }
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

/// Shows request `id` on Slack and on Discord (as each adapter does when it posts it), so
/// reactions there vote. One message reference serves both in this test.
async fn bind(bot: &Bot, id: u64) -> MessageRef {
    let message = MessageRef { channel: "C-RELEASES".into(), id: format!("1700000000.{id:06}") };
    for platform in ["slack", "discord"] {
        bot.app.engine.bind_message(id, platform, message.clone()).await;
    }
    message
}

/// Grace asks to promote staging to production; returns the announcements (from before the
/// request), the posted request and the message that shows it on Slack and Discord.
async fn request_production(
    bot: &Bot,
) -> (broadcast::Receiver<Announcement>, shipday::release::approvals::PromotionRequest, MessageRef) {
    let (heard, request) = request_production_unbound(bot).await;
    let message = bind(bot, request.id).await;
    (heard, request, message)
}

/// Grace asks to promote staging to production; the request, its message not bound yet.
async fn request_production_unbound(
    bot: &Bot,
) -> (broadcast::Receiver<Announcement>, shipday::release::approvals::PromotionRequest) {
    let mut heard = bot.app.engine.announcements();
    bot.say("grace", "/promote staging production").await;
    let request = promotion_until(&mut heard, |s| *s == RequestState::Pending).await;
    (heard, request)
}

async fn react(bot: &Bot, platform: &str, user: &str, emoji: &str, message: &MessageRef, added: bool) {
    bot.app.engine.react(reaction(platform, user, emoji, message, added, Utc::now())).await;
}

/// A reaction as an adapter hands it to the engine.
fn reaction(platform: &str, user: &str, emoji: &str, message: &MessageRef, added: bool, at: DateTime<Utc>) -> Reaction {
    Reaction {
        platform: platform.into(),
        user_id: user.into(),
        platform_roles: vec![],
        emoji: emoji.into(),
        message: message.clone(),
        added,
        at,
    }
}

#[bounded::test]
async fn staging_is_promoted_to_production_when_a_lead_approves_by_reaction() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    bot.clock.set(production_slot());
    let (_, progress) = bot.say("ada", "/deploy staging staging").await;
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);
    let staging_sha = s.world.tip("staging");

    let mut heard = bot.app.engine.announcements();
    let (reply, _) = bot.say("grace", "/promote staging production").await;
    assert!(
        bot.show(&reply).contains("is posted in the team channel"),
        "{} / {:?}",
        bot.show(&reply),
        bot.app.store.audit_tail(3)
    );
    let request = promotion_until(&mut heard, |s| *s == RequestState::Pending).await;
    assert_eq!(request.sha.as_str(), staging_sha);
    assert!(request.notes.contains("Changes:"), "{}", request.notes);
    let message = bind(&bot, request.id).await;

    // Grace asked, so her ✅ does not count; Linus is not a lead; an unknown user is nobody.
    react(&bot, "slack", "U-NOBODY", "white_check_mark", &message, true).await;
    let still = bot.app.store.promotion(request.id).unwrap().unwrap();
    assert_eq!(still.state, RequestState::Pending);

    // Ada (by her Slack id) approves: quorum 1 → merged on GitHub, deployed to production.
    react(&bot, "slack", "UADA", "white_check_mark", &message, true).await;
    let done =
        promotion_until(&mut heard, |s| matches!(s, RequestState::Done { .. } | RequestState::Failed { .. })).await;
    let RequestState::Done { deploy_id } = done.state else { panic!("{:?}", done.state) };
    let record = bot.app.store.deploy(deploy_id).unwrap().unwrap();
    assert_eq!((record.trigger, record.outcome.clone()), (Trigger::Promotion, Outcome::Succeeded));
    let merged = s.github.branch("master").unwrap();
    assert_eq!(record.sha, merged, "production runs exactly the merge GitHub made");
    assert_eq!(s.world.head("production"), merged.as_str());
    assert!(done.tally(chrono_tz::UTC).contains("approved by Ada"), "{}", done.tally(chrono_tz::UTC));
    // GitHub's environment view shows what Shipday deployed.
    common::eventually(common::PATIENCE, "a production deployment on GitHub", || {
        s.github.deployments().iter().any(|d| format!("{d:?}").contains("production"))
    })
    .await;
    assert!(
        s.github.deployments().iter().any(|d| format!("{d:?}").contains("production")),
        "{:?}",
        s.github.deployments()
    );
}

/// Thursday 3 Dec 2026, 12:00 EAT: production's slot is next week.
fn outside_the_slot() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap()
}

#[bounded::test]
async fn a_withdrawn_vote_no_longer_counts_and_a_leads_cross_rejects_even_after_approval() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    bot.clock.set(outside_the_slot());
    bot.say("ada", "/deploy staging staging").await;
    let (_, request, message) = request_production(&bot).await;
    let state = || bot.app.store.promotion(request.id).unwrap().unwrap().state;
    // Ada approves: quorum 1, so it is approved and waits for the slot.
    react(&bot, "slack", "UADA", "white_check_mark", &message, true).await;
    assert!(matches!(state(), RequestState::Approved { .. }), "{:?}", state());
    // She removes her reaction: the vote is withdrawn and the request is pending again.
    react(&bot, "slack", "UADA", "white_check_mark", &message, false).await;
    assert_eq!(state(), RequestState::Pending);
    assert!(bot.app.store.promotion(request.id).unwrap().unwrap().votes.is_empty());
    // Bob approves on Discord; then Ada's ❌ arrives after approval and rejects it.
    react(&bot, "discord", "4242", "✅", &message, true).await;
    assert!(matches!(state(), RequestState::Approved { .. }), "{:?}", state());
    react(&bot, "slack", "UADA", "x", &message, true).await;
    assert!(matches!(state(), RequestState::Rejected { ref by, .. } if by == "Ada"), "{:?}", state());
    // Once rejected, it stays rejected, and the slot does not run it.
    react(&bot, "discord", "4242", "✅", &message, true).await;
    assert!(matches!(state(), RequestState::Rejected { .. }));
    bot.clock.set(production_slot() + chrono::Duration::weeks(2));
    bot.app.engine.tick().await;
    assert!(matches!(state(), RequestState::Rejected { .. }));
    assert!(bot.app.store.history(Some("production"), 5).unwrap().is_empty(), "nothing deployed");
}

#[bounded::test]
async fn an_approved_request_that_waits_for_the_slot_expires() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    bot.clock.set(outside_the_slot());
    bot.say("ada", "/deploy staging staging").await;
    let (_, request, message) = request_production(&bot).await;
    react(&bot, "discord", "4242", "✅", &message, true).await;
    // Its expiry comes before the slot after next: it expires instead of running.
    bot.clock.set(request.expires_at + chrono::Duration::minutes(1));
    bot.app.engine.tick().await;
    let state = bot.app.store.promotion(request.id).unwrap().unwrap().state;
    assert_eq!(state, RequestState::Expired);
    assert!(bot.app.store.history(Some("production"), 5).unwrap().is_empty(), "nothing deployed");
}

#[bounded::test]
async fn the_requester_or_a_lead_cancels_a_request_and_nobody_else_can() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    bot.clock.set(outside_the_slot());
    bot.say("ada", "/deploy staging staging").await;
    let (mut heard, request, message) = request_production(&bot).await;
    let (reply, _) = bot.say("linus", "/promote staging production --cancel").await;
    assert!(refused(&reply).contains("Only Grace (who asked) or a lead"), "{}", bot.show(&reply));
    let (reply, _) = bot.say("grace", "/promote staging production --cancel").await;
    assert!(bot.show(&reply).contains("is cancelled"), "{}", bot.show(&reply));
    let cancelled = promotion_until(&mut heard, |s| matches!(s, RequestState::Cancelled { .. })).await;
    assert!(cancelled.tally(chrono_tz::UTC).contains("cancelled by Grace"));
    let (reply, _) = bot.say("grace", "/promote staging production --cancel").await;
    assert!(refused(&reply).contains("nothing to cancel"), "{}", bot.show(&reply));
    react(&bot, "discord", "4242", "✅", &message, true).await;
    assert!(matches!(bot.app.store.promotion(request.id).unwrap().unwrap().state, RequestState::Cancelled { .. }));

    // A lead cancels an approved request that waits for the slot.
    let (_, second, message) = request_production(&bot).await;
    react(&bot, "discord", "4242", "✅", &message, true).await;
    let (reply, _) = bot.say("ada", "/promote staging production --cancel").await;
    assert!(bot.show(&reply).contains("is cancelled"), "{}", bot.show(&reply));
    assert!(matches!(bot.app.store.promotion(second.id).unwrap().unwrap().state, RequestState::Cancelled { .. }));
    bot.clock.set(production_slot() + chrono::Duration::weeks(1));
    bot.app.engine.tick().await;
    assert!(bot.app.store.history(Some("production"), 5).unwrap().is_empty(), "nothing deployed");
}

#[bounded::test]
async fn a_lead_runs_an_approved_request_now_with_emergency_and_later_votes_change_nothing() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    bot.clock.set(outside_the_slot());
    bot.say("ada", "/deploy staging staging").await;
    let (mut heard, request, message) = request_production(&bot).await;
    // Pending: --emergency does not skip the approval.
    let (reply, _) = bot.say("ada", "/promote staging production --emergency \"checkout is down\"").await;
    assert!(refused(&reply).contains("1 more lead approval"), "{}", bot.show(&reply));
    react(&bot, "discord", "4242", "✅", &message, true).await;
    assert!(matches!(bot.app.store.promotion(request.id).unwrap().unwrap().state, RequestState::Approved { .. }));
    let (reply, _) = bot.say("grace", "/promote staging production --emergency \"checkout is down\"").await;
    assert!(refused(&reply).contains("Only a lead"));
    // As the approval message promises, a lead runs it now.
    let (reply, _) = bot.say("ada", "/promote staging production --emergency \"checkout is down\"").await;
    assert!(bot.show(&reply).contains("runs now"), "{}", bot.show(&reply));
    let done =
        promotion_until(&mut heard, |s| matches!(s, RequestState::Done { .. } | RequestState::Failed { .. })).await;
    assert!(matches!(done.state, RequestState::Done { .. }), "{:?}", done.state);
    assert_eq!(done.emergency.as_deref(), Some("checkout is down"));
    // After execution started, a ❌ is recorded but changes nothing, and the channel is told why.
    let mut heard = bot.app.engine.announcements();
    react(&bot, "slack", "UADA", "x", &message, true).await;
    let after = bot.app.store.promotion(request.id).unwrap().unwrap();
    assert_eq!(after.state, done.state);
    let said = loop {
        let next = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await.expect("a note on the late vote");
        if let Ok(Announcement::Text(text)) = next {
            break text;
        }
    };
    assert!(said.contains("changes nothing") && said.contains("#1"), "{said}");
    assert!(
        bot.app.store.audit_tail(5).unwrap().iter().any(|e| e.decision.contains("vote recorded, no effect")),
        "the late vote is in the audit log"
    );
    let promotions = bot.app.store.history(Some("production"), 10).unwrap();
    assert_eq!(promotions.iter().filter(|d| d.trigger == Trigger::Promotion).count(), 1);
}

#[bounded::test]
async fn an_approval_outside_the_slot_waits_for_it_and_staging_redeployed_meanwhile_voids_it() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    // Thursday: production's slot is next week.
    bot.clock.set(Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap());
    bot.say("ada", "/deploy staging staging").await;
    let (_, request, message) = request_production(&bot).await;
    react(&bot, "discord", "4242", "✅", &message, true).await;
    let approved = bot.app.store.promotion(request.id).unwrap().unwrap();
    assert!(matches!(approved.state, RequestState::Approved { .. }), "{:?}", approved.state);
    assert!(s.github.requests().iter().all(|r| !r.path.ends_with("/merges")), "no merge outside the slot");

    // Someone redeploys staging with another commit before the slot.
    let seed = s.world.path().join("seed-staging");
    git(s.world.path(), &["clone", "--quiet", "--branch", "staging", "origin.git", "seed-staging"]);
    std::fs::write(seed.join("app.py"), "VERSION = \"1.1-rc9\"\n").unwrap();
    git(&seed, &["-c", "user.name=T", "-c", "user.email=t@t", "commit", "--quiet", "-am", "rc9"]);
    git(&seed, &["push", "--quiet", "origin", "staging"]);
    bot.say("ada", "/deploy staging staging").await;

    bot.clock.set(Utc.with_ymd_and_hms(2026, 12, 16, 4, 35, 0).unwrap());
    bot.app.engine.tick().await;
    let void = bot.app.store.promotion(request.id).unwrap().unwrap();
    assert!(
        matches!(&void.state, RequestState::Void { why } if why.contains("/promote staging production")),
        "{:?}",
        void.state
    );
    assert!(bot.app.store.history(Some("production"), 5).unwrap().is_empty());
}

#[bounded::test]
async fn a_leads_emergency_promotion_runs_outside_the_slot() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    bot.clock.set(Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap());
    bot.say("ada", "/deploy staging staging").await;
    let mut heard = bot.app.engine.announcements();
    let (reply, _) = bot.say("grace", "/promote staging production --emergency \"checkout is down\"").await;
    assert!(refused(&reply).contains("Only a lead"));
    bot.say("ada", "/promote staging production --emergency \"checkout is down\"").await;
    let request = promotion_until(&mut heard, |s| *s == RequestState::Pending).await;
    let message = bind(&bot, request.id).await;
    react(&bot, "discord", "4242", "✅", &message, true).await;
    let done =
        promotion_until(&mut heard, |s| matches!(s, RequestState::Done { .. } | RequestState::Failed { .. })).await;
    assert!(matches!(done.state, RequestState::Done { .. }), "{:?}", done.state);
}

#[bounded::test]
async fn a_crash_between_approval_and_merge_executes_exactly_once_after_restart() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    bot.clock.set(Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap());
    bot.say("ada", "/deploy staging staging").await;
    let (heard, request, message) = request_production(&bot).await;
    react(&bot, "slack", "UADA", "white_check_mark", &message, true).await;
    drop((heard, bot)); // the bot dies, approved, waiting for the slot

    for _ in 0..2 {
        let bot = Bot::restart(&s.config).await;
        bot.clock.set(production_slot() + chrono::Duration::weeks(2));
        let mut heard = bot.app.engine.announcements();
        bot.app.engine.tick().await;
        let state = bot.app.store.promotion(request.id).unwrap().unwrap().state;
        if !matches!(state, RequestState::Done { .. }) {
            let done =
                promotion_until(&mut heard, |s| matches!(s, RequestState::Done { .. } | RequestState::Failed { .. }))
                    .await;
            assert!(matches!(done.state, RequestState::Done { .. }), "{:?}", done.state);
        }
    }
    let merges = s.github.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with("/merges")).count();
    assert_eq!(merges, 1, "merged exactly once");
    let bot = Bot::restart(&s.config).await;
    let history = bot.app.store.history(Some("production"), 10).unwrap();
    let promotions: Vec<_> = history.iter().filter(|d| d.trigger == Trigger::Promotion).collect();
    assert_eq!(promotions.len(), 1, "deployed exactly once: {history:?}");
}

#[bounded::test]
async fn a_merge_conflict_is_reported_and_nothing_is_deployed() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    bot.clock.set(production_slot());
    bot.say("ada", "/deploy staging staging").await;
    s.github.set_conflict("master", &s.world.tip("staging"));
    let (mut heard, _, message) = request_production(&bot).await;
    react(&bot, "slack", "UADA", "white_check_mark", &message, true).await;
    let failed =
        promotion_until(&mut heard, |s| matches!(s, RequestState::Failed { .. } | RequestState::Done { .. })).await;
    let RequestState::Failed { why } = &failed.state else { panic!("{:?}", failed.state) };
    assert!(why.contains("GitHub cannot merge") && why.contains("nothing was deployed"), "{why}");
    assert!(bot.app.store.history(Some("production"), 5).unwrap().is_empty());
}

#[bounded::test]
async fn a_merge_into_dev_on_github_deploys_that_exact_commit_to_dev() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    let merged =
        real_merge(s.world.path(), &s.world.tip("dev"), &s.world.tip("feature/login"), "Merge pull request #7");
    let sha = shipday::release::gitref::Sha::parse(&merged).unwrap();
    let mut heard = bot.app.engine.announcements();
    bot.app
        .engine
        .github_event(shipday::webhook::github::GitHubEvent::Merged {
            base: "dev".into(),
            merge_sha: sha.clone(),
            number: 7,
            title: "SHOP-3 Log in with email".into(),
            body: String::new(),
            author: "grace-gh".into(),
            head_ref: "feature/login".into(),
        })
        .await;
    let record = loop {
        if let Ok(Announcement::Deploy(update)) = heard.recv().await
            && update.record.is_finished()
        {
            break update.record.clone();
        }
    };
    assert_eq!((record.trigger, record.outcome.clone()), (Trigger::Merge, Outcome::Succeeded));
    assert_eq!(record.sha, sha);
    assert_eq!(s.world.head("dev"), merged);
    assert!(bot.app.store.hold("dev").unwrap().is_none(), "a merge deploy never claims dev");
}

#[bounded::test]
async fn status_warns_when_dev_is_not_protected_on_github() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    common::eventually_async(common::PATIENCE, "/status to warn that dev is not protected", || async {
        bot.show(&bot.say("grace", "/status").await.0).contains("is NOT protected on GitHub").then_some(())
    })
    .await;
    assert!(matches!(bot.say("grace", "/status").await.0.body, ReplyBody::Status(_)));
}

#[bounded::test]
async fn a_secret_in_a_pull_request_reaches_no_promotion_notes_audit_entry_or_log() {
    const CONFIGURED: &str = "plum-velvet-notes-5120";
    const SHAPED: &str = "Tr0ub4dor-notes-77";
    let logs = common::captured_logs();
    let s = setup().await;
    std::fs::write(s.world.path().join("notes-secret"), format!("{CONFIGURED}\n")).unwrap();
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, format!("redact = [{{ file = \"notes-secret\" }}]\n{text}")).unwrap();
    // Someone merged a pull request into staging whose title pastes both secrets.
    let login = shipday::release::gitref::Sha::parse(&s.world.tip("feature/login")).unwrap();
    s.github.set_branch("feature/login", &s.github.branch("staging").unwrap());
    s.github.add_commit_with_sha("feature/login", &login, "SHOP-7 Log in", "grace-gh", &["app.py"]);
    let title = format!("SHOP-7 Log in (DATABASE_PASSWORD={SHAPED}, vault {CONFIGURED})");
    s.github.merge_pr(5, "feature/login", "staging", &title, "grace-gh", "");
    let bot = Bot::start(&s.config);
    bot.clock.set(production_slot());
    let (_, progress) = bot.say("ada", "/deploy staging staging").await;
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);

    let (_, request, _) = request_production(&bot).await;
    assert!(request.notes.contains("#5 SHOP-7 Log in") && request.notes.contains("[redacted]"), "{}", request.notes);
    let stored = bot.app.store.promotion(request.id).unwrap().unwrap();
    let audit = bot.app.store.audit_tail(100).unwrap();
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    for secret in [CONFIGURED, SHAPED] {
        assert!(!request.notes.contains(secret), "{secret} in the announced notes: {}", request.notes);
        assert!(!stored.notes.contains(secret), "{secret} in the stored notes: {}", stored.notes);
        assert!(!format!("{audit:?}").contains(secret), "{secret} in the audit log");
        assert!(!logged.contains(secret), "{secret} in the logs");
    }
}

/// A lead's ✅ can reach Shipday before the adapter has recorded which request the message it
/// just posted shows: the vote still counts once the message is bound (the kill loop found
/// approvals lost this way).
#[bounded::test]
async fn a_vote_that_arrives_before_its_message_is_bound_still_counts() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    bot.clock.set(outside_the_slot());
    bot.say("ada", "/deploy staging staging").await;
    let (_heard, request) = request_production_unbound(&bot).await;
    let message = MessageRef { channel: "C-RELEASES".into(), id: "1700000000.424242".into() };
    let engine = bot.app.engine.clone();
    let early = reaction("slack", "UADA", "white_check_mark", &message, true, Utc::now());
    let voted = tokio::spawn(async move { engine.react(early).await });
    // The reaction is recorded (and found on no request) before the message is bound.
    common::eventually(Duration::from_secs(10), "the reaction to reach the engine", || {
        bot.app.store.audit_tail(5).unwrap().iter().any(|e| e.text.contains("1700000000.424242"))
    })
    .await;
    bot.app.engine.bind_message(request.id, "slack", message).await;
    voted.await.unwrap();
    let state = bot.app.store.promotion(request.id).unwrap().unwrap().state;
    assert!(matches!(state, RequestState::Approved { .. }), "{state:?}");
}

/// A lead's ✅ on a message that is bound to its request only well after the reaction was
/// acknowledged (here across a restart of the bot) is kept in the store, and counts once the
/// message is bound.
#[bounded::test]
async fn a_vote_kept_until_its_message_is_bound_counts_even_after_a_restart() {
    let s = setup().await;
    let bot = Bot::start(&s.config);
    bot.clock.set(outside_the_slot());
    bot.say("ada", "/deploy staging staging").await;
    let (heard, request) = request_production_unbound(&bot).await;
    let message = MessageRef { channel: "C-RELEASES".into(), id: "1700000000.515151".into() };
    // Returns once the reaction is durably recorded: the adapter acknowledges it then.
    bot.app.engine.react(reaction("slack", "UADA", "white_check_mark", &message, true, outside_the_slot())).await;
    assert_eq!(bot.app.store.promotion(request.id).unwrap().unwrap().state, RequestState::Pending);
    drop(heard);
    drop(bot);
    let bot = Bot::restart(&s.config).await;
    bot.clock.set(outside_the_slot() + chrono::Duration::minutes(1));
    bot.app.engine.bind_message(request.id, "slack", message.clone()).await;
    let state = bot.app.store.promotion(request.id).unwrap().unwrap().state;
    assert!(matches!(state, RequestState::Approved { .. }), "{state:?}");
    // Applied once: binding the same message again changes nothing.
    bot.app.engine.bind_message(request.id, "slack", message).await;
    let voted = bot.app.store.promotion(request.id).unwrap().unwrap();
    assert_eq!(voted.approvals(), 1, "{voted:?}");
}
