//! Slack HTTP benchmark (`cargo bench --bench slack`): 1,000 signed `/status` slash commands
//! over loopback, 50 at a time, against the real `/slack/commands` route on the one hardened
//! listener (body limit, signature check,
//! workspace check, durable dedupe, engine decision and audit flush, Block Kit ack). `/status`
//! reads only the store, so no transport runs. Prints p50 and p99 time to the HTTP 200 ack and
//! requests per second, then the same load against a bare axum route that only returns 200.
//!
//! Client and server share this machine's cores, as they would not in production.

use shipday::app;
use shipday::chat::slack::SlackAdapter;
use shipday::chat::slack::verify::sign;
use shipday::clock::{Clock, SystemClock};
use shipday::config::Secret;
use shipday::listener::{Limits, Listener};
use shipday::settings::Settings;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REQUESTS: usize = 1_000;
const CONCURRENCY: usize = 50;
const TEAM: &str = "T0BENCH001";
const SECRET: &str = "bench-signing-secret";

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let settings = config(dir.path(), &fake_web_api().await);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let app = app::start(settings.config, clock.clone()).unwrap();
        let adapter = SlackAdapter::start(&app, settings.adapters.slack.as_ref().unwrap(), clock).await.unwrap();
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), Limits::default()).await.unwrap();
        let url = format!("http://{}/slack/commands", listener.local_addr().unwrap());
        tokio::spawn(listener.serve(adapter.routes().unwrap()));
        let client = reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY).build().unwrap();

        // Warm up both servers and the connection pool.
        load(&client, &url, 100, "warmup").await;
        let (mut samples, elapsed) = load(&client, &url, REQUESTS, "run").await;
        report("signed /status via /slack/commands", &mut samples, elapsed);

        let bare = bare_route().await;
        load(&client, &bare, 100, "warmup").await;
        let (mut bare_samples, bare_elapsed) = load(&client, &bare, REQUESTS, "bare").await;
        report("bare axum route returning 200", &mut bare_samples, bare_elapsed);
        println!(
            "ratio (ours / bare): p50 {:.1}x, p99 {:.1}x",
            percentile(&mut samples, 0.5).as_secs_f64() / percentile(&mut bare_samples, 0.5).as_secs_f64(),
            percentile(&mut samples, 0.99).as_secs_f64() / percentile(&mut bare_samples, 0.99).as_secs_f64()
        );
    });
}

/// Sends `count` signed commands, `CONCURRENCY` at a time; returns each time to the 200 and
/// the wall time of the whole run.
async fn load(client: &reqwest::Client, url: &str, count: usize, tag: &str) -> (Vec<Duration>, Duration) {
    let secret = Secret::new(SECRET);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let client = client.clone();
        let url = url.to_owned();
        let secret = secret.clone();
        let tag = tag.to_owned();
        workers.spawn(async move {
            let mut samples = Vec::new();
            for i in (worker..count).step_by(CONCURRENCY) {
                let body = format!(
                    "token=x&team_id={TEAM}&team_domain=bench&channel_id=C0BENCH001&channel_name=bench&user_id=U0BENCH001&user_name=bench&command=%2Fstatus&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F{TEAM}%2F1%2Fx&trigger_id={tag}.{i}"
                );
                let ts = chrono::Utc::now().timestamp().to_string();
                let signature = sign(&secret, &ts, body.as_bytes());
                let start = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-slack-request-timestamp", ts)
                    .header("x-slack-signature", signature)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let _ = response.bytes().await.unwrap();
                samples.push(start.elapsed());
            }
            samples
        });
    }
    let mut samples = Vec::with_capacity(count);
    while let Some(done) = workers.join_next().await {
        samples.extend(done.unwrap());
    }
    (samples, started.elapsed())
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, samples: &mut [Duration], elapsed: Duration) {
    let p50 = percentile(samples, 0.5);
    let p99 = percentile(samples, 0.99);
    println!(
        "{name:<40} n={} concurrency={CONCURRENCY}  p50 {:>7.2} ms  p99 {:>7.2} ms  {:>7.0} req/s",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.len() as f64 / elapsed.as_secs_f64()
    );
}

/// A Web API that only answers `auth.test` (start-up); `/status` answers in the ack.
async fn fake_web_api() -> String {
    use axum::routing::any;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    let auth = format!(
        r#"{{"ok":true,"url":"https://bench.slack.com/","team":"Bench","user":"shipday","team_id":"{TEAM}","user_id":"U0BOT00001"}}"#
    );
    let app = axum::Router::new().route(
        "/api/{method}",
        any(move || {
            let auth = auth.clone();
            async move { ([("content-type", "application/json")], auth) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn bare_route() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slack/commands", listener.local_addr().unwrap());
    let app =
        axum::Router::new().route("/slack/commands", axum::routing::post(|| async { axum::http::StatusCode::OK }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn config(dir: &std::path::Path, api: &str) -> Settings {
    let path = shipday::playground::prepare(&dir.join("pg")).unwrap();
    std::fs::write(dir.join("pg/bot"), "xoxb-bench").unwrap();
    std::fs::write(dir.join("pg/secret"), SECRET).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let slack = format!(
        "\n[slack]\nteam_id = \"{TEAM}\"\nchannel = \"C0BENCH001\"\nmode = \"http\"\n\
         bot_token = {{ file = \"bot\" }}\nsigning_secret = {{ file = \"secret\" }}\napi_base_url = \"{api}\"\n"
    );
    std::fs::write(&path, format!("{text}{slack}")).unwrap();
    Settings::load(&path).unwrap()
}
