//! The Slack adapter end to end: the real axum routes, signature checks and Socket Mode client
//! against a local fake Slack, with the real engine, store and local transport.

use testkit as common;

use common::fake_slack::{self, BOT_USER, FakeSlack, NOT_A_MEMBER, contract, contract_text};
use common::{Bot, Gate, Served, World};
use serde_json::{Value, json};
use shipday::chat::slack::SlackAdapter;
use shipday::chat::slack::verify::sign;
use shipday::clock::Clock;
use shipday::config::Secret;
use shipday::release::deploy::Outcome;
use std::sync::Arc;
use std::time::Duration;

/// The workspace of the reaction samples.
const TEAM: &str = "T123ABC456";
/// The team channel in the config.
const TEAM_CHANNEL: &str = "C0TEAM0001";
/// Where people type commands.
const CHANNEL: &str = "C0DEPLOYS1";
const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const GRACE: &str = "U0GRACE001";
const ADA: &str = "U0ADA00001";
/// The direct-message channel the fake opens for Grace.
const GRACE_DM: &str = "D0GRACE001";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Http,
    Socket,
}

/// A world, a bot with the Slack adapter, and the fake Slack it talks to.
struct Setup {
    world: World,
    bot: Bot,
    fake: FakeSlack,
    adapter: SlackAdapter,
    /// HTTP mode's routes on the one listener.
    served: Option<Served>,
    http: reqwest::Client,
}

impl Setup {
    async fn start(mode: Mode) -> Self {
        Self::start_with(mode, "").await
    }

    /// Starts with `extra` lines in the `[slack]` section (such as `commands = { … }`).
    async fn start_with(mode: Mode, extra: &str) -> Self {
        Self::start_edited(mode, extra, |text| text).await
    }

    /// Starts with `extra` lines in the `[slack]` section, on the config text `edit` returns.
    async fn start_edited(mode: Mode, extra: &str, edit: impl FnOnce(String) -> String) -> Self {
        let world = World::new();
        let fake = FakeSlack::start(TEAM).await;
        let config = write_config(&world, &fake, mode);
        let text = edit(std::fs::read_to_string(&config).unwrap());
        std::fs::write(&config, format!("{text}{extra}\n")).unwrap();
        let bot = Bot::start(&config);
        let adapter = SlackAdapter::start(&bot.app, bot.adapters.slack.as_ref().unwrap(), Arc::new(bot.clock.clone()))
            .await
            .unwrap();
        if mode == Mode::Socket {
            fake.wait_for("a Socket Mode connection", |f| f.connections() >= 1).await;
        }
        let served = serve(&adapter).await;
        Self { world, bot, fake, adapter, served, http: reqwest::Client::new() }
    }

    /// Restarts the bot and adapter on the same store, as after a crash.
    async fn restart(self) -> Self {
        let Setup { world, bot, fake, adapter, served, http } = self;
        drop(served);
        drop(adapter);
        drop(bot);
        let config = world.path().join("slack.toml");
        let bot = Bot::restart(&config).await;
        let adapter = SlackAdapter::start(&bot.app, bot.adapters.slack.as_ref().unwrap(), Arc::new(bot.clock.clone()))
            .await
            .unwrap();
        let served = serve(&adapter).await;
        Self { world, bot, fake, adapter, served, http }
    }

    fn url(&self, path: &str) -> String {
        self.served.as_ref().expect("HTTP mode").url(path)
    }

    /// A slash command body, from the contract sample with our fields put in.
    fn command_form(&self, user: &str, command: &str, text: &str, trigger: &str) -> String {
        command_form(
            &self.fake,
            &[
                ("team_id", TEAM),
                ("channel_id", CHANNEL),
                ("user_id", user),
                ("command", command),
                ("text", text),
                ("trigger_id", trigger),
            ],
        )
    }

    /// POSTs `body` to `path`, signed now.
    async fn signed(&self, path: &str, body: &str, content_type: &str) -> reqwest::Response {
        let ts = self.bot.clock.now().timestamp().to_string();
        let signature = sign(&Secret::new(SIGNING_SECRET), &ts, body.as_bytes());
        self.post(path, body, content_type, &[("x-slack-request-timestamp", &ts), ("x-slack-signature", &signature)])
            .await
    }

    async fn post(&self, path: &str, body: &str, content_type: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.http.post(self.url(path)).header("content-type", content_type).body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// Sends a signed slash command and returns the ack's JSON.
    async fn command(&self, user: &str, command: &str, text: &str, trigger: &str) -> Value {
        let body = self.command_form(user, command, text, trigger);
        let response = self.signed("/slack/commands", &body, "application/x-www-form-urlencoded").await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Waits for the deploy message in `channel` to show a finished deploy; returns it.
    async fn finished_message(&self, channel: &str) -> fake_slack::Posted {
        self.fake
            .wait_for("the deploy message to show the outcome", |f| {
                f.messages(channel).iter().any(|m| m.text.contains("✅") || m.text.contains("❌"))
            })
            .await;
        let messages = self.fake.messages(channel);
        assert_eq!(messages.len(), 1, "one message per deploy: {messages:#?}");
        messages[0].clone()
    }

    /// Audit lines about reactions.
    fn reactions(&self) -> Vec<String> {
        let audit = self.bot.app.store.audit_tail(100).unwrap();
        audit
            .into_iter()
            .filter(|e| e.text.contains("reaction") || e.text.starts_with("reacted"))
            .map(|e| e.text)
            .collect()
    }

    /// Nothing ran: no deploy, no audit line, no restart, no message.
    fn assert_nothing_ran(&self) {
        assert!(self.bot.app.store.history(None, 10).unwrap().is_empty(), "a deploy was recorded");
        assert!(self.bot.app.store.audit_tail(10).unwrap().is_empty(), "a command reached the engine");
        assert!(self.world.restarts().is_empty(), "a step ran");
        assert!(self.fake.calls("chat.postMessage").is_empty(), "something was posted");
    }
}

/// HTTP mode's routes, served on the one listener as `shipday serve` does.
async fn serve(adapter: &SlackAdapter) -> Option<Served> {
    match adapter.routes() {
        Some(routes) => Some(Served::start(routes).await),
        None => None,
    }
}

fn command_form(fake: &FakeSlack, fields: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(&contract_text("slash-command.form")).unwrap();
    let trigger = fields.iter().find(|(k, _)| *k == "trigger_id").map(|(_, v)| *v).unwrap_or("t");
    for (key, value) in pairs.iter_mut() {
        if key == "response_url" {
            *value = fake.response_url(trigger);
        }
        if let Some((_, new)) = fields.iter().find(|(k, _)| k == key) {
            *value = (*new).to_owned();
        }
    }
    serde_urlencoded::to_string(pairs).unwrap()
}

fn write_config(world: &World, fake: &FakeSlack, mode: Mode) -> std::path::PathBuf {
    let dir = world.path();
    std::fs::write(dir.join("bot-token"), fake_slack::BOT_TOKEN).unwrap();
    std::fs::write(dir.join("app-token"), fake_slack::APP_TOKEN).unwrap();
    std::fs::write(dir.join("signing-secret"), SIGNING_SECRET).unwrap();
    let text = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replacen("name = \"Grace\"", &format!("name = \"Grace\"\nslack = \"{GRACE}\""), 1)
        .replacen("name = \"Ada\"", &format!("name = \"Ada\"\nslack = \"{ADA}\""), 1);
    let transport = match mode {
        Mode::Http => "mode = \"http\"\nsigning_secret = { file = \"signing-secret\" }",
        Mode::Socket => "mode = \"socket\"\napp_token = { file = \"app-token\" }",
    };
    let slack = format!(
        "\n[slack]\nteam_id = \"{TEAM}\"\nchannel = \"{TEAM_CHANNEL}\"\nbot_token = {{ file = \"bot-token\" }}\n{transport}\napi_base_url = \"{}\"\n",
        fake.api_url()
    );
    let path = dir.join("slack.toml");
    std::fs::write(&path, format!("{text}{slack}")).unwrap();
    path
}

fn text_of(ack: &Value) -> String {
    ack["text"].as_str().unwrap_or_default().to_owned()
}

#[bounded::test]
async fn a_slash_command_over_http_is_acked_then_one_message_is_edited_to_success() {
    let s = Setup::start(Mode::Http).await;
    let ack = s.command(GRACE, "/deploy", "dev feature/login", "100.1.http").await;
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(text_of(&ack).contains("Accepted: `/deploy dev feature/login`"), "{ack}");

    let message = s.finished_message(CHANNEL).await;
    let sha = s.world.tip("feature/login");
    assert!(message.text.contains(&format!("at {} by Grace", &sha[..8])), "{}", message.text);
    assert!(message.edits >= 1, "progress edits the message in place");
    let blocks = message.blocks.to_string();
    for step in ["✅ fetch", "✅ checkout", "✅ restart app", "✅ reload web", "✅ verify HEAD", "Succeeded"] {
        assert!(blocks.contains(step), "{step} missing from {blocks}");
    }
    // Every edit went to the one message.
    let updates = s.fake.calls("chat.update");
    assert!(updates.iter().all(|u| u.body["ts"] == message.ts.as_str() && u.body["channel"] == CHANNEL));
    assert_eq!(s.fake.messages(CHANNEL).len(), 1);
    // Grace hears how her deploy ended in a direct message, with the outcome.
    s.fake.wait_for("Grace's direct message", |f| !f.messages(GRACE_DM).is_empty()).await;
    let opened = s.fake.calls("conversations.open");
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].body["users"], json!([GRACE]));
    let dm = &s.fake.messages(GRACE_DM)[0];
    assert!(dm.blocks.to_string().contains("Succeeded") && dm.text.contains(&sha[..8]), "{dm:?}");
    assert_eq!(s.world.head("dev"), sha);
    let record = &s.bot.app.store.history(Some("dev"), 1).unwrap()[0];
    assert_eq!(record.outcome, Outcome::Succeeded);
    assert_eq!(record.requested_by, "grace");
}

#[bounded::test]
async fn a_socket_mode_websocket_that_never_answers_is_started_over_within_the_bound_and_logged() {
    let logs = common::captured_logs();
    let world = World::new();
    let fake = FakeSlack::start(TEAM).await;
    // The first two WebSocket connections are accepted and never answered.
    fake.silent_sockets(2);
    let config = write_config(&world, &fake, Mode::Socket);
    let bot = Bot::start(&config);
    let retry = shipday::clients::outbound::StartupRetry {
        first_backoff: Duration::from_millis(50),
        websocket_ready: Duration::from_millis(500),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let adapter =
        SlackAdapter::start_with(&bot.app, bot.adapters.slack.as_ref().unwrap(), Arc::new(bot.clock.clone()), &retry)
            .await
            .unwrap();
    fake.wait_for("a Socket Mode connection after two silent ones", |f| f.connections() >= 1).await;
    assert_eq!(fake.silent_connections(), 2);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let restarts =
        logged.lines().filter(|l| l.contains("Slack Socket Mode") && l.contains("did not come up in time")).count();
    assert_eq!(restarts, 2, "each start-over is logged");
    // The session that came up works.
    let mut envelope = contract("socket-mode-envelope.json")["slash_commands"].clone();
    envelope["payload"]["team_id"] = json!(TEAM);
    envelope["payload"]["user_id"] = json!(GRACE);
    envelope["payload"]["command"] = json!("/status");
    envelope["payload"]["text"] = json!("");
    envelope["payload"]["channel_id"] = json!(CHANNEL);
    let ack = fake.send_envelope(&envelope).await;
    assert_eq!(ack["envelope_id"], envelope["envelope_id"], "acked on the session that came up");
    drop(adapter);
}

#[bounded::test]
async fn a_slash_command_over_socket_mode_is_acked_by_envelope_then_one_message_is_edited_to_success() {
    let s = Setup::start(Mode::Socket).await;
    // The WebSocket URL came from apps.connections.open, called with the app token.
    assert!(!s.fake.calls("apps.connections.open").is_empty());
    let mut envelope = contract("socket-mode-envelope.json")["slash_commands"].clone();
    let payload = &mut envelope["payload"];
    payload["team_id"] = json!(TEAM);
    payload["channel_id"] = json!(CHANNEL);
    payload["user_id"] = json!(GRACE);
    payload["command"] = json!("/deploy");
    payload["text"] = json!("dev feature/search");
    payload["response_url"] = json!(s.fake.response_url("socket-1"));
    let ack = s.fake.send_envelope(&envelope).await;
    assert_eq!(ack["envelope_id"], envelope["envelope_id"]);
    assert_eq!(ack["payload"]["response_type"], "ephemeral");
    assert!(ack["payload"]["text"].as_str().unwrap().contains("Accepted"), "{ack}");

    let message = s.finished_message(CHANNEL).await;
    assert!(message.blocks.to_string().contains("Succeeded"), "{}", message.blocks);
    assert_eq!(s.world.head("dev"), s.world.tip("feature/search"));

    // Slack delivering the same envelope again (same trigger) does not deploy again.
    let again = s.fake.send_envelope(&envelope).await;
    assert!(again["payload"]["text"].as_str().unwrap().contains("already received"), "{again}");
    assert_eq!(s.bot.app.store.history(None, 10).unwrap().len(), 1);
}

#[bounded::test]
async fn requests_not_verifiably_from_slack_get_401_and_nothing_runs() {
    let s = Setup::start(Mode::Http).await;
    let body = s.command_form(GRACE, "/deploy", "dev feature/login", "200.1.bad");
    let now = s.bot.clock.now().timestamp();
    let secret = Secret::new(SIGNING_SECRET);
    let form = "application/x-www-form-urlencoded";
    let ts = now.to_string();
    let good = sign(&secret, &ts, body.as_bytes());

    // A signature made with another secret.
    let wrong = sign(&Secret::new("not-the-secret"), &ts, body.as_bytes());
    let bad = [("x-slack-request-timestamp", ts.as_str()), ("x-slack-signature", wrong.as_str())];
    assert_eq!(s.post("/slack/commands", &body, form, &bad).await.status(), 401);
    // A correct signature, but six minutes old (a replay from outside the window).
    let old = (now - 360).to_string();
    let old_signature = sign(&secret, &old, body.as_bytes());
    let stale = [("x-slack-request-timestamp", old.as_str()), ("x-slack-signature", old_signature.as_str())];
    assert_eq!(s.post("/slack/commands", &body, form, &stale).await.status(), 401);
    // The body changed by one byte after signing.
    let changed = body.replacen("feature%2Flogin", "feature%2Flogim", 1);
    assert_ne!(changed, body);
    let headers = [("x-slack-request-timestamp", ts.as_str()), ("x-slack-signature", good.as_str())];
    assert_eq!(s.post("/slack/commands", &changed, form, &headers).await.status(), 401);
    // Missing headers.
    assert_eq!(s.post("/slack/commands", &body, form, &headers[..1]).await.status(), 401);
    assert_eq!(s.post("/slack/commands", &body, form, &headers[1..]).await.status(), 401);
    assert_eq!(s.post("/slack/commands", &body, form, &[]).await.status(), 401);
    // The other routes check too.
    let event = contract_text("event-reaction_added.json");
    assert_eq!(s.post("/slack/events", &event, "application/json", &headers).await.status(), 401);
    assert_eq!(s.post("/slack/interactivity", "payload=%7B%7D", form, &headers).await.status(), 401);
    s.assert_nothing_ran();
    assert!(s.reactions().is_empty());

    // The untouched request passes, so the rejections above were for the reasons tested.
    assert_eq!(s.post("/slack/commands", &body, form, &headers).await.status(), 200);
    s.finished_message(CHANNEL).await;
}

#[bounded::test]
async fn a_command_from_another_workspace_is_refused_and_nothing_runs() {
    let s = Setup::start(Mode::Http).await;
    // Slack's own sample comes from workspace T1DC2JH3J; make it a deploy by a known user id.
    let body = command_form(&s.fake, &[("user_id", GRACE), ("command", "/deploy"), ("text", "dev feature/login")]);
    assert!(body.contains("team_id=T1DC2JH3J"));
    let response = s.signed("/slack/commands", &body, "application/x-www-form-urlencoded").await;
    assert_eq!(response.status(), 200);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(text_of(&ack).contains("another Slack workspace"), "{ack}");
    // An event from there is ignored too.
    let mut event = contract("event-reaction_added.json");
    event["team_id"] = json!("T1DC2JH3J");
    assert_eq!(s.signed("/slack/events", &event.to_string(), "application/json").await.status(), 200);
    s.assert_nothing_ran();
    assert!(s.reactions().is_empty());
}

#[bounded::test]
async fn a_replayed_signed_command_inside_the_window_runs_once() {
    let s = Setup::start(Mode::Http).await;
    let body = s.command_form(GRACE, "/deploy", "dev feature/login", "300.1.replay");
    let first = s.signed("/slack/commands", &body, "application/x-www-form-urlencoded").await;
    let replay = s.signed("/slack/commands", &body, "application/x-www-form-urlencoded").await;
    let first: Value = first.json().await.unwrap();
    let replay: Value = replay.json().await.unwrap();
    assert!(text_of(&first).contains("Accepted"), "{first}");
    assert!(text_of(&replay).contains("already received"), "{replay}");
    s.finished_message(CHANNEL).await;
    assert_eq!(s.bot.app.store.history(None, 10).unwrap().len(), 1);
    // Even after a restart the delivery is remembered.
    let s = s.restart().await;
    let again: Value =
        s.signed("/slack/commands", &body, "application/x-www-form-urlencoded").await.json().await.unwrap();
    assert!(text_of(&again).contains("already received"), "{again}");
    assert_eq!(s.bot.app.store.history(None, 10).unwrap().len(), 1);
}

#[bounded::test]
async fn a_retried_reaction_is_recorded_once_and_the_bots_own_and_foreign_reactions_are_ignored() {
    let s = Setup::start(Mode::Http).await;
    let event = contract_text("event-reaction_added.json");
    assert_eq!(s.signed("/slack/events", &event, "application/json").await.status(), 200);
    assert_eq!(s.reactions(), ["reacted :thumbsup: on message 1360782400.498405 in C123ABC456"]);
    // Slack retries (it thinks the first was lost): same event_id, X-Slack-Retry-Num set.
    let ts = s.bot.clock.now().timestamp().to_string();
    let signature = sign(&Secret::new(SIGNING_SECRET), &ts, event.as_bytes());
    let headers = [
        ("x-slack-request-timestamp", ts.as_str()),
        ("x-slack-signature", signature.as_str()),
        ("x-slack-retry-num", "1"),
        ("x-slack-retry-reason", "http_timeout"),
    ];
    assert_eq!(s.post("/slack/events", &event, "application/json", &headers).await.status(), 200);
    assert_eq!(s.reactions().len(), 1, "a retry is not recorded twice");

    // Removing it is its own event.
    let mut removed = contract("event-reaction_removed.json");
    removed["event_id"] = json!("Ev0REMOVED1");
    assert_eq!(s.signed("/slack/events", &removed.to_string(), "application/json").await.status(), 200);
    assert_eq!(s.reactions()[0], "removed reaction :thumbsup: on message 1360782400.498405 in C123ABC456");

    // The bot's own reaction, and a reaction on someone else's message, are not approvals.
    let mut own = contract("event-reaction_added.json");
    own["event_id"] = json!("Ev0OWN00001");
    own["event"]["user"] = json!(BOT_USER);
    let mut elsewhere = contract("event-reaction_added.json");
    elsewhere["event_id"] = json!("Ev0ELSE0001");
    elsewhere["event"]["item_user"] = json!("U0SOMEONE1");
    for ignored in [own, elsewhere] {
        assert_eq!(s.signed("/slack/events", &ignored.to_string(), "application/json").await.status(), 200);
    }
    assert_eq!(s.reactions().len(), 2);
}

/// The first delivery's effect reached the engine, but the bot died before recording the
/// delivery as handled. Slack's retry must be processed (at least once, never lost), and
/// once that is recorded, later retries are not.
#[bounded::test]
async fn a_retry_after_a_crash_before_the_delivery_was_recorded_is_processed() {
    let s = Setup::start(Mode::Http).await;
    let event = contract("event-reaction_added.json");
    let item = &event["event"]["item"];
    s.bot
        .app
        .engine
        .react(shipday::engine::Reaction {
            platform: "slack".into(),
            user_id: event["event"]["user"].as_str().unwrap().into(),
            platform_roles: vec![],
            emoji: "thumbsup".into(),
            message: shipday::engine::MessageRef {
                channel: item["channel"].as_str().unwrap().into(),
                id: item["ts"].as_str().unwrap().into(),
            },
            added: true,
            at: chrono::Utc::now(),
        })
        .await;
    let s = s.restart().await;
    assert_eq!(s.reactions().len(), 1);
    let body = event.to_string();
    for retry in ["1", "2"] {
        let ts = s.bot.clock.now().timestamp().to_string();
        let signature = sign(&Secret::new(SIGNING_SECRET), &ts, body.as_bytes());
        let headers = [
            ("x-slack-request-timestamp", ts.as_str()),
            ("x-slack-signature", signature.as_str()),
            ("x-slack-retry-num", retry),
        ];
        assert_eq!(s.post("/slack/events", &body, "application/json", &headers).await.status(), 200);
    }
    assert_eq!(s.reactions().len(), 2, "the first retry is processed, the second is a duplicate");
}

#[bounded::test]
async fn a_reaction_over_socket_mode_is_acked_after_it_is_recorded() {
    let s = Setup::start(Mode::Socket).await;
    let mut envelope = contract("socket-mode-envelope.json")["events_api"].clone();
    envelope["payload"] = contract("event-reaction_added.json");
    let ack = s.fake.send_envelope(&envelope).await;
    assert_eq!(ack, json!({ "envelope_id": envelope["envelope_id"] }));
    assert_eq!(s.reactions().len(), 1, "recorded before the ack");
    let mut retry = envelope.clone();
    retry["envelope_id"] = json!("retry-envelope-1");
    retry["retry_attempt"] = json!(1);
    retry["retry_reason"] = json!("timeout");
    s.fake.send_envelope(&retry).await;
    assert_eq!(s.reactions().len(), 1);
    // Slack's own app_mention sample is acked and ignored.
    let mention = contract("socket-mode-envelope.json")["events_api"].clone();
    assert_eq!(s.fake.send_envelope(&mention).await["envelope_id"], mention["envelope_id"]);
    assert_eq!(s.reactions().len(), 1);
}

#[bounded::test]
async fn a_429_from_slack_is_waited_out_as_retry_after_says() {
    let s = Setup::start(Mode::Http).await;
    s.fake.rate_limit_once("chat.postMessage", 1);
    let ack = s.command(ADA, "/lock", "staging QA for release 42", "400.1.lock").await;
    assert!(text_of(&ack).contains("Accepted"), "{ack}");
    s.fake.wait_for("the lock message", |f| f.messages(CHANNEL).len() == 1).await;
    let calls = s.fake.calls("chat.postMessage");
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), [429, 200]);
    let waited = calls[1].at - calls[0].at;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert!(s.fake.messages(CHANNEL)[0].text.contains("staging is locked by Ada"), "{:?}", s.fake.messages(CHANNEL));
}

#[bounded::test]
async fn an_unconfigured_user_is_refused_privately_and_nothing_runs() {
    let s = Setup::start(Mode::Http).await;
    let ack = s.command("U0STRANGER", "/deploy", "dev feature/login", "500.1.stranger").await;
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(text_of(&ack).contains("people list"), "{ack}");
    assert!(s.bot.app.store.history(None, 10).unwrap().is_empty());
    assert!(s.fake.calls("chat.postMessage").is_empty());
    assert!(s.world.restarts().is_empty());
}

#[bounded::test]
async fn an_error_the_user_can_fix_is_ephemeral_and_posts_nothing_in_the_channel() {
    let s = Setup::start(Mode::Http).await;
    let ack = s.command(GRACE, "/deploy", "prod feature/login", "600.1.typo").await;
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(text_of(&ack).contains("Did you mean `production`"), "{ack}");
    assert!(ack["blocks"].to_string().contains("✋"), "{ack}");
    assert!(s.fake.calls("chat.postMessage").is_empty());
    assert!(s.fake.calls("chat.postEphemeral").is_empty() && s.fake.calls("response_url").is_empty());
}

/// An environment's alias works wherever an environment is named, the deploy carries the
/// environment's own name, `/help` lists the aliases, and a typo of an alias gets a suggestion.
#[bounded::test]
async fn an_alias_names_its_environment_in_every_command_and_help_lists_it() {
    let s = Setup::start_edited(Mode::Http, "", |text| {
        text.replacen("name = \"dev\"\n", "name = \"dev\"\naliases = [\"sandbox\", \"dv\"]\n", 1)
    })
    .await;
    let ack = s.command(GRACE, "/deploy", "sandbox feature/login", "650.1.alias").await;
    assert!(text_of(&ack).contains("Accepted: `/deploy sandbox feature/login`"), "{ack}");
    s.finished_message(CHANNEL).await;
    let deploys = s.bot.app.store.history(None, 10).unwrap();
    assert_eq!(deploys.len(), 1);
    assert_eq!(deploys[0].env, "dev", "recorded under the environment's own name");
    assert_eq!(deploys[0].outcome, Outcome::Succeeded);
    assert_eq!(s.world.head("dev"), s.world.tip("feature/login"));

    let status = s.command("U0ANYONE01", "/ship-status", "dv", "650.2.status").await;
    assert!(status["blocks"].to_string().contains("feature/login"), "{status}");
    let release = s.command(GRACE, "/release", "sandbox", "650.3.release").await;
    assert!(!release["blocks"].to_string().contains("✋"), "{release}");

    let typo = s.command(GRACE, "/deploy", "sandbx feature/login", "650.4.typo").await;
    assert_eq!(typo["response_type"], "ephemeral");
    let typo = text_of(&typo);
    assert!(typo.contains("Did you mean `sandbox`?"), "{typo}");
    assert!(typo.contains("Environments: dev (sandbox, dv), staging, production."), "{typo}");

    let help = s.command("U0ANYONE01", "/ship-help", "", "650.5.help").await;
    let blocks = help["blocks"].to_string();
    assert!(blocks.contains("Environments: dev (also sandbox, dv), staging, production."), "{blocks}");
}

/// `dm = false` opts a person out: Ada's deploy ends without a direct message, Grace's (who
/// did not opt out) with one, linking the commit, the compare and the environment in Slack's
/// link syntax.
#[bounded::test]
async fn a_person_who_opted_out_gets_no_direct_message_and_deploy_messages_link_in_slack_syntax() {
    let s = Setup::start_edited(Mode::Http, "", |text| {
        text.replacen(&format!("slack = \"{ADA}\""), &format!("slack = \"{ADA}\"\ndm = false"), 1)
            .replacen("name = \"dev\"\n", "name = \"dev\"\nurl = \"https://dev.shop.example\"\n", 1)
            // GitHub at a closed local port: links only (reports to it fail, logged).
            .replacen(
                "[slack]",
                "[github]\napi_base_url = \"http://127.0.0.1:9\"\nowner = \"acme\"\nrepo = \"shop\"\n\
                 token = { file = \"bot-token\" }\n\n[slack]",
                1,
            )
    })
    .await;
    let ack = s.command(ADA, "/deploy", "dev dev", "660.1.ada").await;
    assert!(text_of(&ack).contains("Accepted"), "{ack}");
    s.finished_message(CHANNEL).await;
    let live = s.world.head("dev");
    let ack = s.command(GRACE, "/deploy", "dev feature/login", "660.2.grace").await;
    assert!(text_of(&ack).contains("Accepted"), "{ack}");
    s.fake.wait_for("Grace's direct message", |f| !f.messages(GRACE_DM).is_empty()).await;
    let opened: Vec<Value> = s.fake.calls("conversations.open").into_iter().map(|c| c.body["users"].clone()).collect();
    assert_eq!(opened, [json!([GRACE])], "Ada opted out");
    let sha = s.world.tip("feature/login");
    let dm = s.fake.messages(GRACE_DM)[0].blocks.to_string();
    for link in [
        format!("commit <http://127.0.0.1:9/acme/shop/commit/{sha}|{}>", &sha[..8]),
        format!("changes <http://127.0.0.1:9/acme/shop/compare/{live}...{sha}|{}...{}>", &live[..8], &sha[..8]),
        "open <https://dev.shop.example|dev>".to_owned(),
    ] {
        assert!(dm.contains(&link), "{link} missing from {dm}");
    }
    let channel = s.fake.messages(CHANNEL);
    let grace = channel.iter().find(|m| m.text.contains(&sha[..8])).expect("Grace's deploy message");
    assert!(grace.blocks.to_string().contains("open <https://dev.shop.example|dev>"), "{:?}", grace.blocks);
}

#[bounded::test]
async fn status_history_and_help_are_block_kit_answers_for_the_requester() {
    let s = Setup::start(Mode::Http).await;
    s.command(GRACE, "/deploy", "dev feature/login", "700.1.deploy").await;
    s.finished_message(CHANNEL).await;
    let sha = s.world.tip("feature/login");

    let status = s.command("U0ANYONE01", "/ship-status", "", "700.2.status").await;
    assert_eq!(status["response_type"], "ephemeral");
    let table = status["blocks"].as_array().unwrap().iter().find(|b| b["type"] == "table").expect("a table").clone();
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "a header and one row per environment");
    let dev = rows[1].to_string();
    assert!(dev.contains("dev (dev)") && dev.contains("feature/login") && dev.contains(&sha[..8]), "{dev}");
    assert!(dev.contains("claimed by Grace"), "{dev}");
    assert!(text_of(&status).contains("live: `feature/login`"), "plain-text fallback: {status}");

    let history = s.command("U0ANYONE01", "/history", "dev", "700.3.history").await;
    assert!(history["blocks"].to_string().contains("#1* dev `feature/login`"), "{history}");

    let help = s.command("U0ANYONE01", "/ship-help", "", "700.4.help").await;
    let blocks = help["blocks"].to_string();
    for usage in ["/deploy ENV REF [--dry-run]", "/ship-status [ENV]", "/history", "/lock", "/ship-help", "/shipday"] {
        assert!(blocks.contains(usage), "{usage} missing from {blocks}");
    }
    let deploy_help = s.command("U0ANYONE01", "/ship-help", "deploy", "700.5.help").await;
    assert!(deploy_help["blocks"].to_string().contains("--dry-run"), "{deploy_help}");
    let public = s.fake.calls("chat.postMessage").into_iter().filter(|c| c.body["channel"] != GRACE_DM).count();
    assert_eq!(public, 1, "only the deploy was public");
}

#[bounded::test]
async fn a_deploy_from_a_channel_the_bot_is_not_in_goes_to_the_team_channel_and_the_requester_is_told() {
    let s = Setup::start(Mode::Http).await;
    let body = command_form(
        &s.fake,
        &[
            ("team_id", TEAM),
            ("channel_id", NOT_A_MEMBER),
            ("user_id", GRACE),
            ("command", "/deploy"),
            ("text", "dev feature/login"),
            ("trigger_id", "800.1.elsewhere"),
        ],
    );
    let response = s.signed("/slack/commands", &body, "application/x-www-form-urlencoded").await;
    assert_eq!(response.status(), 200);
    let message = s.finished_message(TEAM_CHANNEL).await;
    assert!(message.text.contains("feature/login"), "{}", message.text);
    s.fake.wait_for("the note to the requester", |f| !f.calls("response_url").is_empty()).await;
    let note = &s.fake.calls("response_url")[0];
    assert_eq!(note.body["response_url_id"], "800.1.elsewhere");
    assert!(note.body["text"].as_str().unwrap().contains(&format!("<#{TEAM_CHANNEL}>")), "{:?}", note.body);
}

#[bounded::test]
async fn slacks_url_verification_is_answered_with_the_challenge() {
    let s = Setup::start(Mode::Http).await;
    let check = contract_text("url_verification.json");
    let response = s.signed("/slack/events", &check, "application/json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), contract("url_verification.json")["challenge"].as_str().unwrap());
    // Interactivity is verified and acknowledged (the block_actions sample).
    let payload = format!("payload={}", urlencode(&contract("block_actions.json").to_string()));
    assert_eq!(s.signed("/slack/interactivity", &payload, "application/x-www-form-urlencoded").await.status(), 200);
}

#[bounded::test]
async fn a_bot_token_for_another_workspace_stops_start_up() {
    let world = World::new();
    let fake = FakeSlack::start("T0OTHER001").await;
    let config = write_config(&world, &fake, Mode::Http);
    let bot = Bot::start(&config);
    let err = SlackAdapter::start(&bot.app, bot.adapters.slack.as_ref().unwrap(), Arc::new(bot.clock.clone()))
        .await
        .err()
        .expect("must not start");
    let err = format!("{err:#}");
    assert!(err.contains("T123ABC456") && err.contains("T0OTHER001"), "{err}");
    assert!(!err.contains(fake_slack::BOT_TOKEN), "the token is never shown: {err}");
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("x", text)]).unwrap().trim_start_matches("x=").to_owned()
}

/// The real `shipday serve` on `config`, killed when dropped; the caller sets its logging.
fn serve_command(config: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipday"));
    command.args(["serve", "--config", config.to_str().unwrap()]).env_remove("SHIPDAY_CONFIG").kill_on_drop(true);
    command
}

/// Starts the real `shipday serve` on `config`, logging warnings only.
fn spawn_serve(config: &std::path::Path) -> tokio::process::Child {
    serve_command(config).env("SHIPDAY_LOG", "warn").spawn().unwrap()
}

/// Starts the real `shipday serve` on `config` at its default level with JSON logs, and the
/// lines of its log (stderr).
fn spawn_serve_logging_json(
    config: &std::path::Path,
) -> (tokio::process::Child, tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>) {
    use tokio::io::AsyncBufReadExt;
    let mut child = serve_command(config)
        .env_remove("SHIPDAY_LOG")
        .env("SHIPDAY_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    (child, lines)
}

/// `shipday serve` starts the Slack adapter from the config: here in Socket Mode, so the
/// fake sees the binary connect and answers a command through it.
#[bounded::test]
async fn shipday_serve_runs_the_slack_adapter_from_the_config() {
    let world = World::new();
    let fake = FakeSlack::start(TEAM).await;
    let config = write_config(&world, &fake, Mode::Socket);
    let mut child = spawn_serve(&config);
    fake.wait_for("shipday serve to connect", |f| f.connections() >= 1).await;
    let mut envelope = contract("socket-mode-envelope.json")["slash_commands"].clone();
    envelope["payload"]["team_id"] = json!(TEAM);
    envelope["payload"]["user_id"] = json!(GRACE);
    envelope["payload"]["command"] = json!("/ship-status");
    envelope["payload"]["text"] = json!("dev");
    let ack = fake.send_envelope(&envelope).await;
    assert!(ack["payload"]["text"].as_str().unwrap().contains("dev (branch dev)"), "{ack}");
    assert!(fake.calls("auth.test").len() == 1);
    child.kill().await.unwrap();
}

/// An operator's view: `shipday serve` logs each decision at its default level, and with
/// `SHIPDAY_LOG_FORMAT=json` every line is one JSON object a log collector can read.
#[bounded::test]
async fn shipday_serve_logs_each_decision_as_one_json_object_per_line() {
    let world = World::new();
    let fake = FakeSlack::start(TEAM).await;
    let config = write_config(&world, &fake, Mode::Socket);
    let (mut child, mut lines) = spawn_serve_logging_json(&config);
    fake.wait_for("shipday serve to connect", |f| f.connections() >= 1).await;
    let mut envelope = contract("socket-mode-envelope.json")["slash_commands"].clone();
    envelope["payload"]["team_id"] = json!(TEAM);
    envelope["payload"]["user_id"] = json!(GRACE);
    envelope["payload"]["command"] = json!("/lock");
    envelope["payload"]["text"] = json!("staging QA run");
    let ack = fake.send_envelope(&envelope).await;
    // Grace is a developer: the refusal is a decision too, and the operator sees it.
    assert!(ack.to_string().contains("Only a lead"), "{ack}");
    let answered = common::bounded(common::PATIENCE, "the decision's log line", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let value: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
            if value["fields"]["message"] == "answered" {
                return value;
            }
        }
        panic!("shipday serve closed stderr without logging the decision")
    })
    .await;
    assert_eq!(answered["level"], "INFO", "{answered}");
    assert!(answered["timestamp"].is_string(), "{answered}");
    let decision = answered["fields"]["decision"].as_str().unwrap();
    assert!(decision.starts_with("refused") && decision.contains("Only a lead"), "{answered}");
    child.kill().await.unwrap();
}

/// The fields of a JSON log line's spans (every span it was logged in, outermost first).
fn span_fields(line: &Value) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    for span in line["spans"].as_array().into_iter().flatten().chain(line.get("span")) {
        if let Some(span) = span.as_object() {
            fields.extend(span.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    fields
}

/// An operator follows one deploy in the logs: a real `shipday serve` at its default level with
/// `SHIPDAY_LOG_FORMAT=json`, a `/deploy` from Slack (Socket Mode) run over SSH on the test sshd,
/// one of its steps failing. Every line logged from the command on (the answer, the deploy's
/// start, the failed step, its end: lines the engine logs and lines its jobs log) carries the
/// deploy's `deploy_id`, `env`, `user` and `platform`.
#[bounded::test]
async fn every_log_line_of_a_deploy_carries_its_deploy_id_env_user_and_platform() {
    let world = World::new();
    let sshd = common::sshd::Sshd::start();
    let fake = FakeSlack::start(TEAM).await;
    let steps = r#"
  { name = "fetch", run = "git fetch --all --prune --quiet" },
  { name = "checkout", run = "git checkout --quiet --detach {{sha}}" },
  { name = "migrate", run = "echo no database here >&2; exit 3" },"#;
    let ssh = world.ssh_config(&sshd, &sshd.pin(), steps, "");
    std::fs::copy(&ssh, world.config_path()).unwrap();
    let config = write_config(&world, &fake, Mode::Socket);
    let (mut child, mut lines) = spawn_serve_logging_json(&config);
    let logged = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let collect = logged.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
            collect.lock().unwrap().push(value);
        }
    });
    fake.wait_for("shipday serve to connect", |f| f.connections() >= 1).await;
    // Idle first: the start-up check of every host's HEAD (its own work, no command's) is done.
    let heads_read = |lines: &[Value]| {
        lines
            .iter()
            .filter(|l| l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("host HEAD read")))
            .count()
    };
    common::eventually(common::PATIENCE, "the start-up HEAD check", || heads_read(&logged.lock().unwrap()) == 3).await;
    let before = logged.lock().unwrap().len();
    let mut envelope = contract("socket-mode-envelope.json")["slash_commands"].clone();
    envelope["payload"]["team_id"] = json!(TEAM);
    envelope["payload"]["channel_id"] = json!(CHANNEL);
    envelope["payload"]["user_id"] = json!(GRACE);
    envelope["payload"]["command"] = json!("/deploy");
    envelope["payload"]["text"] = json!("dev feature/login");
    let ack = fake.send_envelope(&envelope).await;
    assert!(ack.to_string().contains("Accepted"), "{ack}");
    let finished = |lines: &[Value]| lines.iter().any(|l| l["fields"]["message"] == "deploy finished");
    common::eventually(common::PATIENCE, "the deploy's end in the log", || finished(&logged.lock().unwrap())).await;
    child.kill().await.unwrap();

    let lines = logged.lock().unwrap()[before..].to_vec();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["fields"]["message"].as_str()).collect();
    for expected in ["answered", "deploy started", "deploy step failed", "deploy finished"] {
        assert!(messages.contains(&expected), "no `{expected}` line: {messages:?}");
    }
    let started = lines.iter().find(|l| l["fields"]["message"] == "deploy started").unwrap();
    let deploy_id = span_fields(started)["deploy_id"].clone();
    assert_eq!(deploy_id, json!(1), "{started}");
    for line in &lines {
        let fields = span_fields(line);
        assert_eq!(fields.get("deploy_id"), Some(&deploy_id), "no deploy_id: {line}");
        assert_eq!(fields.get("env"), Some(&json!("dev")), "no env: {line}");
        assert_eq!(fields.get("user"), Some(&json!(GRACE)), "no user: {line}");
        assert_eq!(fields.get("platform"), Some(&json!("slack")), "no platform: {line}");
    }
    let failed = lines.iter().find(|l| l["fields"]["message"] == "deploy step failed").unwrap();
    assert_eq!(failed["fields"]["step"], "migrate", "{failed}");
    for line in &lines {
        println!("{}", serde_json::to_string(line).unwrap());
    }
}

/// `shipday serve` with `config` plus `[server] listen` on a free port: the process, and the
/// address its listener logs once it serves `/metrics` and `/readyz`.
async fn serve_on_a_free_port(config: &std::path::Path) -> (tokio::process::Child, std::net::SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, format!("{text}\n[server]\nlisten = \"127.0.0.1:0\"\n")).unwrap();
    let mut child = serve_command(config)
        .env("SHIPDAY_LOG", "info")
        .env_remove("SHIPDAY_LOG_FORMAT")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = common::bounded(common::PATIENCE, "serve to listen", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("listening for every inbound route") {
                assert!(line.contains("GET /metrics, GET /readyz"), "{line}");
                return line.split_once("bound=").unwrap().1.split_whitespace().next().unwrap().parse().unwrap();
            }
        }
        panic!("serve stopped before it listened")
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// The operator's Prometheus scrape: a real `shipday serve` (Socket Mode, `[server] listen`
/// set), a deploy from Slack, and `/metrics` counts the command, the deploy and its steps, and
/// shows the delivery figures.
#[bounded::test]
async fn metrics_count_a_deploy_made_through_a_real_serve() {
    let world = World::new();
    let fake = FakeSlack::start(TEAM).await;
    let config = write_config(&world, &fake, Mode::Socket);
    let (mut child, addr) = serve_on_a_free_port(&config).await;
    fake.wait_for("shipday serve to connect", |f| f.connections() >= 1).await;
    let scrape = || async move {
        let answer = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
        answer.text().await.unwrap()
    };
    let before = scrape().await;
    assert!(!before.contains("shipday_deploys_total{"), "{before}");
    assert!(before.ends_with("# EOF\n"), "{before}");

    let mut envelope = contract("socket-mode-envelope.json")["slash_commands"].clone();
    envelope["envelope_id"] = json!("metrics-deploy-1");
    envelope["payload"]["team_id"] = json!(TEAM);
    envelope["payload"]["user_id"] = json!(GRACE);
    envelope["payload"]["command"] = json!("/deploy");
    envelope["payload"]["text"] = json!("dev feature/login");
    let ack = fake.send_envelope(&envelope).await;
    assert!(ack.to_string().contains("feature/login"), "{ack}");

    let deployed = r#"shipday_deploys_total{env="dev",outcome="succeeded"} 1"#;
    let seen = common::eventually_async(common::PATIENCE, "the deploy to be counted on /metrics", || async move {
        let text = scrape().await;
        text.contains(deployed).then_some(text)
    })
    .await;
    assert!(seen.contains(r#"shipday_commands_total{command="deploy",outcome="accepted"} 1"#), "{seen}");
    assert!(seen.contains(r#"shipday_deploy_duration_seconds_count{env="dev"} 1"#), "{seen}");
    assert!(seen.contains(r#"shipday_step_duration_seconds_count{env="dev",step="#), "{seen}");
    assert!(seen.contains(r#"shipday_ack_latency_seconds_count{platform="slack"} 1"#), "{seen}");
    assert!(seen.contains("shipday_store_flush_seconds_count "), "{seen}");
    assert!(seen.contains(r#"shipday_delivery_deploys_per_day{env="dev"} "#), "{seen}");
    assert!(seen.contains(r#"shipday_delivery_change_failure_ratio{env="dev"} 0.0"#), "{seen}");
    child.kill().await.unwrap();
}

/// `/readyz` on a real `shipday serve`: ready while Slack answers, the store takes writes and
/// the scheduler ticks; once Slack goes away it answers 503 and names Slack, while `/healthz`
/// (liveness) stays 200.
#[bounded::test]
async fn readyz_names_slack_once_the_fake_slack_goes_away() {
    // The fake runs on a runtime of its own, so the test can take it away: dropping that
    // runtime closes its listeners and every connection.
    let (fake_tx, fake_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let fake_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        fake_tx.send(runtime.block_on(FakeSlack::start(TEAM))).unwrap();
        let _ = stop_rx.recv();
        drop(runtime);
    });
    let fake = tokio::task::spawn_blocking(move || fake_rx.recv().unwrap()).await.unwrap();
    let world = World::new();
    let config = write_config(&world, &fake, Mode::Socket);
    let (mut child, addr) = serve_on_a_free_port(&config).await;
    let readyz = || async move {
        let answer = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    };
    let (status, body) = common::eventually_async(common::PATIENCE, "/readyz to say ready", || async move {
        let (status, body) = readyz().await;
        (status == 200).then_some((status, body))
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, "ready\nstore: ok\nscheduler: ok\nslack: ok\n");

    stop_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || fake_thread.join().unwrap()).await.unwrap();
    let (status, body) = common::eventually_async(common::PATIENCE, "/readyz to name Slack", || async move {
        let (status, body) = readyz().await;
        (status == 503).then_some((status, body))
    })
    .await;
    assert_eq!(status, 503);
    assert!(body.starts_with("not ready: slack\n"), "{body}");
    assert!(body.contains("store: ok\n") && body.contains("slack: Slack's auth.test"), "{body}");
    let live = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(live.status(), 200, "liveness is another question");
    child.kill().await.unwrap();
}

#[bounded::test]
async fn when_slack_asks_the_bot_to_reconnect_it_opens_a_new_socket_and_keeps_answering() {
    let s = Setup::start(Mode::Socket).await;
    let before = s.fake.connections();
    s.fake.push_frame(&contract("socket-mode-envelope.json")["disconnect"]);
    s.fake.wait_for("a new Socket Mode connection", |f| f.connections() > before).await;
    let mut envelope = contract("socket-mode-envelope.json")["slash_commands"].clone();
    envelope["envelope_id"] = json!("after-reconnect-1");
    envelope["payload"]["team_id"] = json!(TEAM);
    envelope["payload"]["user_id"] = json!(GRACE);
    envelope["payload"]["command"] = json!("/ship-help");
    envelope["payload"]["text"] = json!("");
    let ack = s.fake.send_envelope(&envelope).await;
    assert!(ack["payload"]["blocks"].to_string().contains("Shipday commands"), "{ack}");
}

/// The calendar's reminder reaches the team channel on Slack, mentions and all.
#[bounded::test]
async fn a_scheduled_reminder_is_posted_in_the_team_channel() {
    use chrono::TimeZone;
    let s = Setup::start(Mode::Http).await;
    let scheduler = shipday::scheduler::Scheduler::new(
        s.bot.app.config.calendar.clone(),
        s.bot.app.engine.clone(),
        Arc::new(s.bot.clock.clone()),
    );
    // Sunday 29 Nov 2026, 19:59:30 EAT, then just past 20:00: the drag window opens.
    s.bot.clock.set(chrono::Utc.with_ymd_and_hms(2026, 11, 29, 16, 59, 30).unwrap());
    scheduler.tick().await.unwrap();
    s.bot.clock.set(chrono::Utc.with_ymd_and_hms(2026, 11, 29, 17, 0, 5).unwrap());
    let report = scheduler.tick().await.unwrap();
    assert!(report.fired.iter().any(|f| f.job == "reminder:window_opens:0m"), "{report:?}");
    s.fake
        .wait_for("the reminder in the team channel", |f| {
            f.messages(TEAM_CHANNEL)
                .iter()
                .any(|m| m.text.contains("ticket-drag window is open until Mon 30 Nov 08:30 EAT"))
        })
        .await;
}

/// A lead's ✅ on the promotion request Shipday posted in Slack is a vote; the message is
/// edited to show it; a non-lead's ✅ is not a vote.
#[bounded::test]
async fn a_leads_reaction_on_the_posted_promotion_request_is_a_vote() {
    use shipday::engine::{Announcement, PromotionView};
    let s = Setup::start(Mode::Http).await;
    let now = s.bot.clock.now();
    let request = common::pending_request(7, &s.world.tip("staging"), now);
    s.bot.app.store.put_promotion(&request).unwrap();
    s.bot.app.engine.announce(Announcement::Promotion(Box::new(PromotionView { request, messages: vec![] })));
    s.fake
        .wait_for("the request in the team channel", |f| {
            f.messages(TEAM_CHANNEL).iter().any(|m| m.text.contains("Promotion #7"))
        })
        .await;
    let posted = s.fake.messages(TEAM_CHANNEL).into_iter().find(|m| m.text.contains("Promotion #7")).unwrap();
    let react = |user: &str, id: &str| {
        let mut event = contract("event-reaction_added.json");
        event["event_id"] = json!(id);
        event["event"]["user"] = json!(user);
        event["event"]["reaction"] = json!("white_check_mark");
        event["event"]["item"]["channel"] = json!(TEAM_CHANNEL);
        event["event"]["item"]["ts"] = json!(posted.ts);
        event["event"]["item_user"] = json!(BOT_USER);
        event.to_string()
    };
    // Grace is a developer: her ✅ is recorded but is no vote.
    assert_eq!(s.signed("/slack/events", &react(GRACE, "Ev0GRACE001"), "application/json").await.status(), 200);
    assert!(s.bot.app.store.promotion(7).unwrap().unwrap().votes.is_empty());
    // Ada is a lead (found by her Slack id): her ✅ counts, and the message says so.
    assert_eq!(s.signed("/slack/events", &react(ADA, "Ev0ADA00001"), "application/json").await.status(), 200);
    let voted = s.bot.app.store.promotion(7).unwrap().unwrap();
    assert_eq!(voted.approvals(), 1, "{voted:?}");
    s.fake
        .wait_for("the request edited with Ada's approval", |f| {
            f.messages(TEAM_CHANNEL)
                .iter()
                .any(|m| m.text.contains("approved by Ada") && m.text.contains("1 more lead approval"))
        })
        .await;
}

/// Fifty signed commands at once are all acked (the route, the dedupe and the engine under load).
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_commands_are_all_acked() {
    let s = Arc::new(Setup::start(Mode::Http).await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.spawn(async move {
            let body = s.command_form(GRACE, "/ship-status", "", &format!("trigger-{i}"));
            s.signed("/slack/commands", &body, "application/x-www-form-urlencoded").await.status().as_u16()
        });
    }
    let statuses = tokio::time::timeout(Duration::from_secs(30), tasks.join_all()).await.expect("every command acked");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// Every block's text of an ack, one line each, for snapshots of what people read.
fn blocks_text(ack: &Value) -> String {
    fn texts(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("text", Value::String(text)) => out.push(text.clone()),
                        _ => texts(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| texts(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    texts(&ack["blocks"], &mut out);
    out.join("\n")
}

/// Slack keeps `/status` (and, reportedly, `/help`) for itself, so Shipday answers to
/// `/ship-status` and `/ship-help` there, and its help names the commands that way.
#[bounded::test]
async fn on_slack_help_names_the_commands_as_the_workspace_registers_them() {
    let s = Setup::start(Mode::Http).await;
    let help = s.command("U0ANYONE01", "/ship-help", "", "900.1.help").await;
    let shown = blocks_text(&help);
    assert!(!shown.contains("`/status") && !shown.contains("`/help"), "{shown}");
    insta::assert_snapshot!("slack_help", shown);
    let one = s.command("U0ANYONE01", "/ship-help", "ship-status", "900.2.help").await;
    insta::assert_snapshot!("slack_help_status", blocks_text(&one));
    let fallback = text_of(&help);
    assert!(fallback.contains("/ship-status [ENV]") && !fallback.contains("/status [ENV]"), "{fallback}");
}

/// An operator renames commands in `[slack] commands`: Slack delivers the new names, the
/// engine sees the canonical ones, and replies point people to the new names.
#[bounded::test]
async fn configured_slack_names_work_end_to_end_and_replies_use_them() {
    let s = Setup::start_with(Mode::Http, "commands = { status = \"whats-live\", release = \"give-back\" }").await;
    let status = s.command("U0ANYONE01", "/whats-live", "dev", "910.1.status").await;
    assert!(text_of(&status).contains("dev (branch dev)"), "{status}");

    let refusal = s.command(GRACE, "/give-back", "dev", "910.2.release").await;
    let words = format!("{} {}", text_of(&refusal), refusal["blocks"]);
    assert!(words.contains("dev is not claimed"), "the engine ran /release: {words}");
    assert!(words.contains("`/whats-live dev`") && !words.contains("`/status dev`"), "{words}");

    let ack = s.command(GRACE, "/deploy", "dev feature/login", "910.3.deploy").await;
    s.finished_message(CHANNEL).await;
    assert!(text_of(&ack).contains("Accepted: `/deploy dev feature/login`"), "{ack}");
    let busy = s.command(ADA, "/deploy", "dev master", "910.4.deploy").await;
    let words = format!("{} {}", text_of(&busy), busy["blocks"]);
    assert!(words.contains("`/give-back dev`") && !words.contains("`/release dev`"), "{words}");
    let help = s.command("U0ANYONE01", "/ship-help", "give-back", "910.5.help").await;
    assert!(blocks_text(&help).contains("/give-back ENV"), "{help}");
}

/// A workspace can register only `/shipday`: every command runs through it.
#[bounded::test]
async fn the_umbrella_command_runs_every_command_on_slack() {
    let s = Setup::start(Mode::Http).await;
    let status = s.command("U0ANYONE01", "/shipday", "status dev", "920.1.umbrella").await;
    assert!(text_of(&status).contains("dev (branch dev)"), "{status}");
    let same = s.command("U0ANYONE01", "/shipday", "ship-status dev", "920.2.umbrella").await;
    assert!(text_of(&same).contains("dev (branch dev)"), "Slack's own names work too: {same}");

    let ack = s.command(GRACE, "/shipday", "deploy dev feature/login", "920.3.umbrella").await;
    assert!(text_of(&ack).contains("Accepted: `/shipday deploy dev feature/login`"), "{ack}");
    let message = s.finished_message(CHANNEL).await;
    assert!(message.text.contains("feature/login"), "{}", message.text);
    assert_eq!(s.world.head("dev"), s.world.tip("feature/login"));

    let list = s.command("U0ANYONE01", "/shipday", "", "920.4.umbrella").await;
    assert!(list["blocks"].to_string().contains("Shipday commands"), "{list}");
    let typo = s.command("U0ANYONE01", "/shipday", "stauts", "920.5.umbrella").await;
    assert!(text_of(&typo).contains("Did you mean `/shipday status`"), "{typo}");
}

/// Issue 13, point 7: `shipday serve` is SIGKILLed while a deploy started from Slack runs; when
/// it starts again, that deploy's own message is edited to say it was interrupted (not only a
/// separate notice).
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_interrupted_deploys_own_message_is_edited_to_say_so() {
    let world = World::new();
    let go = Gate::new(world.path(), "go");
    let steps = format!("  {{ name = \"wait\", run = \"{}\" }},", go.shell());
    std::fs::copy(world.config_with_dev_steps(&steps), world.config_path()).unwrap();
    let fake = FakeSlack::start(TEAM).await;
    let config = write_config(&world, &fake, Mode::Socket);
    let mut child = spawn_serve(&config);
    fake.wait_for("shipday serve to connect", |f| f.connections() >= 1).await;
    let mut envelope = contract("socket-mode-envelope.json")["slash_commands"].clone();
    envelope["envelope_id"] = json!("crash-deploy-1");
    envelope["payload"]["team_id"] = json!(TEAM);
    envelope["payload"]["user_id"] = json!(GRACE);
    envelope["payload"]["channel_id"] = json!(CHANNEL);
    envelope["payload"]["command"] = json!("/deploy");
    envelope["payload"]["text"] = json!("dev dev");
    let ack = fake.send_envelope(&envelope).await;
    assert!(ack.to_string().contains("Accepted"), "{ack}");
    // Recorded right after it is posted, so once it has been edited the store knows it.
    fake.wait_for("the deploy's message following it", |f| f.messages(CHANNEL).iter().any(|m| m.edits >= 1)).await;
    let ts = fake.messages(CHANNEL).into_iter().find(|m| m.edits >= 1).unwrap().ts;
    child.kill().await.unwrap();
    go.open().await;

    let connected = fake.connections();
    let mut child = spawn_serve(&config);
    fake.wait_for("the restarted binary to connect", |f| f.connections() > connected).await;
    let said = |f: &FakeSlack| {
        f.messages(CHANNEL)
            .iter()
            .any(|m| m.ts == ts && (m.text.contains("interrupted") || m.blocks.to_string().contains("interrupted")))
    };
    fake.wait_for("the deploy's own message edited to say it was interrupted", said).await;
    child.kill().await.unwrap();
}

/// Issue 13, point 7, for a deploy nobody's command follows: `shipday serve` is SIGKILLed while
/// an automatic dev → staging promotion's deploy (announced in the team channel) runs; when it
/// starts again, that deploy's own announced message is edited to say it was interrupted.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_an_announced_deploys_own_message_is_edited_to_say_so() {
    use common::fake_github::{self, FakeGitHub, OWNER, REPO};
    let world = World::new();
    let github = FakeGitHub::start().await;
    common::mirror_origin(&world, &github);
    let go = Gate::new(world.path(), "go");
    // Staging's deploy waits at its second step until the gate opens.
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    let staging = text.find("name = \"staging\"").unwrap();
    let fetch = "  { name = \"fetch\", run = \"git fetch --all --prune --quiet\" },\n";
    let at = staging + text[staging..].find(fetch).unwrap() + fetch.len();
    let wait = format!("  {{ name = \"wait\", run = \"{}\" }},\n", go.shell());
    let token = world.path().join("github-token");
    std::fs::write(&token, format!("{}\n", fake_github::TOKEN)).unwrap();
    let text = format!(
        "{}{wait}{}\n[github]\napi_base_url = \"{}\"\nowner = \"{OWNER}\"\nrepo = \"{REPO}\"\ntoken = {{ file = \"{}\" }}\n",
        &text[..at],
        &text[at..],
        github.url,
        token.display()
    );
    std::fs::write(world.config_path(), text).unwrap();
    let fake = FakeSlack::start(TEAM).await;
    let config = write_config(&world, &fake, Mode::Socket);
    let mut child = spawn_serve(&config);
    fake.wait_for("shipday serve to connect", |f| f.connections() >= 1).await;
    let command = |id: &str, user: &str, name: &str, text: &str| {
        let mut envelope = contract("socket-mode-envelope.json")["slash_commands"].clone();
        envelope["envelope_id"] = json!(id);
        envelope["payload"]["team_id"] = json!(TEAM);
        envelope["payload"]["user_id"] = json!(user);
        envelope["payload"]["channel_id"] = json!(CHANNEL);
        envelope["payload"]["command"] = json!(name);
        envelope["payload"]["text"] = json!(text);
        envelope["payload"]["trigger_id"] = json!(format!("trigger-{id}"));
        envelope
    };
    let ack = fake.send_envelope(&command("announced-1", ADA, "/deploy", "dev dev")).await;
    assert!(ack.to_string().contains("Accepted"), "{ack}");
    fake.wait_for("dev deployed", |f| f.messages(CHANNEL).iter().any(|m| m.text.contains("✅"))).await;
    let ack = fake.send_envelope(&command("announced-2", GRACE, "/promote", "dev staging")).await;
    assert!(ack.to_string().contains("Accepted") || ack.to_string().contains("no approval"), "{ack}");
    // The promotion's deploy is announced in the team channel (its own message), and edited
    // as its steps go (an edit comes after the message is recorded, with the fix).
    let announced = |f: &FakeSlack| {
        f.messages(TEAM_CHANNEL).into_iter().find(|m| m.edits >= 1 && m.text.contains("to staging")).map(|m| m.ts)
    };
    fake.wait_for("the announced deploy's message following it", |f| announced(f).is_some()).await;
    let ts = announced(&fake).unwrap();
    child.kill().await.unwrap();
    go.open().await;

    let connected = fake.connections();
    let mut child = spawn_serve(&config);
    fake.wait_for("the restarted binary to connect", |f| f.connections() > connected).await;
    let said = |f: &FakeSlack| {
        f.messages(TEAM_CHANNEL)
            .iter()
            .any(|m| m.ts == ts && (m.text.contains("interrupted") || m.blocks.to_string().contains("interrupted")))
    };
    fake.wait_for("the announced deploy's own message edited to say it was interrupted", said).await;
    child.kill().await.unwrap();
}

/// A reaction event as Slack sends it (`reaction_added` or `reaction_removed`), by `user` on
/// the bot's message at `ts` in the team channel.
fn reaction_event(kind: &str, user: &str, emoji: &str, ts: &str, event_id: &str) -> String {
    let mut event = contract(&format!("event-{kind}.json"));
    event["event_id"] = json!(event_id);
    event["event"]["user"] = json!(user);
    event["event"]["reaction"] = json!(emoji);
    event["event"]["item"]["channel"] = json!(TEAM_CHANNEL);
    event["event"]["item"]["ts"] = json!(ts);
    event["event"]["item_user"] = json!(BOT_USER);
    event.to_string()
}

/// Issue 13, point 5: an approved request that waits for production's slot stays live. Ada's
/// ✅ approves it; Slack then sends a real `reaction_removed`, which drops it below quorum, so it
/// is pending again; she approves again, and a real ❌ after approval rejects it.
#[bounded::test]
async fn a_removed_reaction_reopens_an_approved_request_and_a_cross_after_approval_rejects_it() {
    use chrono::TimeZone;
    use shipday::engine::{Announcement, PromotionView};
    use shipday::release::approvals::RequestState;
    let s = Setup::start(Mode::Http).await;
    // Thursday: production's slot is next week, so an approved request waits for it.
    s.bot.clock.set(chrono::Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap());
    let mut request = common::pending_request(8, &s.world.tip("staging"), s.bot.clock.now());
    request.quorum = 1;
    s.bot.app.store.put_promotion(&request).unwrap();
    s.bot.app.engine.announce(Announcement::Promotion(Box::new(PromotionView { request, messages: vec![] })));
    s.fake
        .wait_for("the request in the team channel", |f| {
            f.messages(TEAM_CHANNEL).iter().any(|m| m.text.contains("Promotion #8"))
        })
        .await;
    let ts = s.fake.messages(TEAM_CHANNEL).into_iter().find(|m| m.text.contains("Promotion #8")).unwrap().ts;
    let s = &s;
    let state = || s.bot.app.store.promotion(8).unwrap().unwrap().state;
    let send = |kind: &str, emoji: &str, id: &str| {
        let body = reaction_event(kind, ADA, emoji, &ts, id);
        async move { assert_eq!(s.signed("/slack/events", &body, "application/json").await.status(), 200) }
    };
    send("reaction_added", "white_check_mark", "Ev0P5ADD001").await;
    assert!(matches!(state(), RequestState::Approved { .. }), "{:?}", state());
    send("reaction_removed", "white_check_mark", "Ev0P5DEL001").await;
    assert_eq!(state(), RequestState::Pending, "withdrawn below quorum: pending again");
    assert!(s.bot.app.store.promotion(8).unwrap().unwrap().votes.is_empty());
    s.fake
        .wait_for("the message back to needing an approval", |f| {
            f.messages(TEAM_CHANNEL)
                .iter()
                .any(|m| m.text.contains("Promotion #8") && m.text.contains("1 more lead approval"))
        })
        .await;
    send("reaction_added", "white_check_mark", "Ev0P5ADD002").await;
    assert!(matches!(state(), RequestState::Approved { .. }), "{:?}", state());
    send("reaction_added", "x", "Ev0P5REJ001").await;
    assert!(matches!(state(), RequestState::Rejected { ref by, .. } if by == "Ada"), "{:?}", state());
    s.fake
        .wait_for("the message edited to rejected", |f| {
            f.messages(TEAM_CHANNEL)
                .iter()
                .any(|m| m.text.contains("Promotion #8") && m.text.contains("rejected by Ada"))
        })
        .await;
}

/// Issue 13, point 7: an automatic dev → staging promotion (no approval needed) is saved
/// twice before Slack answers the first post; it is still posted once, and that one message is
/// edited to its end.
#[bounded::test]
async fn an_automatic_promotion_is_posted_once_and_its_one_message_edited_to_the_end() {
    use common::fake_github::{self, FakeGitHub, OWNER, REPO};
    let github = FakeGitHub::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("github-token");
    std::fs::write(&token, format!("{}\n", fake_github::TOKEN)).unwrap();
    let extra = format!(
        "\n[github]\napi_base_url = \"{}\"\nowner = \"{OWNER}\"\nrepo = \"{REPO}\"\ntoken = {{ file = \"{}\" }}\n",
        github.url,
        token.display()
    );
    let s = Setup::start_with(Mode::Http, &extra).await;
    common::mirror_origin(&s.world, &github);
    let (_, progress) = s.bot.say("ada", "/deploy dev dev").await;
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);
    let (reply, _) = s.bot.say("grace", "/promote dev staging").await;
    assert!(s.bot.show(&reply).contains("It needs no approval"), "{}", s.bot.show(&reply));
    s.fake
        .wait_for("the promotion's message edited to shipped", |f| {
            f.messages(TEAM_CHANNEL).iter().any(|m| m.text.contains("Promotion #1") && m.text.contains("shipped"))
        })
        .await;
    let posts: Vec<_> =
        s.fake.calls("chat.postMessage").into_iter().filter(|c| c.body.to_string().contains("Promotion #1:")).collect();
    assert_eq!(posts.len(), 1, "one message per promotion: {posts:#?}");
    let shown: Vec<_> =
        s.fake.messages(TEAM_CHANNEL).into_iter().filter(|m| m.text.contains("Promotion #1:")).collect();
    assert_eq!(shown.len(), 1);
    assert!(!shown[0].text.contains("being carried out"), "{}", shown[0].text);
    assert!(shown[0].edits >= 1, "edited in place");
}

/// Issue 13, point 8: a promotion's end recorded just before a crash, with its message not yet
/// edited, reaches that message after the restart (once the adapter listens).
#[bounded::test]
async fn after_a_restart_a_promotions_recorded_end_reaches_its_own_message() {
    use shipday::engine::{Announcement, PromotionView};
    use shipday::release::approvals::RequestState;
    let s = Setup::start(Mode::Http).await;
    let mut request = common::pending_request(5, &s.world.tip("staging"), s.bot.clock.now());
    s.bot.app.store.put_promotion(&request).unwrap();
    s.bot
        .app
        .engine
        .announce(Announcement::Promotion(Box::new(PromotionView { request: request.clone(), messages: vec![] })));
    s.fake
        .wait_for("the request in the team channel", |f| {
            f.messages(TEAM_CHANNEL).iter().any(|m| m.text.contains("Promotion #5"))
        })
        .await;
    let posted = s.fake.messages(TEAM_CHANNEL).into_iter().find(|m| m.text.contains("Promotion #5")).unwrap();
    let bound = shipday::engine::MessageRef { channel: TEAM_CHANNEL.into(), id: posted.ts.clone() };
    common::eventually(Duration::from_secs(10), "the message to be bound", || {
        s.bot.app.store.promotion_for_message("slack", &bound).unwrap().is_some()
    })
    .await;
    // Its end is recorded; the bot dies before the message is edited.
    request.state = RequestState::Failed { why: "deploy #3 was interrupted by a restart of Shipday".into() };
    s.bot.app.store.put_promotion(&request).unwrap();
    s.bot.app.store.flush_blocking();
    let s = s.restart().await;
    s.bot.app.engine.tick().await;
    s.fake
        .wait_for("the message edited to its end", |f| {
            f.messages(TEAM_CHANNEL)
                .iter()
                .any(|m| m.ts == posted.ts && m.text.contains("failed: deploy #3 was interrupted"))
        })
        .await;
    let posts =
        s.fake.calls("chat.postMessage").into_iter().filter(|c| c.body.to_string().contains("Promotion #5")).count();
    assert_eq!(posts, 1, "edited, not posted again");
}

/// Waiting for a free environment on Slack: `--notify` is answered privately, and once the
/// lock is lifted the waiter is told once, by a direct message (`conversations.open`, then
/// `chat.postMessage` to the D… channel), with no mention in the team channel.
#[bounded::test]
async fn a_waiter_is_told_once_by_direct_message_when_dev_is_free() {
    let s = Setup::start(Mode::Http).await;
    s.command(ADA, "/lock", "dev testing the release", "900.1.lock").await;
    s.fake.wait_for("the lock message", |f| f.messages(CHANNEL).len() == 1).await;
    let ack = s.command(GRACE, "/deploy", "dev dev --notify", "900.2.notify").await;
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(text_of(&ack).contains("I'll tell you when dev is free"), "{ack}");
    s.command(ADA, "/unlock", "dev", "900.3.unlock").await;
    let told = |f: &FakeSlack| f.messages(GRACE_DM).into_iter().filter(|m| m.text.contains("dev is free now")).count();
    s.fake.wait_for("Grace's direct message", |f| told(f) == 1).await;
    let dm = &s.fake.messages(GRACE_DM)[0];
    assert!(dm.text.contains("`/deploy dev dev`") && !dm.text.contains("<@"), "{dm:?}");
    let opened: Vec<Value> = s.fake.calls("conversations.open").into_iter().map(|c| c.body["users"].clone()).collect();
    assert_eq!(opened, [json!([GRACE])]);
    s.command(ADA, "/lock", "dev again", "900.4.lock").await;
    s.command(ADA, "/unlock", "dev", "900.5.unlock").await;
    s.fake
        .wait_for("the second unlock message", |f| {
            f.messages(CHANNEL).iter().filter(|m| m.text.contains("unlocked dev")).count() == 2
        })
        .await;
    assert_eq!(told(&s.fake), 1, "told once");
    let mentions: Vec<String> = s
        .fake
        .calls("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["channel"] != GRACE_DM)
        .map(|c| c.body.to_string())
        .filter(|body| body.contains(&format!("<@{GRACE}>")) || body.contains("is free now"))
        .collect();
    assert!(mentions.is_empty(), "no channel mention: {mentions:?}");
}

/// With `dm = false`, a waiter is mentioned (a real `<@U…>` mention) once in the team
/// channel instead, and no direct message is opened.
#[bounded::test]
async fn a_waiter_who_opted_out_of_direct_messages_is_mentioned_once_in_the_team_channel() {
    let s = Setup::start_edited(Mode::Http, "", |text| {
        text.replacen(&format!("slack = \"{GRACE}\""), &format!("slack = \"{GRACE}\"\ndm = false"), 1)
    })
    .await;
    s.command(ADA, "/lock", "dev testing the release", "901.1.lock").await;
    s.fake.wait_for("the lock message", |f| f.messages(CHANNEL).len() == 1).await;
    let ack = s.command(GRACE, "/deploy", "dev dev --notify", "901.2.notify").await;
    assert!(text_of(&ack).contains("I'll tell you when dev is free"), "{ack}");
    s.command(ADA, "/unlock", "dev", "901.3.unlock").await;
    let mentioned = |f: &FakeSlack| {
        f.messages(TEAM_CHANNEL)
            .into_iter()
            .filter(|m| m.text.contains(&format!("<@{GRACE}>")) && m.text.contains("dev is free now"))
            .count()
    };
    s.fake.wait_for("Grace to be mentioned", |f| mentioned(f) == 1).await;
    s.command(ADA, "/lock", "dev again", "901.4.lock").await;
    s.command(ADA, "/unlock", "dev", "901.5.unlock").await;
    s.fake
        .wait_for("the second unlock message", |f| {
            f.messages(CHANNEL).iter().filter(|m| m.text.contains("unlocked dev")).count() == 2
        })
        .await;
    assert_eq!(mentioned(&s.fake), 1, "told once");
    assert!(s.fake.calls("conversations.open").is_empty(), "Grace opted out of direct messages");
    assert!(s.fake.messages(GRACE_DM).is_empty());
}
