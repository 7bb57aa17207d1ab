//! The Discord adapter, end to end: the real serenity client against a local fake Discord
//! (REST and gateway), the real engine, the local transport and real git repositories.

use testkit as common;

use common::fake_discord::{
    self as fake, APPLICATION_ID, BOT_ID, CHANNEL_ID, FakeDiscord, GUILD_ID, LEAD_ROLE, OTHER_ROLE,
};
use common::{Bot, Gate, World};
use serde_json::{Value, json};
use shipday::chat::discord::{self, Running, Tuning};
use std::path::Path;
use std::time::Duration;

const GRACE: &str = "53908232506183680";
const LINUS: &str = "53908232506183681";
const ADA: &str = "53908232506183682";
const MALLORY: &str = "66600000000000001";

/// The test's tuning: production's, without the pause between two progress edits. (The
/// fake's base URL alone makes the adapter pace REST calls itself, as `serve` does.)
fn tuning() -> Tuning {
    Tuning { min_edit_interval: Duration::ZERO, ..Tuning::default() }
}

struct Setup {
    world: World,
    bot: Bot,
    discord: FakeDiscord,
    running: Running,
    /// The HTTP interactions endpoint on the one listener, when a test serves it.
    served: Option<common::Served>,
}

/// The playground (or the config at `base`) with Discord ids for its people and a
/// `[discord]` section pointing at a fresh fake Discord, plus `extra` keys for that section.
async fn setup_with(world: World, base: &Path, extra: &str, tuning: Tuning) -> Setup {
    let discord = FakeDiscord::start().await;
    let config = write_config(&world, base, extra, &discord);
    // sled frees its file lock a moment after a test's own handle drops.
    let bot = Bot::restart(&config).await;
    let running = discord::start(
        &bot.app,
        bot.adapters.discord.as_ref().unwrap(),
        std::sync::Arc::new(bot.clock.clone()),
        tuning,
    )
    .await
    .unwrap();
    discord.wait_for_sessions(1).await;
    Setup { world, bot, discord, running, served: None }
}

/// Writes `discord.toml`: the config at `base` with Discord ids for its people and a
/// `[discord]` section pointing at `discord`, plus `extra` keys for that section.
fn write_config(world: &World, base: &Path, extra: &str, discord: &FakeDiscord) -> std::path::PathBuf {
    std::fs::write(world.path().join("discord-token"), "fake-bot-token\n").unwrap();
    let mut text = std::fs::read_to_string(base).unwrap();
    for (name, id) in [("Ada", ADA), ("Grace", GRACE), ("Linus", LINUS)] {
        text = text.replacen(&format!("name = \"{name}\"\n"), &format!("name = \"{name}\"\ndiscord = \"{id}\"\n"), 1);
    }
    text.push_str(&format!(
        "\n[discord]\napplication_id = \"{APPLICATION_ID}\"\nguild_id = \"{GUILD_ID}\"\nchannel = \"{CHANNEL_ID}\"\n\
         lead_role = \"{LEAD_ROLE}\"\nbot_token = {{ file = \"discord-token\" }}\napi_base_url = \"{}\"\n{extra}\n",
        discord.api_base
    ));
    let config = world.path().join("discord.toml");
    std::fs::write(&config, text).unwrap();
    config
}

async fn setup() -> Setup {
    let world = World::new();
    let base = world.config_path();
    setup_with(world, &base, "", tuning()).await
}

fn options(pairs: &[(&str, Value)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(name, value)| {
                let kind = if value.is_boolean() { 5 } else { 3 };
                json!({ "name": name, "type": kind, "value": value })
            })
            .collect(),
    )
}

fn title(body: &Value) -> &str {
    body["embeds"][0]["title"].as_str().unwrap_or_default()
}

/// Waits for the interaction's visible message to have an embed whose title starts with `prefix`.
async fn wait_for_title(discord: &FakeDiscord, token: &str, prefix: &str) -> fake::StoredMessage {
    discord
        .wait_for(&format!("a message titled {prefix}…"), |f| {
            f.original(token).filter(|m| !m.deleted && title(&m.body).starts_with(prefix))
        })
        .await
}

/// Waits for an audit entry whose text contains `needle`.
async fn wait_for_audit(setup: &Setup, needle: &str) -> shipday::store::AuditEntry {
    setup
        .discord
        .wait_for(&format!("an audit entry with {needle:?}"), |_| {
            setup.bot.app.store.audit_tail(50).unwrap().into_iter().find(|e| e.text.contains(needle))
        })
        .await
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_deploys_from_discord_and_one_message_follows_it_to_success() {
    let t = setup().await;
    assert_eq!(t.discord.identifies()[0]["intents"], 1537, "guilds, guild messages, guild message reactions");
    let opts = options(&[("env", json!("dev")), ("ref", json!("feature/login"))]);
    let token = t.discord.command(GRACE, &[], "deploy", opts);
    let done = wait_for_title(&t.discord, &token, "✅ Deployed `feature/login` to dev").await;

    let calls = t.discord.interaction_calls(&token);
    assert_eq!((calls[0].method.as_str(), calls[0].body.clone()), ("POST", json!({ "type": 5 })), "{calls:#?}");
    assert!(calls[0].path.ends_with("/callback"));
    let edits = &calls[1..];
    assert!(edits.iter().all(|c| c.method == "PATCH" && c.path.ends_with("/messages/@original")), "{edits:#?}");
    assert_eq!(title(&edits[0].body), "🚀 Deploying `feature/login` to dev");
    assert!(edits.len() >= 3, "progress edits the message as steps finish: {edits:#?}");
    let description = done.body["embeds"][0]["description"].as_str().unwrap();
    for step in ["✅ fetch", "✅ checkout", "✅ restart app", "✅ reload web", "✅ verify HEAD"] {
        assert!(description.contains(step), "{description}");
    }
    let sha = t.world.tip("feature/login");
    assert_eq!(done.body["embeds"][0]["fields"][0]["value"], format!("`{}`", &sha[..8]));
    assert_eq!(done.body["embeds"][0]["fields"][1]["value"], "Grace");
    assert_eq!(done.flags, 0, "deploy outcomes are public");
    assert_eq!(done.body["allowed_mentions"], json!({ "parse": [], "users": [] }));
    assert_eq!(t.world.head("dev"), sha);
    // People react to the deploy message: it is tracked for reconciliation.
    t.discord
        .wait_for("the deploy message to be tracked", |_| {
            let tracked = t.bot.app.store.tracked_messages("discord").unwrap();
            tracked.iter().any(|m| m.message.id == done.id.to_string()).then_some(())
        })
        .await;
    // The engine knows who it was, by Discord id.
    let audit = t.bot.app.store.audit_tail(5).unwrap();
    let entry = audit.iter().find(|e| e.text == "/deploy dev feature/login").unwrap();
    assert_eq!((entry.platform.as_str(), entry.person.as_deref()), ("discord", Some("grace")));
}

/// The requester hears how the deploy ended in a direct message (`POST /users/@me/channels`,
/// then a message there) with links in Discord's markdown; `dm = false` opts a person out.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requester_gets_a_direct_message_with_links_unless_they_opted_out() {
    let world = World::new();
    let base = world.path().join("dm.toml");
    let text = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replacen("name = \"Ada\"\n", "name = \"Ada\"\ndm = false\n", 1)
        .replacen("name = \"dev\"\n", "name = \"dev\"\nurl = \"https://dev.shop.example\"\n", 1);
    std::fs::write(&base, text).unwrap();
    let t = setup_with(world, &base, "", tuning()).await;

    let token =
        t.discord.command(ADA, &[LEAD_ROLE], "deploy", options(&[("env", json!("dev")), ("ref", json!("dev"))]));
    wait_for_title(&t.discord, &token, "✅ Deployed `dev` to dev").await;
    let opts = options(&[("env", json!("dev")), ("ref", json!("feature/login"))]);
    let token = t.discord.command(GRACE, &[], "deploy", opts);
    let done = wait_for_title(&t.discord, &token, "✅ Deployed `feature/login` to dev").await;
    let channel = t.discord.wait_for("Grace's DM channel", |f| f.dm_channel_of(GRACE)).await;
    let dm =
        t.discord.wait_for("Grace's direct message", |f| f.messages_in(&channel.to_string()).into_iter().next()).await;
    assert!(title(&dm.body).starts_with("✅ Deployed `feature/login` to dev"), "{:?}", dm.body);
    let opened = t.discord.calls_to("POST", "/users/@me/channels");
    assert_eq!(opened.len(), 1, "Ada opted out: {opened:#?}");
    assert_eq!(opened[0].body, json!({ "recipient_id": GRACE }));
    assert_eq!(t.discord.dm_channel_of(ADA), None);
    for embed in [&dm.body["embeds"][0], &done.body["embeds"][0]] {
        let links = embed["fields"].as_array().unwrap().iter().find(|f| f["name"] == "Links").expect("a Links field");
        assert_eq!(links["value"], "open [dev](https://dev.shop.example)", "{embed}");
    }
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_an_ephemeral_embed_with_a_field_per_environment() {
    let t = setup().await;
    t.bot.say("grace", "/deploy dev feature/login").await;
    let token = t.discord.command(LINUS, &[], "status", json!([]));
    let answer = t.discord.wait_for("the /status answer", |f| f.original(&token)).await;
    let calls = t.discord.interaction_calls(&token);
    assert_eq!(calls.len(), 1, "answered directly, no defer: {calls:#?}");
    assert_eq!(calls[0].body["type"], 4);
    assert_eq!(answer.flags, 64, "read-only answers are ephemeral");
    let embed = &answer.body["embeds"][0];
    assert_eq!(embed["title"], "Status");
    let names: Vec<&str> = embed["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dev · branch dev", "staging · branch staging", "production · branch master", "Calendar"]);
    let dev = embed["fields"][0]["value"].as_str().unwrap();
    let sha = t.world.tip("feature/login");
    assert!(dev.contains(&format!("**Live:** `feature/login` at `{}` by Grace, <t:", &sha[..8])), "{dev}");
    assert!(dev.contains("**Hold:** dev is claimed by Grace"), "{dev}");
    let staging = embed["fields"][1]["value"].as_str().unwrap();
    assert!(staging.contains("nothing deployed by Shipday yet") && staging.contains("**Hold:** free"), "{staging}");

    let token = t.discord.command(LINUS, &[], "help", options(&[("command", json!("deploy"))]));
    let help = t.discord.wait_for("the /help answer", |f| f.original(&token)).await;
    assert_eq!(title(&help.body), shipday::command::CommandBook::builtin().get("deploy").unwrap().usage);
    assert_eq!(help.flags, 64);
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfigured_user_is_refused_privately_and_nothing_runs() {
    let t = setup().await;
    let opts = options(&[("env", json!("dev")), ("ref", json!("feature/login"))]);
    let token = t.discord.command(MALLORY, &[LEAD_ROLE], "deploy", opts);
    let refusal = t
        .discord
        .wait_for("an ephemeral follow-up", |f| {
            f.calls()
                .into_iter()
                .find(|c| c.method == "POST" && c.path == format!("/webhooks/{APPLICATION_ID}/{token}"))
        })
        .await;
    assert_eq!(refusal.body["flags"], 64);
    let text = refusal.body["content"].as_str().unwrap();
    assert!(text.starts_with("✋") && text.contains("people list"), "{text}");
    // The public "thinking" placeholder of the deferred deploy was removed.
    let calls = t.discord.interaction_calls(&token);
    assert_eq!(calls[0].body, json!({ "type": 5 }));
    assert!(calls.iter().any(|c| c.method == "DELETE" && c.path.ends_with("/messages/@original")), "{calls:#?}");
    assert!(t.discord.original(&token).unwrap().deleted);
    assert!(t.bot.app.store.history(None, 5).unwrap().is_empty());
    assert!(t.world.restarts().is_empty());
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_needs_the_lead_role_from_the_member_data_not_a_name() {
    let t = setup().await;
    // Wednesday 2 Dec 2026 07:45 EAT: inside production's slot, on a production week.
    t.bot.clock.set(chrono::DateTime::parse_from_rfc3339("2026-12-02T04:45:00Z").unwrap().with_timezone(&chrono::Utc));
    let opts = || options(&[("env", json!("production")), ("ref", json!("master"))]);
    let token = t.discord.command(GRACE, &[OTHER_ROLE], "deploy", opts());
    let refusal = t
        .discord
        .wait_for("the refusal", |f| {
            f.calls()
                .into_iter()
                .find(|c| c.method == "POST" && c.path == format!("/webhooks/{APPLICATION_ID}/{token}"))
        })
        .await;
    assert!(refusal.body["content"].as_str().unwrap().contains("needs a lead"), "{refusal:?}");
    assert_eq!(refusal.body["flags"], 64);

    let token = t.discord.command(GRACE, &[OTHER_ROLE, LEAD_ROLE], "deploy", opts());
    let done = wait_for_title(&t.discord, &token, "✅ Deployed `master` to production").await;
    assert_eq!(done.body["embeds"][0]["fields"][1]["value"], "Grace");
    assert_eq!(t.world.head("production"), t.world.tip("master"));
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_on_the_bots_messages_become_engine_events_and_its_own_are_ignored() {
    let t = setup().await;
    let token = t.discord.command(ADA, &[], "lock", options(&[("env", json!("staging")), ("reason", json!("QA run"))]));
    let lock = t.discord.wait_for("the public lock message", |f| f.original(&token)).await;
    assert_eq!(lock.flags, 0);
    assert!(lock.body["content"].as_str().unwrap().contains("QA run"));

    t.discord.react(BOT_ID, &[], lock.id, "👀", true);
    t.discord.react(GRACE, &[LEAD_ROLE], lock.id, "✅", true);
    let added = wait_for_audit(&t, &format!("reacted :✅: on message {} in {CHANNEL_ID}", lock.id)).await;
    assert_eq!(
        (added.platform.as_str(), added.user_id.as_str(), added.person.as_deref()),
        ("discord", GRACE, Some("grace"))
    );
    t.discord.react(GRACE, &[], lock.id, "✅", false);
    wait_for_audit(&t, &format!("removed reaction :✅: on message {}", lock.id)).await;

    // Reactions on someone else's message are not the bot's business.
    let other = t.discord.post_as(LINUS, "lunch?");
    t.discord.react(GRACE, &[], other, "🍕", true);
    t.discord.react(LINUS, &[], lock.id, "🎉", true);
    wait_for_audit(&t, "reacted :🎉:").await;
    let audit = t.bot.app.store.audit_tail(50).unwrap();
    assert!(!audit.iter().any(|e| e.text.contains("👀")), "the bot's own reaction was recorded: {audit:#?}");
    assert!(!audit.iter().any(|e| e.text.contains("🍕")), "a reaction on another's message was recorded");
    assert_eq!(audit.iter().filter(|e| e.decision == "recorded").count(), 3);
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_made_while_the_gateway_was_down_are_found_after_a_failed_resume() {
    let t = setup().await;
    t.discord.set_member_roles(ADA, &[LEAD_ROLE]);
    let token = t.discord.command(ADA, &[], "lock", options(&[("env", json!("staging")), ("reason", json!("QA run"))]));
    let lock = t.discord.wait_for("the public lock message", |f| f.original(&token)).await;
    t.discord.react(GRACE, &[], lock.id, "👀", true);
    wait_for_audit(&t, "reacted :👀:").await;

    t.discord.reject_resumes();
    t.discord.drop_connection();
    // During the gap: Ada approves, Grace takes her reaction back. No events reach the bot.
    t.discord.react_unseen(ADA, lock.id, "✅", true);
    t.discord.react_unseen(GRACE, lock.id, "👀", false);

    t.discord.wait_for_sessions(2).await;
    assert!(t.discord.resumes() >= 1, "serenity tried to resume first");
    let approved = wait_for_audit(&t, &format!("reacted :✅: on message {}", lock.id)).await;
    assert_eq!(approved.person.as_deref(), Some("ada"));
    let removed = wait_for_audit(&t, "removed reaction :👀:").await;
    assert_eq!(removed.person.as_deref(), Some("grace"));
    let calls = t.discord.calls();
    let reread = format!("/channels/{CHANNEL_ID}/messages/{}", lock.id);
    assert!(calls.iter().any(|c| c.method == "GET" && c.path == reread), "re-read over REST: {calls:#?}");
    assert!(calls.iter().any(|c| c.method == "GET" && c.path == format!("/guilds/{GUILD_ID}/members/{ADA}")));
    // What the engine now knows is remembered for the next gap.
    let message = shipday::engine::MessageRef { channel: CHANNEL_ID.into(), id: lock.id.to_string() };
    let expected = [(ADA.to_owned(), "✅".to_owned())];
    t.discord
        .wait_for("the tracked reactions to match Discord", |_| {
            let tracked = t.bot.app.store.tracked_message("discord", &message).unwrap()?;
            tracked.reactions.iter().eq(expected.iter()).then_some(())
        })
        .await;
}

/// serenity may deliver an add and a remove of the same reaction swapped; an event that
/// contradicts what was recorded makes the adapter re-read the message instead of trusting it.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaction_event_that_contradicts_the_record_makes_the_message_be_re_read() {
    let t = setup().await;
    t.discord.set_member_roles(ADA, &[LEAD_ROLE]);
    let token = t.discord.command(ADA, &[], "lock", options(&[("env", json!("staging")), ("reason", json!("QA run"))]));
    let lock = t.discord.wait_for("the public lock message", |f| f.original(&token)).await;
    t.discord.react(GRACE, &[], lock.id, "👀", true);
    wait_for_audit(&t, "reacted :👀:").await;
    // Discord now shows Ada's ✅ (its event overtaken), and a removal arrives for a reaction
    // the adapter never recorded.
    t.discord.react_unseen(ADA, lock.id, "✅", true);
    t.discord.react(LINUS, &[], lock.id, "🎉", false);
    let approved = wait_for_audit(&t, &format!("reacted :✅: on message {}", lock.id)).await;
    assert_eq!(approved.person.as_deref(), Some("ada"));
    let audit = t.bot.app.store.audit_tail(50).unwrap();
    assert!(!audit.iter().any(|e| e.text.contains("🎉")), "the contradictory removal was not passed on");
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_that_outlives_the_interaction_token_continues_in_a_channel_message() {
    let world = World::new();
    // A token that is already too old at the first edit (so no real time has to pass), and a
    // restart that waits at a gate until the deploy has moved to a channel message.
    let restart = Gate::new(world.path(), "restart");
    let base = world.config_with_dev_steps(
        &r#"{ name = "checkout", run = "git checkout --quiet --detach {{sha}}" },
           { name = "slow restart", run = "GATE" },"#
            .replace("GATE", &restart.shell()),
    );
    let short = Tuning { interaction_token_lifetime: Duration::ZERO, ..tuning() };
    let t = setup_with(world, &base, "", short).await;
    let token = t.discord.command(GRACE, &[], "deploy", options(&[("env", json!("dev")), ("ref", json!("dev"))]));
    t.discord
        .wait_for("the deploy to move to a channel message", |f| {
            f.calls().into_iter().find(|c| c.method == "POST" && c.path == format!("/channels/{CHANNEL_ID}/messages"))
        })
        .await;
    restart.open().await;
    let moved = t
        .discord
        .wait_for("the deploy to finish in a channel message", |f| {
            f.calls().into_iter().rev().find(|c| {
                c.method == "PATCH"
                    && c.path.starts_with(&format!("/channels/{CHANNEL_ID}/messages/"))
                    && title(&c.body).starts_with("✅ Deployed")
            })
        })
        .await;
    let posted = t
        .discord
        .calls()
        .into_iter()
        .find(|c| c.method == "POST" && c.path == format!("/channels/{CHANNEL_ID}/messages"));
    assert!(title(&posted.unwrap().body).starts_with("🚀 Deploying `dev` to dev"));
    let original = t.discord.original(&token).unwrap();
    assert!(original.body["content"].as_str().unwrap().contains("continues in a new message"), "{original:?}");
    let id: u64 = moved.path.rsplit('/').next().unwrap().parse().unwrap();
    t.discord
        .wait_for("the channel message to be tracked", |_| {
            let tracked = t.bot.app.store.tracked_messages("discord").unwrap();
            tracked.iter().any(|m| m.message.id == id.to_string()).then_some(())
        })
        .await;
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_a_crash_interrupted_are_announced_in_the_team_channel() {
    use shipday::release::deploy::{DeployRecord, Outcome, Trigger};
    use shipday::release::gitref::{GitRef, Sha};
    let world = World::new();
    {
        let (store, _) = shipday::store::Store::open(&world.path().join("state")).unwrap();
        let record = DeployRecord {
            id: store.next_deploy_id().unwrap(),
            env: "dev".into(),
            git_ref: GitRef::parse("feature/login").unwrap(),
            sha: Sha::parse(&world.tip("feature/login")).unwrap(),
            requested_by: "grace".into(),
            requested_by_name: "Grace".into(),
            trigger: Trigger::Command,
            emergency: None,
            migrations: None,
            tickets: Vec::new(),
            claimed_until: None,
            links: Default::default(),
            started_at: chrono::Utc::now(),
            finished_at: None,
            steps: Vec::new(),
            outcome: Outcome::Running,
        };
        store.put_deploy(&record).unwrap();
        store.flush_blocking();
    }
    let base = world.config_path();
    let t = setup_with(world, &base, "", tuning()).await;
    let notice = t
        .discord
        .wait_for("the notice in the team channel", |f| {
            f.calls().into_iter().find(|c| c.method == "POST" && c.path == format!("/channels/{CHANNEL_ID}/messages"))
        })
        .await;
    let text = notice.body["content"].as_str().unwrap();
    assert!(text.contains("Shipday stopped while deploy #1 of `feature/login` to dev"), "{text}");
    assert_eq!(notice.body["allowed_mentions"]["parse"], json!([]));
}

mod http_endpoint {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signing_key() -> SigningKey {
        let vector = fake::contract("ed25519-test-vector.json");
        let secret = hex::decode(vector["rfc8032_test_1"]["secret_key"].as_str().unwrap()).unwrap();
        SigningKey::from_bytes(&secret.try_into().unwrap())
    }

    async fn post(url: &str, body: &str, timestamp: i64, key: &SigningKey) -> reqwest::Response {
        let timestamp = timestamp.to_string();
        let signature = hex::encode(key.sign(format!("{timestamp}{body}").as_bytes()).to_bytes());
        reqwest::Client::new()
            .post(url)
            .header("X-Signature-Ed25519", signature)
            .header("X-Signature-Timestamp", timestamp)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    async fn start() -> (Setup, String) {
        let world = World::new();
        let base = world.config_path();
        start_on(world, &base).await
    }

    /// The bot on the config file `base`, with the interactions endpoint served (the RFC 8032
    /// test vector's public key); returns it and the endpoint's URL.
    async fn start_on(world: World, base: &Path) -> (Setup, String) {
        let public = fake::contract("ed25519-test-vector.json")["rfc8032_test_1"]["public_key"].clone();
        let extra = format!("public_key = {public}");
        let mut t = setup_with(world, base, &extra, tuning()).await;
        let served = common::Served::start(t.running.endpoint.take().expect("the endpoint with a public key")).await;
        let url = served.url("/discord/interactions");
        t.served = Some(served);
        (t, url)
    }

    /// Discord's autocomplete interaction (type 4) for `/command`, with `focused` the option
    /// being typed and `others` already filled in.
    fn autocomplete(command: &str, others: &[(&str, &str)], focused: (&str, &str)) -> String {
        let mut options: Vec<Value> =
            others.iter().map(|(name, value)| json!({ "type": 3, "name": name, "value": value })).collect();
        options.push(json!({ "type": 3, "name": focused.0, "value": focused.1, "focused": true }));
        let mut body = fake::interaction(900, "token-autocomplete", GRACE, &[], command, Value::Array(options));
        body["type"] = json!(4);
        body.to_string()
    }

    fn choice_values(answer: &Value) -> Vec<String> {
        answer["data"]["choices"].as_array().unwrap().iter().map(|c| c["value"].as_str().unwrap().to_owned()).collect()
    }

    /// Typing an environment suggests names and aliases; typing a ref suggests the origin's
    /// branches that match, read once and cached; the answer is type 8 with at most 25 choices.
    #[bounded::test(flavor = "multi_thread", worker_threads = 2)]
    async fn environments_and_branches_are_suggested_while_typing() {
        let world = World::new();
        let base = world.path().join("aliases.toml");
        let text = std::fs::read_to_string(world.config_path()).unwrap().replacen(
            "name = \"production\"\n",
            "name = \"production\"\naliases = [\"prod\"]\n",
            1,
        );
        std::fs::write(&base, text).unwrap();
        let (t, url) = start_on(world, &base).await;
        let key = signing_key();
        let now = shipday::clock::Clock::now(&t.bot.clock).timestamp();

        let response = post(&url, &autocomplete("deploy", &[], ("env", "pro")), now, &key).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["type"], 8);
        assert_eq!(choice_values(&answer), ["production", "prod"]);
        assert_eq!(answer["data"]["choices"][1], json!({ "name": "prod", "value": "prod" }));

        let body = autocomplete("deploy", &[("env", "dev")], ("ref", "LOG"));
        let answer: Value = post(&url, &body, now, &key).await.json().await.unwrap();
        assert_eq!(choice_values(&answer), ["feature/login"]);
        // A branch pushed now is not suggested until the cache expires: the list is cached.
        common::git(&t.world.path().join("origin.git"), &["branch", "feature/logout", "dev"]);
        let answer: Value = post(&url, &body, now, &key).await.json().await.unwrap();
        assert_eq!(choice_values(&answer), ["feature/login"], "served from the cache");
        let everything: Value =
            post(&url, &autocomplete("deploy", &[], ("ref", "")), now, &key).await.json().await.unwrap();
        let all = choice_values(&everything);
        assert!(all.len() <= 25 && all.contains(&"dev".to_owned()) && all.contains(&"master".to_owned()), "{all:?}");
        // Nothing reached Discord's REST API: the answer is the HTTP response itself.
        assert!(t.discord.calls().iter().all(|c| !c.path.contains("/callback")));
    }

    /// On Discord `--force` is a yes/no option, so a lead gives the CI-gate override's reason in
    /// `force_reason`: it reaches the engine as `--force "reason"` and deploys over a failed
    /// check, audited; a developer's is refused like on Slack.
    #[bounded::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leads_force_reason_deploys_over_a_failed_check() {
        use common::fake_github::{FakeGitHub, OWNER, REPO};
        let world = World::new();
        let github = FakeGitHub::start().await;
        std::fs::write(world.path().join("github-token"), common::fake_github::TOKEN).unwrap();
        let base = world.path().join("gated.toml");
        let text = std::fs::read_to_string(world.config_path()).unwrap().replacen(
            "name = \"dev\"\n",
            "name = \"dev\"\nrequired_checks = [\"ci/test\"]\n",
            1,
        );
        let text = format!(
            "{text}\n[github]\napi_base_url = \"{}\"\nowner = \"{OWNER}\"\nrepo = \"{REPO}\"\ntoken = {{ file = \"github-token\" }}\n",
            github.url
        );
        std::fs::write(&base, text).unwrap();
        let (t, url) = start_on(world, &base).await;
        let key = signing_key();
        let now = shipday::clock::Clock::now(&t.bot.clock).timestamp();
        let sha = t.world.tip("feature/login");
        github.set_status(&sha, "ci/test", "failure", Some("https://ci.example.com/builds/7"));
        let before = t.world.head("dev");
        let opts = || {
            options(&[
                ("env", json!("dev")),
                ("ref", json!("feature/login")),
                ("force", json!(true)),
                ("force_reason", json!("CI runner is down, tested by hand")),
            ])
        };

        // A developer's reason is refused, and nothing runs.
        let body = fake::interaction(910, "force-dev", GRACE, &[], "deploy", opts()).to_string();
        let response: Value = post(&url, &body, now, &key).await.json().await.unwrap();
        t.discord.answered_over_http("force-dev", &response);
        let refusal = response["data"]["content"].as_str().map(str::to_owned);
        let refusal = match refusal {
            Some(text) => text,
            None => {
                t.discord
                    .wait_for("the refusal", |f| {
                        f.interaction_calls("force-dev")
                            .into_iter()
                            .find_map(|c| c.body["content"].as_str().map(str::to_owned))
                    })
                    .await
            }
        };
        assert!(refusal.contains("Only a lead can deploy over the CI gate"), "{refusal}");
        assert_eq!(t.world.head("dev"), before);

        // A lead's deploys over the failed check, audited with the reason.
        let body = fake::interaction(911, "force-lead", GRACE, &[LEAD_ROLE], "deploy", opts()).to_string();
        let response: Value = post(&url, &body, now, &key).await.json().await.unwrap();
        t.discord.answered_over_http("force-lead", &response);
        wait_for_title(&t.discord, "force-lead", "✅ Deployed `feature/login` to dev").await;
        assert_eq!(t.world.head("dev"), sha);
        let entry = t
            .discord
            .wait_for("the override in the audit log", |_| {
                let audit = t.bot.app.store.audit_tail(50).unwrap();
                audit
                    .into_iter()
                    .find(|e| e.decision.contains("--force over the CI gate: CI runner is down, tested by hand"))
            })
            .await;
        assert_eq!(entry.text, "/deploy dev feature/login --force 'CI runner is down, tested by hand'");
    }

    #[bounded::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_signed_fresh_requests_are_answered() {
        let (t, url) = start().await;
        let key = signing_key();
        let now = shipday::clock::Clock::now(&t.bot.clock).timestamp();
        let ping = fake::contract("interaction-ping.json").to_string();
        let response = post(&url, &ping, now, &key).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<Value>().await.unwrap(), fake::contract("interaction-response-pong.json"));

        let stranger = SigningKey::from_bytes(&[7; 32]);
        assert_eq!(post(&url, &ping, now, &stranger).await.status(), 401, "wrong key");
        assert_eq!(post(&url, &ping, now - 301, &key).await.status(), 401, "stale timestamp");
        assert_eq!(post(&url, &ping, now + 301, &key).await.status(), 401, "timestamp from the future");
        let unsigned = reqwest::Client::new().post(&url).body(ping.clone()).send().await.unwrap();
        assert_eq!(unsigned.status(), 401, "no signature headers");
        // A body changed after signing.
        let timestamp = now.to_string();
        let signature = hex::encode(key.sign(format!("{timestamp}{ping}").as_bytes()).to_bytes());
        let tampered = reqwest::Client::new()
            .post(&url)
            .header("X-Signature-Ed25519", signature)
            .header("X-Signature-Timestamp", timestamp)
            .body(ping.replace("\"type\":1", "\"type\":2"))
            .send()
            .await
            .unwrap();
        assert_eq!(tampered.status(), 401);
        assert!(t.bot.app.store.audit_tail(5).unwrap().is_empty(), "nothing ran");
    }

    #[bounded::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_command_over_http_is_answered_in_the_response_and_a_replay_does_not_run_it_again() {
        let (t, url) = start().await;
        let key = signing_key();
        let now = shipday::clock::Clock::now(&t.bot.clock).timestamp();
        let body = fake::interaction(901, "http-token-1", LINUS, &[], "status", json!([])).to_string();
        let response: Value = post(&url, &body, now, &key).await.json().await.unwrap();
        assert_eq!(response["type"], 4);
        assert_eq!(response["data"]["flags"], 64);
        assert_eq!(response["data"]["embeds"][0]["title"], "Status");
        let replay: Value = post(&url, &body, now, &key).await.json().await.unwrap();
        assert!(replay["data"]["content"].as_str().unwrap().contains("already handled"), "{replay}");
        let statuses = t.bot.app.store.audit_tail(10).unwrap().into_iter().filter(|e| e.text == "/status").count();
        assert_eq!(statuses, 1);

        // A deploy is deferred in the response, then followed over REST.
        let opts = options(&[("env", json!("dev")), ("ref", json!("feature/login"))]);
        let body = fake::interaction(902, "http-token-2", GRACE, &[], "deploy", opts).to_string();
        let response: Value = post(&url, &body, now, &key).await.json().await.unwrap();
        assert_eq!(response, fake::contract("interaction-response-deferred.json"));
        t.discord.answered_over_http("http-token-2", &response);
        wait_for_title(&t.discord, "http-token-2", "✅ Deployed `feature/login` to dev").await;

        // Reading HEAD on every host (`--live`) is long-running too: deferred privately, then
        // the answer edits @original.
        let opts = options(&[("live", json!(true))]);
        let body = fake::interaction(903, "http-token-3", LINUS, &[], "status", opts).to_string();
        let response: Value = post(&url, &body, now, &key).await.json().await.unwrap();
        assert_eq!(response, json!({ "type": 5, "data": { "flags": 64 } }));
        let edit = t
            .discord
            .wait_for("the edit of @original", |f| {
                f.interaction_calls("http-token-3").into_iter().find(|c| c.method == "PATCH")
            })
            .await;
        assert_eq!(edit.path, format!("/webhooks/{APPLICATION_ID}/http-token-3/messages/@original"));
        assert_eq!(title(&edit.body), "Status");
    }

    #[bounded::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_the_delivery_records_cannot_be_read_a_command_is_refused_and_nothing_runs() {
        let (t, url) = start().await;
        let key = signing_key();
        let now = shipday::clock::Clock::now(&t.bot.clock).timestamp();
        t.bot.app.store.break_delivery_records().unwrap();
        assert!(t.bot.app.store.delivery_seen("discord:interaction:904").is_err(), "the records are unreadable");
        let opts = options(&[("env", json!("dev")), ("ref", json!("feature/login"))]);
        let body = fake::interaction(904, "http-token-4", GRACE, &[], "deploy", opts).to_string();
        let response: Value = post(&url, &body, now, &key).await.json().await.unwrap();
        let text = response["data"]["content"].as_str().unwrap_or_default();
        assert!(text.contains("cannot read its store") && text.contains("ran nothing"), "{response}");
        assert_eq!(response["data"]["flags"], 64, "said privately");
        assert!(t.bot.app.store.audit_tail(5).unwrap().is_empty(), "the engine was never asked");
        assert!(t.world.restarts().is_empty(), "nothing was deployed");
    }
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_never_answers_is_started_over_within_the_bound_and_logged() {
    let logs = common::captured_logs();
    let world = World::new();
    let fake = FakeDiscord::start().await;
    // The first two gateway connections are accepted and never answered.
    fake.silent_gateways(2);
    let config = write_config(&world, &world.config_path(), "", &fake);
    let bot = Bot::start(&config);
    let tuning =
        Tuning { gateway_ready: Duration::from_millis(500), gateway_backoff: Duration::from_millis(50), ..tuning() };
    let started = std::time::Instant::now();
    let _running = discord::start(
        &bot.app,
        bot.adapters.discord.as_ref().unwrap(),
        std::sync::Arc::new(bot.clock.clone()),
        tuning,
    )
    .await
    .unwrap();
    fake.wait_for_sessions(1).await;
    assert_eq!(fake.silent_connections(), 2);
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let restarts =
        logged.lines().filter(|l| l.contains("Discord's gateway") && l.contains("did not come up in time")).count();
    assert_eq!(restarts, 2, "each start-over is logged");
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_puts_the_commands_in_the_guild_and_waits_out_a_rate_limit() {
    use shipday::chat::discord::register::{Scope, register};
    let t = setup().await;
    let settings = t.bot.adapters.discord.clone().unwrap();
    let environments = t.bot.app.config.environment_names();
    t.discord.rate_limit_next(1);
    let names = register(&settings, &environments, Scope::Guild(settings.guild_id)).await.unwrap();
    assert_eq!(names, shipday::command::CommandBook::builtin().names());
    let puts: Vec<_> = t.discord.calls().into_iter().filter(|c| c.method == "PUT").collect();
    assert_eq!(puts.len(), 2, "one 429, then the registration");
    assert_eq!(puts[1].path, format!("/applications/{APPLICATION_ID}/guilds/{GUILD_ID}/commands"));
    let env = &puts[1].body[0]["options"][0];
    assert_eq!((env["name"].clone(), env["autocomplete"].clone()), (json!("env"), json!(true)), "{env}");

    // /ticket's action is a pick list, from commands/ticket.toml.
    let ticket = puts[1].body.as_array().unwrap().iter().find(|c| c["name"] == "ticket").unwrap();
    let action = ticket["options"].as_array().unwrap().iter().find(|o| o["name"] == "action").unwrap();
    let values: Vec<&str> =
        action["choices"].as_array().unwrap().iter().map(|c| c["value"].as_str().unwrap()).collect();
    assert_eq!((action["type"].as_u64(), values), (Some(3), vec!["pass", "fail", "status"]));

    // The CLI, globally.
    let config = t.world.path().join("discord.toml");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipday"))
        .args(["register", "discord", "--global", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let count = shipday::command::CommandBook::builtin().specs().len();
    assert!(stdout.contains(&format!("Registered {count} commands globally: /deploy")), "{stdout}");
    let last = t.discord.calls().into_iter().rfind(|c| c.method == "PUT").unwrap();
    assert_eq!(last.path, format!("/applications/{APPLICATION_ID}/commands"));
}

/// The fake's payloads are complete: serenity parses every one (it silently drops events that
/// lack a field it requires, which would make the tests above wait forever instead of failing).
#[bounded::test]
fn the_fakes_payloads_parse_as_serenity_models() {
    use serenity::all::{Interaction, Member, Reaction};
    let event = fake::interaction(1, "t", GRACE, &[LEAD_ROLE], "deploy", options(&[("env", json!("dev"))]));
    let Interaction::Command(command) = serde_json::from_value::<Interaction>(event).unwrap() else { panic!() };
    assert_eq!(command.member.unwrap().roles[0].get().to_string(), LEAD_ROLE);
    serde_json::from_value::<Member>(fake::member_json(ADA, &[])).unwrap();
    let add = fake::contract("gateway-message-reaction-add.json")["d"].clone();
    let mut complete = add.clone();
    complete["member"] = fake::member_json(GRACE, &[LEAD_ROLE]);
    assert!(serde_json::from_value::<Reaction>(complete).is_ok());
    assert!(serde_json::from_value::<Reaction>(add).is_err(), "the contract sample lacks member.flags");
}

/// `check-config` and `serve` run one validation: a local Discord-compatible server is valid
/// for both (with the warning), and a base URL neither can use stops both with the same words.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_and_serve_agree_on_the_discord_base_url() {
    let world = World::new();
    let discord = FakeDiscord::start().await;
    let config = write_config(&world, &world.config_path(), "", &discord);
    let check = shipday_cli(&["check-config", "--config"], &config).await;
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{stdout}{}", String::from_utf8_lossy(&check.stderr));
    let origin = discord.api_base.trim_end_matches("/api/v10");
    assert!(stdout.contains(&format!("DISCORD IS NOT discord.com: REST and the gateway go to {origin}")), "{stdout}");

    let text = std::fs::read_to_string(&config).unwrap().replace(&discord.api_base, "http://no spaces here/api/v10");
    std::fs::write(&config, text).unwrap();
    let check = shipday_cli(&["check-config", "--config"], &config).await;
    let serve = shipday_cli(&["serve", "--config"], &config).await;
    assert!(!check.status.success() && !serve.status.success());
    let (check, serve) = (String::from_utf8_lossy(&check.stderr), String::from_utf8_lossy(&serve.stderr));
    assert!(check.contains("discord.api_base_url: `http://no spaces here/api/v10` is not a URL"), "{check}");
    assert_eq!(check, serve, "both refuse with the same words");
}

async fn shipday_cli(args: &[&str], config: &Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_shipday")).args(args).arg(config).output().await.unwrap()
}

/// Against a server other than discord.com, serenity's rate limiter is off, so Shipday's own
/// client waits out a 429 (the body's `retry_after`) and sends the call again.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_interaction_is_answered_after_the_wait_the_server_asks_for() {
    let t = setup().await;
    t.discord.rate_limit("POST", "/interactions/", 2, 0.2);
    let token = t.discord.command(LINUS, &[], "status", json!([]));
    let answer = t.discord.wait_for("the /status answer", |f| f.original(&token)).await;
    assert_eq!(title(&answer.body), "Status");
    let callbacks = t.discord.calls_to("POST", "/interactions/");
    assert_eq!(callbacks.len(), 3, "two 429s, then the answer: {callbacks:#?}");
    assert!(callbacks.iter().all(|c| c.body == callbacks[0].body), "the same call each time");
    for pair in callbacks.windows(2) {
        assert!(pair[1].at - pair[0].at >= Duration::from_millis(200), "waited retry_after between attempts");
    }
}

/// Retries are bounded: a server that keeps answering 429, or asks for a longer wait than
/// Shipday accepts, gets a clear error instead of a bot stuck waiting.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_keeps_rate_limiting_gets_an_error_after_bounded_attempts() {
    use shipday::chat::discord::rest::{Pacing, Rest, RetryPolicy};
    let t = setup().await;
    let settings = t.bot.adapters.discord.clone().unwrap();
    let pacing = Pacing::for_settings(&settings).unwrap();
    assert!(matches!(pacing, Pacing::Own { .. }), "{pacing:?}");
    let policy = RetryPolicy { attempts: 3, max_wait: Duration::from_secs(5), default_wait: Duration::from_millis(50) };
    let rest = Rest::new(&settings, &pacing, policy).unwrap();
    let channel = serenity::all::ChannelId::new(CHANNEL_ID.parse().unwrap());
    let posts = format!("/channels/{CHANNEL_ID}/messages");

    t.discord.rate_limit("POST", &posts, 3, 0.05);
    let error = rest.send_message(channel, &json!({ "content": "hello" })).await.unwrap_err();
    assert!(format!("{error:#}").contains("kept rate-limiting POST /api/v10/channels/"), "{error:#}");
    assert_eq!(t.discord.calls_to("POST", &posts).len(), 3, "three attempts, then the error");

    t.discord.rate_limit("POST", &posts, 1, 120.0);
    let error = rest.send_message(channel, &json!({ "content": "hello" })).await.unwrap_err();
    assert!(format!("{error:#}").contains("for 120.0 s, longer than Shipday waits (5 s)"), "{error:#}");
    assert_eq!(t.discord.calls_to("POST", &posts).len(), 4, "no retry after a wait too long");
}

/// The real `shipday serve` binary, pointed at the fake Discord by `api_base_url` alone:
/// it warns that this is not discord.com, connects to the fake's gateway (IDENTIFY, READY),
/// defers a `/status --live` that arrives over the gateway and then edits it with the status,
/// and counts a lead's ✅ on a promotion request it posted, editing the request to show it.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_binary_runs_the_gateway_path_against_a_local_discord_server() {
    let world = World::new();
    let discord = FakeDiscord::start().await;
    let config = write_config(&world, &world.config_path(), "", &discord);
    // Before this start, Shipday posted promotion request #9 in the team channel.
    let posted = discord.post_as(BOT_ID, "Promotion #9: staging → production");
    {
        let (store, _) = shipday::store::Store::open(&world.path().join("state")).unwrap();
        store.put_promotion(&common::pending_request(9, &world.tip("staging"), chrono::Utc::now())).unwrap();
        let message = shipday::engine::MessageRef { channel: CHANNEL_ID.into(), id: posted.to_string() };
        store.bind_promotion_message("discord", &message, 9).unwrap();
        store.flush_blocking();
    }
    let serve = ServeProcess::start(&config, &discord).await;
    let identify = &discord.identifies()[0];
    assert_eq!(identify["token"], "Bot fake-bot-token");
    assert_eq!(identify["intents"], 1537);
    serve.wait_for_log("the warning", "DISCORD IS NOT discord.com").await;

    let token = discord.command(LINUS, &[], "status", options(&[("live", json!(true))]));
    let status = wait_for_title(&discord, &token, "Status").await;
    let calls = discord.interaction_calls(&token);
    assert_eq!(calls[0].method, "POST");
    assert!(calls[0].path.ends_with("/callback"), "{calls:#?}");
    assert_eq!(calls[0].body, json!({ "type": 5, "data": { "flags": 64 } }), "deferred, privately");
    let edit = calls.iter().find(|c| c.method == "PATCH").expect("an edit of @original");
    assert_eq!(edit.path, format!("/webhooks/{APPLICATION_ID}/{token}/messages/@original"));
    let fields = edit.body["embeds"][0]["fields"].as_array().unwrap();
    assert_eq!(fields[0]["name"], "dev · branch dev", "{edit:#?}");
    assert_eq!(status.flags, 64);

    discord.react(LINUS, &[OTHER_ROLE], posted, "✅", true);
    discord.react(GRACE, &[LEAD_ROLE], posted, "✅", true);
    discord
        .wait_for("the request edited with Grace's approval", |f| {
            let content = f.message(posted).body["content"].as_str().unwrap_or_default().to_owned();
            (content.contains("approved by Grace") && content.contains("1 more lead approval")).then_some(content)
        })
        .await;
    let edits = discord.calls_to("PATCH", &format!("/channels/{CHANNEL_ID}/messages/{posted}"));
    let voters = |e: &fake::Call| e.body["content"].as_str().unwrap().contains("approved by Linus");
    assert!(!edits.iter().any(voters), "a ✅ without the lead role is no vote: {edits:#?}");
    drop(serve);
}

/// `shipday serve` as a child process, killed when dropped, its log collected.
struct ServeProcess {
    _child: tokio::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ServeProcess {
    /// Starts the binary and waits for its gateway session. A store the test just closed may
    /// still be locked for a moment (sled frees its lock from a background thread): a start
    /// refused for that is tried again.
    async fn start(config: &Path, discord: &FakeDiscord) -> Self {
        for _ in 0..50 {
            let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipday"))
                .args(["serve", "--config"])
                .arg(config)
                .env("SHIPDAY_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stderr.take().unwrap()));
            let sink = log.clone();
            let reader = tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
            let outcome = discord
                .wait_for("the binary's gateway session, or its exit", |f| {
                    if !f.identifies().is_empty() {
                        return Some(None);
                    }
                    child.try_wait().unwrap().map(Some)
                })
                .await;
            match outcome {
                None => {
                    discord.wait_for_sessions(1).await;
                    return Self { _child: child, log };
                }
                Some(status) => {
                    reader.await.unwrap();
                    let log = log.lock().unwrap().clone();
                    assert!(log.contains("cannot open the state store"), "serve stopped ({status}): {log}");
                }
            }
        }
        panic!("the state store stayed locked");
    }

    async fn wait_for_log(&self, what: &str, needle: &str) {
        if common::within(Duration::from_secs(10), || self.log.lock().unwrap().contains(needle).then_some(()))
            .await
            .is_none()
        {
            panic!("timed out waiting for {what}: {}", self.log.lock().unwrap());
        }
    }
}

/// A lead's ✅ (by the lead role in the member data) on the promotion request Shipday posted
/// in Discord is a vote; the message is edited to show it; a non-lead's ✅ is not a vote.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leads_reaction_on_the_posted_promotion_request_is_a_vote() {
    use shipday::engine::{Announcement, PromotionView};
    let t = setup().await;
    let now = shipday::clock::Clock::now(&t.bot.clock);
    let mut request = common::pending_request(9, &t.world.tip("staging"), now);
    // The links `/promote` gives a request where [github] is configured and production has a url.
    let (sha, live) = (request.sha.clone(), shipday::release::gitref::Sha::parse(&"a".repeat(40)).unwrap());
    request.links = Box::new(shipday::release::deploy::DeployLinks::new(
        Some("https://github.com/acme/shop"),
        &sha,
        Some(&live),
        &[],
        "production",
        Some("https://shop.example"),
    ));
    t.bot.app.store.put_promotion(&request).unwrap();
    t.bot.app.engine.announce(Announcement::Promotion(Box::new(PromotionView { request, messages: vec![] })));
    let posted = t.discord.wait_for("the request in the team channel", |f| f.find_message("Promotion #9")).await;
    let content = posted.body["content"].as_str().unwrap();
    let compare =
        format!("changes [{}...{}](https://github.com/acme/shop/compare/{live}...{sha})", live.short(), sha.short());
    assert!(content.contains(&compare), "the compare in Discord's link syntax: {content}");
    assert!(
        content.contains(&format!("commit [{}](https://github.com/acme/shop/commit/{sha})", sha.short())),
        "{content}"
    );
    assert!(content.contains("open [production](https://shop.example)"), "{content}");
    // Wait until the adapter has bound the message, so reactions on it vote.
    let bound = shipday::engine::MessageRef { channel: CHANNEL_ID.into(), id: posted.id.to_string() };
    common::eventually(common::PATIENCE, "the adapter to bind the posted request", || {
        t.bot.app.store.promotion_for_message("discord", &bound).unwrap().is_some()
    })
    .await;
    t.discord.react(LINUS, &[OTHER_ROLE], posted.id, "✅", true);
    t.discord.react(GRACE, &[LEAD_ROLE], posted.id, "✅", true);
    common::eventually(common::PATIENCE, "the lead's vote", || {
        t.bot.app.store.promotion(9).unwrap().unwrap().approvals() == 1
    })
    .await;
    let voted = t.bot.app.store.promotion(9).unwrap().unwrap();
    assert_eq!(voted.votes.keys().collect::<Vec<_>>(), ["grace"], "only the lead's vote: {voted:?}");
    t.discord
        .wait_for("the request edited with Grace's approval", |f| {
            let content = f.message(posted.id).body["content"].as_str().unwrap_or_default().to_owned();
            (content.contains("approved by Grace") && content.contains("1 more lead approval")).then_some(())
        })
        .await;
}

/// `/shipday` on Discord carries each command as a subcommand, and `[discord] commands`
/// renames commands there: the renamed one runs, and replies name it as registered.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_umbrella_and_configured_names_work_on_discord() {
    let world = World::new();
    let base = world.config_path();
    let t =
        setup_with(world, &base, "commands = { status = \"ship-status\", release = \"give-back\" }", tuning()).await;
    t.bot.say("grace", "/deploy dev feature/login").await;

    let through = json!([{ "name": "status", "type": 1, "options": [{ "name": "env", "type": 3, "value": "dev" }] }]);
    let token = t.discord.command(LINUS, &[], "shipday", through);
    let answer = t.discord.wait_for("the /shipday status answer", |f| f.original(&token)).await;
    assert_eq!(answer.body["embeds"][0]["title"], "Status", "{:?}", answer.body);

    let token = t.discord.command(LINUS, &[], "give-back", options(&[("env", json!("staging"))]));
    // Releasing is host work: deferred first, then the (private) refusal as a follow-up.
    let words = t
        .discord
        .wait_for("the /give-back answer", |f| {
            f.interaction_calls(&token).iter().map(|c| c.body.to_string()).find(|b| b.contains("not claimed"))
        })
        .await;
    assert!(words.contains("staging is not claimed"), "the engine ran /release: {words}");
    assert!(words.contains("`/ship-status staging`") && !words.contains("`/status staging`"), "{words}");

    let help = json!([{ "name": "help", "type": 1, "options": [] }]);
    let token = t.discord.command(LINUS, &[], "shipday", help);
    let list = t.discord.wait_for("the /shipday help answer", |f| f.original(&token)).await;
    let words = list.body.to_string();
    assert!(words.contains("/ship-status [ENV]") && words.contains("/give-back ENV"), "{words}");
    assert!(words.contains("/shipday COMMAND"), "{words}");
}

/// Issue 13, point 7: the real binary is SIGKILLed while a deploy started from Discord runs;
/// when it starts again, that deploy's own message is edited to say it was interrupted (not
/// only a separate notice).
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_interrupted_deploys_own_message_is_edited_to_say_so() {
    let world = World::new();
    let discord = FakeDiscord::start().await;
    let go = Gate::new(world.path(), "go");
    let steps = format!("  {{ name = \"wait\", run = \"{}\" }},", go.shell());
    let base = world.config_with_dev_steps(&steps);
    let config = write_config(&world, &base, "", &discord);
    let serve = ServeProcess::start(&config, &discord).await;
    let opts = options(&[("env", json!("dev")), ("ref", json!("dev"))]);
    let token = discord.command(ADA, &[LEAD_ROLE], "deploy", opts);
    let original = format!("/webhooks/{APPLICATION_ID}/{token}/messages/@original");
    // Edited at least twice: the answer, then its progress (the message is recorded before the
    // progress is followed).
    let shown = discord
        .wait_for("the deploy's message following its step", |f| {
            (f.calls_to("PATCH", &original).len() >= 2).then(|| f.original(&token)).flatten().map(|m| m.id)
        })
        .await;
    // SIGKILL, and wait until it is gone (its store lock with it).
    let mut killed = serve;
    killed._child.kill().await.unwrap();
    go.open().await;

    let _serve = ServeProcess::start(&config, &discord).await;
    discord.wait_for("the restarted binary's gateway session", |f| (f.identifies().len() >= 2).then_some(())).await;
    let edit = discord
        .wait_for("the deploy's own message edited to say it was interrupted", |f| {
            f.calls_to("PATCH", &format!("/channels/{CHANNEL_ID}/messages/{shown}"))
                .into_iter()
                .find(|c| c.body.to_string().contains("interrupted"))
        })
        .await;
    assert!(edit.body.to_string().contains("Deploy of"), "{edit:#?}");
    assert!(discord.message(shown).body.to_string().contains("interrupted"));
}

/// Issue 13, point 7 on Discord: an automatic dev → staging promotion is saved twice before
/// Discord answers the first post; it is still posted once, and that message edited to its end.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_promotion_is_posted_once_on_discord_and_edited_to_its_end() {
    use common::fake_github::{self, FakeGitHub, OWNER, REPO};
    let world = World::new();
    let github = FakeGitHub::start().await;
    common::mirror_origin(&world, &github);
    let token = world.path().join("github-token");
    std::fs::write(&token, format!("{}\n", fake_github::TOKEN)).unwrap();
    let base = world.path().join("with-github.toml");
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    std::fs::write(
        &base,
        format!(
            "{text}\n[github]\napi_base_url = \"{}\"\nowner = \"{OWNER}\"\nrepo = \"{REPO}\"\ntoken = {{ file = \"{}\" }}\n",
            github.url,
            token.display()
        ),
    )
    .unwrap();
    let t = setup_with(world, &base, "", tuning()).await;
    t.bot.say("ada", "/deploy dev dev").await;
    let (reply, _) = t.bot.say("grace", "/promote dev staging").await;
    assert!(t.bot.show(&reply).contains("It needs no approval"), "{}", t.bot.show(&reply));
    t.discord
        .wait_for("the promotion's message edited to shipped", |f| {
            f.find_message("Promotion #1:")
                .filter(|m| m.body["content"].as_str().unwrap_or_default().contains("shipped"))
        })
        .await;
    let posts: Vec<_> = t
        .discord
        .calls_to("POST", &format!("/channels/{CHANNEL_ID}/messages"))
        .into_iter()
        .filter(|c| c.body.to_string().contains("Promotion #1:"))
        .collect();
    assert_eq!(posts.len(), 1, "one message per promotion: {posts:#?}");
}
