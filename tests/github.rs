//! The GitHub layer: the real octocrab client against a stateful fake GitHub, and the webhook
//! route over HTTP with GitHub's own payloads and signature scheme.

use testkit as common;

use common::fake_github::{FakeGitHub, FakeProtection, TOKEN};
use shipday::app::App;
use shipday::clients::github::{
    CommitInfo, DeploymentState, FastForward, GitHubClient, GitHubConfig, MergeOutcome, Protection, PullSummary,
};
use shipday::clock::{Clock, ManualClock};
use shipday::config::{Config, Secret, SecretRef};
use shipday::listener::{BODY_READ_TIMEOUT, Limits};
use shipday::release::gitref::Sha;
use shipday::store::Store;
use shipday::webhook::github::{GitHubEvent, WEBHOOK_PATH, WebhookState, routes, signature};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

// ---------------------------------------------------------------------------------------------
// The client

#[bounded::test]
async fn shipday_resolves_a_branch_to_its_tip_and_names_a_missing_one() {
    let github = FakeGitHub::start().await;
    let tip = github.add_commit("dev", "Add the basket", "grace", &["shop/basket.py"]);
    let client = github.client();
    assert_eq!(client.branch_sha("dev").await.unwrap(), tip);
    let err = format!("{:#}", client.branch_sha("nope").await.unwrap_err());
    assert!(err.contains("read branch `nope`") && err.contains("HTTP 404"), "{err}");
    let err = format!("{:#}", client.branch_sha("a;b").await.unwrap_err());
    assert!(err.contains("not a valid branch name"), "{err}");
}

#[bounded::test]
async fn a_comparison_lists_the_commits_files_and_counts_for_the_release_notes() {
    let github = FakeGitHub::start().await;
    let staging = github.branch("staging").unwrap();
    github.create_branch("feature/login", "dev");
    let first = github.add_commit("feature/login", "SHOP-12 Login form", "grace", &["shop/login.py"]);
    let second = github.add_commit(
        "feature/login",
        "SHOP-12 Remember me",
        "grace",
        &["shop/login.py", "shop/migrations/0007_remember.py"],
    );
    let merge = github.merge_pr(7, "feature/login", "dev", "SHOP-12 Log in", "grace", "Closes SHOP-12");
    let client = github.client();

    let comparison = client.compare(&staging, &merge).await.unwrap();
    assert_eq!((comparison.status.as_str(), comparison.ahead_by, comparison.behind_by), ("ahead", 3, 0));
    assert_eq!(
        comparison.commits,
        vec![
            CommitInfo { sha: first, message: "SHOP-12 Login form".into(), author: Some("grace".into()) },
            CommitInfo { sha: second, message: "SHOP-12 Remember me".into(), author: Some("grace".into()) },
            CommitInfo {
                sha: merge.clone(),
                message: "Merge pull request #7 from acme/feature/login\n\nSHOP-12 Log in".into(),
                author: Some("grace".into()),
            },
        ]
    );
    assert_eq!(comparison.files, ["shop/login.py", "shop/migrations/0007_remember.py"]);

    let backwards = client.compare(&merge, &staging).await.unwrap();
    assert_eq!((backwards.status.as_str(), backwards.ahead_by, backwards.behind_by), ("behind", 0, 3));
    assert!(backwards.commits.is_empty());
    let hotfix = github.add_commit("staging", "Hotfix", "ada", &["shop/pay.py"]);
    let diverged = client.compare(&hotfix, &merge).await.unwrap();
    assert_eq!((diverged.status.as_str(), diverged.ahead_by, diverged.behind_by), ("diverged", 3, 1));
    let same = client.compare(&merge, &merge).await.unwrap();
    assert_eq!((same.status.as_str(), same.ahead_by, same.commits.len()), ("identical", 0, 0));
}

#[bounded::test]
async fn a_long_comparison_is_read_page_by_page() {
    let github = FakeGitHub::start().await;
    let base = github.branch("dev").unwrap();
    let mut last = base.clone();
    for i in 0..130 {
        last = github.add_commit("dev", &format!("Change {i}"), "linus", &[]);
    }
    let comparison = github.client().compare(&base, &last).await.unwrap();
    assert_eq!((comparison.ahead_by, comparison.commits.len()), (130, 130));
    assert_eq!(comparison.commits[129].message, "Change 129");
    let pages: Vec<_> =
        github.requests().into_iter().filter(|r| r.path.contains("/compare/")).map(|r| r.query).collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages[1].contains("page=2") && pages[1].contains("per_page=100"), "{pages:?}");
}

#[bounded::test]
async fn the_merged_pull_requests_of_a_commit_are_listed() {
    let github = FakeGitHub::start().await;
    github.create_branch("fix/typo", "dev");
    let fix = github.add_commit("fix/typo", "Fix the typo", "linus", &["README.md"]);
    let merge = github.merge_pr(9, "fix/typo", "dev", "SHOP-3 Fix the typo", "linus", "");
    let client = github.client();
    let expected = vec![PullSummary {
        number: 9,
        title: "SHOP-3 Fix the typo".into(),
        body: String::new(),
        author: "linus".into(),
        head_ref: "fix/typo".into(),
        merged: true,
    }];
    assert_eq!(client.pulls_for_commit(&merge).await.unwrap(), expected);
    assert_eq!(client.pulls_for_commit(&fix).await.unwrap(), expected);
    let unrelated = github.add_commit("dev", "Direct push", "ada", &[]);
    assert_eq!(client.pulls_for_commit(&unrelated).await.unwrap(), vec![]);
}

#[bounded::test]
async fn a_promotion_merge_creates_a_merge_commit_and_moves_the_branch() {
    let github = FakeGitHub::start().await;
    let staging = github.branch("staging").unwrap();
    let dev = github.add_commit("dev", "New checkout", "grace", &["shop/checkout.py"]);
    let client = github.client();

    let outcome = client.merge("staging", &dev, "Promote dev to staging").await.unwrap();
    let MergeOutcome::Merged(merged) = outcome else { panic!("{outcome:?}") };
    assert_eq!(github.branch("staging"), Some(merged.clone()));
    let commit = github.commit(&merged).unwrap();
    assert_eq!(commit.parents, [staging, dev.clone()]);
    assert_eq!(commit.message, "Promote dev to staging");

    // Merging the same commit again finds nothing to do.
    assert_eq!(client.merge("staging", &dev, "Promote dev to staging").await.unwrap(), MergeOutcome::NothingToMerge);
    assert_eq!(github.branch("staging"), Some(merged));
}

/// For tests that keep a real git origin in step: the fake takes real SHAs and lets the real
/// repository choose the SHA of each merge it makes.
#[bounded::test]
async fn the_fake_can_follow_a_real_repository() {
    let github = FakeGitHub::start().await;
    let real_dev = Sha::parse("1111111111111111111111111111111111111111").unwrap();
    let real_merge = Sha::parse("2222222222222222222222222222222222222222").unwrap();
    github.set_branch("dev", &real_dev);
    let chosen = real_merge.clone();
    github.set_merge_hook(move |_base, _head, _message| chosen.clone());
    let client = github.client();
    assert_eq!(client.branch_sha("dev").await.unwrap(), real_dev);
    assert_eq!(client.merge("staging", &real_dev, "Promote").await.unwrap(), MergeOutcome::Merged(real_merge.clone()));
    assert_eq!(github.branch("staging"), Some(real_merge.clone()));
    let comparison = client.compare(&real_dev, &real_merge).await.unwrap();
    assert_eq!((comparison.ahead_by, comparison.behind_by), (2, 0), "the old staging tip and the merge");
}

#[bounded::test]
async fn a_github_that_accepts_connections_and_never_answers_is_cut_off_and_retried_a_bounded_number_of_times() {
    // Accepts every connection and holds it open without a byte in answer.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    let fake = FakeGitHub::start().await;
    let config = GitHubConfig { api_base_url: format!("http://{addr}"), ..fake.config() };
    let client = GitHubClient::new(&config, std::path::Path::new("/"))
        .unwrap()
        .with_backoff(Duration::from_millis(10))
        .with_call_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), client.branch_sha("dev"))
        .await
        .expect("a silent GitHub must not hang the call");
    let error = format!("{:#}", result.unwrap_err());
    assert!(error.contains("no answer within 0.3s"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 2, "each attempt connected again");
}

#[bounded::test]
async fn a_merge_conflict_is_reported_with_githubs_message_and_changes_nothing() {
    let github = FakeGitHub::start().await;
    let staging = github.add_commit("staging", "Hotfix on staging", "ada", &["shop/pay.py"]);
    let dev = github.add_commit("dev", "Rework payments", "grace", &["shop/pay.py"]);
    github.set_conflict("staging", "dev");
    let outcome = github.client().merge("staging", &dev, "Promote dev to staging").await.unwrap();
    assert_eq!(outcome, MergeOutcome::Conflict("Merge conflict".into()));
    assert_eq!(github.branch("staging"), Some(staging));
    let merges = github.requests().into_iter().filter(|r| r.path.ends_with("/merges")).count();
    assert_eq!(merges, 1, "a conflict is not retried");
}

#[bounded::test]
async fn a_fast_forward_moves_a_branch_only_forward() {
    let github = FakeGitHub::start().await;
    let dev = github.add_commit("dev", "Feature", "grace", &[]);
    let client = github.client();
    assert_eq!(client.fast_forward("staging", &dev).await.unwrap(), FastForward::Moved);
    assert_eq!(github.branch("staging"), Some(dev.clone()));
    let patch = github.requests().into_iter().find(|r| r.method == "PATCH").unwrap();
    assert_eq!(patch.path, "/repos/acme/shop/git/refs/heads/staging");
    assert_eq!(patch.body.unwrap()["force"], false);

    let hotfix = github.add_commit("staging", "Hotfix", "ada", &[]);
    let newer_dev = github.add_commit("dev", "More", "grace", &[]);
    assert_eq!(client.fast_forward("staging", &newer_dev).await.unwrap(), FastForward::NotFastForward);
    assert_eq!(github.branch("staging"), Some(hotfix));
    let err = format!("{:#}", client.fast_forward("gone", &dev).await.unwrap_err());
    assert!(err.contains("HTTP 422") && err.contains("Reference does not exist"), "{err}");
}

#[bounded::test]
async fn branch_protection_is_read_and_an_unprotected_branch_is_none() {
    let github = FakeGitHub::start().await;
    github.protect(
        "dev",
        FakeProtection {
            requires_pull_request: true,
            required_checks: vec!["ci/tests".into(), "ci/lint".into()],
            enforce_admins: false,
        },
    );
    let client = github.client();
    assert_eq!(
        client.branch_protection("dev").await.unwrap(),
        Some(Protection {
            requires_pull_request: true,
            required_checks: vec!["ci/tests".into(), "ci/lint".into()],
            enforce_admins: false,
        })
    );
    assert_eq!(client.branch_protection("staging").await.unwrap(), None);
}

#[bounded::test]
async fn a_deployment_and_its_statuses_are_recorded_on_github() {
    let github = FakeGitHub::start().await;
    let sha = github.add_commit("staging", "Release", "ada", &[]);
    let client = github.client();
    let id = client.create_deployment(&sha, "staging", "Promotion dev → staging by Ada").await.unwrap();
    client.deployment_status(id, DeploymentState::InProgress, "Deploying", None).await.unwrap();
    let long = "x".repeat(300);
    client.deployment_status(id, DeploymentState::Success, &long, Some("https://staging.shop.example")).await.unwrap();

    let deployments = github.deployments();
    assert_eq!(deployments.len(), 1);
    let deployment = &deployments[0];
    assert_eq!(
        (deployment.id, deployment.git_ref.as_str(), deployment.environment.as_str()),
        (id, sha.as_str(), "staging")
    );
    assert_eq!(deployment.description, "Promotion dev → staging by Ada");
    assert_eq!(deployment.request["auto_merge"], false);
    assert_eq!(deployment.request["required_contexts"], serde_json::json!([]));
    let states: Vec<_> = deployment.statuses.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["in_progress", "success"]);
    assert_eq!(deployment.statuses[1].description.chars().count(), 140, "cut to GitHub's limit");
    assert_eq!(deployment.statuses[1].environment_url.as_deref(), Some("https://staging.shop.example"));
}

#[bounded::test]
async fn server_errors_and_secondary_rate_limits_are_retried_a_bounded_number_of_times() {
    let github = FakeGitHub::start().await;
    let tip = github.branch("dev").unwrap();
    let client = github.client();
    github.fail_next(1, 502, "Server Error");
    github.fail_next(
        1,
        403,
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    );
    assert_eq!(client.branch_sha("dev").await.unwrap(), tip);
    assert_eq!(github.requests().len(), 3);

    github.fail_next(5, 503, "Service Unavailable");
    let err = format!("{:#}", client.branch_sha("dev").await.unwrap_err());
    assert!(
        err.contains("read branch `dev`")
            && err.contains("HTTP 503: Service Unavailable")
            && err.contains("after 3 attempts"),
        "{err}"
    );
    assert_eq!(github.requests().len(), 6, "three attempts, no more");
}

#[bounded::test]
async fn an_unreachable_github_is_tried_three_times_and_named() {
    let github = FakeGitHub::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = GitHubConfig { api_base_url: format!("http://{}", closed.local_addr().unwrap()), ..github.config() };
    drop(closed);
    let client = GitHubClient::new(&config, Path::new("/")).unwrap().with_backoff(Duration::from_millis(5));
    let err = format!("{:#}", client.branch_sha("dev").await.unwrap_err());
    assert!(
        err.contains("read branch `dev`") && err.contains("Connection refused") && err.contains("after 3 attempts"),
        "{err}"
    );
}

#[bounded::test]
async fn an_exhausted_rate_limit_is_not_retried_and_says_so() {
    let github = FakeGitHub::start().await;
    github.fail_next(1, 403, "API rate limit exceeded for user ID 1.");
    let err = format!("{:#}", github.client().branch_sha("dev").await.unwrap_err());
    assert!(err.contains("HTTP 403: API rate limit exceeded") && err.contains("wait"), "{err}");
    assert!(!err.contains(".."), "{err}");
    assert_eq!(github.requests().len(), 1);
}

#[bounded::test]
async fn a_bad_token_is_a_clear_error_that_never_shows_the_token() {
    let github = FakeGitHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "ghp_wrongTokenThatMustNeverBeShown";
    std::fs::write(dir.path().join("token"), wrong).unwrap();
    let config = GitHubConfig { token: SecretRef { env: None, file: Some("token".into()) }, ..github.config() };
    let client = GitHubClient::new(&config, dir.path()).unwrap();
    let err = client.branch_sha("dev").await.unwrap_err();
    let text = format!("{err:#} {err:?} {client:?}");
    assert!(text.contains("HTTP 401: Bad credentials") && text.contains("github.token"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(TOKEN), "{text}");
    assert_eq!(github.requests().len(), 1, "a 401 is not retried");
    assert!(!github.requests()[0].authorized);
}

// ---------------------------------------------------------------------------------------------
// The webhook

const SECRET: &str = "It's a Secret to Everybody";

/// The webhook route on 127.0.0.1 for `Codertocat/Hello-World` (the samples' repository).
struct Hook {
    url: String,
    addr: std::net::SocketAddr,
    store: Store,
    /// The bot whose engine the route asks which deliveries were handled (the test plays the
    /// engine's side of the event channel itself, through [`Inbox`]).
    _app: App,
    _dir: tempfile::TempDir,
    /// The route on the one listener, as `shipday serve` serves it.
    _served: common::Served,
}

/// A bot on `dir/state` with one local environment, to ask about delivery records.
fn quiet_app(dir: &Path) -> App {
    let config = Config::from_toml(
        "state_dir = \"state\"\n[[environments]]\nname = \"dev\"\nbranch = \"main\"\n\
         transport = { kind = \"local\", dir = \"envs/dev\" }\n",
        dir,
    )
    .unwrap();
    shipday::app::start(config, Arc::new(ManualClock::new(chrono::Utc::now()))).unwrap()
}

/// The engine's side of the channel, in the test's hands.
struct Inbox(mpsc::UnboundedReceiver<(GitHubEvent, oneshot::Sender<()>)>);

impl Hook {
    async fn start(handoff_timeout: Duration) -> (Self, Inbox) {
        Self::start_with(handoff_timeout, Limits::default()).await
    }

    /// The route on a listener with `limits` (tests shorten the header timeout).
    async fn start_with(handoff_timeout: Duration, limits: Limits) -> (Self, Inbox) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("webhook-secret"), SECRET).unwrap();
        let app = quiet_app(dir.path());
        let (sender, events) = mpsc::unbounded_channel();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(chrono::Utc::now()));
        let state =
            WebhookState::new(&hook_config(Some("webhook-secret")), dir.path(), app.engine.clone(), clock, sender)
                .unwrap()
                .with_handoff_timeout(handoff_timeout);
        let served = common::Served::with_limits(routes(state), limits).await;
        let url = served.url(WEBHOOK_PATH);
        (
            Self { url, addr: served.addr, store: app.store.clone(), _app: app, _dir: dir, _served: served },
            Inbox(events),
        )
    }

    /// Sends a delivery signed with `secret`; returns the status code.
    async fn deliver(&self, event: &str, delivery: &str, body: &[u8], secret: &str) -> u16 {
        let signature = signature::sign(&Secret::new(secret), body);
        self.send(event, delivery, body, Some(&signature), "application/json").await
    }

    async fn send(&self, event: &str, delivery: &str, body: &[u8], signature: Option<&str>, content_type: &str) -> u16 {
        let mut request = reqwest::Client::new()
            .post(&self.url)
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery)
            .header("User-Agent", "GitHub-Hookshot/044aadd")
            .header("Content-Type", content_type)
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        request.send().await.unwrap().status().as_u16()
    }

    fn handled(&self, delivery: &str) -> bool {
        self.store.delivery_seen(&format!("github:delivery:{delivery}")).unwrap()
    }
}

impl Inbox {
    /// Plays the engine: takes the next event and confirms it as durably recorded.
    async fn confirm_next(&mut self) -> GitHubEvent {
        let (event, done) = self.0.recv().await.unwrap();
        done.send(()).unwrap();
        event
    }

    fn is_empty(&mut self) -> bool {
        matches!(self.0.try_recv(), Err(mpsc::error::TryRecvError::Empty))
    }
}

fn hook_config(secret_file: Option<&str>) -> GitHubConfig {
    GitHubConfig {
        api_base_url: "https://api.github.com".into(),
        owner: "Codertocat".into(),
        repo: "Hello-World".into(),
        token: SecretRef { env: Some("GITHUB_TOKEN".into()), file: None },
        webhook_secret: secret_file.map(|file| SecretRef { env: None, file: Some(file.into()) }),
        listen: None,
    }
}

fn contract(name: &str) -> String {
    let path = format!("{}/tests/fixtures/contracts/github/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The contracts' merged PR, merged into `dev`.
fn merged_into_dev() -> Vec<u8> {
    let mut payload: serde_json::Value = serde_json::from_str(&contract("pull_request.closed.merged.json")).unwrap();
    payload["pull_request"]["base"]["ref"] = "dev".into();
    serde_json::to_vec(&payload).unwrap()
}

#[bounded::test]
fn githubs_official_signature_vector_passes() {
    let vector: serde_json::Value = serde_json::from_str(&contract("webhook-signature-test-vector.json")).unwrap();
    let secret = Secret::new(vector["secret"].as_str().unwrap());
    let body = vector["payload"].as_str().unwrap().as_bytes();
    let header = vector["expected_header"]["X-Hub-Signature-256"].as_str().unwrap();
    assert_eq!(signature::sign(&secret, body), header);
    assert_eq!(signature::verify(&secret, Some(header), body), Ok(()));
}

#[bounded::test]
async fn a_signed_merge_into_dev_reaches_the_engine_with_its_merge_sha() {
    let (hook, mut engine) = Hook::start(Duration::from_secs(5)).await;
    let body = merged_into_dev();
    let (status, event) =
        tokio::join!(hook.deliver("pull_request", "delivery-1", &body, SECRET), engine.confirm_next());
    assert_eq!(status, 200);
    assert_eq!(
        event,
        GitHubEvent::Merged {
            base: "dev".into(),
            merge_sha: Sha::parse("c4295bd74fb0f4fda03689c3df3f2803b658fd85").unwrap(),
            number: 2,
            title: "Update the README with new information.".into(),
            body: "This is a pretty simple change that we need to pull into master.".into(),
            author: "Codertocat".into(),
            head_ref: "changes".into(),
        }
    );
    assert!(hook.handled("delivery-1"));
}

#[bounded::test]
async fn a_bad_or_missing_signature_is_401_and_nothing_happens() {
    let (hook, mut engine) = Hook::start(Duration::from_secs(5)).await;
    let body = merged_into_dev();
    assert_eq!(hook.deliver("pull_request", "delivery-1", &body, "not the secret").await, 401);
    assert_eq!(hook.send("pull_request", "delivery-2", &body, None, "application/json").await, 401);
    let signed = signature::sign(&Secret::new(SECRET), &body);
    let mut tampered = body.clone();
    tampered.push(b' ');
    assert_eq!(hook.send("pull_request", "delivery-3", &tampered, Some(&signed), "application/json").await, 401);
    assert!(engine.is_empty());
    assert!(!hook.handled("delivery-1") && !hook.handled("delivery-2") && !hook.handled("delivery-3"));
}

#[bounded::test]
async fn a_duplicate_delivery_is_handed_on_once() {
    let (hook, mut engine) = Hook::start(Duration::from_secs(5)).await;
    let body = merged_into_dev();
    let (first, _) = tokio::join!(hook.deliver("pull_request", "delivery-1", &body, SECRET), engine.confirm_next());
    assert_eq!(first, 200);
    assert_eq!(hook.deliver("pull_request", "delivery-1", &body, SECRET).await, 200);
    assert!(engine.is_empty());
}

#[bounded::test]
async fn a_pull_request_closed_without_merging_is_no_event() {
    let (hook, mut engine) = Hook::start(Duration::from_secs(5)).await;
    let body = contract("pull_request.closed.json");
    assert_eq!(hook.deliver("pull_request", "delivery-1", body.as_bytes(), SECRET).await, 200);
    assert!(engine.is_empty());
}

#[bounded::test]
async fn a_ping_is_answered() {
    let (hook, mut engine) = Hook::start(Duration::from_secs(5)).await;
    assert_eq!(hook.deliver("ping", "delivery-1", contract("ping.json").as_bytes(), SECRET).await, 200);
    assert!(engine.is_empty());
}

#[bounded::test]
async fn a_push_to_dev_becomes_an_event_even_form_encoded() {
    let (hook, mut engine) = Hook::start(Duration::from_secs(5)).await;
    let mut payload: serde_json::Value = serde_json::from_str(&contract("push.json")).unwrap();
    payload["ref"] = "refs/heads/dev".into();
    payload["deleted"] = false.into();
    payload["after"] = "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into();
    let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let signed = signature::sign(&Secret::new(SECRET), form.as_bytes());
    let (status, event) = tokio::join!(
        hook.send("push", "delivery-1", form.as_bytes(), Some(&signed), "application/x-www-form-urlencoded"),
        engine.confirm_next()
    );
    assert_eq!(status, 200);
    assert_eq!(
        event,
        GitHubEvent::Pushed {
            branch: "dev".into(),
            after: Sha::parse("ec26c3e57ca3a959ca5aad62de7213c562f8c821").unwrap(),
            before: Some(Sha::parse("6113728f27ae82c7b1a177c8d03f9e96e0adf246").unwrap()),
            forced: false,
        }
    );
}

#[bounded::test]
async fn an_event_the_engine_does_not_confirm_in_time_gets_202_and_its_redelivery_is_handed_on() {
    let (hook, mut engine) = Hook::start(Duration::from_millis(200)).await;
    let body = merged_into_dev();
    let (status, unconfirmed) = tokio::join!(hook.deliver("pull_request", "delivery-1", &body, SECRET), async {
        engine.0.recv().await.unwrap()
    });
    assert_eq!(status, 202);
    assert!(!hook.handled("delivery-1"));
    drop(unconfirmed);
    let (status, _) = tokio::join!(hook.deliver("pull_request", "delivery-1", &body, SECRET), engine.confirm_next());
    assert_eq!(status, 200);
    assert!(hook.handled("delivery-1"));
}

#[bounded::test]
async fn the_route_refuses_to_exist_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let app = quiet_app(dir.path());
    let (sender, _events) = mpsc::unbounded_channel();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(chrono::Utc::now()));
    let engine = app.engine.clone();
    let Err(err) = WebhookState::new(&hook_config(None), Path::new("/"), engine.clone(), clock.clone(), sender.clone())
    else {
        panic!("the route must not build without a secret");
    };
    assert!(format!("{err:#}").contains("github.webhook_secret"), "{err:#}");
    let Err(err) = WebhookState::new(&hook_config(Some("missing-secret-file")), dir.path(), engine, clock, sender)
    else {
        panic!("the route must not build with an unreadable secret");
    };
    assert!(format!("{err:#}").contains("github.webhook_secret"), "{err:#}");
}

// ---------------------------------------------------------------------------------------------
// The listener the route is served on

/// Reads from `stream` until the server closes it; returns what it sent.
async fn read_until_closed(read: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&answer).into_owned(),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

/// Opens a connection that sends `bytes` one at a time, `every` apart, never finishing.
async fn trickle(addr: std::net::SocketAddr, bytes: &'static [u8], every: Duration) -> tokio::net::tcp::OwnedReadHalf {
    use tokio::io::AsyncWriteExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    tokio::spawn(async move {
        // The slow client's pace (a rate being simulated, not a wait for something to happen).
        let mut pace = tokio::time::interval(every);
        for byte in bytes.iter().cycle() {
            pace.tick().await;
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    });
    read
}

const SLOW_HEADERS: &[u8] = b"POST /github/webhook HTTP/1.1\r\nHost: shipday\r\nX-GitHub-Event: ping\r\nX-Padding: ";

#[bounded::test]
async fn a_client_trickling_its_headers_a_byte_at_a_time_is_closed_after_the_header_timeout() {
    let limits = Limits { header_read_timeout: Duration::from_millis(600), ..Limits::default() };
    let (hook, mut engine) = Hook::start_with(Duration::from_secs(5), limits).await;
    let started = std::time::Instant::now();
    let mut slow = trickle(hook.addr, SLOW_HEADERS, Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(10), read_until_closed(&mut slow))
        .await
        .expect("the slow client must be closed, not kept forever");
    let after = started.elapsed();
    assert!(after >= Duration::from_millis(500) && after < Duration::from_secs(5), "closed after {after:?}");
    assert!(engine.is_empty());
}

#[bounded::test]
async fn a_signed_body_trickling_past_the_body_deadline_gets_408_and_is_never_handled() {
    use tokio::io::AsyncWriteExt;
    let (hook, mut engine) = Hook::start(Duration::from_secs(5)).await;
    // A real, correctly signed push to dev: had it arrived whole, the engine would hear of it.
    let mut payload: serde_json::Value = serde_json::from_str(&contract("push.json")).unwrap();
    payload["ref"] = "refs/heads/dev".into();
    let body = payload.to_string();
    let signed = signature::sign(&Secret::new(SECRET), body.as_bytes());
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: shipday\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: slow-body\r\n\
         X-Hub-Signature-256: {signed}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let stream = tokio::net::TcpStream::connect(hook.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let bytes = body.into_bytes();
    tokio::spawn(async move {
        // The slow client's pace (2 bytes a second, a rate being simulated, not a wait).
        let mut pace = tokio::time::interval(Duration::from_millis(500));
        for byte in bytes {
            pace.tick().await;
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
        }
    });
    let answer = tokio::time::timeout(BODY_READ_TIMEOUT + Duration::from_secs(10), read_until_closed(&mut read))
        .await
        .expect("a body slower than the deadline is answered, not waited for");
    let after = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(after >= BODY_READ_TIMEOUT - Duration::from_millis(500), "answered after {after:?}");
    assert!(after < BODY_READ_TIMEOUT + Duration::from_secs(5), "answered after {after:?}");
    assert!(engine.is_empty(), "the handler never ran");
    assert!(!hook.handled("slow-body"));
}

#[bounded::test]
async fn an_oversized_unsigned_body_is_refused_with_413_from_its_length_before_any_of_it_is_read() {
    use tokio::io::AsyncWriteExt;
    let (hook, mut engine) = Hook::start(Duration::from_secs(5)).await;
    let mut stream = tokio::net::TcpStream::connect(hook.addr).await.unwrap();
    // 24 MB announced, not one byte of it sent: only a refusal from the length can answer.
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: shipday\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: d-1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        24 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_until_closed(&mut stream))
        .await
        .expect("answered without waiting for the body");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(engine.is_empty());
}

#[bounded::test]
async fn an_oversized_chunked_body_is_refused_with_413_at_the_limit_not_buffered_whole() {
    use tokio::io::AsyncWriteExt;
    let (hook, mut engine) = Hook::start(Duration::from_secs(5)).await;
    let stream = tokio::net::TcpStream::connect(hook.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: shipday\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: d-2\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.unwrap();
    // Up to 8 MiB in 64 KiB chunks, with no length announced; the server stops it at 1 MiB.
    tokio::spawn(async move {
        let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
        for _ in 0..128 {
            if write.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let answer = tokio::time::timeout(Duration::from_secs(10), read_until_closed(&mut read)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(engine.is_empty());
}

#[bounded::test]
async fn at_the_connection_cap_a_signed_delivery_waits_for_a_slot_and_is_answered() {
    let limits = Limits { header_read_timeout: Duration::from_millis(500), max_connections: 2 };
    let (hook, mut engine) = Hook::start_with(Duration::from_secs(5), limits).await;
    let mut slow = Vec::new();
    for _ in 0..2 {
        slow.push(trickle(hook.addr, SLOW_HEADERS, Duration::from_millis(100)).await);
    }
    // Both slots are taken; the delivery is accepted once the header timeout frees one.
    let ping = contract("ping.json");
    let status =
        tokio::time::timeout(Duration::from_secs(10), hook.deliver("ping", "delivery-at-cap", ping.as_bytes(), SECRET))
            .await
            .expect("answered once a slot frees");
    assert_eq!(status, 200);
    for mut connection in slow {
        tokio::time::timeout(Duration::from_secs(5), read_until_closed(&mut connection)).await.unwrap();
    }
    assert!(engine.is_empty());
}

// The webhook, end to end: signed deliveries over HTTP into a real engine deploying a real dev

/// The webhook route wired to a running bot (the playground world, dev deployed from its real
/// origin), the way `serve` wires it.
struct LiveHook {
    world: common::World,
    bot: common::Bot,
    url: String,
    _dir: tempfile::TempDir,
}

impl LiveHook {
    async fn start() -> Self {
        let world = common::World::new();
        let bot = common::Bot::start(&world.config_path());
        let dir = tempfile::tempdir().unwrap();
        let url = common::github_webhook(&bot, dir.path(), SECRET).await;
        Self { world, bot, url, _dir: dir }
    }

    async fn deliver(&self, event: &str, delivery: &str, body: &[u8]) -> u16 {
        common::deliver_github(&self.url, event, delivery, body, SECRET).await
    }

    /// GitHub merges `branch` into dev for real (a merge commit on the origin); returns its SHA.
    fn merge(&self, branch: &str, number: u64) -> String {
        let message = format!("Merge pull request #{number} from Codertocat/{branch}");
        common::real_merge(self.world.path(), &self.world.tip("dev"), &self.world.tip(branch), &message)
    }

    /// The dev deploys Shipday recorded, oldest first.
    fn dev_deploys(&self) -> Vec<shipday::release::deploy::DeployRecord> {
        let mut deploys = self.bot.app.store.history(Some("dev"), 50).unwrap();
        deploys.reverse();
        deploys
    }

    /// The audit log's decisions about webhook deliveries, oldest first.
    fn webhook_decisions(&self) -> Vec<String> {
        let mut entries = self.bot.app.store.audit_tail(200).unwrap();
        entries.reverse();
        entries
            .into_iter()
            .filter(|e| e.platform == "github")
            .map(|e| format!("{} => {}", e.text, e.decision))
            .collect()
    }
}

/// The pull request `number` closed as merged into dev as `merge_sha`.
fn pull_request_merged(number: u64, merge_sha: &str) -> Vec<u8> {
    let mut payload: serde_json::Value = serde_json::from_slice(&merged_into_dev()).unwrap();
    payload["number"] = number.into();
    payload["pull_request"]["number"] = number.into();
    payload["pull_request"]["merge_commit_sha"] = merge_sha.into();
    serde_json::to_vec(&payload).unwrap()
}

/// The push that moved dev from `before` to `after`.
fn pushed_to_dev(before: &str, after: &str) -> Vec<u8> {
    let mut payload: serde_json::Value = serde_json::from_str(&contract("push.json")).unwrap();
    payload["ref"] = "refs/heads/dev".into();
    payload["deleted"] = false.into();
    payload["created"] = false.into();
    payload["before"] = before.into();
    payload["after"] = after.into();
    serde_json::to_vec(&payload).unwrap()
}

/// Waits for the next deploy announced as finished.
async fn next_finished_deploy(
    heard: &mut tokio::sync::broadcast::Receiver<shipday::engine::Announcement>,
) -> shipday::release::deploy::DeployRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let next = tokio::time::timeout_at(deadline, heard.recv()).await.expect("timed out waiting for a deploy");
        if let Ok(shipday::engine::Announcement::Deploy(update)) = next
            && update.record.is_finished()
        {
            return update.record;
        }
    }
}

#[bounded::test]
async fn one_merge_announced_by_its_pull_request_and_its_push_deploys_dev_once() {
    let hook = LiveHook::start().await;
    let mut heard = hook.bot.app.engine.announcements();
    let before = hook.world.tip("dev");
    let restarts = || hook.world.restarts().iter().filter(|l| l.contains("dev app restarted")).count();
    let restarted_before = restarts();
    let merged = hook.merge("feature/login", 2);
    assert_eq!(hook.deliver("pull_request", "guid-pr", &pull_request_merged(2, &merged)).await, 200);
    let deployed = next_finished_deploy(&mut heard).await;
    assert_eq!(deployed.sha.as_str(), merged);
    // GitHub's push for the same merge, with its own delivery id.
    assert_eq!(hook.deliver("push", "guid-push", &pushed_to_dev(&before, &merged)).await, 200);
    let decisions = hook.webhook_decisions();
    assert!(
        decisions.last().is_some_and(|d| d.contains(&merged) && d.contains("duplicate: already handled")),
        "{decisions:#?}"
    );
    assert_eq!(hook.dev_deploys().len(), 1, "one merge, one deploy");
    assert_eq!(restarts(), restarted_before + 1, "dev restarted once");
}

#[bounded::test]
async fn a_pull_request_and_its_push_arriving_together_deploy_once_and_report_nothing_false() {
    let hook = LiveHook::start().await;
    let mut heard = hook.bot.app.engine.announcements();
    let before = hook.world.tip("dev");
    let merged = hook.merge("feature/login", 2);
    let (pr_body, push_body) = (pull_request_merged(2, &merged), pushed_to_dev(&before, &merged));
    let (pr, push) =
        tokio::join!(hook.deliver("pull_request", "guid-pr", &pr_body), hook.deliver("push", "guid-push", &push_body));
    assert_eq!((pr, push), (200, 200));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let next = tokio::time::timeout_at(deadline, heard.recv()).await.expect("timed out waiting for the deploy");
        match next {
            Ok(shipday::engine::Announcement::Deploy(update)) if update.record.is_finished() => break,
            Ok(shipday::engine::Announcement::Text(text)) => panic!("nothing else is said, got {text}"),
            _ => {}
        }
    }
    assert_eq!(hook.dev_deploys().len(), 1);
    assert!(hook.webhook_decisions().iter().any(|d| d.contains("duplicate: already handled")));
}

#[bounded::test]
async fn an_old_delivery_resent_with_a_fresh_id_does_not_deploy_again() {
    let hook = LiveHook::start().await;
    let mut heard = hook.bot.app.engine.announcements();
    let first = hook.merge("feature/login", 2);
    assert_eq!(hook.deliver("pull_request", "guid-1", &pull_request_merged(2, &first)).await, 200);
    next_finished_deploy(&mut heard).await;
    let second = hook.merge("feature/search", 3);
    assert_eq!(hook.deliver("pull_request", "guid-2", &pull_request_merged(3, &second)).await, 200);
    assert_eq!(next_finished_deploy(&mut heard).await.sha.as_str(), second);
    // An attacker replays the first delivery, byte for byte, under a new GUID.
    assert_eq!(hook.deliver("pull_request", "guid-replayed", &pull_request_merged(2, &first)).await, 200);
    let decisions = hook.webhook_decisions();
    assert!(decisions.last().is_some_and(|d| d.contains(&first) && d.contains("duplicate")), "{decisions:#?}");
    assert_eq!(hook.dev_deploys().len(), 2);
    assert_eq!(hook.world.head("dev"), second, "dev was not rolled back");
}

#[bounded::test]
async fn a_delivery_naming_an_older_commit_never_rolls_dev_back() {
    let hook = LiveHook::start().await;
    let mut heard = hook.bot.app.engine.announcements();
    let old = hook.world.tip("dev");
    let merged = hook.merge("feature/login", 2);
    assert_eq!(hook.deliver("pull_request", "guid-1", &pull_request_merged(2, &merged)).await, 200);
    next_finished_deploy(&mut heard).await;
    // A push naming the commit dev ran before the merge (never seen by the merge stream).
    let parent = common::git(&hook.world.path().join("origin.git"), &["rev-parse", &format!("{old}~1")]);
    assert_eq!(hook.deliver("push", "guid-old", &pushed_to_dev(&parent, &old)).await, 200);
    let decisions = hook.webhook_decisions();
    assert!(decisions.last().is_some_and(|d| d.contains(&old) && d.contains("ignored: older than")), "{decisions:#?}");
    assert_eq!(hook.dev_deploys().len(), 1);
    assert_eq!(hook.world.head("dev"), merged, "dev was not rolled back");
}
