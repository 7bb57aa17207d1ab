//! Graceful shutdown (issue 16): a real SIGTERM to the real `shipday serve` binary in the middle
//! of a real SSH deploy against the test sshd, with Slack (Socket Mode) faked. While it drains,
//! a command is answered "restarting" at once; a deploy finishes within `shutdown_grace`, or is
//! stopped before its next step once the grace runs out; the process exits 0 either way.

use testkit as common;

use common::fake_slack::{self, FakeSlack, contract};
use common::real_bot::{lines, logged_step};
use common::sshd::Sshd;
use common::{Gate, PATIENCE, World, bounded, eventually};
use serde_json::{Value, json};
use shipday::release::deploy::Outcome;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TEAM: &str = "T123ABC456";
const TEAM_CHANNEL: &str = "C0TEAM0001";
const CHANNEL: &str = "C0DEPLOYS1";
const GRACE: &str = "U0GRACE001";
const ADA: &str = "U0ADA00001";

/// The test sshd, a world whose dev deploys over SSH with a gated step, and the bot's config.
struct Setup {
    world: World,
    _sshd: Sshd,
    fake: FakeSlack,
    gate: Gate,
    config: PathBuf,
    /// The host-side log of the steps (`start NAME`, `end NAME CODE`).
    host_log: PathBuf,
    /// The bot's stderr.
    bot_log: PathBuf,
}

impl Setup {
    async fn start(grace: &str) -> Self {
        let world = World::new();
        let sshd = Sshd::start();
        let fake = FakeSlack::start(TEAM).await;
        let gate = Gate::new(world.path(), "held");
        let host_log = world.path().join("host-steps.log");
        let steps = [
            logged_step("fetch", &host_log, "git fetch --all --prune --quiet"),
            logged_step("checkout", &host_log, "git checkout --quiet --detach {{sha}}"),
            logged_step("held", &host_log, &gate.shell()),
            logged_step("after", &host_log, "true"),
        ]
        .join("\n");
        let ssh = world.ssh_config(&sshd, &sshd.pin(), &steps, "");
        std::fs::write(world.path().join("bot-token"), fake_slack::BOT_TOKEN).unwrap();
        std::fs::write(world.path().join("app-token"), fake_slack::APP_TOKEN).unwrap();
        let text = std::fs::read_to_string(&ssh)
            .unwrap()
            .replacen("name = \"Grace\"", &format!("name = \"Grace\"\nslack = \"{GRACE}\""), 1)
            .replacen("name = \"Ada\"", &format!("name = \"Ada\"\nslack = \"{ADA}\""), 1);
        let slack = format!(
            "\n[slack]\nteam_id = \"{TEAM}\"\nchannel = \"{TEAM_CHANNEL}\"\nbot_token = {{ file = \"bot-token\" }}\nmode = \"socket\"\napp_token = {{ file = \"app-token\" }}\napi_base_url = \"{}\"\n",
            fake.api_url()
        );
        let config = world.path().join("serve.toml");
        std::fs::write(&config, format!("shutdown_grace = \"{grace}\"\n{text}{slack}")).unwrap();
        let bot_log = world.path().join("bot.log");
        Setup { world, _sshd: sshd, fake, gate, config, host_log, bot_log }
    }

    fn spawn(&self) -> tokio::process::Child {
        let stderr = std::fs::File::create(&self.bot_log).unwrap();
        tokio::process::Command::new(env!("CARGO_BIN_EXE_shipday"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env_remove("SHIPDAY_CONFIG")
            .env("SHIPDAY_LOG", "warn,shipday=info")
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// A slash command through Socket Mode; returns the ack's text.
    async fn command(&self, command: &str, text: &str, id: &str) -> String {
        let mut envelope = contract("socket-mode-envelope.json")["slash_commands"].clone();
        envelope["envelope_id"] = json!(format!("envelope-{id}"));
        envelope["payload"]["trigger_id"] = json!(format!("trigger-{id}"));
        envelope["payload"]["team_id"] = json!(TEAM);
        envelope["payload"]["channel_id"] = json!(CHANNEL);
        envelope["payload"]["user_id"] = json!(GRACE);
        envelope["payload"]["command"] = json!(command);
        envelope["payload"]["text"] = json!(text);
        let ack = self.fake.send_envelope(&envelope).await;
        ack_text(&ack)
    }

    /// Starts the bot, deploys feature/login to dev, and waits until the gated step holds it.
    async fn deploy_until_held(&self) -> tokio::process::Child {
        let child = self.spawn();
        self.fake.wait_for("shipday serve to connect", |f| f.connections() >= 1).await;
        let ack = self.command("/deploy", "dev feature/login", "deploy").await;
        assert!(ack.contains("Accepted"), "{ack}");
        self.gate.reached().await;
        child
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.bot_log).unwrap_or_default()
    }

    /// The text of the deploy's message as last edited.
    fn deploy_message(&self) -> String {
        let messages = self.fake.messages(CHANNEL);
        let message = messages.last().unwrap_or_else(|| panic!("no message in {CHANNEL}; log:\n{}", self.log()));
        format!("{}\n{}", message.text, message.blocks)
    }

    fn last_record(&self) -> shipday::release::deploy::DeployRecord {
        let (store, _) = shipday::store::Store::open(&self.world.path().join("state")).unwrap();
        store.history(Some("dev"), 1).unwrap().remove(0)
    }
}

fn ack_text(ack: &Value) -> String {
    let payload = &ack["payload"];
    format!("{} {}", payload["text"].as_str().unwrap_or_default(), payload["blocks"])
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the bot runs").to_string();
    let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
}

/// A deploy that finishes within the grace ends Succeeded, its message says so, every step ran
/// once, and the process exits 0. A deploy asked for meanwhile is answered "restarting" within
/// the ack limit, and never runs.
#[bounded::test]
async fn sigterm_during_an_ssh_deploy_lets_it_finish_within_the_grace_and_exits_0() {
    let s = Setup::start("2m").await;
    let mut child = s.deploy_until_held().await;
    sigterm(&child);
    eventually(PATIENCE, "the bot to start shutting down", || s.log().contains("waiting for running deploys")).await;
    let asked = Instant::now();
    let ack = s.command("/deploy", "dev dev", "second-deploy").await;
    assert!(ack.contains("Shipday is restarting, try again in a minute. Nothing was done."), "{ack}");
    assert!(asked.elapsed() < Duration::from_secs(3), "answered within the ack limit: {:?}", asked.elapsed());
    // Still draining: the deploy waits at its gate, so the process must not have exited.
    assert!(child.try_wait().unwrap().is_none(), "exited before the running deploy ended; log:\n{}", s.log());
    s.gate.open().await;
    let status = bounded(Duration::from_secs(60), "the bot to exit", child.wait()).await.unwrap();
    assert!(status.success(), "exit status {status:?}; log:\n{}", s.log());

    let record = s.last_record();
    assert_eq!(record.outcome, Outcome::Succeeded, "log:\n{}", s.log());
    assert_eq!(s.world.head("dev"), s.world.tip("feature/login"));
    let host = lines(&s.host_log);
    for step in ["fetch", "checkout", "held", "after"] {
        assert_eq!(host.iter().filter(|l| **l == format!("end {step} 0")).count(), 1, "{step}: {host:?}");
    }
    let message = s.deploy_message();
    assert!(message.contains("Succeeded"), "{message}");
    // The command during the drain ran nothing: one deploy in the history.
    let (store, _) = shipday::store::Store::open(&s.world.path().join("state")).unwrap();
    assert_eq!(store.history(Some("dev"), 10).unwrap().len(), 1);
}

/// With a short grace and a step still running when it ends, the step is not killed: it ends,
/// the steps after it never run on the host, the deploy is recorded (and its message edited) as
/// stopped before the next step, and the process exits 0.
#[bounded::test]
async fn sigterm_with_a_short_grace_stops_the_ssh_deploy_at_a_step_boundary_and_exits_0() {
    let s = Setup::start("1s").await;
    let mut child = s.deploy_until_held().await;
    let signalled = Instant::now();
    sigterm(&child);
    eventually(PATIENCE, "the grace to run out", || s.log().contains("shutdown grace ran out")).await;
    // The step running when the grace ran out goes on to its end.
    assert!(child.try_wait().unwrap().is_none(), "exited while a step still ran; log:\n{}", s.log());
    s.gate.open().await;
    let status = bounded(Duration::from_secs(60), "the bot to exit", child.wait()).await.unwrap();
    assert!(status.success(), "exit status {status:?}; log:\n{}", s.log());
    println!("exited {:?} after SIGTERM (grace 1s, gate opened once it ran out)", signalled.elapsed());

    let host = lines(&s.host_log);
    assert!(host.contains(&"end held 0".to_owned()), "{host:?}");
    assert!(!host.iter().any(|l| l.contains("after")), "a step after the grace ran: {host:?}");
    let record = s.last_record();
    match &record.outcome {
        Outcome::Failed { step, reason, state_unknown } => {
            assert_eq!(step, "after");
            assert!(reason.contains("SIGTERM") && reason.contains("after, verify HEAD did not run"), "{reason}");
            assert!(!state_unknown);
        }
        other => panic!("expected a deploy stopped at a step boundary, got {other:?}; log:\n{}", s.log()),
    }
    let message = s.deploy_message();
    assert!(message.contains("SIGTERM"), "the deploy message says it was stopped: {message}");
}

/// In process: with nothing running, a shutdown returns at once (nothing stopped, no message
/// to wait for), and from then on every command is answered "restarting" and runs nothing.
#[bounded::test]
async fn an_idle_engine_shuts_down_at_once_and_then_answers_restarting() {
    let world = World::new();
    let bot = common::Bot::start(&world.config_path());
    let report = bounded(
        Duration::from_secs(5),
        "an idle shutdown",
        bot.app.engine.shut_down(Duration::from_secs(600), "SIGTERM"),
    )
    .await;
    assert_eq!(report, shipday::engine::ShutdownReport { stopped_deploys: false, messages_edited: true });
    let (reply, progress) = bot.say("grace", "/deploy dev feature/login").await;
    assert_eq!(common::refused(&reply), shipday::engine::RESTARTING);
    assert!(progress.is_empty());
    assert!(bot.app.store.history(Some("dev"), 10).unwrap().is_empty());
}

/// A lead's reaction on the bot's promotion message while the engine drains after SIGTERM is
/// still handled: acked once recorded, counted as a vote, and the message edited to say so,
/// while commands are answered "restarting". The approval reaches quorum, but starts nothing
/// while Shipday drains (no merge, no deploy): the request stays approved, the team is told it
/// runs once Shipday is back, and the process exits 0 once the running deploy ends.
#[bounded::test]
async fn reactions_on_the_bots_messages_are_still_votes_while_it_drains_after_sigterm() {
    use shipday::release::approvals::RequestState;
    let s = Setup::start("2m").await;
    {
        let (store, _) = shipday::store::Store::open(&s.world.path().join("state")).unwrap();
        let mut request = common::pending_request(7, &s.world.tip("staging"), chrono::Utc::now());
        request.quorum = 1;
        // An emergency: once approved it would run at once, whatever the calendar says.
        request.emergency = Some("hotfix for the checkout".into());
        store.put_promotion(&request).unwrap();
        // Posted in the team channel by the bot's previous run.
        let message = shipday::engine::MessageRef { channel: TEAM_CHANNEL.into(), id: "1700000000.000007".into() };
        store.bind_promotion_message("slack", &message, 7).unwrap();
        store.flush().await.unwrap();
        s.fake.seed_message(TEAM_CHANNEL, &message.id, "Promotion #7 (posted before the restart)");
    }
    let ts = "1700000000.000007";
    let mut child = s.deploy_until_held().await;
    // The open request's message is shown again (edited) once the bot started.
    s.fake
        .wait_for("the open promotion shown again in the team channel", |f| {
            f.messages(TEAM_CHANNEL).iter().any(|m| m.edits > 0 && m.text.contains("Promotion #7"))
        })
        .await;
    sigterm(&child);
    eventually(PATIENCE, "the bot to start shutting down", || s.log().contains("waiting for running deploys")).await;
    let ack = s.command("/deploy", "dev dev", "during-drain").await;
    assert!(ack.contains("Shipday is restarting"), "{ack}");

    // Ada (a lead) approves on the bot's message while it drains: recorded before the ack, and
    // the message is edited with her approval.
    let react = |id: &str| {
        let mut envelope = contract("socket-mode-envelope.json")["events_api"].clone();
        let mut event = contract("event-reaction_added.json");
        event["team_id"] = json!(TEAM);
        event["event_id"] = json!(format!("Ev0DRAIN{id}"));
        event["event"]["user"] = json!(ADA);
        event["event"]["reaction"] = json!("white_check_mark");
        event["event"]["item"]["channel"] = json!(TEAM_CHANNEL);
        event["event"]["item"]["ts"] = json!(ts);
        event["event"]["item_user"] = json!(fake_slack::BOT_USER);
        envelope["envelope_id"] = json!(format!("drain-envelope-{id}"));
        envelope["payload"] = event;
        envelope
    };
    let envelope = react("1");
    let ack = bounded(Duration::from_secs(10), "the reaction's ack", s.fake.send_envelope(&envelope)).await;
    assert_eq!(ack, json!({ "envelope_id": envelope["envelope_id"] }), "log:\n{}", s.log());
    s.fake
        .wait_for("the request edited with Ada's approval while draining", |f| {
            f.messages(TEAM_CHANNEL)
                .iter()
                .any(|m| m.text.contains("Promotion #7") && m.text.contains("approved by Ada"))
        })
        .await;
    s.fake
        .wait_for("the team told it runs after the restart", |f| {
            f.messages(TEAM_CHANNEL).iter().any(|m| m.text.contains("#7") && m.text.contains("once Shipday is back"))
        })
        .await;
    assert!(child.try_wait().unwrap().is_none(), "exited before the running deploy ended; log:\n{}", s.log());
    s.gate.open().await;
    let status = bounded(Duration::from_secs(60), "the bot to exit", child.wait()).await.unwrap();
    assert!(status.success(), "exit status {status:?}; log:\n{}", s.log());

    let (store, _) = shipday::store::Store::open(&s.world.path().join("state")).unwrap();
    let request = store.promotion(7).unwrap().unwrap();
    assert_eq!(request.approvals(), 1, "{request:?}");
    assert!(matches!(request.state, RequestState::Approved { .. }), "approved, not started: {:?}", request.state);
    assert_eq!(store.history(Some("dev"), 10).unwrap().len(), 1, "nothing else ran");
}
