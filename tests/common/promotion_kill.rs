//! The promotion kill loop (issue 13): the real `shipday serve` binary, production over SSH to a
//! real sshd, GitHub and Slack faked. Each round makes a fresh world whose staging is deployed,
//! then Ada asks `/promote staging production --emergency …` and Bob approves with a real
//! `reaction_added` event: approve → merge → deploy. The binary is killed at a named crash
//! point (`SHIPDAY_CRASHPOINT`) or by SIGKILL at a random moment, restarted (sometimes killed
//! and restarted again), and the round's invariants are checked:
//!
//! - no step ran twice: every production step logs a line on the host before it acts;
//! - no approval lost or invented: Bob's acknowledged vote is there, and only his;
//! - no promotion stuck: it reaches a stated end (shipped, or failed saying what to do next),
//!   and its one Slack message is edited to say so.
//!
//! Shared by `tests/promotion_kill.rs` (CI) and `benches/promotion_kill.rs` (200 rounds).

use super::fake_github::{self, FakeGitHub, OWNER, REPO};
use super::fake_slack::{self, BOT_USER, FakeSlack, contract, contract_text};
use super::sshd::Sshd;
use super::{Bot, World};
use shipday::chat::slack::verify::sign;
use shipday::config::Secret;
use shipday::release::approvals::RequestState;
use shipday::release::deploy::{Outcome, Trigger};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const TEAM: &str = "T123ABC456";
const TEAM_CHANNEL: &str = "C0TEAM0001";
const CHANNEL: &str = "C0DEPLOYS1";
const SECRET: &str = "kill-loop-signing-secret";
const ADA: &str = "U0ADA00001";
const BOB: &str = "U0BOB00001";
/// How long a promotion may take to reach its end after the last restart.
const END_WITHIN: Duration = Duration::from_secs(30);

/// What the rounds counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub rounds: usize,
    pub kills: usize,
    /// A production step that ran twice, or a second production deploy for one promotion.
    pub double_executions: usize,
    /// Bob's acknowledged approval missing from the request.
    pub lost_approvals: usize,
    /// A vote nobody cast.
    pub invented_approvals: usize,
    /// A promotion that did not reach a stated end (or whose message does not show it).
    pub stuck_promotions: usize,
    /// A promotion posted more than once on Slack.
    pub double_messages: usize,
    /// Ends reached: shipped, or failed with what to do next.
    pub shipped: usize,
    pub failed_with_next_steps: usize,
}

impl Counts {
    /// The line the test and the benchmark print.
    pub fn line(&self) -> String {
        format!(
            "rounds={} kills={} double_executions={} lost_approvals={} invented_approvals={} stuck_promotions={} \
             double_messages={} shipped={} failed_with_next_steps={}",
            self.rounds,
            self.kills,
            self.double_executions,
            self.lost_approvals,
            self.invented_approvals,
            self.stuck_promotions,
            self.double_messages,
            self.shipped,
            self.failed_with_next_steps
        )
    }

    /// Whether every invariant held.
    pub fn clean(&self) -> bool {
        self.double_executions == 0
            && self.lost_approvals == 0
            && self.invented_approvals == 0
            && self.stuck_promotions == 0
            && self.double_messages == 0
    }
}

/// Where a round kills the binary.
#[derive(Debug, Clone, Copy)]
pub enum Kill {
    /// The binary aborts itself at this crash point.
    At(&'static str),
    /// SIGKILL this long after Bob's approval was acknowledged; `again` kills the restarted
    /// binary once more after that long.
    After { delay: Duration, again: Option<Duration> },
}

/// A small deterministic generator (xorshift), so a failing seed can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn millis(&mut self, below: u64) -> Duration {
        Duration::from_millis(self.next_u64() % below)
    }
}

/// The kill for round `i`: each crash point in turn, alternating with random moments.
pub fn plan(i: usize, rng: &mut Rng) -> Kill {
    let points = shipday::crashpoint::PROMOTION_POINTS;
    if i.is_multiple_of(2) {
        Kill::At(points[(i / 2) % points.len()])
    } else {
        let delay = rng.millis(2500);
        let again = rng.next_u64().is_multiple_of(2).then(|| rng.millis(1500));
        Kill::After { delay, again }
    }
}

/// The shared sshd (one for every round) and the binary under test.
pub struct Harness {
    pub sshd: Sshd,
    pub known_hosts: PathBuf,
    pub binary: PathBuf,
}

impl Harness {
    pub fn new(binary: &str) -> Self {
        let sshd = Sshd::start();
        let known_hosts = sshd.pin();
        Self { sshd, known_hosts, binary: PathBuf::from(binary) }
    }

    /// Runs one round with `kill`, adding what it saw to `counts`. `Err` explains a round that
    /// could not even be set up (not an invariant).
    pub async fn round(&self, kill: Kill, counts: &mut Counts) -> Result<RoundEnd, String> {
        let world = World::new();
        let github = FakeGitHub::start().await;
        super::mirror_origin(&world, &github);
        let slack = FakeSlack::start(TEAM).await;
        let port = free_port();
        let config = self.config(&world, &github, &slack, port);
        {
            let bot = Bot::start(&config);
            let (_, progress) = bot.say("ada", "/deploy staging staging").await;
            let outcome = progress.last().map(|u| u.record.outcome.clone());
            if outcome != Some(Outcome::Succeeded) {
                return Err(format!("staging did not deploy: {outcome:?}"));
            }
        }
        let log = world.path().join("serve.log");
        let crashpoint = match kill {
            Kill::At(point) => Some(point),
            Kill::After { .. } => None,
        };
        let mut child = self.serve(&config, &log, crashpoint, port).await?;
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}");
        let form = command_form(&slack, ADA, "/promote", "staging production --emergency \"kill loop\"", "kill-1");
        let status =
            signed(&client, &format!("{url}/slack/commands"), &form, "application/x-www-form-urlencoded").await;
        if status != Some(200) {
            return Err(format!("/promote was not acknowledged: {status:?}"));
        }
        let ts = wait_until(END_WITHIN, || {
            slack.messages(TEAM_CHANNEL).into_iter().find(|m| m.text.contains("Promotion #1:")).map(|m| m.ts)
        })
        .await
        .ok_or_else(|| format!("the request was never posted; log: {}", read(&log)))?;
        let reaction = reaction_added(BOB, &ts, "EvKILLBOB01");
        let mut acked =
            signed(&client, &format!("{url}/slack/events"), &reaction, "application/json").await == Some(200);

        // The kill.
        match kill {
            Kill::At(_) => {
                // The binary aborts itself at the point; if the path never reaches it (a
                // merge that failed, say), it is killed once the round has gone quiet.
                if wait_exit(&mut child, Duration::from_secs(15)).await.is_none() {
                    let _ = child.kill().await;
                }
                counts.kills += 1;
            }
            Kill::After { delay, .. } => {
                // A random moment: the kill comes `delay` in, unless the binary ended first.
                let _ = wait_exit(&mut child, delay).await;
                let _ = child.kill().await;
                counts.kills += 1;
            }
        }
        let mut child = self.serve(&config, &log, None, port).await?;
        if let Kill::After { again: Some(delay), .. } = kill {
            if !acked {
                acked = resend(&client, &url, &reaction).await;
            }
            let _ = wait_exit(&mut child, delay).await;
            let _ = child.kill().await;
            counts.kills += 1;
            child = self.serve(&config, &log, None, port).await?;
        }
        // Slack delivers an unacknowledged event again, with the same id.
        if !acked {
            acked = resend(&client, &url, &reaction).await;
        }

        // A stated end, shown on the promotion's own message.
        let shown = wait_until(END_WITHIN, || {
            slack
                .messages(TEAM_CHANNEL)
                .into_iter()
                .find(|m| m.text.contains("Promotion #1:") && is_end(&m.text))
                .map(|m| m.text)
        })
        .await;
        let _ = child.kill().await;
        let _ = child.wait().await;

        // The invariants, from the store and the host.
        let store = open_store(&world.path().join("state")).await?;
        let request = store.promotion(1).map_err(|e| format!("{e:#}"))?.ok_or("no promotion #1 in the store")?;
        counts.rounds += 1;
        if acked && !request.votes.contains_key("bob") {
            counts.lost_approvals += 1;
        }
        if request.votes.keys().any(|voter| voter != "bob") {
            counts.invented_approvals += 1;
        }
        let deploys = store.history(Some("production"), 50).map_err(|e| format!("{e:#}"))?;
        let promotion_deploys = deploys.iter().filter(|d| d.trigger == Trigger::Promotion).count();
        let host_steps = host_steps(&world);
        let mut seen = std::collections::HashSet::new();
        let repeated = host_steps.iter().any(|line| !seen.insert(line.clone()));
        if promotion_deploys > 1 || repeated {
            counts.double_executions += 1;
        }
        let posts = slack
            .calls("chat.postMessage")
            .into_iter()
            .filter(|c| c.body.to_string().contains("Promotion #1:"))
            .count();
        if posts > 1 {
            counts.double_messages += 1;
        }
        let end = match &request.state {
            RequestState::Done { .. } if shown.is_some() => {
                counts.shipped += 1;
                RoundEnd::Shipped
            }
            RequestState::Failed { why } if shown.is_some() && why.contains("/status production --live") => {
                counts.failed_with_next_steps += 1;
                RoundEnd::FailedWithNextSteps
            }
            _ => {
                counts.stuck_promotions += 1;
                RoundEnd::Stuck
            }
        };
        if end == RoundEnd::Stuck || promotion_deploys > 1 || repeated || posts > 1 {
            eprintln!(
                "kill loop: round with {kill:?} broke an invariant: state {:?}, shown {shown:?}, {promotion_deploys} \
                 promotion deploy(s), host steps {host_steps:?}, {posts} post(s); messages {:#?}; log:\n{}",
                request.state,
                slack.messages(TEAM_CHANNEL),
                read(&log)
            );
        }
        Ok(end)
    }

    fn config(&self, world: &World, github: &FakeGitHub, slack: &FakeSlack, port: u16) -> PathBuf {
        let dir = world.path();
        std::fs::write(dir.join("bot-token"), fake_slack::BOT_TOKEN).unwrap();
        std::fs::write(dir.join("signing-secret"), SECRET).unwrap();
        std::fs::write(dir.join("github-token"), format!("{}\n", fake_github::TOKEN)).unwrap();
        let text = std::fs::read_to_string(world.config_path()).unwrap();
        let local = "transport = { kind = \"local\", dir = \"envs/production\" }";
        let (head, _) = text.split_once(local).expect("the playground's production transport");
        let head = head.replacen("name = \"Ada\"", &format!("name = \"Ada\"\nslack = \"{ADA}\""), 1);
        let production = self.sshd.user.clone();
        let ssh = format!(
            "transport = {{ kind = \"ssh\", host = \"127.0.0.1\", port = {}, user = \"{production}\", key_file = \"{}\", \
             known_hosts = \"{}\", dir = \"{}\", keepalive_secs = 1 }}",
            self.sshd.port,
            self.sshd.client_key().display(),
            self.known_hosts.display(),
            dir.join("envs/production").display()
        );
        // Every step logs on the host before it acts: a line seen twice is a step run twice.
        let steps = "steps = [\n\
             { name = \"fetch\", run = \"echo fetch {{sha}} >> ../host-steps.log && git fetch --all --prune --quiet\" },\n\
             { name = \"checkout\", run = \"echo checkout {{sha}} >> ../host-steps.log && git checkout --quiet --detach {{sha}}\" },\n\
             { name = \"restart app\", run = \"echo restart {{sha}} >> ../host-steps.log\" },\n]\n";
        let text = format!(
            "{head}{ssh}\n{steps}\n[[people]]\nid = \"bob\"\nname = \"Bob\"\nroles = [\"lead\"]\nslack = \"{BOB}\"\n\n\
             [slack]\nteam_id = \"{TEAM}\"\nchannel = \"{TEAM_CHANNEL}\"\nbot_token = {{ file = \"bot-token\" }}\n\
             mode = \"http\"\nsigning_secret = {{ file = \"signing-secret\" }}\napi_base_url = \"{}\"\n\n\
             [github]\napi_base_url = \"{}\"\nowner = \"{OWNER}\"\nrepo = \"{REPO}\"\ntoken = {{ file = \"github-token\" }}\n\n\
             [server]\nlisten = \"127.0.0.1:{port}\"\n",
            slack.api_url(),
            github.url
        );
        let path = dir.join("kill-loop.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts `shipday serve` and waits until it listens (a store still locked by the process
    /// just killed makes it exit: it is started again).
    async fn serve(&self, config: &Path, log: &Path, crashpoint: Option<&str>, port: u16) -> Result<Child, String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        // Starts are paced: a store still locked by the process just killed is retried.
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        loop {
            pace.tick().await;
            let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
            let mut command = Command::new(&self.binary);
            command
                .args(["serve", "--config"])
                .arg(config)
                .env_remove("SHIPDAY_CONFIG")
                .env_remove(shipday::crashpoint::VARIABLE)
                .env("SHIPDAY_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::from(file))
                .kill_on_drop(true);
            if let Some(point) = crashpoint {
                command.env(shipday::crashpoint::VARIABLE, point);
            }
            let mut child = command.spawn().map_err(|e| format!("cannot start the binary: {e}"))?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let listening = super::wait::within(left, || {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    Some(true)
                } else {
                    matches!(child.try_wait(), Ok(Some(_))).then_some(false)
                }
            })
            .await;
            match listening {
                Some(true) => return Ok(child),
                None => {
                    let _ = child.kill().await;
                    return Err(format!("the binary did not start listening; log: {}", read(log)));
                }
                Some(false) if tokio::time::Instant::now() > deadline => {
                    return Err(format!("the binary kept exiting at start; log: {}", read(log)));
                }
                Some(false) => {}
            }
        }
    }
}

/// How a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundEnd {
    Shipped,
    FailedWithNextSteps,
    Stuck,
}

fn is_end(text: &str) -> bool {
    // Slack names `/status` `/ship-status`.
    text.contains(": shipped (deploy #") || (text.contains("❌ failed:") && text.contains("status production --live"))
}

fn host_steps(world: &World) -> Vec<String> {
    std::fs::read_to_string(world.path().join("envs/host-steps.log"))
        .map(|t| t.lines().map(String::from).collect())
        .unwrap_or_default()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    tokio::time::timeout(within, child.wait()).await.ok().and_then(Result::ok)
}

/// Polls `check` until it gives something, or `within` passes.
async fn wait_until<T>(within: Duration, check: impl FnMut() -> Option<T>) -> Option<T> {
    super::wait::within(within, check).await
}

async fn open_store(dir: &Path) -> Result<shipday::store::Store, String> {
    let mut last = String::new();
    let opened = super::wait::within(Duration::from_secs(10), || {
        shipday::store::Store::open(dir).map_err(|e| last = format!("{e:#}")).ok().map(|(store, _)| store)
    })
    .await;
    opened.ok_or_else(|| format!("cannot open the store: {last}"))
}

/// POSTs `body`, signed now; the HTTP status, or `None` if the binary did not answer.
async fn signed(client: &reqwest::Client, url: &str, body: &str, content_type: &str) -> Option<u16> {
    let ts = chrono::Utc::now().timestamp().to_string();
    let signature = sign(&Secret::new(SECRET), &ts, body.as_bytes());
    let response = client
        .post(url)
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", signature)
        .body(body.to_owned())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

/// Delivers the event again until it is acknowledged, as Slack retries.
async fn resend(client: &reqwest::Client, url: &str, event: &str) -> bool {
    // Slack's retries, paced (a rate being simulated, not a wait for something to happen).
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..50 {
        pace.tick().await;
        if signed(client, &format!("{url}/slack/events"), event, "application/json").await == Some(200) {
            return true;
        }
    }
    false
}

fn reaction_added(user: &str, ts: &str, event_id: &str) -> String {
    let mut event = contract("event-reaction_added.json");
    event["event_id"] = serde_json::json!(event_id);
    event["event"]["user"] = serde_json::json!(user);
    event["event"]["reaction"] = serde_json::json!("white_check_mark");
    event["event"]["item"]["channel"] = serde_json::json!(TEAM_CHANNEL);
    event["event"]["item"]["ts"] = serde_json::json!(ts);
    event["event"]["item_user"] = serde_json::json!(BOT_USER);
    event.to_string()
}

fn command_form(fake: &FakeSlack, user: &str, command: &str, text: &str, trigger: &str) -> String {
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(&contract_text("slash-command.form")).unwrap();
    for (key, value) in pairs.iter_mut() {
        match key.as_str() {
            "response_url" => *value = fake.response_url(trigger),
            "team_id" => *value = TEAM.into(),
            "channel_id" => *value = CHANNEL.into(),
            "user_id" => *value = user.into(),
            "command" => *value = command.into(),
            "text" => *value = text.into(),
            "trigger_id" => *value = trigger.into(),
            _ => {}
        }
    }
    serde_urlencoded::to_string(pairs).unwrap()
}
