//! The core, end to end through the engine with the local transport and real git.

use testkit as common;

use common::{Bot, Gate, World, refused};
use shipday::clock::Clock;
use shipday::engine::{ReplyBody, Visibility};
use shipday::release::deploy::{DeployEvent, Outcome, StepResult};
use shipday::store::Store;

#[bounded::test]
async fn a_developer_deploys_a_branch_to_dev_and_status_shows_it() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let (reply, progress) = bot.say("grace", "/deploy dev feature/login").await;
    let ReplyBody::Deploy(accepted) = &reply.body else { panic!("{reply:?}") };
    assert_eq!(reply.visibility, Visibility::Public);
    assert_eq!(accepted.sha.as_str(), world.tip("feature/login"));
    // accepted → each step started/finished → done
    let events: Vec<_> = progress.iter().map(|p| p.event.clone()).collect();
    assert_eq!(events.first(), Some(&DeployEvent::Accepted));
    assert_eq!(events.last(), Some(&DeployEvent::Finished));
    let done = &progress.last().unwrap().record;
    assert_eq!(done.outcome, Outcome::Succeeded);
    let names: Vec<_> = done.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["fetch", "checkout", "restart app", "reload web", "verify HEAD"]);
    assert!(done.steps.iter().all(|s| s.result == Some(StepResult::Ok) && s.duration_ms.is_some()));
    assert_eq!(world.head("dev"), world.tip("feature/login"));
    assert_eq!(world.restarts().len(), 2);

    let (status, _) = bot.say("linus", "/status dev").await;
    let text = bot.show(&status);
    assert!(text.contains("`feature/login` at") && text.contains(done.sha.short()), "{text}");
    assert!(text.contains("by Grace") && text.contains("claimed by Grace"), "{text}");
    let (history, _) = bot.say("nobody-configured", "/history dev 5").await;
    assert!(bot.show(&history).contains("#1 dev `feature/login`"));
}

#[bounded::test]
async fn a_second_deploy_while_one_runs_is_refused_and_names_who_is_deploying() {
    let world = World::new();
    // The restart waits at a gate, so the first deploy runs until the test lets it finish.
    let restart = Gate::new(world.path(), "restart");
    let config = world.config_with_dev_steps(
        &r#"{ name = "checkout", run = "git checkout --quiet --detach {{sha}}" },
           { name = "slow restart", run = "GATE" },"#
            .replace("GATE", &restart.shell()),
    );
    let bot = Bot::start(&config);
    let ((first, mut first_progress), (second, _)) =
        tokio::join!(bot.send("grace", "/deploy dev dev"), bot.send("ada", "/deploy dev dev"));
    let (accepted, refusal) = match (&first.body, &second.body) {
        (ReplyBody::Deploy(_), ReplyBody::Refused(text)) => (&first, text.clone()),
        (ReplyBody::Refused(text), ReplyBody::Deploy(_)) => (&second, text.clone()),
        other => panic!("exactly one deploy must run: {other:?}"),
    };
    assert!(refusal.contains("is deploying `dev` to dev"), "{refusal}");
    assert!(matches!(accepted.body, ReplyBody::Deploy(_)));
    // While it runs, a third is refused too and /status shows it.
    let (third, _) = bot.say("linus", "/deploy dev dev").await;
    assert!(refused(&third).contains("is deploying"));
    let (status, _) = bot.say("linus", "/status dev").await;
    assert!(bot.show(&status).contains("deploying: `dev`"), "{}", bot.show(&status));
    restart.open().await;
    while first_progress.recv().await.is_some() {}
    let (after, progress) = bot.say("linus", "/deploy dev dev").await;
    assert!(matches!(after.body, ReplyBody::Deploy(_)), "{after:?}");
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);
}

#[bounded::test]
async fn another_persons_branch_is_refused_while_a_claim_stands_and_allowed_once_it_expires() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    bot.say("grace", "/deploy dev feature/login").await;
    let (reply, _) = bot.say("linus", "/deploy dev feature/search").await;
    let text = refused(&reply);
    assert!(text.contains("claimed by Grace for `feature/login`") && text.contains("/release dev"), "{text}");
    assert_eq!(reply.visibility, Visibility::Ephemeral);
    assert_eq!(world.head("dev"), world.tip("feature/login"), "nothing changed");

    bot.clock.advance(chrono::Duration::hours(9));
    let (status, _) = bot.say("linus", "/status dev").await;
    assert!(bot.show(&status).contains("has expired"), "{}", bot.show(&status));
    let (reply, progress) = bot.say("linus", "/deploy dev feature/search").await;
    assert!(matches!(reply.body, ReplyBody::Deploy(_)), "{reply:?}");
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);
    assert_eq!(world.head("dev"), world.tip("feature/search"));
}

#[bounded::test]
async fn release_unlock_and_lock_follow_the_holder_and_leads() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    bot.say("grace", "/deploy dev feature/login").await;

    let (reply, _) = bot.say("linus", "/release dev").await;
    assert!(refused(&reply).contains("You do not hold dev; Grace does"));
    let (reply, _) = bot.say("linus", "/unlock dev").await;
    assert!(refused(&reply).contains("Only they or a lead"));
    let (reply, _) = bot.say("linus", "/release staging").await;
    assert!(refused(&reply).contains("not claimed"));

    // The holder releases: dev's own branch goes back and the claim ends.
    let (reply, progress) = bot.say("grace", "/release dev").await;
    assert!(bot.show(&reply).contains("Releasing"), "{}", bot.show(&reply));
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);
    assert_eq!(world.head("dev"), world.tip("dev"));
    let (status, _) = bot.say("grace", "/status dev").await;
    assert!(bot.show(&status).contains("hold: free"));

    // A lead locks staging; a developer cannot deploy there, the lead unlocks.
    let (reply, _) = bot.say("grace", "/lock staging tests").await;
    assert!(refused(&reply).contains("Only a lead"));
    let (reply, _) = bot.say("ada", "/lock staging QA for release 42").await;
    assert_eq!(reply.visibility, Visibility::Public);
    let (reply, _) = bot.say("grace", "/deploy staging staging").await;
    assert!(refused(&reply).contains("locked by Ada") && refused(&reply).contains("QA for release 42"));
    let (reply, _) = bot.say("ada", "/unlock staging").await;
    assert!(bot.show(&reply).contains("unlocked staging"));
    let (reply, _) = bot.say("grace", "/deploy staging staging").await;
    assert!(matches!(reply.body, ReplyBody::Deploy(_)), "{reply:?}");
}

/// Hostile refs get a clear answer, and nothing runs: the canary a malicious ref would create
/// never appears, no step ran, no deploy was recorded.
#[bounded::test]
async fn hostile_refs_are_refused_and_nothing_runs() {
    let world = World::new();
    let canary = world.path().join("canary");
    let canary_s = canary.display().to_string();
    let config = world.config_with_dev_steps(r#"{ name = "note", run = "echo {{ref}} >> ../refs.log" },"#);
    let bot = Bot::start(&config);
    let long = "a".repeat(300);
    let corpus = [
        format!("a;touch {canary_s}"),
        format!("$(touch {canary_s})"),
        format!("`touch {canary_s}`"),
        format!("a\ntouch {canary_s}"),
        format!("'x|touch {canary_s}'"),
        format!("\"a && touch {canary_s}\""),
        "-oProxyCommand=touch".to_owned(),
        "--upload-pack=touch".to_owned(),
        long,
        "a..b".to_owned(),
        "a@{1}".to_owned(),
    ];
    for hostile in &corpus {
        let (reply, progress) = bot.say("ada", &format!("/deploy dev {hostile}")).await;
        let text = refused(&reply);
        assert!(!text.is_empty() && text.len() < 400, "{text}");
        assert!(progress.is_empty());
    }
    let (reply, _) = bot.say("ada", "/deploy dev does-not-exist").await;
    assert!(refused(&reply).contains("not a branch or tag"));
    assert!(!canary.exists(), "a hostile ref reached a shell");
    assert!(!world.path().join("envs/refs.log").exists(), "a step ran");
    assert!(bot.app.store.history(None, 10).unwrap().is_empty(), "a deploy was recorded");
    assert!(bot.app.store.hold("dev").unwrap().is_none(), "a claim was taken");
    // Every command is in the audit log, with its decision.
    let audit = bot.app.store.audit_tail(100).unwrap();
    assert_eq!(audit.len(), corpus.len() + 1);
    assert!(audit.iter().all(|e| e.decision.starts_with("refused:")));
}

#[bounded::test]
async fn bad_input_gets_a_clear_answer_and_changes_nothing() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let cases = [
        ("grace", "/deplyo dev feature/login", "Did you mean `/deploy`"),
        ("grace", "/deploy prod feature/login", "Did you mean `production`"),
        ("grace", "/deploy dev", "Missing REF"),
        ("grace", "/frobnicate", "/help"),
        ("mallory", "/deploy dev feature/login", "people list"),
        ("grace", "/deploy production master", "needs a lead"),
        ("grace", "/deploy staging feature/login", "/promote dev staging"),
        ("grace", "/promote staging production", "Nothing was changed"),
        ("grace", "/unlock dev", "neither locked nor claimed"),
    ];
    for (user, line, expected) in cases {
        let (reply, progress) = bot.say(user, line).await;
        let text = refused(&reply);
        assert!(text.contains(expected), "{line}: {text}");
        assert_eq!(reply.visibility, Visibility::Ephemeral);
        assert!(progress.is_empty());
    }
    assert!(world.restarts().is_empty());
    assert!(bot.app.store.history(None, 10).unwrap().is_empty());
}

#[bounded::test]
async fn a_failing_step_stops_the_deploy_and_is_named() {
    let world = World::new();
    let config = world.config_with_dev_steps(
        r#"{ name = "checkout", run = "git checkout --quiet --detach {{sha}}" },
           { name = "migrate", run = "echo 'django.db.utils.OperationalError: no such table' >&2; exit 3" },
           { name = "restart app", run = "echo restarted >> ../restarts.log" },"#,
    );
    let bot = Bot::start(&config);
    let (_, progress) = bot.say("grace", "/deploy dev feature/login").await;
    let done = &progress.last().unwrap().record;
    assert_eq!(
        done.outcome,
        Outcome::Failed { step: "migrate".into(), reason: "exit code 3".into(), state_unknown: false }
    );
    assert!(done.steps[1].tail.contains("no such table"));
    assert_eq!(done.steps.len(), 2, "the step after the failure did not run");
    assert!(world.restarts().is_empty());
    let line = shipday::chat::text::progress(progress.last().unwrap(), bot.clock.now()).unwrap();
    assert!(line.contains("failed at step \"migrate\" (exit code 3)"), "{line}");
    let (status, _) = bot.say("grace", "/status dev").await;
    let text = bot.show(&status);
    assert!(text.contains("latest: ❌") && text.contains("migrate"), "{text}");
}

#[bounded::test]
async fn a_step_past_its_timeout_is_killed_and_the_state_is_unknown() {
    let world = World::new();
    let marker = format!("shipday-timeout-marker-{}", std::process::id());
    let config = world.config_with_dev_steps(&format!(
        r#"{{ name = "hang", run = "ln -sf \"$(command -v tail)\" ../{marker} && ../{marker} -f /dev/null", timeout = "1s" }},"#
    ));
    let bot = Bot::start(&config);
    let (_, progress) = bot.say("grace", "/deploy dev feature/login").await;
    let done = &progress.last().unwrap().record;
    assert!(
        matches!(&done.outcome, Outcome::Failed { step, state_unknown: true, .. } if step == "hang"),
        "{:?}",
        done.outcome
    );
    assert_eq!(done.steps[0].result, Some(StepResult::TimedOut { limit_secs: 1 }));
    let left = std::process::Command::new("pgrep").args(["-f", &marker]).output().unwrap();
    assert!(left.stdout.is_empty(), "a process survived: {}", String::from_utf8_lossy(&left.stdout));
    let (status, _) = bot.say("grace", "/status dev").await;
    assert!(bot.show(&status).contains("state is unknown"), "{}", bot.show(&status));
}

#[bounded::test]
async fn deploys_left_running_by_a_crash_are_marked_interrupted() {
    let world = World::new();
    let config = world.config_path();
    let bot = Bot::start(&config);
    bot.say("grace", "/deploy dev feature/login").await;
    let state_dir = bot.app.config.state_dir.clone();
    drop(bot);
    // A crash leaves a deploy recorded as running, holding dev's deploy lock.
    {
        let (store, _) = reopen(&state_dir).await;
        let mut record = store.history(Some("dev"), 1).unwrap().remove(0);
        record.id = store.next_deploy_id().unwrap();
        record.outcome = Outcome::Running;
        record.finished_at = None;
        store.put_deploy(&record).unwrap();
        let active = shipday::release::locks::ActiveDeploy {
            deploy_id: record.id,
            who_name: "Grace".into(),
            git_ref: record.git_ref.clone(),
            since: record.started_at,
        };
        store.set_active("dev", Some(&active)).unwrap();
        store.flush().await.unwrap();
    }
    let bot = Bot::start(&config);
    assert_eq!(bot.app.interrupted.len(), 1);
    let notice = shipday::chat::text::interrupted_notice(&bot.app.interrupted).unwrap();
    assert!(notice.contains("deploy #2 of `feature/login` to dev") && notice.contains("interrupted"), "{notice}");
    let (status, _) = bot.say("grace", "/status").await;
    let text = bot.show(&status);
    assert!(text.contains("was interrupted"), "{text}");
    // The interrupted deploy no longer blocks dev.
    let (reply, _) = bot.say("grace", "/deploy dev feature/login").await;
    assert!(matches!(reply.body, ReplyBody::Deploy(_)), "{reply:?}");
}

/// sled releases its file lock a moment after the last handle drops.
async fn reopen(dir: &std::path::Path) -> (Store, shipday::store::Opened) {
    common::reopen_store(dir).await
}

#[bounded::test]
async fn a_store_that_cannot_be_opened_stops_the_bot() {
    let world = World::new();
    let config = world.config_path();
    let state = world.path().join("state");
    // Not a store at all: a file where the database should be.
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("shipday.db"), b"garbage").unwrap();
    let err = format!("{:#}", Bot::try_start(&config).err().expect("must not start"));
    assert!(err.contains("cannot open the state store") && err.contains("will not start"), "{err}");
    // An empty directory in its place is not silently used as a fresh store.
    std::fs::remove_file(state.join("shipday.db")).unwrap();
    std::fs::create_dir(state.join("shipday.db")).unwrap();
    let err = format!("{:#}", Bot::try_start(&config).err().expect("must not start"));
    assert!(err.contains("not a Shipday store or is damaged"), "{err}");
}

#[bounded::test]
async fn a_dry_run_resolves_and_shows_steps_and_changes_nothing() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let before = world.head("dev");
    let (reply, _) = bot.say("grace", "/deploy dev feature/login --dry-run").await;
    let ReplyBody::DryRun(plan) = &reply.body else { panic!("{reply:?}") };
    assert_eq!(plan.sha.as_str(), world.tip("feature/login"));
    assert!(bot.show(&reply).contains(&format!("git checkout --quiet --detach {}", plan.sha)));
    assert_eq!(world.head("dev"), before);
    assert!(bot.app.store.hold("dev").unwrap().is_none());
    assert!(bot.app.store.history(None, 5).unwrap().is_empty());
}

#[bounded::test]
async fn a_health_check_after_the_steps_passes_or_fails_the_deploy() {
    let world = World::new();
    let healthy = common::http_server(200).await;
    let config =
        world.config_with_dev_steps(r#"{ name = "checkout", run = "git checkout --quiet --detach {{sha}}" },"#);
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "claim_ttl = \"8h\"",
        &format!("claim_ttl = \"8h\"\nhealth_url = \"{healthy}\"\nhealth_timeout = \"2s\""),
        1,
    );
    std::fs::write(&config, &text).unwrap();
    let bot = Bot::start(&config);
    let (_, progress) = bot.say("grace", "/deploy dev feature/login").await;
    let done = &progress.last().unwrap().record;
    assert_eq!(done.outcome, Outcome::Succeeded);
    assert_eq!(done.steps.last().unwrap().name, "health check");
    drop(bot);

    let sick = common::http_server(503).await;
    std::fs::write(&config, text.replace(&healthy, &sick)).unwrap();
    let bot = Bot::restart(&config).await;
    let (_, progress) = bot.say("grace", "/deploy dev feature/search").await;
    let done = &progress.last().unwrap().record;
    let Outcome::Failed { step, reason, state_unknown } = &done.outcome else { panic!("{:?}", done.outcome) };
    assert_eq!(step, "health check");
    assert!(reason.contains("503") && !state_unknown, "{reason}");
}

#[bounded::test]
async fn a_health_url_that_accepts_connections_and_never_answers_fails_the_deploy_within_its_timeout() {
    let world = World::new();
    // Accepts every connection and holds it open without a byte in answer.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let config =
        world.config_with_dev_steps(r#"{ name = "checkout", run = "git checkout --quiet --detach {{sha}}" },"#);
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "claim_ttl = \"8h\"",
        &format!("claim_ttl = \"8h\"\nhealth_url = \"{url}\"\nhealth_timeout = \"2s\""),
        1,
    );
    std::fs::write(&config, &text).unwrap();
    let bot = Bot::start(&config);
    let started = std::time::Instant::now();
    let (_, progress) =
        tokio::time::timeout(std::time::Duration::from_secs(20), bot.say("grace", "/deploy dev feature/login"))
            .await
            .expect("a silent health URL must not hang the deploy");
    let done = &progress.last().unwrap().record;
    let Outcome::Failed { step, .. } = &done.outcome else { panic!("{:?}", done.outcome) };
    assert_eq!(step, "health check");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(bot.app.store.active("dev").unwrap().is_none(), "dev is not left deploying");
}

#[bounded::test]
async fn status_live_reads_head_and_flags_a_deploy_by_hand() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    bot.say("grace", "/deploy dev feature/login").await;
    let (reply, _) = bot.say("grace", "/status dev --live").await;
    assert!(bot.show(&reply).contains("as deployed"), "{}", bot.show(&reply));
    // Someone deploys by hand, as the written process still allows.
    let other = world.tip("feature/search");
    common::git(&world.path().join("envs/dev"), &["checkout", "--quiet", "--detach", &other]);
    let (reply, _) = bot.say("grace", "/status dev --live").await;
    let text = bot.show(&reply);
    assert!(text.contains("⚠️ drift") && text.contains(&other[..8]), "{text}");
    // Without --live, /status still shows the last reading.
    let (reply, _) = bot.say("grace", "/status dev").await;
    assert!(bot.show(&reply).contains("drift"));
}

#[bounded::test]
async fn a_platform_vouched_lead_role_adds_to_a_known_person_but_never_makes_a_stranger_known() {
    use shipday::config::Role;
    use shipday::engine::Invocation;
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let as_lead = |user: &str| {
        let mut invocation = Invocation::new("console", user, "/deploy production master --dry-run");
        invocation.platform_roles = vec![Role::Lead];
        invocation
    };
    let reply = bot.app.engine.submit(as_lead("grace")).await;
    assert!(matches!(reply.body, ReplyBody::DryRun(_)), "{reply:?}");
    let reply = bot.app.engine.submit(as_lead("mallory")).await;
    assert!(refused(&reply).contains("people list"));
}

#[bounded::test]
async fn reactions_on_the_bots_messages_are_recorded_before_the_adapter_moves_on() {
    use shipday::engine::{MessageRef, Reaction};
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let message = MessageRef { channel: "C1".into(), id: "1700000000.000100".into() };
    for added in [true, false] {
        bot.app
            .engine
            .react(Reaction {
                platform: "console".into(),
                user_id: "ada".into(),
                platform_roles: vec![],
                emoji: "white_check_mark".into(),
                message: message.clone(),
                added,
                at: chrono::Utc::now(),
            })
            .await;
    }
    let audit = bot.app.store.audit_tail(2).unwrap();
    assert_eq!(audit[1].text, "reacted :white_check_mark: on message 1700000000.000100 in C1");
    assert_eq!(audit[0].text, "removed reaction :white_check_mark: on message 1700000000.000100 in C1");
    assert_eq!(audit[0].person.as_deref(), Some("ada"));
}

#[bounded::test]
async fn rollback_redeploys_the_previous_commit_or_a_named_one_the_environment_ran() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let (reply, _) = bot.say("ada", "/rollback staging").await;
    assert!(refused(&reply).contains("nothing to roll back to"));
    bot.say("ada", "/deploy staging staging").await;
    let first = world.head("staging");
    // staging moves on: a new commit on its branch, deployed.
    let seed = world.path().join("seed2");
    common::git(world.path(), &["clone", "--quiet", "--branch", "staging", "origin.git", "seed2"]);
    std::fs::write(seed.join("app.py"), "VERSION = \"1.1-rc2\"\n").unwrap();
    common::git(&seed, &["-c", "user.name=T", "-c", "user.email=t@t", "commit", "--quiet", "-am", "rc2"]);
    common::git(&seed, &["push", "--quiet", "origin", "staging"]);
    bot.say("ada", "/deploy staging staging").await;
    assert_ne!(world.head("staging"), first);

    let (reply, progress) = bot.say("grace", "/rollback staging").await;
    assert!(bot.show(&reply).contains("Rolling back"), "{}", bot.show(&reply));
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);
    assert_eq!(world.head("staging"), first);
    assert!(bot.app.store.hold("staging").unwrap().is_none(), "a rollback never claims");

    let (reply, _) = bot.say("grace", &format!("/rollback staging {}", "f".repeat(40))).await;
    assert!(refused(&reply).contains("is not a commit staging ran"));
    let (reply, _) = bot.say("grace", "/rollback production").await;
    assert!(refused(&reply).contains("needs a lead"));
}

/// Many commands at once are all answered (the engine commits them in groups).
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_commands_are_all_answered() {
    let world = World::new();
    let bot = std::sync::Arc::new(Bot::start(&world.config_path()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let bot = bot.clone();
        tasks.spawn(async move {
            let user = if i % 2 == 0 { "grace" } else { "mallory" };
            let reply = bot.app.engine.submit(shipday::engine::Invocation::new("console", user, "/status")).await;
            matches!(reply.body, ReplyBody::Status(_))
        });
    }
    let answered =
        tokio::time::timeout(std::time::Duration::from_secs(30), tasks.join_all()).await.expect("all answered");
    assert!(answered.iter().all(|ok| *ok));
    assert_eq!(bot.app.store.audit_tail(500).unwrap().len(), 200);
}

/// The local transport, except that a script containing `trigger` panics inside Shipday, the
/// way a parser meeting unexpected host output once did.
struct PanickingExec {
    trigger: &'static str,
}

struct PanickingSession {
    inner: Box<dyn shipday::clients::ExecSession>,
    trigger: &'static str,
}

#[async_trait::async_trait]
impl shipday::clients::RemoteExec for PanickingExec {
    async fn connect(&self) -> anyhow::Result<Box<dyn shipday::clients::ExecSession>> {
        let inner = shipday::clients::local::LocalExec.connect().await?;
        Ok(Box::new(PanickingSession { inner, trigger: self.trigger }))
    }

    fn target(&self) -> String {
        "local (panicking)".into()
    }
}

#[async_trait::async_trait]
impl shipday::clients::ExecSession for PanickingSession {
    async fn run(
        &mut self,
        script: &str,
        timeout: std::time::Duration,
        output: &mut shipday::clients::OutputTail,
    ) -> anyhow::Result<StepResult> {
        if script.contains(self.trigger) {
            let name = "0ää_x";
            panic!("byte index 4 is not a char boundary; it is inside 'ä' of `{name}`");
        }
        self.inner.run(script, timeout, output).await
    }

    async fn close(self: Box<Self>) {
        self.inner.close().await
    }
}

/// An engine on the playground whose dev host panics on scripts containing `trigger`.
fn bot_with_panicking_dev(world: &World, trigger: &'static str) -> (shipday::engine::EngineHandle, Store) {
    bot_with_dev(world, std::sync::Arc::new(PanickingExec { trigger }))
}

/// An engine on the playground whose dev host is `dev`.
fn bot_with_dev(
    world: &World,
    dev: std::sync::Arc<dyn shipday::clients::RemoteExec>,
) -> (shipday::engine::EngineHandle, Store) {
    use std::sync::Arc;
    let config = Arc::new(shipday::config::Config::load(&world.config_path()).unwrap());
    let (store, _) = Store::open(&config.state_dir).unwrap();
    let mut transports = shipday::app::transports(&config).unwrap();
    transports.insert("dev".into(), dev);
    let clock: Arc<dyn Clock> = Arc::new(shipday::clock::ManualClock::new(chrono::Utc::now()));
    let engine = shipday::engine::Engine::spawn(config, store.clone(), clock, transports, None, None);
    (engine, store)
}

async fn submit(engine: &shipday::engine::EngineHandle, text: &str) -> (shipday::engine::Reply, Vec<DeployEvent>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut invocation = shipday::engine::Invocation::new("console", "grace", text);
    invocation.progress = Some(tx);
    let reply = engine.submit(invocation).await;
    let mut events = Vec::new();
    while let Some(update) = rx.recv().await {
        events.push(update.event);
    }
    (reply, events)
}

#[bounded::test]
async fn a_panic_inside_a_deploy_step_fails_that_deploy_and_never_leaves_dev_deploying() {
    let world = World::new();
    let (engine, store) = bot_with_panicking_dev(&world, "restarted");
    let (reply, events) = submit(&engine, "/deploy dev feature/login").await;
    let ReplyBody::Deploy(accepted) = &reply.body else { panic!("{reply:?}") };
    assert_eq!(events.last(), Some(&DeployEvent::Finished));
    let record = store.deploy(accepted.id).unwrap().unwrap();
    let Outcome::Failed { step, reason, state_unknown } = &record.outcome else { panic!("{:?}", record.outcome) };
    assert_eq!(step, "shipday");
    assert!(reason.contains("internal error") && *state_unknown, "{reason}");
    assert!(store.active("dev").unwrap().is_none(), "dev is not left deploying");
    // The environment is usable at once: the next deploy is accepted (and fails the same way).
    let (again, _) = submit(&engine, "/deploy dev feature/login").await;
    assert!(matches!(again.body, ReplyBody::Deploy(_)), "{again:?}");
}

#[bounded::test]
async fn a_panic_while_resolving_a_ref_frees_dev_and_the_next_command_is_answered() {
    let world = World::new();
    let (engine, store) = bot_with_panicking_dev(&world, "ls-remote");
    let mut heard = engine.announcements();
    let (reply, _) = submit(&engine, "/deploy dev feature/login").await;
    assert!(matches!(&reply.body, ReplyBody::Refused(text) if text.contains("could not answer")), "{reply:?}");
    let said = tokio::time::timeout(std::time::Duration::from_secs(10), heard.recv()).await.unwrap().unwrap();
    let shipday::engine::Announcement::Text(text) = said else { panic!("{said:?}") };
    assert!(text.contains("internal error") && text.contains("nothing was changed"), "{text}");
    // dev is not "deploying": the same deploy is tried again (and meets the same panic), not
    // refused because a deploy is running.
    let (again, _) = submit(&engine, "/deploy dev feature/login").await;
    assert!(matches!(&again.body, ReplyBody::Refused(text) if text.contains("could not answer")), "{again:?}");
    assert!(store.active("dev").unwrap().is_none());
}

#[bounded::test]
async fn secrets_in_host_output_reach_no_reply_progress_announcement_or_audit_entry() {
    let world = World::new();
    std::fs::write(world.path().join("extra-secret"), "plum-velvet-9931\n").unwrap();
    let steps = r#"  { name = "migrate", run = "echo 'connecting to DATABASE_URL=postgres://shop:hunter2-pg@db:5432/shop with plum-velvet-9931' >&2; exit 3" },"#;
    let custom = world.config_with_dev_steps(steps);
    let text = std::fs::read_to_string(&custom).unwrap().replacen(
        "personal_branches = true",
        "personal_branches = true\nmigrations = { python = \"python3\", manage = \"manage.py\" }",
        1,
    );
    std::fs::write(&custom, format!("redact = [{{ file = \"extra-secret\" }}]\n{text}")).unwrap();
    // A second remote the host cannot reach, whose name carries both secrets: the migration
    // guard's `git fetch --all` fails and prints it.
    let dev = world.path().join("envs/dev");
    common::git(&dev, &["remote", "add", "mirror", "/nonexistent/DATABASE_PASSWORD=hunter2-pg/plum-velvet-9931"]);
    let bot = Bot::start(&custom);
    let secrets = ["hunter2-pg", "plum-velvet-9931"];
    let clean = |what: &str, text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} leaked in the {what}: {text}");
        }
    };

    // The guard's failure as a refusal.
    let (refusal, _) = bot.say("grace", "/deploy dev feature/login").await;
    assert!(refused(&refusal).contains("Could not check"), "{refusal:?}");
    clean("refusal", refused(&refusal));

    // A step failing with the secrets in its output, followed by the command.
    let (reply, progress) = bot.say("grace", "/deploy dev dev").await;
    let done = &progress.last().unwrap().record;
    assert!(matches!(done.outcome, Outcome::Failed { .. }), "{:?}", done.outcome);
    clean("reply", &format!("{reply:?}"));
    for update in &progress {
        clean("progress", &format!("{update:?}"));
    }

    // History and status show the failures; the audit log recorded every decision.
    let (history, _) = bot.say("grace", "/history dev").await;
    clean("history", &format!("{history:?}"));
    let (status, _) = bot.say("grace", "/status --live").await;
    clean("status", &format!("{status:?}"));
    let audit = bot.app.store.audit_tail(100).unwrap();
    assert!(audit.iter().any(|e| e.decision.contains("Could not check")), "{audit:#?}");
    for entry in audit {
        clean("audit log", &format!("{entry:?}"));
    }
}

/// A host that accepts connections and never answers.
struct SilentExec;

#[async_trait::async_trait]
impl shipday::clients::RemoteExec for SilentExec {
    async fn connect(&self) -> anyhow::Result<Box<dyn shipday::clients::ExecSession>> {
        std::future::pending().await
    }

    fn target(&self) -> String {
        "a host that never answers".into()
    }
}

#[bounded::test]
async fn a_full_queue_answers_busy_at_once_and_runs_nothing() {
    let world = World::new();
    let (engine, store) = bot_with_dev(&world, std::sync::Arc::new(SilentExec));
    let engine = engine.with_queue_limit(2);
    // Two people ask for a live status; dev's host never answers, so both stay in the queue.
    for _ in 0..2 {
        let engine = engine.clone();
        tokio::spawn(async move { submit(&engine, "/status --live").await });
    }
    // The test runtime is single-threaded: yielding lets both take their place in the queue.
    tokio::task::yield_now().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (busy, took) = loop {
        let asked = std::time::Instant::now();
        let (reply, _) = submit(&engine, "/history").await;
        if matches!(&reply.body, ReplyBody::Refused(text) if text == shipday::engine::BUSY) {
            break (reply, asked.elapsed());
        }
        assert!(std::time::Instant::now() < deadline, "the queue never filled: {reply:?}");
        tokio::task::yield_now().await;
    };
    assert!(took < std::time::Duration::from_secs(1), "busy is answered at once, took {took:?}");
    assert!(refused(&busy).contains("try again in a moment"));
    let audit = store.audit_tail(50).unwrap();
    assert!(audit.iter().all(|e| !e.decision.contains("busy")), "a busy answer decides nothing: {audit:#?}");
    // A deploy asked while it is full is not queued either.
    let (deploy, _) = submit(&engine, "/deploy dev feature/login").await;
    assert_eq!(refused(&deploy), shipday::engine::BUSY);
    assert!(store.history(Some("dev"), 5).unwrap().is_empty());
}
