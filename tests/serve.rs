//! `shipday serve` as a whole: every platform's route on the one listener, and start-up that
//! never hangs on a platform that does not answer.

use testkit as common;

use common::fake_discord::{self, APPLICATION_ID, CHANNEL_ID, FakeDiscord, GUILD_ID};
use common::fake_github::FakeGitHub;
use common::fake_slack::{self, FakeSlack};
use common::{Bot, World};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use shipday::chat::discord::Tuning;
use shipday::chat::slack::SlackAdapter;
use shipday::clients::outbound::StartupRetry;
use shipday::clock::Clock;
use shipday::config::Secret;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const TEAM: &str = "T123ABC456";
const SLACK_SIGNING_SECRET: &str = "slack-signing-secret-for-serve";
const WEBHOOK_SECRET: &str = "github-webhook-secret-for-serve";

/// The playground config plus `extra` sections, with every secret file they name.
fn config(world: &World, extra: &str) -> PathBuf {
    let dir = world.path();
    std::fs::write(dir.join("slack-bot-token"), fake_slack::BOT_TOKEN).unwrap();
    std::fs::write(dir.join("slack-signing-secret"), SLACK_SIGNING_SECRET).unwrap();
    std::fs::write(dir.join("discord-token"), "fake-bot-token").unwrap();
    std::fs::write(dir.join("webhook-secret"), WEBHOOK_SECRET).unwrap();
    std::fs::write(dir.join("github-token"), common::fake_github::TOKEN).unwrap();
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    let path = dir.join("serve.toml");
    std::fs::write(&path, format!("{text}\n[server]\nlisten = \"127.0.0.1:0\"\n{extra}")).unwrap();
    path
}

fn slack_section(api_url: &str) -> String {
    format!(
        "\n[slack]\nteam_id = \"{TEAM}\"\nchannel = \"C0TEAM0001\"\nmode = \"http\"\n\
         bot_token = {{ file = \"slack-bot-token\" }}\nsigning_secret = {{ file = \"slack-signing-secret\" }}\n\
         api_base_url = \"{api_url}\"\n"
    )
}

fn discord_signing_key() -> SigningKey {
    let vector = fake_discord::contract("ed25519-test-vector.json");
    let secret = hex::decode(vector["rfc8032_test_1"]["secret_key"].as_str().unwrap()).unwrap();
    SigningKey::from_bytes(&secret.try_into().unwrap())
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_discord_and_github_are_all_served_on_the_one_listen_address() {
    let world = World::new();
    let slack = FakeSlack::start(TEAM).await;
    let discord = FakeDiscord::start().await;
    let github = FakeGitHub::start().await;
    let public_key = fake_discord::contract("ed25519-test-vector.json")["rfc8032_test_1"]["public_key"].clone();
    let extra = format!(
        "{}\n[discord]\napplication_id = \"{APPLICATION_ID}\"\nguild_id = \"{GUILD_ID}\"\nchannel = \"{CHANNEL_ID}\"\n\
         bot_token = {{ file = \"discord-token\" }}\napi_base_url = \"{}\"\npublic_key = {public_key}\n\
         \n[github]\nowner = \"Codertocat\"\nrepo = \"Hello-World\"\ntoken = {{ file = \"github-token\" }}\n\
         webhook_secret = {{ file = \"webhook-secret\" }}\napi_base_url = \"{}\"\n",
        slack_section(&slack.api_url()),
        discord.api_base,
        github.config().api_base_url,
    );
    let bot = Bot::start(&config(&world, &extra));
    let tuning = Tuning::default();
    let started = shipday::serve::start(&bot.app, &bot.adapters, Arc::new(bot.clock.clone()), tuning).await.unwrap();
    let addr = started.listening.expect("the routes need the listener");
    let http = reqwest::Client::new();
    let now = bot.clock.now().timestamp().to_string();

    // Slack: a signed /status is acknowledged.
    let form = format!(
        "team_id={TEAM}&channel_id=C0DEPLOYS1&user_id=U0NOBODY01&command=%2Fstatus&text=&trigger_id=serve.1\
         &response_url={}",
        serde_urlencoded::to_string([("u", slack.response_url("serve.1"))]).unwrap().trim_start_matches("u=")
    );
    let signature = shipday::chat::slack::verify::sign(&Secret::new(SLACK_SIGNING_SECRET), &now, form.as_bytes());
    let slack_answer = http
        .post(format!("http://{addr}/slack/commands"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &now)
        .header("x-slack-signature", signature)
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(slack_answer.status(), 200);
    assert_eq!(slack_answer.json::<Value>().await.unwrap()["response_type"], "ephemeral");

    // Discord: a signed ping is answered with a pong.
    let ping = fake_discord::contract("interaction-ping.json").to_string();
    let signed = hex::encode(discord_signing_key().sign(format!("{now}{ping}").as_bytes()).to_bytes());
    let discord_answer = http
        .post(format!("http://{addr}/discord/interactions"))
        .header("content-type", "application/json")
        .header("x-signature-ed25519", signed)
        .header("x-signature-timestamp", &now)
        .body(ping)
        .send()
        .await
        .unwrap();
    assert_eq!(discord_answer.status(), 200);
    assert_eq!(discord_answer.json::<Value>().await.unwrap(), json!({ "type": 1 }));

    // GitHub: a signed ping is answered.
    let hook_ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let hub_signature = shipday::webhook::github::signature::sign(&Secret::new(WEBHOOK_SECRET), hook_ping);
    let github_answer = http
        .post(format!("http://{addr}/github/webhook"))
        .header("content-type", "application/json")
        .header("x-github-event", "ping")
        .header("x-github-delivery", "serve-1")
        .header("x-hub-signature-256", hub_signature)
        .body(hook_ping.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(github_answer.status(), 200);
    assert_eq!(github_answer.text().await.unwrap(), "pong");

    // Liveness shares the listener with the platforms' routes.
    let health = http.get(format!("http://{addr}/healthz")).send().await.unwrap();
    assert_eq!((health.status().as_u16(), health.text().await.unwrap().as_str()), (200, "ok"));

    // Each route keeps its own secret: unsigned requests are refused on every path.
    for path in ["/slack/commands", "/discord/interactions", "/github/webhook"] {
        let unsigned = http.post(format!("http://{addr}{path}")).body("{}").send().await.unwrap();
        assert_eq!(unsigned.status(), 401, "{path}");
    }
    drop(started);
}

#[bounded::test]
async fn a_slack_that_accepts_connections_and_never_answers_fails_start_up_within_a_bound_and_logs_each_retry() {
    let logs = common::captured_logs();
    // Accepts every connection and holds it open without a byte in answer.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}/api", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let world = World::new();
    let bot = Bot::start(&config(&world, &slack_section(&api_url)));
    let retry = StartupRetry {
        attempts: 3,
        first_backoff: Duration::from_millis(50),
        timeout: Duration::from_millis(400),
        ..StartupRetry::default()
    };
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        SlackAdapter::start_with(&bot.app, bot.adapters.slack.as_ref().unwrap(), Arc::new(bot.clock.clone()), &retry),
    )
    .await
    .expect("start-up must not hang on a silent Slack");
    let Err(error) = result else { panic!("start-up must fail against a Slack that never answers") };
    let error = format!("{error:#}");
    assert!(
        error.contains("auth.test") && error.contains("no answer within 0.4s") && error.contains("after 3 attempts"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let retries =
        logged.lines().filter(|l| l.contains("a start-up call failed; retrying") && l.contains("auth.test")).count();
    assert_eq!(retries, 2, "each retry is logged:\n{logged}");
}

/// `shipday healthcheck` against the real binary, run to completion.
async fn healthcheck(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_shipday"))
        .arg("healthcheck")
        .args(args)
        .env_remove("SHIPDAY_CONFIG")
        .env_remove("SHIPDAY_HEALTHCHECK_URL")
        .output()
        .await
        .unwrap()
}

/// `/healthz` is on the one listener of a real `shipday serve`, also in Socket Mode where no
/// platform route needs the listener, and `shipday healthcheck` (Docker's HEALTHCHECK) finds it
/// from the URL or the config's `[server] listen`, and fails once the bot is gone.
#[bounded::test]
async fn healthz_is_served_by_a_real_serve_and_healthcheck_follows_it() {
    use tokio::io::AsyncBufReadExt;
    let world = World::new();
    let slack = FakeSlack::start(TEAM).await;
    std::fs::write(world.path().join("slack-app-token"), fake_slack::APP_TOKEN).unwrap();
    let socket_mode = format!(
        "\n[slack]\nteam_id = \"{TEAM}\"\nchannel = \"C0TEAM0001\"\nmode = \"socket\"\n\
         bot_token = {{ file = \"slack-bot-token\" }}\napp_token = {{ file = \"slack-app-token\" }}\n\
         api_base_url = \"{}\"\n",
        slack.api_url()
    );
    let config = config(&world, &socket_mode);
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipday"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("SHIPDAY_CONFIG")
        .env("SHIPDAY_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(serve.stderr.take().unwrap()).lines();
    // `listen = 127.0.0.1:0`: the port is the one the listener logs.
    let addr: std::net::SocketAddr = common::wait::bounded(common::wait::PATIENCE, "serve to listen", async {
        let mut seen = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("listening for every inbound route") {
                assert!(line.contains("GET /healthz"), "{line}");
                let bound = line.split_once("bound=").unwrap().1.split_whitespace().next().unwrap();
                return bound.parse().unwrap();
            }
        }
        panic!("serve stopped before it listened:\n{seen}");
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let answer = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "ok");

    let url = format!("http://{addr}/healthz");
    let ok = healthcheck(&["--url", &url]).await;
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), format!("ok: {url}"));

    // From the config: a listener on every address is asked on loopback.
    let listen_only = world.path().join("listen-only.toml");
    std::fs::write(&listen_only, format!("[server]\nlisten = \"0.0.0.0:{}\"\n", addr.port())).unwrap();
    let ok = healthcheck(&["--config", listen_only.to_str().unwrap()]).await;
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&format!("http://127.0.0.1:{}/healthz", addr.port())));

    let wrong_path = healthcheck(&["--url", &format!("http://{addr}/nothing-here")]).await;
    assert_eq!(wrong_path.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong_path.stderr).contains("answered 404"), "{wrong_path:?}");

    serve.kill().await.unwrap();
    serve.wait().await.unwrap();
    let gone = healthcheck(&["--url", &url]).await;
    assert_eq!(gone.status.code(), Some(1));
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(err.contains(&format!("unhealthy: no answer from {url}")), "{err}");
}
