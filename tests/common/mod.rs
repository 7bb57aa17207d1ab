//! Shared test harness: real git repositories (made by the playground code), a real store in a
//! temp dir, and the engine driven the way an adapter drives it.
//!
//! This is the `testkit` crate (`crates/testkit`), a dev-dependency compiled once: each test
//! binary and bench says `use testkit as common;` and links the parts it uses. Unit tests in
//! `src/` must not use it (it depends on shipday itself).

pub mod django;
pub mod fake_discord;
pub mod fake_github;
pub mod fake_jira;
pub mod fake_slack;
pub mod kill_loop;
pub mod promotion_kill;
pub mod real_bot;
pub mod sshd;
pub mod wait;

pub use wait::{
    Gate, PATIENCE, announced, bounded, eventually, eventually_async, eventually_blocking, eventually_ok,
    eventually_some, text_containing, texts_so_far, within,
};

use shipday::app::{self, App};
use shipday::clock::{Clock, ManualClock};
use shipday::engine::{Invocation, ProgressUpdate, Reply, ReplyBody};
use shipday::settings::{Adapters, Settings};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The repository's root directory (this crate's manifest is in `crates/testkit`).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/testkit sits two levels below the repository root")
}

/// A file under `tests/fixtures/` in the repository.
pub fn fixture(path: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(path)
}

/// How long [`Bot::say`] waits for a command's reply and all its progress (a whole deploy).
pub const SAY_TIMEOUT: Duration = Duration::from_secs(120);

/// A playground-shaped world in a temp dir: origin.git, envs/{dev,staging,production}.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    #[expect(
        clippy::new_without_default,
        reason = "a world is made on disk (git repositories in a temp dir), not a default value"
    )]
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        shipday::playground::prepare(dir.path()).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The playground config with `dev`'s steps replaced by `dev_steps` (TOML array body).
    pub fn config_with_dev_steps(&self, dev_steps: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.path().join("shipday.toml")).unwrap();
        let start = text.find("[[environments]]\nname = \"dev\"").unwrap();
        let steps_at = start + text[start..].find("steps = [").unwrap();
        let end = steps_at + text[steps_at..].find("\n]\n").unwrap() + 3;
        let text = format!("{}steps = [\n{dev_steps}\n]\n{}", &text[..steps_at], &text[end..]);
        let path = self.path().join("custom.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A config whose `dev` runs over SSH to `sshd` (pinned with `known_hosts`), with
    /// `dev_steps` (TOML array body) and extra TOML for dev (e.g. `step_timeout = "2s"`).
    pub fn ssh_config(&self, sshd: &sshd::Sshd, known_hosts: &Path, dev_steps: &str, extra: &str) -> PathBuf {
        let base = self.config_with_dev_steps(dev_steps);
        let text = std::fs::read_to_string(&base).unwrap();
        let local = "transport = { kind = \"local\", dir = \"envs/dev\" }";
        assert!(text.contains(local));
        let ssh = format!(
            "{extra}\ntransport = {{ kind = \"ssh\", host = \"127.0.0.1\", port = {}, user = \"{}\", key_file = \"{}\", known_hosts = \"{}\", dir = \"{}\", keepalive_secs = 1 }}",
            sshd.port,
            sshd.user,
            sshd.client_key().display(),
            known_hosts.display(),
            self.path().join("envs/dev").display()
        );
        let path = self.path().join("ssh.toml");
        std::fs::write(&path, text.replacen(local, &ssh, 1)).unwrap();
        path
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("shipday.toml")
    }

    /// HEAD of an environment's checkout.
    pub fn head(&self, env: &str) -> String {
        git(&self.path().join("envs").join(env), &["rev-parse", "HEAD"])
    }

    /// Tip of a branch on the origin.
    pub fn tip(&self, branch: &str) -> String {
        git(&self.path().join("origin.git"), &["rev-parse", &format!("refs/heads/{branch}")])
    }

    /// Lines of the stand-in restart log.
    pub fn restarts(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("envs/restarts.log"))
            .map(|t| t.lines().map(String::from).collect())
            .unwrap_or_default()
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A running bot with a controllable clock.
pub struct Bot {
    pub app: App,
    pub clock: ManualClock,
    /// The config file's adapter sections (`[slack]`, `[discord]`, `[server]`), for the tests
    /// that start an adapter.
    pub adapters: Adapters,
}

impl Bot {
    pub fn start(config: &Path) -> Self {
        Self::try_start(config).unwrap()
    }

    pub fn try_start(config: &Path) -> anyhow::Result<Self> {
        Self::try_start_at(config, chrono::Utc::now())
    }

    /// Starts the bot with its clock at `at` from the first moment (so what it does at start-up,
    /// like reading each host's HEAD, is stamped `at` too).
    pub fn start_at(config: &Path, at: chrono::DateTime<chrono::Utc>) -> Self {
        Self::try_start_at(config, at).unwrap()
    }

    fn try_start_at(config: &Path, at: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Self> {
        let clock = ManualClock::new(at);
        let Settings { config, adapters } = Settings::load(config)?;
        let app = app::start(config, Arc::new(clock.clone()) as Arc<dyn Clock>)?;
        Ok(Self { app, clock, adapters })
    }

    /// Starts the bot on a store that a bot this test just dropped may still hold: sled frees
    /// its file lock a moment after the last handle drops, so this retries until the store
    /// unlocks (panicking with the last error after [`PATIENCE`]).
    pub async fn restart(config: &Path) -> Self {
        eventually_ok(PATIENCE, "the store to unlock for a restart", || Self::try_start(config)).await
    }

    /// Sends a console command as `user` and waits for the reply and all its progress, under
    /// [`SAY_TIMEOUT`].
    pub async fn say(&self, user: &str, text: &str) -> (Reply, Vec<ProgressUpdate>) {
        bounded(SAY_TIMEOUT, &format!("{user}'s {text:?} (its reply and progress)"), async {
            let (reply, mut updates) = self.send(user, text).await;
            let mut progress = Vec::new();
            while let Some(update) = updates.recv().await {
                progress.push(update);
            }
            (reply, progress)
        })
        .await
    }

    /// Says a `/deploy` (or another command that deploys) as `user`, checks it was accepted and
    /// succeeded, and returns the finished record.
    pub async fn deployed(&self, user: &str, text: &str) -> shipday::release::deploy::DeployRecord {
        let (reply, progress) = self.say(user, text).await;
        assert!(matches!(reply.body, ReplyBody::Deploy(_)), "{text}: {reply:?}");
        let record = progress.last().unwrap_or_else(|| panic!("{text}: no progress")).record.clone();
        assert_eq!(record.outcome, shipday::release::deploy::Outcome::Succeeded, "{text}: {record:?}");
        record
    }

    /// Sends a command; progress can be followed on the returned receiver.
    pub async fn send(&self, user: &str, text: &str) -> (Reply, mpsc::UnboundedReceiver<ProgressUpdate>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let reply = self
            .app
            .engine
            .submit(Invocation {
                platform: "console".into(),
                user_id: user.into(),
                text: text.into(),
                progress: Some(tx),
                platform_roles: Vec::new(),
            })
            .await;
        (reply, rx)
    }

    /// The reply as the console shows it.
    pub fn show(&self, reply: &Reply) -> String {
        shipday::chat::text::reply(reply, self.app.config.timezone)
    }
}

/// The GitHub webhook route wired to `bot`'s engine the way `serve` wires it
/// (`serve::forward_github_events`), on a free port, for the repository of GitHub's sample
/// payloads, checking signatures with `secret` (written to `dir/webhook-secret`). A delivery
/// waits up to 60 s for the engine, for a busy machine. Returns the route's URL.
pub async fn github_webhook(bot: &Bot, dir: &Path, secret: &str) -> String {
    use shipday::webhook::github::{WEBHOOK_PATH, WebhookState, routes};
    std::fs::write(dir.join("webhook-secret"), secret).unwrap();
    let config = shipday::clients::github::GitHubConfig {
        api_base_url: "https://api.github.com".into(),
        owner: "Codertocat".into(),
        repo: "Hello-World".into(),
        token: shipday::config::SecretRef { env: Some("GITHUB_TOKEN".into()), file: None },
        webhook_secret: Some(shipday::config::SecretRef { env: None, file: Some("webhook-secret".into()) }),
        listen: None,
    };
    let (sender, inbox) = mpsc::unbounded_channel();
    let clock: Arc<dyn Clock> = Arc::new(bot.clock.clone());
    let state = WebhookState::new(&config, dir, bot.app.engine.clone(), clock, sender)
        .unwrap()
        .with_handoff_timeout(Duration::from_secs(60));
    tokio::spawn(shipday::serve::forward_github_events(&bot.app, inbox));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{WEBHOOK_PATH}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, routes(state)).await.unwrap() });
    url
}

/// Delivers a GitHub webhook `event` to `url`, signed with `secret` as GitHub signs it;
/// returns the status code.
pub async fn deliver_github(url: &str, event: &str, delivery: &str, body: &[u8], secret: &str) -> u16 {
    let signature = shipday::webhook::github::signature::sign(&shipday::config::Secret::new(secret), body);
    reqwest::Client::new()
        .post(url)
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", signature)
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Opens the store in `dir` once the bot that held it has let go (see [`Bot::restart`]).
pub async fn reopen_store(dir: &Path) -> (shipday::store::Store, shipday::store::Opened) {
    eventually_ok(PATIENCE, "the store to unlock", || shipday::store::Store::open(dir)).await
}

/// The refusal text, or a panic naming what came instead.
pub fn refused(reply: &Reply) -> &str {
    match &reply.body {
        ReplyBody::Refused(text) => text,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A tiny HTTP server on 127.0.0.1 that answers every request with `status`; returns its URL.
pub async fn http_server(status: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

/// Everything this test binary logs (at TRACE), through the redacting writer the binary uses,
/// to prove secrets never reach the logs.
pub fn captured_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(shipday::redact::LogWriter::new(move || LogWriter(writer.clone())))
            .init();
        buffer
    })
    .clone()
}

struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A real merge commit of `head` into the origin's branch whose tip is `base_tip` (in a clone
/// kept under `dir`), pushed; returns its SHA. What GitHub does when it merges, for real.
pub fn real_merge(dir: &Path, base_tip: &str, head: &str, message: &str) -> String {
    let seed = dir.join("merger");
    if !seed.exists() {
        git(dir, &["clone", "--quiet", "origin.git", "merger"]);
    }
    git(&seed, &["fetch", "--quiet", "origin"]);
    let refs = git(&seed, &["for-each-ref", "--format=%(objectname) %(refname:short)", "refs/remotes/origin"]);
    let branch = refs
        .lines()
        .find_map(|l| {
            l.split_once(' ')
                .filter(|(sha, _)| *sha == base_tip)
                .map(|(_, r)| r.trim_start_matches("origin/").to_owned())
        })
        .expect("the base tip is a branch of the origin");
    git(&seed, &["checkout", "--quiet", "--detach", base_tip]);
    git(
        &seed,
        &[
            "-c",
            "user.name=GitHub",
            "-c",
            "user.email=noreply@github.com",
            "merge",
            "--quiet",
            "--no-ff",
            "-m",
            message,
            head,
        ],
    );
    let merged = git(&seed, &["rev-parse", "HEAD"]);
    git(&seed, &["push", "--quiet", "origin", &format!("HEAD:refs/heads/{branch}")]);
    merged
}

/// Makes the fake GitHub's history mirror the world's origin (master, staging on it, dev on
/// staging), and every merge it makes a real merge commit in the origin.
pub fn mirror_origin(world: &World, github: &fake_github::FakeGitHub) {
    use shipday::release::gitref::Sha;
    let sha = |branch: &str| Sha::parse(&world.tip(branch)).unwrap();
    github.set_branch("master", &sha("master"));
    github.set_branch("staging", &sha("master"));
    github.add_commit_with_sha("staging", &sha("staging"), "SHOP-1 Add the cart page", "grace-gh", &["app.py"]);
    github.set_branch("dev", &sha("staging"));
    github.add_commit_with_sha("dev", &sha("dev"), "SHOP-2 Add search box", "linus-gh", &["app.py"]);
    let dir = world.path().to_owned();
    github.set_merge_hook(move |base, head, message| {
        Sha::parse(&real_merge(&dir, base.as_str(), head.as_str(), message)).unwrap()
    });
}

/// A pending staging → production promotion request for `staging_sha`, asked by Linus, needing
/// two leads: what the adapter tests post and vote on.
pub fn pending_request(
    id: u64,
    staging_sha: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> shipday::release::approvals::PromotionRequest {
    shipday::release::approvals::PromotionRequest {
        id,
        from: "staging".into(),
        to: "production".into(),
        sha: shipday::release::gitref::Sha::parse(staging_sha).unwrap(),
        target_sha: None,
        requester: "linus".into(),
        requester_name: "Linus".into(),
        created_at: now,
        expires_at: now + chrono::Duration::hours(24),
        quorum: 2,
        votes: Default::default(),
        emergency: None,
        notes: "Changes: 1 commit(s), 0 pull request(s).".into(),
        state: shipday::release::approvals::RequestState::Pending,
        ci_override: None,
        links: Default::default(),
    }
}

/// Routes served the way `shipday serve` serves them: on the one hardened listener, here on
/// 127.0.0.1. The listener and its connections stop when this is dropped.
pub struct Served {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Served {
    /// Serves `routes` with the production limits.
    pub async fn start(routes: axum::Router) -> Self {
        Self::with_limits(routes, shipday::listener::Limits::default()).await
    }

    /// Serves `routes` with `limits` (tests shorten the header timeout).
    pub async fn with_limits(routes: axum::Router, limits: shipday::listener::Limits) -> Self {
        let listener = shipday::listener::Listener::bind("127.0.0.1:0".parse().unwrap(), limits).await.unwrap();
        let addr = listener.local_addr().unwrap();
        Self { addr, task: tokio::spawn(listener.serve(routes)) }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}
