//! A stateful fake Jira Cloud over HTTP on 127.0.0.1, speaking the formats in
//! `tests/fixtures/contracts/jira/`: issues with statuses and assignees, a workflow whose
//! transitions depend on the current status, comments, `/rest/api/3/search/jql` with
//! `nextPageToken` paging, and the removed `/rest/api/3/search` answering 410.
//!
//! Tests drive it directly: [`FakeJira::add_issue`], [`FakeJira::set_status`] (a person drags a
//! card), [`FakeJira::fail`] (inject 429/409/500/hangs on one path), and read what the bot did
//! with [`FakeJira::status`], [`FakeJira::comments`] and [`FakeJira::requests`].
//!
//! Objects are built from the contract samples (status, assignee and transition objects), with
//! the fake's values put in, so the client sees what the vendor sends, not a trimmed sketch.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use shipday::clients::jira::{JiraClient, RetryPolicy};
use shipday::config::Secret;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The account the fake accepts.
pub const EMAIL: &str = "shipday@team.example";
/// Its API token.
pub const TOKEN: &str = "fake-jira-token-0b9c2e71";
/// The bot's account id, as the author of its comments.
pub const BOT_ACCOUNT: &str = "712020:shipday-bot";

/// A failure the fake answers with instead of doing the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After` and the rate-limit headers.
    RateLimited {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
    /// 409: a conflicting update.
    Conflict,
    /// 500.
    ServerError,
    /// Never answers (until the test ends).
    Hang,
    /// Does the request, then never answers: an answer lost on the way.
    LoseAnswer,
}

/// One request the fake received, in order.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `GET`, `POST`…
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The JSON body (`Null` when empty; a string when it was not JSON).
    pub body: Value,
    /// Whether the Basic credentials were right.
    pub authorised: bool,
    /// The status answered; `None` while it hangs.
    pub status: Option<u16>,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// A running fake Jira; it stops when dropped.
pub struct FakeJira {
    /// Its base URL (`http://127.0.0.1:PORT`), to configure as `jira.base_url`.
    pub url: String,
    state: Arc<Mutex<Board>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeJira {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A retry policy that keeps tests fast: tiny backoff, a short time limit per request.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(40),
        retry_after_cap: Duration::from_secs(5),
        timeout: Duration::from_secs(1),
    }
}

impl FakeJira {
    /// Starts the fake with the team's workflow, no issues, and search pages of 2 issues.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Jira");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(Board::new(&url)));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the fake Jira serves");
        });
        Self { url, state, server }
    }

    /// A real client for this fake, with [`fast_retry`].
    pub fn client(&self) -> JiraClient {
        self.client_with(TOKEN, fast_retry())
    }

    /// A real client with another token or retry policy.
    pub fn client_with(&self, token: &str, retry: RetryPolicy) -> JiraClient {
        JiraClient::new(&self.url, EMAIL, Secret::new(token)).expect("client for the fake").with_retry(retry)
    }

    fn state(&self) -> MutexGuard<'_, Board> {
        self.state.lock().unwrap()
    }

    /// Adds an issue in `status`, assigned to `(account id, display name)` or to nobody.
    pub fn add_issue(&self, key: &str, summary: &str, status: &str, assignee: Option<(&str, &str)>) {
        let mut state = self.state();
        state.status_id(status);
        let id = 10_000 + state.issues.len() as u64;
        state.issues.insert(
            key.to_owned(),
            Issue {
                id,
                key: key.to_owned(),
                summary: summary.to_owned(),
                status: status.to_owned(),
                assignee: assignee.map(|(a, n)| (a.to_owned(), n.to_owned())),
                status_changed: chrono::Utc::now(),
            },
        );
    }

    /// Adds a workflow transition `id` named `name` from `from` to `to`.
    pub fn add_transition(&self, id: &str, name: &str, from: &str, to: &str) {
        let mut state = self.state();
        state.status_id(from);
        state.status_id(to);
        state.transitions.push(WorkflowStep { id: id.into(), name: name.into(), from: from.into(), to: to.into() });
    }

    /// Moves an issue as a person dragging its card would, without a transition.
    pub fn set_status(&self, key: &str, status: &str) {
        let mut state = self.state();
        state.status_id(status);
        let issue = state.issues.get_mut(key).unwrap_or_else(|| panic!("no issue {key} in the fake"));
        issue.status = status.to_owned();
        issue.status_changed = chrono::Utc::now();
    }

    /// The issue's status now.
    pub fn status(&self, key: &str) -> String {
        self.state().issues.get(key).unwrap_or_else(|| panic!("no issue {key} in the fake")).status.clone()
    }

    /// The ADF bodies of the comments on an issue, oldest first.
    pub fn comments(&self, key: &str) -> Vec<Value> {
        self.state().comments.iter().filter(|(k, _)| k == key).map(|(_, body)| body.clone()).collect()
    }

    /// Search pages hold at most this many issues.
    pub fn set_page_size(&self, size: usize) {
        self.state().page_size = size.max(1);
    }

    /// The next `times` requests of `method` to exactly `path` get `fault` instead of an answer.
    pub fn fail(&self, method: &str, path: &str, fault: Fault, times: usize) {
        self.state().faults.push(FaultRule {
            method: method.to_owned(),
            path: path.to_owned(),
            fault,
            remaining: times,
        });
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    /// The requests of `method` to exactly `path`.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Logged> {
        self.requests().into_iter().filter(|r| r.method == method && r.path == path).collect()
    }
}

struct Issue {
    id: u64,
    key: String,
    summary: String,
    status: String,
    assignee: Option<(String, String)>,
    status_changed: chrono::DateTime<chrono::Utc>,
}

struct WorkflowStep {
    id: String,
    name: String,
    from: String,
    to: String,
}

struct FaultRule {
    method: String,
    path: String,
    fault: Fault,
    remaining: usize,
}

struct Page {
    jql: String,
    offset: usize,
}

struct Board {
    url: String,
    contracts: Contracts,
    issues: BTreeMap<String, Issue>,
    /// Status name → (id, category key).
    statuses: Vec<(String, String, &'static str)>,
    transitions: Vec<WorkflowStep>,
    comments: Vec<(String, Value)>,
    faults: Vec<FaultRule>,
    log: Vec<Logged>,
    pages: HashMap<String, Page>,
    page_size: usize,
    next_id: u64,
}

impl Board {
    fn new(url: &str) -> Self {
        let mut state = Self {
            url: url.to_owned(),
            contracts: Contracts::load(),
            issues: BTreeMap::new(),
            statuses: Vec::new(),
            transitions: Vec::new(),
            comments: Vec::new(),
            faults: Vec::new(),
            log: Vec::new(),
            pages: HashMap::new(),
            page_size: 2,
            next_id: 1,
        };
        // The team's board. Ids are not in board order: the bot must read them.
        for (id, name, from, to) in [
            ("11", "Open pull request", "To Do", "Pull Request"),
            ("21", "Deployed to dev", "Pull Request", "Dev Testing"),
            ("31", "Passed dev testing", "Dev Testing", "Staging"),
            ("41", "Failed dev testing", "Dev Testing", "Pull Request"),
            ("51", "Released", "Staging", "Done"),
        ] {
            state.status_id(from);
            state.status_id(to);
            state.transitions.push(WorkflowStep { id: id.into(), name: name.into(), from: from.into(), to: to.into() });
        }
        state
    }

    /// The status's id, registering it (with its category) on first sight.
    fn status_id(&mut self, name: &str) -> String {
        if let Some((_, id, _)) = self.statuses.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(name)) {
            return id.clone();
        }
        let category = match name.to_ascii_lowercase().as_str() {
            "to do" | "backlog" => "new",
            "done" | "closed" => "done",
            _ => "indeterminate",
        };
        let id = (10_000 + self.statuses.len()).to_string();
        self.statuses.push((name.to_owned(), id.clone(), category));
        id
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A full status object, shaped like the contract's.
    fn status_json(&self, name: &str) -> Value {
        let (name, id, category) = self
            .statuses
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
            .cloned()
            .unwrap_or_else(|| (name.to_owned(), "1".into(), "indeterminate"));
        let (category_id, category_name, colour) = match category {
            "new" => (2, "To Do", "blue-gray"),
            "done" => (3, "Done", "green"),
            _ => (4, "In Progress", "yellow"),
        };
        let mut status = self.contracts.status.clone();
        status["id"] = json!(id);
        status["name"] = json!(name);
        status["description"] = json!(format!("The issue is in {name}."));
        status["self"] = json!(format!("{}/rest/api/3/status/{id}", self.url));
        let category_json = &mut status["statusCategory"];
        category_json["id"] = json!(category_id);
        category_json["key"] = json!(category);
        category_json["name"] = json!(category_name);
        category_json["colorName"] = json!(colour);
        category_json["self"] = json!(format!("{}/rest/api/3/statuscategory/{category_id}", self.url));
        status
    }

    fn user_json(&self, account_id: &str, display_name: &str) -> Value {
        let mut user = self.contracts.user.clone();
        user["accountId"] = json!(account_id);
        user["displayName"] = json!(display_name);
        user["emailAddress"] = json!(format!("{}@team.example", display_name.to_lowercase().replace(' ', ".")));
        user["self"] = json!(format!("{}/rest/api/3/user?accountId={account_id}", self.url));
        user
    }

    /// An issue with the fields asked for (`None`: all of them; `[]`: ids only).
    fn issue_json(&self, issue: &Issue, fields: Option<&[String]>) -> Value {
        let mut all = Map::new();
        all.insert("summary".into(), json!(issue.summary));
        all.insert("status".into(), self.status_json(&issue.status));
        all.insert(
            "assignee".into(),
            issue.assignee.as_ref().map_or(Value::Null, |(id, name)| self.user_json(id, name)),
        );
        let project = issue.key.split('-').next().unwrap_or_default();
        all.insert("project".into(), json!({ "key": project, "name": project, "id": "10000" }));
        all.insert("issuetype".into(), json!({ "id": "10001", "name": "Story", "subtask": false }));
        all.insert(
            "statuscategorychangedate".into(),
            json!(issue.status_changed.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()),
        );
        let self_url = format!("{}/rest/api/3/issue/{}", self.url, issue.id);
        let Some(fields) = fields else {
            return json!({ "expand": "", "id": issue.id.to_string(), "key": issue.key, "self": self_url, "fields": all });
        };
        if fields.is_empty() {
            return json!({ "id": issue.id.to_string() });
        }
        let wanted = |name: &str| fields.iter().any(|f| f == name || f == "*all" || f == "*navigable");
        let chosen: Map<String, Value> = all.into_iter().filter(|(name, _)| wanted(name)).collect();
        json!({ "expand": "", "id": issue.id.to_string(), "key": issue.key, "self": self_url, "fields": chosen })
    }

    fn transition_json(&self, step: &WorkflowStep) -> Value {
        let mut transition = self.contracts.transition.clone();
        transition["id"] = json!(step.id);
        transition["name"] = json!(step.name);
        transition["to"] = self.status_json(&step.to);
        transition["hasScreen"] = json!(false);
        transition["isAvailable"] = json!(true);
        transition["isConditional"] = json!(false);
        transition["isGlobal"] = json!(false);
        transition["isInitial"] = json!(false);
        transition["isLooped"] = json!(false);
        transition["fields"] = json!({});
        transition
    }

    /// Takes one use of the first fault armed for this request.
    fn take_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        let rule = self.faults.iter_mut().find(|r| r.remaining > 0 && r.method == method && r.path == path)?;
        rule.remaining -= 1;
        Some(rule.fault)
    }
}

/// Bodies and object shapes read from the contract files.
struct Contracts {
    errors: Value,
    status: Value,
    user: Value,
    transition: Value,
}

impl Contracts {
    fn load() -> Self {
        let dir = super::fixture("contracts/jira");
        let read = |name: &str| -> Value {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("the Jira contract {} is missing: {e}", path.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let search = read("search-jql.response.json");
        let transitions = read("transitions.get.response.json");
        Self {
            errors: read("error.response.json"),
            status: search["issues"][0]["fields"]["status"].clone(),
            user: search["issues"][0]["fields"]["assignee"].clone(),
            transition: transitions["transitions"][0].clone(),
        }
    }
}

/// The board behind the server, shared with the test.
type Shared = Arc<Mutex<Board>>;

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json;charset=UTF-8")
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

fn error_response(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "errorMessages": [message], "errors": {} }))
}

fn contract_error(state: &Board, status: StatusCode, case: &str) -> Response {
    json_response(status, &state.contracts.errors[case])
}

fn authorised(headers: &HeaderMap) -> bool {
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{EMAIL}:{TOKEN}"));
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(format!("Basic {expected}").as_str())
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let method = parts.method.to_string();
    let path = parts.uri.path().to_owned();
    let authorised = authorised(&parts.headers);
    let (index, fault) = {
        let mut state = shared.lock().unwrap();
        state.log.push(Logged {
            method: method.clone(),
            path: path.clone(),
            query: parts.uri.query().map(str::to_owned),
            body: body.clone(),
            authorised,
            status: None,
            at: std::time::Instant::now(),
        });
        let index = state.log.len() - 1;
        let fault = if authorised { state.take_fault(&method, &path) } else { None };
        (index, fault)
    };
    let response = match fault {
        Some(Fault::Hang) => never_answer().await,
        Some(Fault::LoseAnswer) => {
            // The request takes effect; its answer never leaves.
            let _lost =
                route(&mut shared.lock().unwrap(), &parts.method, &path, parts.uri.query(), &parts.headers, body);
            never_answer().await
        }
        Some(fault) => fault_response(fault),
        None => {
            let mut state = shared.lock().unwrap();
            if !authorised {
                contract_error(&state, StatusCode::UNAUTHORIZED, "not_logged_in_401")
            } else {
                route(&mut state, &parts.method, &path, parts.uri.query(), &parts.headers, body)
            }
        }
    };
    shared.lock().unwrap().log[index].status = Some(response.status().as_u16());
    response
}

/// Waits past any client's time limit; the test ends first.
async fn never_answer() -> Response {
    std::future::pending::<()>().await;
    error_response(StatusCode::GATEWAY_TIMEOUT, "too late")
}

fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::RateLimited { retry_after_secs } => {
            let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded.");
            let reset = chrono::Utc::now() + chrono::Duration::seconds(retry_after_secs as i64);
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            headers.insert("x-ratelimit-limit", HeaderValue::from_static("100"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert(
                "x-ratelimit-reset",
                HeaderValue::from_str(&reset.format("%Y-%m-%dT%H:%MZ").to_string()).unwrap(),
            );
            headers.insert("ratelimit-reason", HeaderValue::from_static("jira-per-issue-on-write"));
            response
        }
        Fault::Conflict => {
            error_response(StatusCode::CONFLICT, "The issue could not be updated due to a conflicting update.")
        }
        Fault::ServerError => error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error."),
        Fault::Hang | Fault::LoseAnswer => unreachable!("these never answer"),
    }
}

fn route(
    state: &mut Board,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Value,
) -> Response {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let is_post = method == Method::POST;
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_post && !json_body {
        return error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type");
    }
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["rest", "api", "3", "issue", key]) => get_issue(state, key, query),
        ("GET", ["rest", "api", "3", "issue", key, "transitions"]) => get_transitions(state, key),
        ("POST", ["rest", "api", "3", "issue", key, "transitions"]) => post_transition(state, key, &body),
        ("POST", ["rest", "api", "3", "issue", key, "comment"]) => post_comment(state, key, body),
        ("POST", ["rest", "api", "3", "search", "jql"]) => search(state, &body),
        ("GET", ["rest", "api", "3", "myself"]) => {
            let mut me = state.user_json(BOT_ACCOUNT, "Shipday Bot");
            me["emailAddress"] = json!(EMAIL);
            json_response(StatusCode::OK, &me)
        }
        ("GET", ["rest", "api", "3", "project", key, "statuses"]) => project_statuses(state, key),
        (_, ["rest", "api", "3", "search"]) => contract_error(state, StatusCode::GONE, "search_removed_410_observed"),
        _ => error_response(StatusCode::NOT_FOUND, "No such endpoint in the fake Jira."),
    }
}

fn get_issue(state: &Board, key: &str, query: Option<&str>) -> Response {
    let Some(issue) = state.issues.get(key) else {
        return contract_error(state, StatusCode::NOT_FOUND, "issue_not_found_404");
    };
    // reqwest sends `fields=summary%2Cstatus%2Cassignee`.
    let fields: Option<Vec<String>> =
        query.and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("fields="))).map(|list| {
            list.replace("%2C", ",")
                .replace("%2c", ",")
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect()
        });
    json_response(StatusCode::OK, &state.issue_json(issue, fields.as_deref()))
}

/// `GET /rest/api/3/project/{key}/statuses`: the project's issue types (`IssueTypeWithStatus`:
/// `self`, `id`, `name`, `subtask`, `statuses`), each with every status of the fake's
/// workflow as a full status object (`StatusDetails`). Only the project `SHOP` exists.
fn project_statuses(state: &Board, key: &str) -> Response {
    if key != "SHOP" {
        let message = format!("No project could be found with key '{key}'.");
        return error_response(StatusCode::NOT_FOUND, &message);
    }
    let statuses: Vec<Value> = state.statuses.iter().map(|(name, _, _)| state.status_json(name)).collect();
    let issue_type = |id: &str, name: &str, subtask: bool| {
        json!({
            "self": format!("{}/rest/api/3/issueType/{id}", state.url),
            "id": id,
            "name": name,
            "subtask": subtask,
            "statuses": statuses,
        })
    };
    json_response(StatusCode::OK, &json!([issue_type("10001", "Task", false), issue_type("10003", "Subtask", true)]))
}

fn get_transitions(state: &Board, key: &str) -> Response {
    let Some(issue) = state.issues.get(key) else {
        return contract_error(state, StatusCode::NOT_FOUND, "issue_not_found_404");
    };
    let transitions: Vec<Value> = state
        .transitions
        .iter()
        .filter(|step| step.from.eq_ignore_ascii_case(&issue.status))
        .map(|step| state.transition_json(step))
        .collect();
    json_response(StatusCode::OK, &json!({ "expand": "transitions", "transitions": transitions }))
}

fn post_transition(state: &mut Board, key: &str, body: &Value) -> Response {
    let Some(status) = state.issues.get(key).map(|i| i.status.clone()) else {
        return contract_error(state, StatusCode::NOT_FOUND, "issue_not_found_404");
    };
    let Some(id) = body["transition"]["id"].as_str() else {
        return error_response(StatusCode::BAD_REQUEST, "Missing 'transition' identifier");
    };
    let Some(to) =
        state.transitions.iter().find(|s| s.id == id && s.from.eq_ignore_ascii_case(&status)).map(|s| s.to.clone())
    else {
        return error_response(StatusCode::BAD_REQUEST, &format!("Transition id '{id}' is not valid for this issue."));
    };
    let issue = state.issues.get_mut(key).expect("checked above");
    issue.status = to;
    issue.status_changed = chrono::Utc::now();
    Response::builder().status(StatusCode::NO_CONTENT).body(Body::empty()).expect("a valid response")
}

fn post_comment(state: &mut Board, key: &str, body: Value) -> Response {
    if !state.issues.contains_key(key) {
        return contract_error(state, StatusCode::NOT_FOUND, "issue_not_found_404");
    }
    let doc = &body["body"];
    let is_adf = doc["type"] == "doc"
        && doc["version"] == 1
        && doc["content"].as_array().is_some_and(|c| !c.is_empty() && c.iter().all(|node| node["type"].is_string()));
    if !is_adf {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "errorMessages": [], "errors": { "comment": "Comment body is not valid Atlassian Document Format." } }),
        );
    }
    let id = state.next_id().to_string();
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string();
    let author = state.user_json(BOT_ACCOUNT, "Shipday");
    let issue_id = state.issues[key].id;
    state.comments.push((key.to_owned(), doc.clone()));
    let created = json!({
        "self": format!("{}/rest/api/3/issue/{issue_id}/comment/{id}", state.url),
        "id": id,
        "author": author,
        "updateAuthor": author,
        "body": doc,
        "created": now,
        "updated": now,
        "jsdPublic": true,
    });
    json_response(StatusCode::CREATED, &created)
}

fn search(state: &mut Board, body: &Value) -> Response {
    let Some(jql) = body["jql"].as_str() else {
        return error_response(StatusCode::BAD_REQUEST, "The 'jql' field is required.");
    };
    let offset = match body["nextPageToken"].as_str() {
        None => 0,
        Some(token) => match state.pages.get(token) {
            Some(page) if page.jql == jql => page.offset,
            _ => return contract_error(state, StatusCode::BAD_REQUEST, "bad_next_page_token_400"),
        },
    };
    let query = match Jql::parse(jql) {
        Ok(query) => query,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let fields: Vec<String> = match &body["fields"] {
        Value::Array(list) => list.iter().filter_map(|f| f.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    let asked = body["maxResults"].as_u64().unwrap_or(50).clamp(1, 5000) as usize;
    let size = asked.min(state.page_size);
    let mut matching: Vec<&Issue> = state.issues.values().filter(|issue| query.matches(issue)).collect();
    matching.sort_by_key(|issue| {
        let (project, number) = issue.key.rsplit_once('-').unwrap_or((&issue.key, "0"));
        (project.to_owned(), number.parse::<u64>().unwrap_or(0))
    });
    let page: Vec<Value> =
        matching.iter().skip(offset).take(size).map(|i| state.issue_json(i, Some(&fields))).collect();
    let is_last = offset + size >= matching.len();
    let mut answer = json!({ "issues": page, "isLast": is_last });
    if !is_last {
        let token = format!("EgQI{:08x}", state.next_id());
        answer["nextPageToken"] = json!(token);
        state.pages.insert(token, Page { jql: jql.to_owned(), offset: offset + size });
    }
    json_response(StatusCode::OK, &answer)
}

/// The JQL the fake understands: `field = value` and `field in (a, b)` clauses joined by
/// `AND`, over `project`, `status`, `key`/`issuekey` and `assignee`, with an optional
/// `ORDER BY` (results always come in key order). Anything else is a 400, as from Jira.
struct Jql {
    clauses: Vec<(String, Vec<String>)>,
}

impl Jql {
    fn parse(text: &str) -> Result<Self, String> {
        let tokens = tokenize(text)?;
        let mut clauses = Vec::new();
        let mut at = 0;
        let word = |i: usize| tokens.get(i).map(|t: &String| t.to_ascii_lowercase());
        while at < tokens.len() {
            if word(at).as_deref() == Some("order") {
                break;
            }
            let field = word(at).ok_or("Error in the JQL Query: expected a field")?;
            if !["project", "status", "key", "issuekey", "assignee"].contains(&field.as_str()) {
                return Err(format!("Field '{field}' does not exist or you do not have permission to view it."));
            }
            let field = if field == "issuekey" { "key".to_owned() } else { field };
            let values = match word(at + 1).as_deref() {
                Some("=") => {
                    at += 3;
                    vec![tokens.get(at - 1).ok_or("Error in the JQL Query: expected a value")?.clone()]
                }
                Some("in") if tokens.get(at + 2).map(String::as_str) == Some("(") => {
                    at += 3;
                    let mut values = Vec::new();
                    loop {
                        let value = tokens.get(at).ok_or("Error in the JQL Query: unclosed list")?;
                        at += 1;
                        match value.as_str() {
                            ")" => break,
                            "," => continue,
                            _ => values.push(value.clone()),
                        }
                    }
                    values
                }
                _ => return Err(format!("Error in the JQL Query: unsupported operator after '{field}'.")),
            };
            clauses.push((field, values));
            match word(at).as_deref() {
                None | Some("order") => {}
                Some("and") => at += 1,
                Some(other) => return Err(format!("Error in the JQL Query: expecting 'AND' but got '{other}'.")),
            }
        }
        if clauses.is_empty() {
            return Err(
                "Unbounded JQL queries are not allowed here. Please add a search restriction to your query.".into()
            );
        }
        Ok(Self { clauses })
    }

    fn matches(&self, issue: &Issue) -> bool {
        self.clauses.iter().all(|(field, values)| {
            let actual = match field.as_str() {
                "project" => issue.key.rsplit_once('-').map_or("", |(p, _)| p),
                "status" => &issue.status,
                "key" => &issue.key,
                _ => issue.assignee.as_ref().map_or("", |(id, _)| id.as_str()),
            };
            values.iter().any(|v| v.eq_ignore_ascii_case(actual))
        })
    }
}

/// Words, double-quoted strings (with `\"`), and the symbols `=`, `(`, `)`, `,`.
fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if "=(),".contains(c) {
            tokens.push(c.to_string());
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('"') => break,
                    Some(other) => value.push(other),
                    None => return Err("Error in the JQL Query: unterminated string".into()),
                }
            }
            tokens.push(value);
        } else {
            let mut value = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || "=(),\"".contains(c) {
                    break;
                }
                value.push(c);
                chars.next();
            }
            tokens.push(value);
        }
    }
    Ok(tokens)
}
