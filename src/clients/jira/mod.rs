//! Jira Cloud over REST v3: read an issue, move it to a column, comment on it, search.
//!
//! Columns are named by their **status**, never by a transition id, because ids differ per
//! workflow. Every request retries what is worth retrying (429 with `Retry-After`, 5xx,
//! timeouts) a bounded number of times; a move also survives 409 conflicts and people
//! dragging the card at the same moment. What a caller must branch on is a [`JiraError`],
//! reachable with `anyhow::Error::downcast_ref` through any added context.

mod config;
mod wire;

pub use config::{DeployMove, JiraColumns, JiraConfig};

use crate::secret::Secret;
use anyhow::{Context, Result, bail};
use config::check_base_url;
use reqwest::header::{ACCEPT, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::fmt;
use std::time::Duration;
use wire::{WireIssue, WireSearchPage, WireTransition, WireTransitions, adf_document, describe, error_text, parse};

/// Fields every issue is read with: enough to show it and to decide a move.
pub const ISSUE_FIELDS: [&str; 3] = ["summary", "status", "assignee"];

/// Issues asked for per search page (Jira may return fewer).
const SEARCH_PAGE_SIZE: u32 = 100;

/// A search that needs more pages than this is a runaway query, not a release's tickets.
const MAX_SEARCH_PAGES: usize = 50;

/// How hard a request tries before it reports Jira as unavailable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included; also the number of rounds a move gets
    /// against 409 conflicts.
    pub max_attempts: u32,
    /// First backoff after a 5xx, a timeout or a 409; it doubles each time, with jitter.
    pub backoff_base: Duration,
    /// Longest backoff between two attempts.
    pub backoff_cap: Duration,
    /// Longest `Retry-After` honoured; asked to wait longer, the request gives up at once
    /// (retrying sooner only earns a longer wait) and the caller can try again later.
    pub retry_after_cap: Duration,
    /// Time limit of one attempt, the response body included.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(8),
            retry_after_cap: Duration::from_secs(30),
            timeout: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: exponential, with the upper half jittered so
    /// that several bots (or outbox entries) do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self.backoff_base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let full = exponential.min(self.backoff_cap);
        full / 2 + full.mul_f64(fastrand::f64() / 2.0)
    }
}

/// Failures a caller branches on; everything else is an ordinary `anyhow` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JiraError {
    /// The workflow has no available transition from the issue's status to the wanted one
    /// (checked twice, with fresh data). Not worth retrying: the config or the board is wrong.
    #[error("{key} cannot move from `{from}` to `{to}`: the workflow offers {}", offered(available))]
    TransitionMissing {
        /// The issue.
        key: String,
        /// Its status when last read.
        from: String,
        /// The status asked for.
        to: String,
        /// Destination statuses of the transitions available from `from`.
        available: Vec<String>,
    },
    /// 401: the email or API token is wrong, or the token was revoked.
    #[error("Jira refused the credentials of {email} (401): check jira.email and the API token in jira.token")]
    Unauthorized {
        /// The account the bot authenticated as.
        email: String,
    },
    /// 404: the issue does not exist, or the bot's account cannot see it.
    #[error("{what}: Jira answered 404 (it does not exist, or the bot's account cannot see it)")]
    NotFound {
        /// What was being done.
        what: String,
    },
    /// Any other 4xx: Jira understood and refused. Retrying will not help.
    #[error("{what}: Jira answered {status}: {message}")]
    Rejected {
        /// What was being done.
        what: String,
        /// The HTTP status.
        status: u16,
        /// Jira's `errorMessages` and `errors`, joined.
        message: String,
    },
    /// Rate limits, 5xx, timeouts or conflicts outlasted the retries. Worth trying later.
    #[error("{what}: Jira is unavailable after {attempts} attempt(s): {last}")]
    Unavailable {
        /// What was being done.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// The last thing seen.
        last: String,
    },
}

fn offered(available: &[String]) -> String {
    if available.is_empty() {
        "no transition at all".into()
    } else {
        format!("only {}", available.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "))
    }
}

impl JiraError {
    /// Whether trying again later may succeed (Jira down or busy), as opposed to a refusal
    /// that needs a person.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Whether an error from this client is worth retrying later: only when Jira was unavailable.
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.downcast_ref::<JiraError>().is_some_and(JiraError::is_transient)
}

/// An issue as the bot needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JiraIssue {
    /// Its key (`SHOP-12`).
    pub key: String,
    /// Its title.
    pub summary: String,
    /// The status (the board column), as Jira names it.
    pub status: String,
    /// The status category key: `new`, `indeterminate` or `done`.
    pub status_category: String,
    /// Who it is assigned to, if anyone.
    pub assignee: Option<Assignee>,
    /// Any other fields a search asked for, raw (for example `statuscategorychangedate`).
    pub extra: Map<String, Value>,
}

/// The person an issue is assigned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignee {
    /// The Atlassian account id, which people map to in the config (`people[].jira`).
    pub account_id: String,
    /// Their name in Jira.
    pub display_name: String,
}

/// The Jira account the bot works as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JiraAccount {
    /// Its account id.
    pub account_id: String,
    /// Its display name.
    pub display_name: String,
}

/// A transition the workflow offers from an issue's current status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The id to POST; only meaningful for this issue's workflow.
    pub id: String,
    /// The transition's own name (`Start testing`), shown to people, never matched on.
    pub name: String,
    /// The status it leads to, which is what the bot matches on.
    pub to_status: String,
    /// Whether the bot's account may perform it now (conditions met).
    pub available: bool,
}

/// What a move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveOutcome {
    /// The issue moved: by this call, or while this call was moving it (a retried POST whose
    /// first answer was lost, or a person dragging the card at the same moment).
    Moved {
        /// The status it left.
        from: String,
    },
    /// It was already in the wanted status before anything was sent.
    AlreadyThere,
    /// It was in neither the expected nor the wanted status, so it was left where it is
    /// (only from [`JiraClient::move_if_in`]).
    LeftAlone {
        /// Where it is.
        status: String,
    },
}

/// Jira Cloud, at one site, as one account.
#[derive(Clone)]
pub struct JiraClient {
    http: reqwest::Client,
    base_url: String,
    email: String,
    token: Secret,
    retry: RetryPolicy,
}

impl fmt::Debug for JiraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JiraClient")
            .field("base_url", &self.base_url)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// Whether a request may be sent again after an unclear failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Reading, or writing something that a repeat cannot double (a transition: a repeat is
    /// refused once the issue moved, and the move handles that).
    Safe,
    /// Writing something a repeat would double (a comment): only retried when Jira said it
    /// did not process it (429, 503) or the connection never opened.
    OnlyIfUnprocessed,
}

/// One request, described for the retry loop and for error messages.
struct Call<'a> {
    method: Method,
    path: String,
    query: &'a [(&'a str, &'a str)],
    body: Option<Value>,
    what: String,
    replay: Replay,
}

/// A response that was not retried away.
struct Answer {
    status: StatusCode,
    body: String,
}

/// What a move does next, from a fresh read of the issue and its transitions.
enum Plan {
    Finished(MoveOutcome),
    Post { transition: Transition, from: String },
    Missing(JiraError),
}

impl JiraClient {
    /// A client for the site at `base_url`, authenticating as `email` with an API token.
    pub fn new(base_url: &str, email: &str, token: Secret) -> Result<Self> {
        let base_url = check_base_url(base_url).context("Jira base URL")?;
        // Each request also sets its own total (`RetryPolicy::timeout`, `jira.timeout`).
        let http = reqwest::Client::builder()
            .user_agent(concat!("shipday/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(crate::clients::outbound::CONNECT_TIMEOUT)
            .build()
            .context("cannot build the HTTP client for Jira")?;
        Ok(Self { http, base_url, email: email.to_owned(), token, retry: RetryPolicy::default() })
    }

    /// The same client with another retry policy (tests make backoff tiny).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Reads an issue's summary, status and assignee.
    pub async fn issue(&self, key: &str) -> Result<JiraIssue> {
        let path = issue_path(key, "")?;
        let fields = ISSUE_FIELDS.join(",");
        let call = Call {
            method: Method::GET,
            path,
            query: &[("fields", &fields)],
            body: None,
            what: format!("read {key}"),
            replay: Replay::Safe,
        };
        let issue: WireIssue = self.fetch(call).await?;
        Ok(issue.into_issue())
    }

    /// The account the bot works as (`GET /rest/api/3/myself`).
    pub async fn myself(&self) -> Result<JiraAccount> {
        let call = Call {
            method: Method::GET,
            path: "/rest/api/3/myself".into(),
            query: &[],
            body: None,
            what: "read the bot's own account".into(),
            replay: Replay::Safe,
        };
        let account: wire::WireAccount = self.fetch(call).await?;
        Ok(JiraAccount { account_id: account.account_id, display_name: account.display_name })
    }

    /// The statuses a project's workflows have, across its issue types, without repeats
    /// (`GET /rest/api/3/project/{key}/statuses`). A transition is chosen by the status it
    /// leads to, so a column the config names must be one of these.
    pub async fn project_statuses(&self, project: &str) -> Result<Vec<String>> {
        let plain = !project.is_empty()
            && project.len() <= 64
            && project.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            bail!("`{}` is not a Jira project key", project.escape_debug());
        }
        let call = Call {
            method: Method::GET,
            path: format!("/rest/api/3/project/{project}/statuses"),
            query: &[],
            body: None,
            what: format!("read the statuses of project {project}"),
            replay: Replay::Safe,
        };
        let types: Vec<wire::WireIssueTypeStatuses> = self.fetch(call).await?;
        let mut names: Vec<String> = Vec::new();
        for status in types.into_iter().flat_map(|t| t.statuses) {
            if !names.iter().any(|known| same_status(known, &status.name)) {
                names.push(status.name);
            }
        }
        Ok(names)
    }

    /// Whether `status` is one of `statuses`, as a transition's destination is matched.
    pub fn has_status(statuses: &[String], status: &str) -> bool {
        statuses.iter().any(|known| same_status(known, status))
    }

    /// The transitions the workflow offers from the issue's current status.
    pub async fn transitions(&self, key: &str) -> Result<Vec<Transition>> {
        let call = Call {
            method: Method::GET,
            path: issue_path(key, "/transitions")?,
            query: &[],
            body: None,
            what: format!("read the transitions of {key}"),
            replay: Replay::Safe,
        };
        let list: WireTransitions = self.fetch(call).await?;
        Ok(list.transitions.into_iter().map(WireTransition::into_transition).collect())
    }

    /// Moves an issue to the status `to_status` (case-insensitive), through whichever
    /// available transition leads there. Already there is a no-op, not an error.
    pub async fn move_to(&self, key: &str, to_status: &str) -> Result<MoveOutcome> {
        self.transition(key, None, to_status).await.with_context(|| format!("cannot move {key} to `{to_status}`"))
    }

    /// Like [`move_to`](Self::move_to), but only from `from_status`: an issue found anywhere
    /// else is [`MoveOutcome::LeftAlone`], so a deploy never drags a card backwards.
    pub async fn move_if_in(&self, key: &str, from_status: &str, to_status: &str) -> Result<MoveOutcome> {
        self.transition(key, Some(from_status), to_status)
            .await
            .with_context(|| format!("cannot move {key} from `{from_status}` to `{to_status}`"))
    }

    /// Adds a comment (plain text; blank lines separate paragraphs). Returns its id.
    pub async fn comment(&self, key: &str, text: &str) -> Result<String> {
        let call = Call {
            method: Method::POST,
            path: issue_path(key, "/comment")?,
            query: &[],
            body: Some(json!({ "body": adf_document(text)? })),
            what: format!("comment on {key}"),
            replay: Replay::OnlyIfUnprocessed,
        };
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        Ok(self.fetch::<Created>(call).await?.id)
    }

    /// Every issue matching `jql`, page after page. The issues carry [`ISSUE_FIELDS`] plus
    /// `fields` (in [`JiraIssue::extra`]).
    pub async fn search(&self, jql: &str, fields: &[&str]) -> Result<Vec<JiraIssue>> {
        let mut wanted: Vec<&str> = ISSUE_FIELDS.to_vec();
        for field in fields {
            if !wanted.contains(field) {
                wanted.push(field);
            }
        }
        let mut issues = Vec::new();
        let mut token: Option<String> = None;
        for page in 1..=MAX_SEARCH_PAGES {
            let mut body = json!({ "jql": jql, "maxResults": SEARCH_PAGE_SIZE, "fields": wanted });
            if let Some(token) = &token
                && let Some(fields) = body.as_object_mut()
            {
                fields.insert("nextPageToken".into(), json!(token));
            }
            let call = Call {
                method: Method::POST,
                path: "/rest/api/3/search/jql".into(),
                query: &[],
                body: Some(body),
                what: format!("search Jira (page {page}) for {jql}"),
                replay: Replay::Safe,
            };
            let what = call.what.clone();
            let found: WireSearchPage = self.fetch(call).await?;
            issues.extend(found.issues.into_iter().map(WireIssue::into_issue));
            let is_last = found.is_last.unwrap_or(found.next_page_token.is_none());
            match (is_last, found.next_page_token) {
                (true, _) => return Ok(issues),
                (false, Some(next)) => token = Some(next),
                (false, None) => bail!("{what}: Jira said more pages follow but sent no nextPageToken"),
            }
        }
        bail!("search Jira for {jql}: more than {MAX_SEARCH_PAGES} pages; narrow the query")
    }

    /// The move: plan from fresh reads, refresh once when the transition is missing, POST,
    /// and start over after a 409.
    async fn transition(&self, key: &str, only_from: Option<&str>, to: &str) -> Result<MoveOutcome> {
        // Once a POST went out, finding the issue in `to` means it moved while we were moving
        // it (our own POST whose answer was lost, or a person): it moved, not "already there".
        let mut posted_from: Option<String> = None;
        let settle = |outcome: MoveOutcome, posted_from: &Option<String>| match (outcome, posted_from) {
            (MoveOutcome::AlreadyThere, Some(from)) => MoveOutcome::Moved { from: from.clone() },
            (outcome, _) => outcome,
        };
        for round in 1..=self.retry.max_attempts {
            let mut plan = self.plan(key, only_from, to).await?;
            if matches!(plan, Plan::Missing(_)) {
                // Someone may have moved the card between the two reads, or the workflow was
                // just published: read both again before calling it missing.
                plan = self.plan(key, only_from, to).await?;
            }
            let (transition, from) = match plan {
                Plan::Finished(outcome) => return Ok(settle(outcome, &posted_from)),
                Plan::Missing(error) => return Err(error.into()),
                Plan::Post { transition, from } => (transition, from),
            };
            let call = Call {
                method: Method::POST,
                path: issue_path(key, "/transitions")?,
                query: &[],
                body: Some(json!({ "transition": { "id": transition.id } })),
                what: format!("move {key} from `{from}` to `{}` (transition {})", transition.to_status, transition.id),
                replay: Replay::Safe,
            };
            let what = call.what.clone();
            posted_from.get_or_insert_with(|| from.clone());
            let answer = self.send(call).await?;
            match answer.status {
                status if status.is_success() => return Ok(MoveOutcome::Moved { from }),
                StatusCode::CONFLICT => {
                    tracing::info!(key, round, "Jira reported a conflicting update; reading the issue again");
                    if round < self.retry.max_attempts {
                        tokio::time::sleep(self.retry.backoff(round)).await;
                    }
                }
                StatusCode::BAD_REQUEST => {
                    // The transition is no longer valid: the status changed under us (a
                    // person, or an earlier attempt of ours that timed out but went through).
                    return match self.plan(key, only_from, to).await? {
                        Plan::Finished(outcome) => Ok(settle(outcome, &posted_from)),
                        _ => Err(self.refusal(&what, &answer).into()),
                    };
                }
                _ => return Err(self.refusal(&what, &answer).into()),
            }
        }
        Err(JiraError::Unavailable {
            what: format!("move {key} to `{to}`"),
            attempts: self.retry.max_attempts,
            last: "409, a conflicting update, every time".into(),
        }
        .into())
    }

    /// Reads the issue and, unless it is already settled, the transition that leads to `to`.
    async fn plan(&self, key: &str, only_from: Option<&str>, to: &str) -> Result<Plan> {
        let issue = self.issue(key).await?;
        if same_status(&issue.status, to) {
            return Ok(Plan::Finished(MoveOutcome::AlreadyThere));
        }
        if let Some(from) = only_from
            && !same_status(&issue.status, from)
        {
            return Ok(Plan::Finished(MoveOutcome::LeftAlone { status: issue.status }));
        }
        let transitions = self.transitions(key).await?;
        let usable = transitions.iter().find(|t| t.available && same_status(&t.to_status, to));
        Ok(match usable {
            Some(transition) => Plan::Post { transition: transition.clone(), from: issue.status },
            None => Plan::Missing(JiraError::TransitionMissing {
                key: key.to_owned(),
                from: issue.status,
                to: to.to_owned(),
                available: transitions.into_iter().filter(|t| t.available).map(|t| t.to_status).collect(),
            }),
        })
    }

    /// Sends, requires a 2xx and reads the JSON answer.
    async fn fetch<T: serde::de::DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
        let what = call.what.clone();
        let answer = self.expect_success(call).await?;
        parse(&answer, &what)
    }

    /// Sends and requires a 2xx; other answers become a [`JiraError`].
    async fn expect_success(&self, call: Call<'_>) -> Result<Answer> {
        let what = call.what.clone();
        let answer = self.send(call).await?;
        if answer.status.is_success() { Ok(answer) } else { Err(self.refusal(&what, &answer).into()) }
    }

    /// The error for a non-2xx answer that retrying did not (or cannot) fix.
    fn refusal(&self, what: &str, answer: &Answer) -> JiraError {
        match answer.status {
            StatusCode::UNAUTHORIZED => JiraError::Unauthorized { email: self.email.clone() },
            StatusCode::NOT_FOUND => JiraError::NotFound { what: what.to_owned() },
            status if status == StatusCode::CONFLICT || status.is_server_error() => {
                JiraError::Unavailable { what: what.to_owned(), attempts: 1, last: describe(answer) }
            }
            status => {
                JiraError::Rejected { what: what.to_owned(), status: status.as_u16(), message: error_text(answer) }
            }
        }
    }

    /// Sends one request, retrying 429s (after `Retry-After`), 5xx and timeouts within the
    /// policy. Any answer not retried away is returned as it is, for the caller to judge.
    async fn send(&self, call: Call<'_>) -> Result<Answer> {
        let url = format!("{}{}", self.base_url, call.path);
        let mut last = String::new();
        for attempt in 1..=self.retry.max_attempts {
            let mut request = self
                .http
                .request(call.method.clone(), &url)
                .basic_auth(&self.email, Some(self.token.expose()))
                .header(ACCEPT, "application/json")
                .timeout(self.retry.timeout);
            if !call.query.is_empty() {
                request = request.query(call.query);
            }
            if let Some(body) = &call.body {
                request = request.json(body);
            }
            let wait = match self.attempt(request, &call).await {
                Attempt::Answered(answer) => return Ok(answer),
                Attempt::Failed(error) => return Err(error),
                Attempt::Retry { seen, wait } => {
                    last = seen;
                    wait
                }
            };
            if attempt == self.retry.max_attempts {
                break;
            }
            let wait = match wait {
                Some(asked) if asked > self.retry.retry_after_cap => {
                    return Err(JiraError::Unavailable {
                        what: call.what,
                        attempts: attempt,
                        last: format!(
                            "{last}; Jira asks to wait {}s, longer than the {}s this bot waits",
                            asked.as_secs(),
                            self.retry.retry_after_cap.as_secs()
                        ),
                    }
                    .into());
                }
                Some(asked) => asked,
                None => self.retry.backoff(attempt),
            };
            tracing::warn!(what = %call.what, attempt, %last, wait_ms = wait.as_millis() as u64, "Jira request will be retried");
            tokio::time::sleep(wait).await;
        }
        Err(JiraError::Unavailable { what: call.what, attempts: self.retry.max_attempts, last }.into())
    }

    /// One attempt, classified.
    async fn attempt(&self, request: reqwest::RequestBuilder, call: &Call<'_>) -> Attempt {
        let replay_unclear = call.replay == Replay::Safe;
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if error.is_connect() => return Attempt::Retry { seen: "cannot connect".into(), wait: None },
            Err(error) if error.is_timeout() && replay_unclear => {
                return Attempt::Retry {
                    seen: format!("no answer within {}s", self.retry.timeout.as_secs_f32()),
                    wait: None,
                };
            }
            Err(error) if error.is_timeout() => {
                // Not retried here (a repeat could double it), but still worth trying later.
                return Attempt::Failed(
                    JiraError::Unavailable {
                        what: call.what.clone(),
                        attempts: 1,
                        last: "no answer in time; it may or may not have been done".into(),
                    }
                    .into(),
                );
            }
            Err(error) => return Attempt::Failed(anyhow::Error::new(error.without_url()).context(call.what.clone())),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let unprocessed = status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
        if unprocessed || (status.is_server_error() && replay_unclear) {
            // A 429 without Retry-After, or a 5xx, backs off exponentially.
            return Attempt::Retry { seen: format!("answered {status}"), wait: retry_after };
        }
        match response.text().await {
            Ok(body) => Attempt::Answered(Answer { status, body }),
            Err(error) if error.is_timeout() && replay_unclear => {
                Attempt::Retry { seen: "the answer did not arrive in time".into(), wait: None }
            }
            Err(error) => Attempt::Failed(anyhow::Error::new(error.without_url()).context(call.what.clone())),
        }
    }
}

/// How one attempt ended.
enum Attempt {
    Answered(Answer),
    Retry { seen: String, wait: Option<Duration> },
    Failed(anyhow::Error),
}

/// `value` as a JQL string literal (`"Dev Testing"`), so a column name or any other text
/// can never change the meaning of a query.
pub fn jql_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// `Retry-After` in seconds (the form Jira sends).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// The API path of an issue, refusing anything that is not a plain key or id, so chat text
/// can never reach another path.
fn issue_path(key: &str, rest: &str) -> Result<String> {
    let plain =
        !key.is_empty() && key.len() <= 64 && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
    if !plain {
        bail!("`{}` is not a Jira issue key", key.escape_debug());
    }
    Ok(format!("/rest/api/3/issue/{key}{rest}"))
}

fn same_status(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_keys_cannot_reach_other_paths() {
        assert_eq!(issue_path("SHOP-1", "/comment").unwrap(), "/rest/api/3/issue/SHOP-1/comment");
        for bad in ["", "../../myself", "SHOP-1?x=1", "SHOP 1", "SHOP-1/transitions"] {
            assert!(issue_path(bad, "").is_err(), "{bad}");
        }
    }

    #[test]
    fn jql_strings_are_quoted_and_escaped() {
        assert_eq!(jql_quote("Dev Testing"), r#""Dev Testing""#);
        assert_eq!(jql_quote(r#"Done" OR project = X"#), r#""Done\" OR project = X""#);
        assert_eq!(jql_quote("a\\b\nc"), r#""a\\b\nc""#);
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let policy = RetryPolicy {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
            let second = policy.backoff(2);
            assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200), "{second:?}");
            assert!(policy.backoff(30) <= Duration::from_millis(350));
        }
    }

    #[test]
    fn errors_say_what_to_do() {
        let missing = JiraError::TransitionMissing {
            key: "SHOP-1".into(),
            from: "Pull Request".into(),
            to: "Done".into(),
            available: vec!["Dev Testing".into()],
        };
        assert_eq!(
            missing.to_string(),
            "SHOP-1 cannot move from `Pull Request` to `Done`: the workflow offers only `Dev Testing`"
        );
        assert!(!missing.is_transient());
        let down = JiraError::Unavailable { what: "read SHOP-1".into(), attempts: 4, last: "answered 503".into() };
        assert!(is_transient(&anyhow::Error::from(down).context("cannot move SHOP-1")));
    }
}
