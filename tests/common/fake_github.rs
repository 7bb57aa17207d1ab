//! A stateful fake GitHub over HTTP on 127.0.0.1, for the real octocrab client.
//!
//! It keeps a commit graph (sha → parents, message, author, files) and branches, and answers
//! the REST calls Shipday makes with complete objects, as GitHub does (octocrab needs every
//! `*_url` of users and repositories): `git/ref` GET and PATCH (fast-forward checked by
//! ancestry), `compare` (computed from the graph, paginated), `merges` (a real merge commit that
//! moves the branch; 204 when already contained; 409 when a test marked the pair conflicting),
//! `commits/{sha}/pulls`, branch protection (404 when none), deployments and their statuses.
//! Every request is logged; a wrong token gets 401; tests can inject failures.
//!
//! Tests that keep a real git origin in step can force branches to real SHAs (`set_branch`,
//! `add_commit_with_sha`) and let a hook choose the SHA of each merge the fake makes
//! (`set_merge_hook`), for example by merging in the real repository.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shipday::clients::github::{GitHubClient, GitHubConfig};
use shipday::config::SecretRef;
use shipday::release::gitref::Sha;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Owner of the fake repository.
pub const OWNER: &str = "acme";
/// Name of the fake repository.
pub const REPO: &str = "shop";
/// The token the fake accepts.
pub const TOKEN: &str = "ghp_fakeTokenForShipdayTests0123456789";
/// The login every change made through the API is attributed to.
pub const BOT: &str = "shipday-bot";

/// One commit of the fake's graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCommit {
    /// The commit id.
    pub sha: Sha,
    /// Its parents: none for a root, two for a merge.
    pub parents: Vec<Sha>,
    /// The full message.
    pub message: String,
    /// GitHub login; `None` for a commit whose email belongs to no account.
    pub author: Option<String>,
    /// Paths it changes (a merge changes none of its own).
    pub files: Vec<String>,
    /// Creation order: parents always come before children.
    seq: u64,
}

/// A merged pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePull {
    /// The PR number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// Its description (served as `null` when empty).
    pub body: String,
    /// The author's login.
    pub author: String,
    /// The branch it came from.
    pub head_ref: String,
    /// That branch's tip when it was merged.
    pub head_sha: Sha,
    /// The branch it was merged into.
    pub base: String,
    /// The merge commit on `base`.
    pub merge_sha: Sha,
    /// The PR's own commits (in head, not in base, before the merge).
    pub commits: Vec<Sha>,
}

/// Branch protection as the fake serves it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FakeProtection {
    /// Served as `required_pull_request_reviews`.
    pub requires_pull_request: bool,
    /// Served as both `contexts` and `checks` of `required_status_checks`.
    pub required_checks: Vec<String>,
    /// Served as `enforce_admins.enabled`.
    pub enforce_admins: bool,
}

/// A deployment created through the API, with its statuses in order.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeDeployment {
    /// 1, 2, 3… in creation order.
    pub id: u64,
    /// The `ref` sent (Shipday sends the exact SHA).
    pub git_ref: String,
    /// The environment named in the request.
    pub environment: String,
    /// The description sent.
    pub description: String,
    /// The whole request body, to check flags such as `auto_merge`.
    pub request: Value,
    /// Statuses in the order they were created.
    pub statuses: Vec<FakeDeploymentStatus>,
}

/// One deployment status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDeploymentStatus {
    /// GitHub's state name (`in_progress`, `success`…).
    pub state: String,
    /// The description sent.
    pub description: String,
    /// The environment URL sent, if any.
    pub environment_url: Option<String>,
}

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    /// `GET`, `POST`…
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// Whether it carried the right token.
    pub authorized: bool,
    /// The JSON body, if it had one.
    pub body: Option<Value>,
}

/// Chooses the SHA of a merge commit: `(base tip, head, message)`.
type MergeHook = Box<dyn Fn(&Sha, &Sha, &str) -> Sha + Send>;

#[derive(Default)]
struct Repo {
    commits: HashMap<Sha, FakeCommit>,
    branches: BTreeMap<String, Sha>,
    pulls: Vec<FakePull>,
    conflicts: Vec<(String, String)>,
    protections: HashMap<String, FakeProtection>,
    deployments: Vec<FakeDeployment>,
    requests: Vec<LoggedRequest>,
    failures: VecDeque<(StatusCode, String)>,
    merge_hook: Option<MergeHook>,
    seq: u64,
    base_url: String,
    /// Commit statuses by commit, oldest first (the combined status shows each context's latest).
    statuses: HashMap<String, Vec<FakeCommitStatus>>,
    /// Check runs by commit, in creation order (ids grow).
    check_runs: HashMap<String, Vec<FakeCheckRun>>,
    next_check_id: u64,
}

/// A commit status (`POST /repos/{o}/{r}/statuses/{sha}`), as CI services set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCommitStatus {
    /// `error`, `failure`, `pending` or `success`.
    pub state: String,
    /// The label, e.g. `ci/test`.
    pub context: String,
    /// Where the build is.
    pub target_url: Option<String>,
}

/// A check run (GitHub Actions and apps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCheckRun {
    /// Its id: a re-run has a higher one.
    pub id: u64,
    /// Its name, e.g. `lint`.
    pub name: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// Once completed: `success`, `failure`, `neutral`, `cancelled`, `skipped`, `timed_out`…
    pub conclusion: Option<String>,
}

/// The running fake. Dropping it stops the server.
pub struct FakeGitHub {
    /// REST root, e.g. `http://127.0.0.1:PORT`.
    pub url: String,
    repo: Arc<Mutex<Repo>>,
    token_dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeGitHub {
    /// Starts a repository with one commit on `master`, and `dev` and `staging` at it.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let repo = Arc::new(Mutex::new(Repo { base_url: url.clone(), ..Repo::default() }));
        let app = Router::new().fallback(handle).with_state(repo.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let token_dir = tempfile::tempdir().unwrap();
        std::fs::write(token_dir.path().join("github-token"), format!("{TOKEN}\n")).unwrap();
        let fake = Self { url, repo, token_dir, server };
        let root = fake.lock().commit(None, &[], "Initial commit", Some("octocat"), &["README.md"]);
        for branch in ["master", "dev", "staging"] {
            fake.lock().branches.insert(branch.into(), root.clone());
        }
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Repo> {
        self.repo.lock().expect("fake GitHub lock")
    }

    /// A `[github]` config pointing at the fake, with the token in a file.
    pub fn config(&self) -> GitHubConfig {
        GitHubConfig {
            api_base_url: self.url.clone(),
            owner: OWNER.into(),
            repo: REPO.into(),
            token: SecretRef { env: None, file: Some(self.token_dir.path().join("github-token")) },
            webhook_secret: None,
            listen: None,
        }
    }

    /// The real client, pointed at the fake, with millisecond retry delays.
    pub fn client(&self) -> GitHubClient {
        GitHubClient::new(&self.config(), Path::new("/")).unwrap().with_backoff(Duration::from_millis(5))
    }

    /// The tip of `branch`.
    pub fn branch(&self, branch: &str) -> Option<Sha> {
        self.lock().branches.get(branch).cloned()
    }

    /// A commit of the graph.
    pub fn commit(&self, sha: &Sha) -> Option<FakeCommit> {
        self.lock().commits.get(sha).cloned()
    }

    /// Creates (or resets) `branch` at `from`, a branch name or a known SHA.
    pub fn create_branch(&self, branch: &str, from: &str) -> Sha {
        let mut repo = self.lock();
        let sha = repo.resolve(from).unwrap_or_else(|| panic!("fake GitHub: no branch or commit `{from}`"));
        repo.branches.insert(branch.into(), sha.clone());
        sha
    }

    /// Forces `branch` to `sha`. An unknown SHA (from a real repository) becomes a root commit
    /// of the graph, so later calls still find it.
    pub fn set_branch(&self, branch: &str, sha: &Sha) {
        let mut repo = self.lock();
        if !repo.commits.contains_key(sha) {
            repo.commit(Some(sha.clone()), &[], "(external commit)", None, &[]);
        }
        repo.branches.insert(branch.into(), sha.clone());
    }

    /// Adds a commit on top of `branch` and moves the branch to it.
    pub fn add_commit(&self, branch: &str, message: &str, author: &str, files: &[&str]) -> Sha {
        self.add_commit_inner(branch, None, message, author, files)
    }

    /// Like [`Self::add_commit`], with a given SHA (to mirror a real repository).
    pub fn add_commit_with_sha(&self, branch: &str, sha: &Sha, message: &str, author: &str, files: &[&str]) -> Sha {
        self.add_commit_inner(branch, Some(sha.clone()), message, author, files)
    }

    fn add_commit_inner(&self, branch: &str, sha: Option<Sha>, message: &str, author: &str, files: &[&str]) -> Sha {
        let mut repo = self.lock();
        let parent = repo.branches.get(branch).cloned().unwrap_or_else(|| {
            panic!("fake GitHub: no branch `{branch}`; create it first with create_branch(\"{branch}\", from)")
        });
        let sha = repo.commit(sha, &[parent], message, Some(author), files);
        repo.branches.insert(branch.into(), sha.clone());
        sha
    }

    /// Merges a pull request from `head_branch` into `into` as GitHub's merge button does (a
    /// merge commit), records the PR, and returns the merge commit.
    pub fn merge_pr(&self, number: u64, head_branch: &str, into: &str, title: &str, author: &str, body: &str) -> Sha {
        let mut repo = self.lock();
        let head = repo.branches.get(head_branch).cloned().expect("fake GitHub: no head branch");
        let base = repo.branches.get(into).cloned().expect("fake GitHub: no base branch");
        let commits = repo.only_in(&head, &base);
        let message = format!("Merge pull request #{number} from {OWNER}/{head_branch}\n\n{title}");
        let merge_sha = repo.merge_commit(&base, &head, &message, Some(author));
        repo.branches.insert(into.into(), merge_sha.clone());
        repo.pulls.push(FakePull {
            number,
            title: title.into(),
            body: body.into(),
            author: author.into(),
            head_ref: head_branch.into(),
            head_sha: head,
            base: into.into(),
            merge_sha: merge_sha.clone(),
            commits,
        });
        merge_sha
    }

    /// Makes `POST /merges` of `head` (a branch or SHA) into `base` answer 409.
    pub fn set_conflict(&self, base: &str, head: &str) {
        self.lock().conflicts.push((base.into(), head.into()));
    }

    /// Protects `branch`.
    pub fn protect(&self, branch: &str, protection: FakeProtection) {
        self.lock().protections.insert(branch.into(), protection);
    }

    /// Removes `branch`'s protection.
    pub fn unprotect(&self, branch: &str) {
        self.lock().protections.remove(branch);
    }

    /// Lets `hook(base tip, head, message)` choose the SHA of every merge the fake makes.
    pub fn set_merge_hook(&self, hook: impl Fn(&Sha, &Sha, &str) -> Sha + Send + 'static) {
        self.lock().merge_hook = Some(Box::new(hook));
    }

    /// The next `count` authorised requests fail with `status` and GitHub's `message`.
    pub fn fail_next(&self, count: usize, status: u16, message: &str) {
        let status = StatusCode::from_u16(status).unwrap();
        self.lock().failures.extend(std::iter::repeat_n((status, message.to_owned()), count));
    }

    /// Sets a commit status on `sha` (a later one of the same context replaces it in the
    /// combined status), as a CI service does.
    pub fn set_status(&self, sha: &str, context: &str, state: &str, target_url: Option<&str>) {
        let status =
            FakeCommitStatus { state: state.into(), context: context.into(), target_url: target_url.map(Into::into) };
        self.lock().statuses.entry(sha.to_owned()).or_default().push(status);
    }

    /// Adds a check run on `sha` (a new id, so it is the newest of its name); returns its id.
    pub fn add_check_run(&self, sha: &str, name: &str, status: &str, conclusion: Option<&str>) -> u64 {
        let mut repo = self.lock();
        repo.next_check_id += 1;
        let id = repo.next_check_id;
        let run = FakeCheckRun { id, name: name.into(), status: status.into(), conclusion: conclusion.map(Into::into) };
        repo.check_runs.entry(sha.to_owned()).or_default().push(run);
        id
    }

    /// Completes check run `id` with `conclusion`, as the check's app does.
    pub fn complete_check_run(&self, id: u64, conclusion: &str) {
        let mut repo = self.lock();
        for run in repo.check_runs.values_mut().flatten().filter(|r| r.id == id) {
            run.status = "completed".into();
            run.conclusion = Some(conclusion.into());
        }
    }

    /// How many times the checks of `sha` were read (both endpoints count).
    pub fn check_reads(&self, sha: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains(&format!("/commits/{sha}/")))
            .filter(|r| r.path.ends_with("/status") || r.path.ends_with("/check-runs"))
            .count()
    }

    /// Deployments created so far, with their statuses.
    pub fn deployments(&self) -> Vec<FakeDeployment> {
        self.lock().deployments.clone()
    }

    /// Pull requests merged so far.
    pub fn pulls(&self) -> Vec<FakePull> {
        self.lock().pulls.clone()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().requests.clone()
    }
}

impl Repo {
    /// Adds a commit to the graph.
    fn commit(
        &mut self,
        sha: Option<Sha>,
        parents: &[Sha],
        message: &str,
        author: Option<&str>,
        files: &[&str],
    ) -> Sha {
        self.seq += 1;
        let sha = sha.unwrap_or_else(|| {
            let digest = Sha256::digest(format!("{}\n{parents:?}\n{message}\n{author:?}", self.seq));
            Sha::parse(&hex::encode(digest)[..40]).unwrap()
        });
        let commit = FakeCommit {
            sha: sha.clone(),
            parents: parents.to_vec(),
            message: message.into(),
            author: author.map(str::to_owned),
            files: files.iter().map(|f| f.to_string()).collect(),
            seq: self.seq,
        };
        self.commits.insert(sha.clone(), commit);
        sha
    }

    fn merge_commit(&mut self, base: &Sha, head: &Sha, message: &str, author: Option<&str>) -> Sha {
        let chosen = self.merge_hook.as_ref().map(|hook| hook(base, head, message));
        self.commit(chosen, &[base.clone(), head.clone()], message, author, &[])
    }

    /// A branch name or a known SHA.
    fn resolve(&self, name: &str) -> Option<Sha> {
        if let Some(sha) = self.branches.get(name) {
            return Some(sha.clone());
        }
        Sha::parse(name).ok().filter(|sha| self.commits.contains_key(sha))
    }

    fn ancestors(&self, sha: &Sha) -> HashSet<Sha> {
        let mut seen = HashSet::new();
        let mut queue = vec![sha.clone()];
        while let Some(next) = queue.pop() {
            if seen.insert(next.clone())
                && let Some(commit) = self.commits.get(&next)
            {
                queue.extend(commit.parents.iter().cloned());
            }
        }
        seen
    }

    /// Commits reachable from `head` and not from `base`, oldest first.
    fn only_in(&self, head: &Sha, base: &Sha) -> Vec<Sha> {
        let excluded = self.ancestors(base);
        let mut commits: Vec<&FakeCommit> = self
            .ancestors(head)
            .iter()
            .filter(|sha| !excluded.contains(*sha))
            .filter_map(|s| self.commits.get(s))
            .collect();
        commits.sort_by_key(|c| c.seq);
        commits.into_iter().map(|c| c.sha.clone()).collect()
    }

    fn merge_base(&self, a: &Sha, b: &Sha) -> Option<Sha> {
        let of_b = self.ancestors(b);
        self.ancestors(a)
            .into_iter()
            .filter(|sha| of_b.contains(sha))
            .max_by_key(|sha| self.commits.get(sha).map(|c| c.seq).unwrap_or(0))
    }

    fn api(&self, path: &str) -> String {
        format!("{}/repos/{OWNER}/{REPO}{path}", self.base_url)
    }
}

async fn handle(
    State(repo): State<Arc<Mutex<Repo>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Option<Value> = serde_json::from_slice(&body).ok();
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}") || v == format!("token {TOKEN}"));
    let mut repo = repo.lock().expect("fake GitHub lock");
    repo.requests.push(LoggedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        authorized,
        body: body.clone(),
    });
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    if let Some((status, message)) = repo.failures.pop_front() {
        return error(status, &message);
    }
    if method == Method::GET && uri.path() == format!("/repos/{OWNER}/{REPO}") {
        // `GET /repos/{owner}/{repo}` (a full repository), with the authenticated user's
        // `permissions`, as GitHub adds them.
        let mut full = repository_json(&repo);
        full["permissions"] = json!({ "admin": false, "maintain": true, "push": true, "triage": true, "pull": true });
        return (StatusCode::OK, axum::Json(full)).into_response();
    }
    let prefix = format!("/repos/{OWNER}/{REPO}/");
    let Some(rest) = uri.path().strip_prefix(&prefix) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let query = parse_query(uri.query().unwrap_or_default());
    let body = body.unwrap_or(Value::Null);
    let segments: Vec<&str> = rest.split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["git", "ref", "heads", branch @ ..]) => get_ref(&repo, &branch.join("/")),
        (&Method::PATCH, ["git", "refs", "heads", branch @ ..]) => update_ref(&mut repo, &branch.join("/"), &body),
        (&Method::GET, ["compare", basehead @ ..]) => compare(&repo, &basehead.join("/"), &query),
        (&Method::GET, ["commits", sha, "pulls"]) => pulls(&repo, sha),
        (&Method::GET, ["commits", sha, "status"]) => combined_status(&repo, sha),
        (&Method::GET, ["commits", sha, "check-runs"]) => check_runs(&repo, sha, &query),
        (&Method::POST, ["merges"]) => merge(&mut repo, &body),
        (&Method::GET, ["branches", branch @ .., "protection"]) => protection(&repo, &branch.join("/")),
        (&Method::POST, ["deployments"]) => create_deployment(&mut repo, body),
        (&Method::POST, ["deployments", id, "statuses"]) => create_status(&mut repo, id, &body),
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// `GET /repos/{o}/{r}/commits/{ref}/status`, shaped as GitHub's documented example
/// (tests/fixtures/contracts/github/commit.combined-status.response.json): each context's
/// latest status, and the combined `state` (failure if any failed or errored, pending if any is
/// pending or there is none, else success).
fn combined_status(repo: &Repo, sha: &str) -> Response {
    let mut latest: Vec<(usize, &FakeCommitStatus)> = Vec::new();
    for (id, status) in repo.statuses.get(sha).into_iter().flatten().enumerate() {
        latest.retain(|(_, s)| s.context != status.context);
        latest.push((id + 1, status));
    }
    // GitHub lists the newest first.
    latest.reverse();
    let state = if latest.iter().any(|(_, s)| s.state == "failure" || s.state == "error") {
        "failure"
    } else if latest.is_empty() || latest.iter().any(|(_, s)| s.state == "pending") {
        "pending"
    } else {
        "success"
    };
    let statuses: Vec<Value> = latest
        .iter()
        .map(|(id, s)| {
            json!({
                "url": repo.api(&format!("/statuses/{sha}")),
                "avatar_url": "https://github.com/images/error/hubot_happy.gif",
                "id": id,
                "node_id": format!("MDY6U3RhdHVz{id}"),
                "state": s.state,
                "description": format!("{} is {}", s.context, s.state),
                "target_url": s.target_url,
                "context": s.context,
                "created_at": now(),
                "updated_at": now(),
            })
        })
        .collect();
    ok(
        StatusCode::OK,
        json!({
            "state": state,
            "statuses": statuses,
            "sha": sha,
            "total_count": latest.len(),
            "repository": repository_json(repo),
            "commit_url": repo.api(&format!("/commits/{sha}")),
            "url": repo.api(&format!("/commits/{sha}/status")),
        }),
    )
}

/// `GET /repos/{o}/{r}/commits/{ref}/check-runs`, paginated by `per_page` and `page`, shaped as
/// GitHub's documented example (tests/fixtures/contracts/github/commit.check-runs.response.json).
fn check_runs(repo: &Repo, sha: &str, query: &HashMap<String, String>) -> Response {
    let per_page: usize = query.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30).clamp(1, 100);
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let all = repo.check_runs.get(sha).cloned().unwrap_or_default();
    let runs: Vec<Value> = all
        .iter()
        .rev()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|run| {
            let html_url = format!("https://github.com/{OWNER}/{REPO}/runs/{}", run.id);
            json!({
                "id": run.id,
                "head_sha": sha,
                "node_id": format!("MDg6Q2hlY2tSdW4{}", run.id),
                "external_id": "",
                "url": repo.api(&format!("/check-runs/{}", run.id)),
                "html_url": html_url,
                "details_url": html_url,
                "status": run.status,
                "conclusion": run.conclusion,
                "started_at": now(),
                "completed_at": if run.status == "completed" { Value::from(now()) } else { Value::Null },
                "output": { "title": null, "summary": null, "text": null, "annotations_count": 0,
                    "annotations_url": repo.api(&format!("/check-runs/{}/annotations", run.id)) },
                "name": run.name,
                "check_suite": { "id": 5 },
                "app": { "id": 1, "slug": "octoapp", "node_id": "MDExOkludGVncmF0aW9uMQ==", "name": "Octocat App",
                    "description": "", "external_url": "https://example.com", "html_url": "https://github.com/apps/octoapp",
                    "created_at": "2017-07-08T16:18:44-04:00", "updated_at": "2017-07-08T16:18:44-04:00",
                    "events": ["push", "pull_request"] },
                "pull_requests": [],
            })
        })
        .collect();
    ok(StatusCode::OK, json!({ "total_count": all.len(), "check_runs": runs }))
}

fn parse_query(query: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str(query).unwrap_or_default()
}

/// GitHub's error body.
fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({ "message": message, "documentation_url": "https://docs.github.com/rest", "status": status.as_u16().to_string() });
    (status, axum::Json(body)).into_response()
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn get_ref(repo: &Repo, branch: &str) -> Response {
    match repo.branches.get(branch) {
        Some(sha) => ok(StatusCode::OK, ref_json(repo, branch, sha)),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn update_ref(repo: &mut Repo, branch: &str, body: &Value) -> Response {
    let Some(current) = repo.branches.get(branch).cloned() else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist");
    };
    let Some(to) = body["sha"].as_str().and_then(|s| Sha::parse(s).ok()).filter(|s| repo.commits.contains_key(s))
    else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Object does not exist");
    };
    let force = body["force"].as_bool().unwrap_or(false);
    if !force && !repo.ancestors(&to).contains(&current) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Update is not a fast forward");
    }
    repo.branches.insert(branch.into(), to.clone());
    ok(StatusCode::OK, ref_json(repo, branch, &to))
}

fn compare(repo: &Repo, basehead: &str, query: &HashMap<String, String>) -> Response {
    let Some((base, head)) = basehead.split_once("...") else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let (Some(base), Some(head)) = (repo.resolve(base), repo.resolve(head)) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(merge_base) = repo.merge_base(&base, &head) else {
        return error(StatusCode::NOT_FOUND, "No common ancestor between base and head.");
    };
    let ahead = repo.only_in(&head, &base);
    let behind = repo.only_in(&base, &head);
    let status = match (ahead.len(), behind.len()) {
        (0, 0) => "identical",
        (_, 0) => "ahead",
        (0, _) => "behind",
        _ => "diverged",
    };
    let mut files: Vec<String> = Vec::new();
    for sha in &ahead {
        for file in &repo.commits[sha].files {
            if !files.contains(file) {
                files.push(file.clone());
            }
        }
    }
    let per_page: usize = query.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(250);
    let page: usize = query.get("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let listed: Vec<Value> = ahead
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|sha| commit_json(repo, &repo.commits[sha]))
        .collect();
    let html = format!("https://github.com/{OWNER}/{REPO}/compare/{basehead}");
    ok(
        StatusCode::OK,
        json!({
            "url": repo.api(&format!("/compare/{basehead}")),
            "html_url": html,
            "permalink_url": format!("https://github.com/{OWNER}/{REPO}/compare/{OWNER}:{base}...{OWNER}:{head}"),
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "base_commit": commit_json(repo, &repo.commits[&base]),
            "merge_base_commit": commit_json(repo, &repo.commits[&merge_base]),
            "status": status,
            "ahead_by": ahead.len(),
            "behind_by": behind.len(),
            "total_commits": ahead.len(),
            "commits": listed,
            "files": files.iter().map(|f| file_json(repo, f, &head)).collect::<Vec<_>>(),
        }),
    )
}

fn pulls(repo: &Repo, sha: &str) -> Response {
    let Ok(sha) = Sha::parse(sha) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "No commit found for SHA");
    };
    let found: Vec<Value> = repo
        .pulls
        .iter()
        .filter(|pr| pr.merge_sha == sha || pr.head_sha == sha || pr.commits.contains(&sha))
        .map(|pr| pull_json(repo, pr))
        .collect();
    ok(StatusCode::OK, Value::Array(found))
}

fn merge(repo: &mut Repo, body: &Value) -> Response {
    let (Some(base_name), Some(head_name)) = (body["base"].as_str(), body["head"].as_str()) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.");
    };
    let Some(base) = repo.branches.get(base_name).cloned() else {
        return error(StatusCode::NOT_FOUND, "Base does not exist");
    };
    let Some(head) = repo.resolve(head_name) else {
        return error(StatusCode::NOT_FOUND, "Head does not exist");
    };
    if repo.ancestors(&base).contains(&head) {
        return StatusCode::NO_CONTENT.into_response();
    }
    let conflicting = repo.conflicts.iter().any(|(b, h)| b == base_name && repo.resolve(h).as_ref() == Some(&head));
    if conflicting {
        return error(StatusCode::CONFLICT, "Merge conflict");
    }
    let message = body["commit_message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Merge {head_name} into {base_name}"));
    let sha = repo.merge_commit(&base, &head, &message, Some(BOT));
    repo.branches.insert(base_name.into(), sha.clone());
    ok(StatusCode::CREATED, commit_json(repo, &repo.commits[&sha]))
}

fn protection(repo: &Repo, branch: &str) -> Response {
    if !repo.branches.contains_key(branch) {
        return error(StatusCode::NOT_FOUND, "Branch not found");
    }
    let Some(protection) = repo.protections.get(branch) else {
        return error(StatusCode::NOT_FOUND, "Branch not protected");
    };
    let url = repo.api(&format!("/branches/{branch}/protection"));
    let mut body = json!({
        "url": url,
        "enforce_admins": { "url": format!("{url}/enforce_admins"), "enabled": protection.enforce_admins },
        "required_linear_history": { "enabled": false },
        "allow_force_pushes": { "enabled": false },
        "allow_deletions": { "enabled": false },
        "block_creations": { "enabled": false },
        "required_conversation_resolution": { "enabled": false },
        "lock_branch": { "enabled": false },
        "allow_fork_syncing": { "enabled": false },
        "required_signatures": { "url": format!("{url}/required_signatures"), "enabled": false },
    });
    if !protection.required_checks.is_empty() {
        body["required_status_checks"] = json!({
            "url": format!("{url}/required_status_checks"),
            "strict": true,
            "contexts": protection.required_checks,
            "contexts_url": format!("{url}/required_status_checks/contexts"),
            "checks": protection.required_checks.iter().map(|c| json!({ "context": c, "app_id": null })).collect::<Vec<_>>(),
        });
    }
    if protection.requires_pull_request {
        body["required_pull_request_reviews"] = json!({
            "url": format!("{url}/required_pull_request_reviews"),
            "dismiss_stale_reviews": true,
            "require_code_owner_reviews": false,
            "require_last_push_approval": false,
            "required_approving_review_count": 1,
        });
    }
    ok(StatusCode::OK, body)
}

fn create_deployment(repo: &mut Repo, body: Value) -> Response {
    let Some(git_ref) = body["ref"].as_str().map(str::to_owned) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.\n\n\"ref\" wasn't supplied.");
    };
    if repo.resolve(&git_ref).is_none() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, &format!("No ref found for: {git_ref}"));
    }
    let deployment = FakeDeployment {
        id: repo.deployments.len() as u64 + 1,
        git_ref,
        environment: body["environment"].as_str().unwrap_or("production").to_owned(),
        description: body["description"].as_str().unwrap_or_default().to_owned(),
        request: body,
        statuses: Vec::new(),
    };
    let json = deployment_json(repo, &deployment);
    repo.deployments.push(deployment);
    ok(StatusCode::CREATED, json)
}

fn create_status(repo: &mut Repo, id: &str, body: &Value) -> Response {
    let url = repo.api(&format!("/deployments/{id}"));
    let repository_url = repo.api("");
    let Some(deployment) = repo.deployments.iter_mut().find(|d| d.id.to_string() == id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let states = ["error", "failure", "inactive", "in_progress", "queued", "pending", "success"];
    let Some(state) = body["state"].as_str().filter(|s| states.contains(s)) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    };
    let description = body["description"].as_str().unwrap_or_default();
    if description.chars().count() > 140 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: description is too long (maximum is 140 characters)",
        );
    }
    let status = FakeDeploymentStatus {
        state: state.into(),
        description: description.into(),
        environment_url: body["environment_url"].as_str().map(str::to_owned),
    };
    deployment.statuses.push(status.clone());
    let status_id = deployment.statuses.len();
    let environment = deployment.environment.clone();
    let base_url = repo.base_url.clone();
    ok(
        StatusCode::CREATED,
        json!({
            "url": format!("{url}/statuses/{status_id}"),
            "id": status_id,
            "node_id": format!("DES_{id}_{status_id}"),
            "state": status.state,
            "creator": user_json(&base_url, BOT),
            "description": status.description,
            "environment": environment,
            "target_url": "",
            "created_at": now(),
            "updated_at": now(),
            "deployment_url": url,
            "repository_url": repository_url,
            "environment_url": status.environment_url.unwrap_or_default(),
            "log_url": "",
        }),
    )
}

fn now() -> String {
    let at: DateTime<Utc> = Utc::now();
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn ref_json(repo: &Repo, branch: &str, sha: &Sha) -> Value {
    json!({
        "ref": format!("refs/heads/{branch}"),
        "node_id": format!("REF_{branch}"),
        "url": repo.api(&format!("/git/refs/heads/{branch}")),
        "object": { "type": "commit", "sha": sha, "url": repo.api(&format!("/git/commits/{sha}")) },
    })
}

/// A full user object, as octocrab's `Author` needs it.
fn user_json(base_url: &str, login: &str) -> Value {
    let id = login.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) % 100_000_000;
    let api = format!("{base_url}/users/{login}");
    json!({
        "login": login,
        "id": id,
        "node_id": format!("U_{login}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": api,
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": "User",
        "site_admin": false,
    })
}

/// A full repository object.
fn repository_json(repo: &Repo) -> Value {
    let api = repo.api("");
    let html = format!("https://github.com/{OWNER}/{REPO}");
    let mut value = json!({
        "id": 42,
        "node_id": "R_shop",
        "name": REPO,
        "full_name": format!("{OWNER}/{REPO}"),
        "private": true,
        "owner": user_json(&repo.base_url, OWNER),
        "html_url": html,
        "description": "The shop",
        "fork": false,
        "url": api,
        "created_at": "2024-01-08T09:00:00Z",
        "updated_at": "2024-01-08T09:00:00Z",
        "pushed_at": "2024-01-08T09:00:00Z",
        "git_url": format!("git://github.com/{OWNER}/{REPO}.git"),
        "ssh_url": format!("git@github.com:{OWNER}/{REPO}.git"),
        "clone_url": format!("{html}.git"),
        "svn_url": html,
        "homepage": null,
        "mirror_url": null,
        "size": 1,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": "Python",
        "has_issues": true,
        "has_projects": false,
        "has_downloads": true,
        "has_wiki": false,
        "has_pages": false,
        "forks_count": 0,
        "archived": false,
        "disabled": false,
        "open_issues_count": 0,
        "license": null,
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
        "default_branch": "master",
        "is_template": false,
        "topics": [],
        "visibility": "private",
    });
    for (key, path) in [
        ("forks_url", "/forks"),
        ("keys_url", "/keys{/key_id}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("teams_url", "/teams"),
        ("hooks_url", "/hooks"),
        ("issue_events_url", "/issues/events{/number}"),
        ("events_url", "/events"),
        ("assignees_url", "/assignees{/user}"),
        ("branches_url", "/branches{/branch}"),
        ("tags_url", "/tags"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("trees_url", "/git/trees{/sha}"),
        ("statuses_url", "/statuses/{sha}"),
        ("languages_url", "/languages"),
        ("stargazers_url", "/stargazers"),
        ("contributors_url", "/contributors"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("commits_url", "/commits{/sha}"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("comments_url", "/comments{/number}"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("contents_url", "/contents/{+path}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("merges_url", "/merges"),
        ("archive_url", "/{archive_format}{/ref}"),
        ("downloads_url", "/downloads"),
        ("issues_url", "/issues{/number}"),
        ("pulls_url", "/pulls{/number}"),
        ("milestones_url", "/milestones{/number}"),
        ("notifications_url", "/notifications{?since,all,participating}"),
        ("labels_url", "/labels{/name}"),
        ("releases_url", "/releases{/id}"),
        ("deployments_url", "/deployments"),
    ] {
        value[key] = format!("{api}{path}").into();
    }
    value
}

/// A full commit object (GitHub's `commit` schema).
fn commit_json(repo: &Repo, commit: &FakeCommit) -> Value {
    let sha = &commit.sha;
    let at = "2024-01-08T09:00:00Z";
    let person = |login: &Option<String>| {
        let name = login.clone().unwrap_or_else(|| "Someone".into());
        json!({ "name": name, "email": format!("{name}@example.com"), "date": at })
    };
    let user = commit.author.as_deref().map(|login| user_json(&repo.base_url, login)).unwrap_or(Value::Null);
    json!({
        "url": repo.api(&format!("/commits/{sha}")),
        "sha": sha,
        "node_id": format!("C_{sha}"),
        "html_url": format!("https://github.com/{OWNER}/{REPO}/commit/{sha}"),
        "comments_url": repo.api(&format!("/commits/{sha}/comments")),
        "commit": {
            "url": repo.api(&format!("/git/commits/{sha}")),
            "author": person(&commit.author),
            "committer": person(&commit.author),
            "message": commit.message,
            "tree": { "url": repo.api(&format!("/git/trees/{sha}")), "sha": sha },
            "comment_count": 0,
            "verification": { "verified": false, "reason": "unsigned", "signature": null, "payload": null },
        },
        "author": user.clone(),
        "committer": user,
        "parents": commit.parents.iter().map(|p| json!({
            "url": repo.api(&format!("/commits/{p}")),
            "html_url": format!("https://github.com/{OWNER}/{REPO}/commit/{p}"),
            "sha": p,
        })).collect::<Vec<_>>(),
    })
}

fn file_json(repo: &Repo, filename: &str, head: &Sha) -> Value {
    json!({
        "sha": hex::encode(&Sha256::digest(filename.as_bytes())[..20]),
        "filename": filename,
        "status": "modified",
        "additions": 1,
        "deletions": 0,
        "changes": 1,
        "blob_url": format!("https://github.com/{OWNER}/{REPO}/blob/{head}/{filename}"),
        "raw_url": format!("https://github.com/{OWNER}/{REPO}/raw/{head}/{filename}"),
        "contents_url": repo.api(&format!("/contents/{filename}?ref={head}")),
        "patch": "@@ -1 +1 @@",
    })
}

fn branch_tip_json(repo: &Repo, branch: &str, sha: &Sha, login: &str) -> Value {
    json!({
        "label": format!("{OWNER}:{branch}"),
        "ref": branch,
        "sha": sha,
        "user": user_json(&repo.base_url, login),
        "repo": repository_json(repo),
    })
}

/// A pull request as `GET /commits/{sha}/pulls` lists it (`pull-request-simple`: no `merged`).
fn pull_json(repo: &Repo, pr: &FakePull) -> Value {
    let number = pr.number;
    let url = repo.api(&format!("/pulls/{number}"));
    let html = format!("https://github.com/{OWNER}/{REPO}/pull/{number}");
    let at = "2024-01-08T09:00:00Z";
    // Built in two parts: one `json!` this size exceeds the macro recursion limit.
    let links = json!({
        "self": { "href": url },
        "html": { "href": html },
        "issue": { "href": repo.api(&format!("/issues/{number}")) },
        "comments": { "href": repo.api(&format!("/issues/{number}/comments")) },
        "review_comments": { "href": format!("{url}/comments") },
        "review_comment": { "href": repo.api("/pulls/comments{/number}") },
        "commits": { "href": format!("{url}/commits") },
        "statuses": { "href": repo.api(&format!("/statuses/{}", pr.head_sha)) },
    });
    let mut value = json!({
        "url": url,
        "id": 1_000_000 + number,
        "node_id": format!("PR_{number}"),
        "html_url": html,
        "diff_url": format!("{html}.diff"),
        "patch_url": format!("{html}.patch"),
        "issue_url": repo.api(&format!("/issues/{number}")),
        "commits_url": format!("{url}/commits"),
        "review_comments_url": format!("{url}/comments"),
        "review_comment_url": repo.api("/pulls/comments{/number}"),
        "comments_url": repo.api(&format!("/issues/{number}/comments")),
        "statuses_url": repo.api(&format!("/statuses/{}", pr.head_sha)),
        "number": number,
        "state": "closed",
        "locked": false,
        "title": pr.title,
        "user": user_json(&repo.base_url, &pr.author),
        "body": if pr.body.is_empty() { Value::Null } else { pr.body.clone().into() },
        "labels": [],
        "milestone": null,
        "active_lock_reason": null,
        "created_at": at,
        "updated_at": at,
        "closed_at": at,
        "merged_at": at,
        "merge_commit_sha": pr.merge_sha,
        "assignee": null,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": branch_tip_json(repo, &pr.head_ref, &pr.head_sha, &pr.author),
        "base": branch_tip_json(repo, &pr.base, &pr.merge_sha, OWNER),
        "author_association": "MEMBER",
        "auto_merge": null,
        "draft": false,
    });
    value["_links"] = links;
    value
}

fn deployment_json(repo: &Repo, deployment: &FakeDeployment) -> Value {
    let id = deployment.id;
    let url = repo.api(&format!("/deployments/{id}"));
    json!({
        "url": url,
        "id": id,
        "node_id": format!("DE_{id}"),
        "sha": repo.resolve(&deployment.git_ref).map(|s| s.to_string()).unwrap_or_default(),
        "ref": deployment.git_ref,
        "task": "deploy",
        "payload": {},
        "original_environment": deployment.environment,
        "environment": deployment.environment,
        "description": deployment.description,
        "creator": user_json(&repo.base_url, BOT),
        "created_at": now(),
        "updated_at": now(),
        "statuses_url": format!("{url}/statuses"),
        "repository_url": repo.api(""),
        "transient_environment": false,
        "production_environment": deployment.environment == "production",
    })
}
