//! GitHub over REST (octocrab): branch tips, comparisons for release notes, merges and
//! fast-forwards for promotions, branch protection for `/status`, and Deployments, so that
//! GitHub's environment view shows what Shipday deployed.
//!
//! Every call is bounded: at most [`ATTEMPTS`] tries, retried only on 5xx, 429, secondary rate
//! limits, timeouts and connection failures, with a short exponential backoff. A failure names
//! the call, the HTTP status and GitHub's own `message`. The token never appears in errors or
//! logs: octocrab keeps it in a `SecretString`, and error text is scrubbed of it all the same.

use crate::release::ci_gate::{Check, parse_check_runs, parse_combined_status};
use crate::release::gitref::{GitRef, Sha};
use crate::secret::{Secret, SecretRef};
use anyhow::{Context, Result, anyhow, bail};
use http::StatusCode;
use octocrab::Octocrab;
use octocrab::commits::PullRequestTarget;
use octocrab::models::DeploymentId;
use octocrab::models::repos::{DeploymentStatusState, Object};
use octocrab::params::repos::Reference;
use serde::Deserialize;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// GitHub.com's REST API; GitHub Enterprise Server uses `https://HOST/api/v3`.
pub const DEFAULT_API_BASE_URL: &str = "https://api.github.com";

/// Tries per call, the first included.
pub const ATTEMPTS: u32 = 3;

/// First retry delay in production; it doubles per retry.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);

/// A `Retry-After` longer than this is not waited for: the call fails and says so.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The most one attempt may take in all, however slowly the answer trickles in.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Commits per compare page (GitHub's maximum), and how many pages a release note may read.
const COMPARE_PAGE: u8 = 100;
const COMPARE_MAX_PAGES: u32 = 10;

/// Pages of check runs (100 each) read for one commit.
const CHECK_RUN_MAX_PAGES: u32 = 5;

/// GitHub refuses deployment status descriptions longer than this.
const STATUS_DESCRIPTION_MAX: usize = 140;

/// The `[github]` section of the config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
    /// REST API root: GitHub.com by default, a GitHub Enterprise Server, or a test fake.
    #[serde(default = "default_api_base_url")]
    pub api_base_url: String,
    /// Owner (user or organisation) of the app's repository.
    pub owner: String,
    /// The app's repository.
    pub repo: String,
    /// A token that can read and merge branches and create deployments.
    pub token: SecretRef,
    /// The webhook's secret; without it the webhook route refuses to start.
    pub webhook_secret: Option<SecretRef>,
    /// Refused when set: the webhook route is on the one listener (`[server] listen`) whenever
    /// `webhook_secret` is set. Kept so an old config gets a clear message.
    pub listen: Option<String>,
}

fn default_api_base_url() -> String {
    DEFAULT_API_BASE_URL.into()
}

impl GitHubConfig {
    /// The repository's web address, for links people open: `https://github.com/owner/repo`
    /// for GitHub.com, the server's own host for GitHub Enterprise (`…/api/v3` dropped), and
    /// the API root itself for anything else (a test fake).
    pub fn web_url(&self) -> String {
        let api = self.api_base_url.trim_end_matches('/');
        let host = if api == DEFAULT_API_BASE_URL.trim_end_matches('/') {
            "https://github.com"
        } else {
            api.strip_suffix("/api/v3").unwrap_or(api)
        };
        format!("{host}/{}/{}", self.owner, self.repo)
    }
}

/// The app's repository on GitHub, with bounded retries and named errors.
#[derive(Clone)]
pub struct GitHubClient {
    octocrab: Octocrab,
    owner: String,
    repo: String,
    /// Kept only to scrub it from error text, whatever a server echoes back.
    token: Secret,
    backoff: Duration,
    /// The most one attempt may take ([`CALL_TIMEOUT`]; tests shorten it).
    call_timeout: Duration,
}

impl fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubClient").field("owner", &self.owner).field("repo", &self.repo).finish_non_exhaustive()
    }
}

/// What lies between two commits, for release notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// `ahead`, `behind`, `identical` or `diverged` (head relative to base).
    pub status: String,
    /// Commits in head and not in base.
    pub ahead_by: u64,
    /// Commits in base and not in head.
    pub behind_by: u64,
    /// The commits in head and not in base, oldest first (at most 1000; `ahead_by` is exact).
    pub commits: Vec<CommitInfo>,
    /// Paths changed from the merge base to head (GitHub lists at most 300).
    pub files: Vec<String>,
}

/// One commit of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The commit.
    pub sha: Sha,
    /// Its full message.
    pub message: String,
    /// The author's GitHub login, when the commit's email belongs to an account.
    pub author: Option<String>,
}

/// A pull request, as release notes need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSummary {
    /// The PR number.
    pub number: u64,
    /// Its title (ticket keys usually live here or in the branch name).
    pub title: String,
    /// Its description, empty when there is none.
    pub body: String,
    /// The author's GitHub login.
    pub author: String,
    /// The branch it came from.
    pub head_ref: String,
    /// Whether it was merged.
    pub merged: bool,
}

/// What `POST /merges` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// A merge commit was created and the branch now points at it.
    Merged(Sha),
    /// The branch already contains head (also when an earlier attempt merged it but its answer
    /// was lost): read the branch tip to know what to deploy.
    NothingToMerge,
    /// GitHub could not merge; its message, for the people who will resolve it.
    Conflict(String),
}

/// What a fast-forward did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastForward {
    /// The branch now points at the requested commit.
    Moved,
    /// The branch has commits the target lacks; nothing changed.
    NotFastForward,
}

/// A branch's protection, as far as Shipday's rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// Changes must come through pull requests with reviews.
    pub requires_pull_request: bool,
    /// Status checks that must pass (legacy contexts and check names, deduplicated).
    pub required_checks: Vec<String>,
    /// Whether administrators are held to the rules too.
    pub enforce_admins: bool,
}

/// The parts of `GET /repos/{owner}/{repo}` `check-config --online` shows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    /// `owner/repo`, as GitHub spells it.
    pub full_name: String,
    /// The default branch.
    pub default_branch: String,
    /// Whether the repository is private.
    #[serde(default)]
    pub private: bool,
    /// What the token's user may do there (absent without authentication).
    pub permissions: Option<RepositoryPermissions>,
}

/// `permissions` of a repository, for the authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepositoryPermissions {
    /// May merge and push (promotions fast-forward and merge branches).
    #[serde(default)]
    pub push: bool,
}

/// A deployment status, as GitHub's environment view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    /// Accepted, not started.
    Pending,
    /// Steps are running.
    InProgress,
    /// Deployed and healthy.
    Success,
    /// A step or the health check failed.
    Failure,
    /// Shipday itself could not finish (crash, lost connection).
    Error,
}

impl From<DeploymentState> for DeploymentStatusState {
    fn from(state: DeploymentState) -> Self {
        match state {
            DeploymentState::Pending => Self::Pending,
            DeploymentState::InProgress => Self::InProgress,
            DeploymentState::Success => Self::Success,
            DeploymentState::Failure => Self::Failure,
            DeploymentState::Error => Self::Error,
        }
    }
}

impl GitHubClient {
    /// Builds the client from the `[github]` section, loading the token (a missing secret names
    /// `github.token`). Call it inside the Tokio runtime: octocrab spawns its worker on build.
    pub fn new(config: &GitHubConfig, base: &Path) -> Result<Self> {
        check_name("github.owner", &config.owner)?;
        check_name("github.repo", &config.repo)?;
        let api = config.api_base_url.trim_end_matches('/');
        if !(api.starts_with("https://") || api.starts_with("http://")) {
            bail!("github.api_base_url: `{api}` must start with https:// (or http:// for a local test server)");
        }
        let token = config.token.load("github.token", base)?;
        // octocrab panics on a token that is not a valid header value; say so instead.
        if !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
            bail!("github.token: the token contains spaces or non-ASCII characters; check the secret (not shown)");
        }
        if tokio::runtime::Handle::try_current().is_err() {
            bail!("the GitHub client must be created inside the Tokio runtime");
        }
        let octocrab = Octocrab::builder()
            .base_uri(api)
            .map_err(|_| anyhow!("github.api_base_url: `{api}` is not a valid URL"))?
            .personal_token(token.expose().to_owned())
            .add_header(http::header::ACCEPT, "application/vnd.github+json".into())
            .add_header(http::HeaderName::from_static("x-github-api-version"), "2022-11-28".into())
            .set_connect_timeout(Some(CONNECT_TIMEOUT))
            .set_read_timeout(Some(IO_TIMEOUT))
            .set_write_timeout(Some(IO_TIMEOUT))
            .build()
            .map_err(|error| anyhow!("cannot build the GitHub client: {}", chain(&error)))?;
        Ok(Self {
            octocrab,
            owner: config.owner.clone(),
            repo: config.repo.clone(),
            token,
            backoff: DEFAULT_BACKOFF,
            call_timeout: CALL_TIMEOUT,
        })
    }

    /// Sets the first retry delay (it doubles per retry); tests make it a few milliseconds.
    pub fn with_backoff(mut self, first_retry: Duration) -> Self {
        self.backoff = first_retry;
        self
    }

    /// Sets the most one attempt may take (the default is [`CALL_TIMEOUT`]); tests shorten it
    /// to see a GitHub that never answers cut off.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The commit at the tip of `branch`.
    pub async fn branch_sha(&self, branch: &str) -> Result<Sha> {
        let branch = branch_name(branch)?;
        let call = format!("read branch `{branch}`");
        let reference = &Reference::Branch(branch.as_str().to_owned());
        let found = self
            .call(&call, move || async move { self.octocrab.repos(&self.owner, &self.repo).get_ref(reference).await })
            .await
            .map_err(|failed| self.error(failed))?;
        match found.object {
            Object::Commit { sha, .. } => parse_sha(&call, &sha),
            other => bail!("GitHub {call}: the ref points at {other:?}, not at a commit"),
        }
    }

    /// What `head` has that `base` lacks (and the other way round), for release notes.
    pub async fn compare(&self, base: &Sha, head: &Sha) -> Result<Comparison> {
        let call = format!("compare {}...{}", base.short(), head.short());
        let page = |number: u32| {
            self.call(&call, move || async move {
                self.octocrab
                    .commits(&self.owner, &self.repo)
                    .compare(base.as_str(), head.as_str())
                    .per_page(COMPARE_PAGE)
                    .page(number)
                    .send()
                    .await
            })
        };
        let first = page(1).await.map_err(|failed| self.error(failed))?;
        let total = usize::try_from(first.total_commits).unwrap_or(0);
        let mut raw_commits = first.commits;
        let mut number = 1;
        while raw_commits.len() < total && number < COMPARE_MAX_PAGES {
            number += 1;
            let next = page(number).await.map_err(|failed| self.error(failed))?;
            if next.commits.is_empty() {
                break;
            }
            raw_commits.extend(next.commits);
        }
        if raw_commits.len() < total {
            tracing::warn!(call, total, listed = raw_commits.len(), "comparison lists only the first commits");
        }
        let status = serde_json::to_value(&first.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .with_context(|| format!("GitHub {call}: unreadable status"))?;
        let commits = raw_commits
            .into_iter()
            .map(|c| {
                Ok(CommitInfo {
                    sha: parse_sha(&call, &c.sha)?,
                    message: c.commit.message,
                    author: c.author.map(|a| a.login),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Comparison {
            status,
            ahead_by: u64::try_from(first.ahead_by).unwrap_or(0),
            behind_by: u64::try_from(first.behind_by).unwrap_or(0),
            commits,
            files: first.files.unwrap_or_default().into_iter().map(|f| f.filename).collect(),
        })
    }

    /// The merged pull requests that contain `sha` (or whose merge commit it is).
    pub async fn pulls_for_commit(&self, sha: &Sha) -> Result<Vec<PullSummary>> {
        let call = format!("list pull requests of {}", sha.short());
        let page = self
            .call(&call, move || async move {
                self.octocrab
                    .commits(&self.owner, &self.repo)
                    .associated_pull_requests(PullRequestTarget::Sha(sha.as_str().to_owned()))
                    .per_page(100u8)
                    .send()
                    .await
            })
            .await
            .map_err(|failed| self.error(failed))?;
        // This list endpoint has no `merged` field; `merged_at` is what says so.
        Ok(page
            .items
            .into_iter()
            .filter(|pr| pr.merged_at.is_some())
            .map(|pr| PullSummary {
                number: pr.number,
                title: pr.title.unwrap_or_default(),
                body: pr.body.unwrap_or_default(),
                author: pr.user.map(|u| u.login).unwrap_or_default(),
                head_ref: pr.head.ref_field,
                merged: true,
            })
            .collect())
    }

    /// Merges `head` into `into_branch` with a merge commit (`POST /merges`): 201 merged, 204
    /// nothing to merge, 409 a conflict.
    pub async fn merge(&self, into_branch: &str, head: &Sha, message: &str) -> Result<MergeOutcome> {
        let into = branch_name(into_branch)?;
        let call = format!("merge {} into `{into}`", head.short());
        let into = into.as_str();
        let merged = self
            .call(&call, move || async move {
                self.octocrab
                    .repos(&self.owner, &self.repo)
                    .merge(head.as_str(), into)
                    .commit_message(message)
                    .send()
                    .await
            })
            .await;
        match merged {
            Ok(Some(commit)) => Ok(MergeOutcome::Merged(parse_sha(&call, &commit.sha)?)),
            Ok(None) => Ok(MergeOutcome::NothingToMerge),
            Err(failed) if failed.status == Some(StatusCode::CONFLICT) => Ok(MergeOutcome::Conflict(failed.message)),
            Err(failed) => Err(self.error(failed)),
        }
    }

    /// Moves `branch` to `to` only if that is a fast-forward (`force: false`).
    pub async fn fast_forward(&self, branch: &str, to: &Sha) -> Result<FastForward> {
        let branch = branch_name(branch)?;
        let call = format!("fast-forward `{branch}` to {}", to.short());
        let reference = &Reference::Branch(branch.as_str().to_owned());
        let moved = self
            .call(&call, move || async move {
                self.octocrab
                    .repos(&self.owner, &self.repo)
                    .update_ref(reference, to.as_str())
                    .force(false)
                    .send()
                    .await
            })
            .await;
        match moved {
            Ok(_) => Ok(FastForward::Moved),
            // GitHub answers 422 "Update is not a fast forward"; other 422s (a missing branch
            // or commit) are errors.
            Err(failed)
                if failed.status == Some(StatusCode::UNPROCESSABLE_ENTITY)
                    && failed.message.to_ascii_lowercase().contains("fast forward") =>
            {
                Ok(FastForward::NotFastForward)
            }
            Err(failed) => Err(self.error(failed)),
        }
    }

    /// The repository as the token sees it (`GET /repos/{owner}/{repo}`); `None` when GitHub
    /// answers 404 (no such repository, or the token may not see it).
    pub async fn repository(&self) -> Result<Option<Repository>> {
        let call = format!("read the repository {}/{}", self.owner, self.repo);
        let route = format!("/repos/{}/{}", self.owner, self.repo);
        let route = route.as_str();
        // Our own type: only what `check-config --online` shows.
        let read =
            self.call(&call, move || async move { self.octocrab.get::<Repository, _, ()>(route, None).await }).await;
        match read {
            Ok(repository) => Ok(Some(repository)),
            Err(failed) if failed.status == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(failed) => Err(self.error(failed)),
        }
    }

    /// `owner/repo` as configured.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    /// The branch's protection; `None` when GitHub answers 404 (not protected, or the token
    /// may not read it, which `/status` should warn about all the same).
    pub async fn branch_protection(&self, branch: &str) -> Result<Option<Protection>> {
        let branch = branch_name(branch)?;
        let call = format!("read the protection of `{branch}`");
        let route = format!("/repos/{}/{}/branches/{branch}/protection", self.owner, self.repo);
        // Our own type: octocrab's requires `required_status_checks.strict`, which GitHub's
        // documented example omits.
        let route = route.as_str();
        let read =
            self.call(&call, move || async move { self.octocrab.get::<RawProtection, _, ()>(route, None).await }).await;
        match read {
            Ok(raw) => Ok(Some(raw.into())),
            Err(failed) if failed.status == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(failed) => Err(self.error(failed)),
        }
    }

    /// Records a deployment of exactly `sha` to `environment`; returns its id. No auto-merge
    /// and no required contexts: Shipday has already decided what goes out.
    pub async fn create_deployment(&self, sha: &Sha, environment: &str, description: &str) -> Result<u64> {
        let call = format!("create a deployment of {} to {environment}", sha.short());
        let deployment = self
            .call(&call, move || async move {
                self.octocrab
                    .repos(&self.owner, &self.repo)
                    .deployments()
                    .create(sha.as_str())
                    .environment(environment)
                    .description(description)
                    .auto_merge(false)
                    .required_contexts(Vec::<String>::new())
                    .send()
                    .await
            })
            .await
            .map_err(|failed| self.error(failed))?;
        Ok(deployment.id.into_inner())
    }

    /// Adds a status to a deployment (GitHub marks older deployments inactive on success).
    pub async fn deployment_status(
        &self,
        deployment_id: u64,
        state: DeploymentState,
        description: &str,
        environment_url: Option<&str>,
    ) -> Result<()> {
        let call = format!("set deployment {deployment_id} to {state:?}");
        let description: String = description.chars().take(STATUS_DESCRIPTION_MAX).collect();
        let description = description.as_str();
        self.call(&call, move || async move {
            let repo = self.octocrab.repos(&self.owner, &self.repo);
            let deployments = repo.deployments();
            let statuses = deployments.statuses(DeploymentId(deployment_id));
            let mut status = statuses.create(state.into()).description(description);
            if let Some(url) = environment_url {
                status = status.environment_url(url);
            }
            status.send().await
        })
        .await
        .map_err(|failed| self.error(failed))?;
        Ok(())
    }

    /// Every check GitHub knows on exactly `sha`: its combined status (one per context) and its
    /// check runs (all pages, up to [`CHECK_RUN_MAX_PAGES`]), for the CI gate.
    pub async fn commit_checks(&self, sha: &Sha) -> Result<Vec<Check>> {
        let call = format!("read the checks of {}", sha.short());
        let status_route = format!("/repos/{}/{}/commits/{}/status", self.owner, self.repo, sha.as_str());
        let status_route = status_route.as_str();
        let status = self
            .call(&call, move || async move {
                self.octocrab.get::<serde_json::Value, _, _>(status_route, Some(&[("per_page", "100")])).await
            })
            .await
            .map_err(|failed| self.error(failed))?;
        let mut checks = parse_combined_status(&status.to_string()).map_err(|e| anyhow!("GitHub {call}: {e}"))?;
        let runs_route = format!("/repos/{}/{}/commits/{}/check-runs", self.owner, self.repo, sha.as_str());
        let runs_route = runs_route.as_str();
        let mut listed = 0u64;
        for page in 1..=CHECK_RUN_MAX_PAGES {
            let page_text = page.to_string();
            let page_text = page_text.as_str();
            let body = self
                .call(&call, move || async move {
                    self.octocrab
                        .get::<serde_json::Value, _, _>(runs_route, Some(&[("per_page", "100"), ("page", page_text)]))
                        .await
                })
                .await
                .map_err(|failed| self.error(failed))?;
            let on_page = body.get("check_runs").and_then(|runs| runs.as_array()).map_or(0, Vec::len) as u64;
            let (total, found) = parse_check_runs(&body.to_string()).map_err(|e| anyhow!("GitHub {call}: {e}"))?;
            checks.extend(found);
            listed += on_page;
            if on_page == 0 || listed >= total {
                break;
            }
        }
        Ok(checks)
    }

    /// Runs one call, retrying transient failures a bounded number of times.
    async fn call<T, F, Fut>(&self, call: &str, mut attempt: F) -> Result<T, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = octocrab::Result<T>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            // octocrab's timeouts are per read and write; this bounds the whole attempt.
            let mut failed = match tokio::time::timeout(self.call_timeout, attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => Failed::from_octocrab(call, error),
                Err(_) => Failed::no_answer(call, self.call_timeout),
            };
            failed.tries = tries;
            if !failed.transient || tries >= ATTEMPTS {
                return Err(failed);
            }
            let mut wait = self.backoff * 2u32.pow(tries - 1);
            if let Some(asked) = failed.retry_after {
                if asked > MAX_RETRY_AFTER {
                    failed.message.push_str(&format!(" (GitHub asks to wait {}s)", asked.as_secs()));
                    return Err(failed);
                }
                wait = wait.max(asked);
            }
            tracing::warn!(
                call,
                attempt = tries,
                status = failed.status.map(|s| s.as_u16()),
                message = %self.scrub(&failed.message),
                "GitHub call failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// The error a caller sees: the call, the status, GitHub's message, and a hint.
    fn error(&self, failed: Failed) -> anyhow::Error {
        anyhow!(self.scrub(&failed.to_string()))
    }

    fn scrub(&self, text: &str) -> String {
        text.replace(self.token.expose(), "[redacted]")
    }
}

/// A failed call, with what callers branch on (status) and what people read (message).
#[derive(Debug)]
struct Failed {
    call: String,
    status: Option<StatusCode>,
    message: String,
    transient: bool,
    retry_after: Option<Duration>,
    tries: u32,
}

impl Failed {
    /// An attempt cut off by the call timeout: nothing was answered, so it is worth retrying.
    fn no_answer(call: &str, timeout: Duration) -> Self {
        let message = format!("no answer within {}s", timeout.as_secs_f32());
        Self { call: call.to_owned(), status: None, message, transient: true, retry_after: None, tries: 1 }
    }

    fn from_octocrab(call: &str, error: octocrab::Error) -> Self {
        let call = call.to_owned();
        match error {
            octocrab::Error::GitHub { source, .. } => {
                let status = source.status_code;
                let mut message = source.message.clone();
                if let Some(reset) = source.rate_limit_reset_at()
                    && status == StatusCode::FORBIDDEN
                    && message.to_ascii_lowercase().contains("rate limit")
                {
                    message.push_str(&format!(" (the limit resets at {})", reset.to_rfc3339()));
                }
                let retry_after = source
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(http::header::RETRY_AFTER))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok())
                    .map(Duration::from_secs);
                Self {
                    call,
                    transient: transient(status, &message),
                    status: Some(status),
                    message,
                    retry_after,
                    tries: 1,
                }
            }
            // The connection failed or timed out: nothing was answered, so trying again is safe.
            octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. } => {
                Self { call, status: None, message: chain(&error), transient: true, retry_after: None, tries: 1 }
            }
            other => Self { call, status: None, message: chain(&other), transient: false, retry_after: None, tries: 1 },
        }
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GitHub {} failed: ", self.call)?;
        let message = self.message.trim_end_matches('.');
        match self.status {
            Some(status) => write!(f, "HTTP {}: {message}", status.as_u16())?,
            None => write!(f, "{message}")?,
        }
        if self.tries > 1 {
            write!(f, " (after {} attempts)", self.tries)?;
        }
        let rate_limited = message.to_ascii_lowercase().contains("rate limit");
        match self.status.map(|s| s.as_u16()) {
            Some(401) => write!(f, ". Check github.token: it is wrong, expired or revoked"),
            Some(403 | 429) if rate_limited => write!(f, ". GitHub's API rate limit is used up: wait, then try again"),
            Some(403) => write!(f, ". Check github.token's permissions on the repository"),
            _ => Ok(()),
        }
    }
}

/// Whether an answer from GitHub is worth another try.
fn transient(status: StatusCode, message: &str) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && message.to_ascii_lowercase().contains("secondary rate limit"))
}

/// An error and its sources on one line (octocrab's own `Display` often names only the kind).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

fn branch_name(branch: &str) -> Result<GitRef> {
    GitRef::parse(branch).map_err(|e| anyhow!("{e}"))
}

fn parse_sha(call: &str, sha: &str) -> Result<Sha> {
    Sha::parse(sha).map_err(|_| anyhow!("GitHub {call}: `{sha}` is not a full commit SHA"))
}

/// Owner and repository names end up in URL paths: GitHub's own character set only.
fn check_name(key: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        bail!("{key}: `{}` is not a GitHub name (letters, digits, `-`, `_` and `.`)", name.escape_debug());
    }
    Ok(())
}

/// The parts of `GET …/branches/{branch}/protection` Shipday reads.
#[derive(Debug, Deserialize)]
struct RawProtection {
    required_status_checks: Option<RawStatusChecks>,
    required_pull_request_reviews: Option<serde_json::Value>,
    enforce_admins: Option<RawFlag>,
}

#[derive(Debug, Deserialize)]
struct RawStatusChecks {
    #[serde(default)]
    contexts: Vec<String>,
    #[serde(default)]
    checks: Vec<RawCheck>,
}

#[derive(Debug, Deserialize)]
struct RawCheck {
    context: String,
}

#[derive(Debug, Deserialize)]
struct RawFlag {
    enabled: bool,
}

impl From<RawProtection> for Protection {
    fn from(raw: RawProtection) -> Self {
        let mut required_checks = Vec::new();
        if let Some(checks) = raw.required_status_checks {
            for name in checks.contexts.into_iter().chain(checks.checks.into_iter().map(|c| c.context)) {
                if !required_checks.contains(&name) {
                    required_checks.push(name);
                }
            }
        }
        Self {
            requires_pull_request: raw.required_pull_request_reviews.is_some_and(|v| !v.is_null()),
            required_checks,
            enforce_admins: raw.enforce_admins.is_some_and(|f| f.enabled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(name: &str) -> String {
        let path = format!("{}/tests/fixtures/contracts/github/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    }

    #[test]
    fn the_config_section_has_defaults_and_refuses_unknown_keys() {
        let config: GitHubConfig = toml::from_str(
            r#"
owner = "acme"
repo = "shop"
token = { env = "GITHUB_TOKEN" }
"#,
        )
        .unwrap();
        assert_eq!(config.api_base_url, DEFAULT_API_BASE_URL);
        assert_eq!(config.webhook_secret, None);
        let err = toml::from_str::<GitHubConfig>("owner = \"a\"\nrepo = \"b\"\ntoken = { env = \"T\" }\ntokn = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tokn"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_token_names_the_key_and_bad_names_are_refused() {
        let mut config = GitHubConfig {
            api_base_url: DEFAULT_API_BASE_URL.into(),
            owner: "acme".into(),
            repo: "shop".into(),
            token: SecretRef { env: Some("SHIPDAY_TEST_SURELY_UNSET_GITHUB".into()), file: None },
            webhook_secret: None,
            listen: None,
        };
        let err = format!("{:#}", GitHubClient::new(&config, Path::new(".")).unwrap_err());
        assert!(err.contains("github.token") && err.contains("SHIPDAY_TEST_SURELY_UNSET_GITHUB"), "{err}");
        config.repo = "../../admin".into();
        let err = format!("{:#}", GitHubClient::new(&config, Path::new(".")).unwrap_err());
        assert!(err.contains("github.repo"), "{err}");
    }

    #[test]
    fn only_server_errors_and_rate_limits_are_retried() {
        assert!(transient(StatusCode::BAD_GATEWAY, "Server Error"));
        assert!(transient(StatusCode::TOO_MANY_REQUESTS, "slow down"));
        assert!(transient(StatusCode::FORBIDDEN, "You have exceeded a secondary rate limit. Please wait."));
        assert!(!transient(StatusCode::FORBIDDEN, "Resource not accessible by personal access token"));
        assert!(!transient(StatusCode::CONFLICT, "Merge conflict"));
        assert!(!transient(StatusCode::UNPROCESSABLE_ENTITY, "Update is not a fast forward"));
        assert!(!transient(StatusCode::UNAUTHORIZED, "Bad credentials"));
    }

    /// GitHub's documented examples parse with the types the client reads them into.
    #[test]
    fn githubs_documented_responses_parse() {
        let reference: octocrab::models::repos::Ref = serde_json::from_str(&contract("git.ref.response.json")).unwrap();
        assert!(
            matches!(reference.object, Object::Commit { ref sha, .. } if sha == "aa218f56b14c9653891f9e74264a383fa43fefbd")
        );
        let merge: octocrab::models::repos::MergeCommit =
            serde_json::from_str(&contract("repos.merge.response.json")).unwrap();
        assert_eq!(merge.sha, "6dcb09b5b57875f334f61aebed695e2e4193db5e");
        let compare: octocrab::models::commits::CommitComparison =
            serde_json::from_str(&contract("compare.response.json")).unwrap();
        assert_eq!((compare.ahead_by, compare.behind_by, compare.commits.len()), (1, 2, 1));
        let deployment: octocrab::models::repos::Deployment =
            serde_json::from_str(&contract("deployment.create.response.json")).unwrap();
        assert_eq!(deployment.id.into_inner(), 1);
        let status: octocrab::models::repos::DeploymentStatus =
            serde_json::from_str(&contract("deployment_status.create.response.json")).unwrap();
        assert_eq!(status.state, DeploymentStatusState::Success);
    }

    #[test]
    fn protection_is_read_from_githubs_example() {
        let raw: RawProtection = serde_json::from_str(&contract("branch-protection.response.json")).unwrap();
        assert_eq!(
            Protection::from(raw),
            Protection {
                requires_pull_request: true,
                required_checks: vec!["continuous-integration/travis-ci".into()],
                enforce_admins: true,
            }
        );
        let bare: RawProtection = serde_json::from_str(r#"{"required_pull_request_reviews": null}"#).unwrap();
        assert_eq!(
            Protection::from(bare),
            Protection { requires_pull_request: false, required_checks: vec![], enforce_admins: false }
        );
    }
}
