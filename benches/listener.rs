//! Listener benchmark (`cargo bench --bench listener`): the one hardened listener, with the
//! real Slack and GitHub routes, under attack while the team uses it.
//!
//! - 1,000 slow clients each send a request's headers one byte per second (slow loris);
//! - 40 unsigned 24 MB bodies are sent to the GitHub webhook route;
//! - meanwhile a signed Slack `/status` is sent every 20 ms for 6 s.
//!
//! Prints the ack p50/p99 of the signed commands (Slack wants 3 s), peak RSS against idle (this
//! process holds the server and the clients, from /proc/self/status), how many slow connections
//! were closed and after how long, and what the oversized bodies got. Loopback only, bounded in
//! count and time.

use shipday::chat::slack::SlackAdapter;
use shipday::chat::slack::verify::sign;
use shipday::clock::{Clock, SystemClock};
use shipday::config::Secret;
use shipday::listener::{Limits, Listener, raise_descriptor_limit};
use shipday::settings::Settings;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SLOW_CLIENTS: usize = 1_000;
const OVERSIZED: usize = 40;
const OVERSIZED_BYTES: usize = 24 * 1024 * 1024;
const COMMAND_EVERY: Duration = Duration::from_millis(20);
const COMMANDS_FOR: Duration = Duration::from_secs(6);
const TEAM: &str = "T0BENCH001";
const SECRET: &str = "bench-signing-secret";
const WEBHOOK_SECRET: &str = "bench-webhook-secret";

fn main() {
    let descriptors = raise_descriptor_limit();
    let needed = (2 * SLOW_CLIENTS + 2 * OVERSIZED + 512) as u64;
    if descriptors < needed {
        println!("descriptor limit {descriptors} is below the {needed} this benchmark needs; raise the hard limit");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let settings = config(dir.path(), &fake_web_api().await);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = shipday::app::start(settings.config, clock.clone()).unwrap();
    let slack = SlackAdapter::start(&app, settings.adapters.slack.as_ref().unwrap(), clock.clone()).await.unwrap();
    let (webhook, forwarding) = shipday::serve::github_webhook(&app, clock).unwrap();
    tokio::spawn(forwarding);
    let routes = slack.routes().unwrap().merge(webhook);
    let limits = Limits::default();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), limits.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cap = listener.limits().max_connections;
    tokio::spawn(listener.serve(routes));
    let client = reqwest::Client::builder().pool_max_idle_per_host(32).build().unwrap();
    let url = format!("http://{addr}/slack/commands");

    // Warm up, then take the idle figure.
    for i in 0..50 {
        command(&client, &url, &format!("warm.{i}")).await;
    }
    let idle = memory();
    println!(
        "listener: header read timeout {:?}, body read timeout {:?}, max connections {cap}",
        limits.header_read_timeout,
        shipday::listener::BODY_READ_TIMEOUT
    );
    println!("idle: VmRSS {:.1} MB", idle.rss_mb);

    // The attack.
    let started = Instant::now();
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..SLOW_CLIENTS {
        slow.spawn(slow_client(addr));
    }
    let mut oversized = tokio::task::JoinSet::new();
    for i in 0..OVERSIZED {
        oversized.spawn(oversized_body(addr, i));
    }
    // The team, meanwhile.
    let mut commands = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(COMMAND_EVERY);
    let mut sent = 0;
    while started.elapsed() < COMMANDS_FOR {
        tick.tick().await;
        let client = client.clone();
        let url = url.clone();
        sent += 1;
        commands.spawn(async move { command(&client, &url, &format!("run.{sent}")).await });
    }
    let mut acks = Vec::new();
    let mut failed = 0;
    while let Some(done) = commands.join_next().await {
        match done.unwrap() {
            Some(took) => acks.push(took),
            None => failed += 1,
        }
    }
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(done) = oversized.join_next().await {
        *statuses.entry(done.unwrap()).or_insert(0) += 1;
    }
    let mut closed = Vec::new();
    let mut still_open = 0;
    while let Some(done) = slow.join_next().await {
        match done.unwrap() {
            Some(after) => closed.push(after),
            None => still_open += 1,
        }
    }
    let peak = memory();

    acks.sort();
    closed.sort();
    println!(
        "signed /status acks: {} sent, {} answered 200, {failed} failed; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        sent,
        acks.len(),
        ms(percentile(&acks, 0.5)),
        ms(percentile(&acks, 0.99)),
        ms(acks.last().copied().unwrap_or_default())
    );
    println!(
        "peak RSS: VmHWM {:.1} MB against idle VmRSS {:.1} MB (+{:.1} MB); VmRSS after the attack {:.1} MB",
        peak.hwm_mb,
        idle.rss_mb,
        peak.hwm_mb - idle.rss_mb,
        peak.rss_mb
    );
    println!(
        "slow clients: {} of {SLOW_CLIENTS} closed by the server (min {:.2} s, p50 {:.2} s, max {:.2} s), {still_open} still open after 30 s",
        closed.len(),
        percentile(&closed, 0.0).as_secs_f64(),
        percentile(&closed, 0.5).as_secs_f64(),
        closed.last().copied().unwrap_or_default().as_secs_f64()
    );
    let statuses: Vec<String> = statuses.iter().map(|(status, n)| format!("{n} × {status}")).collect();
    println!("oversized unsigned {} MB bodies to /github/webhook: {}", OVERSIZED_BYTES >> 20, statuses.join(", "));
    println!("total wall time {:.1} s", started.elapsed().as_secs_f64());
}

/// Sends one signed `/status`; returns the time to its 200, or `None` if it failed.
async fn command(client: &reqwest::Client, url: &str, trigger: &str) -> Option<Duration> {
    let body = format!(
        "token=x&team_id={TEAM}&team_domain=bench&channel_id=C0BENCH001&channel_name=bench&user_id=U0BENCH001&user_name=bench&command=%2Fstatus&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F{TEAM}%2F1%2Fx&trigger_id={trigger}"
    );
    let ts = chrono::Utc::now().timestamp().to_string();
    let signature = sign(&Secret::new(SECRET), &ts, body.as_bytes());
    let start = Instant::now();
    let response = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", signature)
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()?;
    let ok = response.status() == 200;
    response.bytes().await.ok()?;
    ok.then(|| start.elapsed())
}

/// Sends a request's headers one byte per second; returns how long until the server closed
/// the connection, or `None` if it was still open after 30 s.
async fn slow_client(addr: SocketAddr) -> Option<Duration> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let writing = tokio::spawn(async move {
        let headers = b"POST /slack/commands HTTP/1.1\r\nHost: shipday\r\nX-Slow: ";
        for byte in headers.iter().cycle() {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok();
    writing.abort();
    closed
}

/// Posts an unsigned 24 MB body to the webhook route, really sending it (64 KiB at a time);
/// returns the status line's code, or what happened instead.
async fn oversized_body(addr: SocketAddr, i: usize) -> String {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else { return "no connection".into() };
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /github/webhook HTTP/1.1\r\nHost: shipday\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: big-{i}\r\n\
         Content-Type: application/json\r\nContent-Length: {OVERSIZED_BYTES}\r\n\r\n"
    );
    let sending = tokio::spawn(async move {
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..OVERSIZED_BYTES / chunk.len() {
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    sending.abort();
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).map(|code| format!("HTTP {code}")).unwrap_or_else(|| "closed unanswered".into())
}

struct Memory {
    rss_mb: f64,
    hwm_mb: f64,
}

/// VmRSS and VmHWM (peak) of this process, which holds the server and every client.
fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    Memory { rss_mb: field("VmRSS:"), hwm_mb: field("VmHWM:") }
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
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

fn config(dir: &std::path::Path, api: &str) -> Settings {
    let path = shipday::playground::prepare(&dir.join("pg")).unwrap();
    std::fs::write(dir.join("pg/bot"), "xoxb-bench").unwrap();
    std::fs::write(dir.join("pg/secret"), SECRET).unwrap();
    std::fs::write(dir.join("pg/github-token"), "ghp_bench").unwrap();
    std::fs::write(dir.join("pg/webhook-secret"), WEBHOOK_SECRET).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let extra = format!(
        "\n[slack]\nteam_id = \"{TEAM}\"\nchannel = \"C0BENCH001\"\nmode = \"http\"\n\
         bot_token = {{ file = \"bot\" }}\nsigning_secret = {{ file = \"secret\" }}\napi_base_url = \"{api}\"\n\
         \n[github]\nowner = \"bench\"\nrepo = \"app\"\ntoken = {{ file = \"github-token\" }}\n\
         webhook_secret = {{ file = \"webhook-secret\" }}\napi_base_url = \"http://127.0.0.1:9\"\n"
    );
    std::fs::write(&path, format!("{text}{extra}")).unwrap();
    Settings::load(&path).unwrap()
}
