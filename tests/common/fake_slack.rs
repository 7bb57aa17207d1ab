//! A stateful local fake of Slack: the Web API methods the adapter calls, `response_url`s,
//! and a Socket Mode WebSocket. It answers with the shapes in `tests/fixtures/contracts/slack/`,
//! checks tokens, records every call, keeps the channel's messages (edited in place by
//! `chat.update`), and can rate limit a method once.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub const BOT_TOKEN: &str = "xoxb-test-bot-token";
pub const APP_TOKEN: &str = "xapp-test-app-token";
/// The bot's own member id: `item_user` of the reaction contract samples.
pub const BOT_USER: &str = "U222222222";
/// A channel the bot is not a member of.
pub const NOT_A_MEMBER: &str = "C0NOTMEMBER";
/// A channel id the workspace does not have (`conversations.info` answers `channel_not_found`).
pub const NO_SUCH_CHANNEL: &str = "C0NOSUCHCHANNEL";

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    /// `chat.postMessage`, `response_url`, …
    pub method: String,
    /// The JSON (or form, as JSON) body.
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
    /// The HTTP status the fake answered with.
    pub status: u16,
}

/// A message in a channel, as it stands after edits.
#[derive(Debug, Clone)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
    pub text: String,
    pub blocks: Value,
    pub edits: usize,
}

#[derive(Default)]
struct Recorded {
    calls: Vec<Call>,
    messages: Vec<Posted>,
    next_ts: u64,
    rate_limited: HashMap<String, VecDeque<u64>>,
    sockets: Vec<mpsc::UnboundedSender<WsMessage>>,
    connections: usize,
    frames: Vec<Value>,
    /// Socket Mode connections still to be accepted and never answered (no handshake).
    silent: usize,
    /// Connections accepted silently so far, held open.
    held: Vec<tokio::net::TcpStream>,
}

/// What `conversations.info` says about `channel`: the contract's conversation object with
/// its id and name, and `is_member` true except for [`NOT_A_MEMBER`].
fn conversation(channel: &str) -> Value {
    if channel == NO_SUCH_CHANNEL {
        return json!({"ok": false, "error": "channel_not_found"});
    }
    let mut answer = contract("conversations.info.response.json");
    let name =
        if channel == NOT_A_MEMBER { "not-a-member".to_owned() } else { format!("team-{}", channel.to_lowercase()) };
    answer["channel"]["id"] = json!(channel);
    answer["channel"]["name"] = json!(name);
    answer["channel"]["name_normalized"] = json!(name);
    answer["channel"]["is_general"] = json!(false);
    answer["channel"]["is_member"] = json!(channel != NOT_A_MEMBER);
    answer
}

/// The fake. Dropping it stops nothing: its tasks end with the test's runtime.
#[derive(Clone)]
pub struct FakeSlack {
    state: Arc<Mutex<Recorded>>,
    team_id: String,
    http_addr: std::net::SocketAddr,
    ws_addr: std::net::SocketAddr,
}

pub fn contract(name: &str) -> Value {
    serde_json::from_str(&contract_text(name)).unwrap()
}

pub fn contract_text(name: &str) -> String {
    let path = super::fixture(&format!("contracts/slack/{name}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl FakeSlack {
    /// Starts the fake for workspace `team_id` on 127.0.0.1.
    pub async fn start(team_id: &str) -> Self {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Self {
            state: Arc::default(),
            team_id: team_id.into(),
            http_addr: http.local_addr().unwrap(),
            ws_addr: ws.local_addr().unwrap(),
        };
        let app = Router::new()
            .route("/api/{method}", any(api))
            .route("/response/{id}", any(response_url))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(http, app).await.unwrap() });
        let sockets = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = ws.accept().await {
                let mut state = sockets.state.lock().unwrap();
                if state.silent > 0 {
                    state.silent -= 1;
                    state.held.push(stream);
                    continue;
                }
                drop(state);
                tokio::spawn(sockets.clone().socket(stream));
            }
        });
        fake
    }

    /// The Web API base URL for `api_base_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.http_addr)
    }

    /// A `response_url` for one command.
    pub fn response_url(&self, id: &str) -> String {
        format!("http://{}/response/{id}", self.http_addr)
    }

    /// Every call to `method`, oldest first.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.state.lock().unwrap().calls.iter().filter(|c| c.method == method).cloned().collect()
    }

    /// Every call, oldest first.
    pub fn all_calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Messages in `channel`, oldest first.
    pub fn messages(&self, channel: &str) -> Vec<Posted> {
        self.state.lock().unwrap().messages.iter().filter(|m| m.channel == channel).cloned().collect()
    }

    /// A message the bot posted before this fake started (in an earlier run of the bot), so a
    /// restarted bot can edit it and people can react to it.
    pub fn seed_message(&self, channel: &str, ts: &str, text: &str) {
        let posted =
            Posted { channel: channel.into(), ts: ts.into(), text: text.into(), blocks: Value::Null, edits: 0 };
        self.state.lock().unwrap().messages.push(posted);
    }

    /// The next call to `method` gets 429 with `Retry-After: secs`.
    pub fn rate_limit_once(&self, method: &str, secs: u64) {
        self.state.lock().unwrap().rate_limited.entry(method.into()).or_default().push_back(secs);
    }

    /// The next `count` Socket Mode connections are accepted and never answered: no WebSocket
    /// handshake, no `hello`, the TCP connection held open.
    pub fn silent_sockets(&self, count: usize) {
        self.state.lock().unwrap().silent = count;
    }

    /// How many connections were accepted silently so far.
    pub fn silent_connections(&self) -> usize {
        self.state.lock().unwrap().held.len()
    }

    /// How many Socket Mode connections were opened so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Waits until `check` holds, polling; panics with `what` after 10 s.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&FakeSlack) -> bool) {
        if super::within(Duration::from_secs(10), || check(self).then_some(())).await.is_none() {
            panic!("timed out waiting for {what}; calls: {:#?}", self.all_calls());
        }
    }

    /// Sends an envelope on the newest Socket Mode connection and waits for its ack.
    pub async fn send_envelope(&self, envelope: &Value) -> Value {
        let id = envelope["envelope_id"].as_str().unwrap().to_owned();
        let seen = self.state.lock().unwrap().frames.len();
        self.push_frame(envelope);
        super::eventually_some(Duration::from_secs(5), &format!("the ack for envelope {id}"), || {
            self.state.lock().unwrap().frames[seen..].iter().find(|f| f["envelope_id"] == id.as_str()).cloned()
        })
        .await
    }

    /// Sends a frame on the newest connection without waiting.
    pub fn push_frame(&self, frame: &Value) {
        let state = self.state.lock().unwrap();
        let socket = state.sockets.last().expect("no Socket Mode connection");
        socket.send(WsMessage::Text(frame.to_string().into())).unwrap();
    }

    /// Frames the bot sent (acks), oldest first.
    pub fn frames(&self) -> Vec<Value> {
        self.state.lock().unwrap().frames.clone()
    }

    async fn socket(self, stream: tokio::net::TcpStream) {
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
        let (mut sink, mut source) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(WsMessage::Text(contract("socket-mode-envelope.json")["hello"].to_string().into())).unwrap();
        {
            let mut state = self.state.lock().unwrap();
            state.connections += 1;
            state.sockets.push(tx);
        }
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        while let Some(Ok(message)) = source.next().await {
            if let WsMessage::Text(text) = message
                && let Ok(frame) = serde_json::from_str::<Value>(&text)
            {
                self.state.lock().unwrap().frames.push(frame);
            }
        }
    }

    fn record(&self, method: &str, body: Value, status: u16) {
        self.state.lock().unwrap().calls.push(Call { method: method.into(), body, at: Instant::now(), status });
    }
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Value {
    let form = headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/x-www-form"));
    if form {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        return Value::Object(pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
    }
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

async fn api(
    State(fake): State<FakeSlack>,
    Path(method): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut body = parse_body(&headers, &body);
    // Read methods (`conversations.info`) are GETs with their arguments in the query string.
    if body.is_null()
        && let Some(query) = uri.query()
    {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        body = Value::Object(pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
    }
    let limited = fake.state.lock().unwrap().rate_limited.get_mut(&method).and_then(|q| q.pop_front());
    if let Some(secs) = limited {
        fake.record(&method, body, 429);
        let mut response = reply(StatusCode::TOO_MANY_REQUESTS, contract("error.ratelimited.json"));
        response.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
        return response;
    }
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let expected = if method == "apps.connections.open" { APP_TOKEN } else { BOT_TOKEN };
    if token != format!("Bearer {expected}") {
        fake.record(&method, body, 200);
        return reply(StatusCode::OK, json!({"ok": false, "error": "invalid_auth"}));
    }
    let answer = match method.as_str() {
        "auth.test" => json!({
            "ok": true, "url": "https://shipday-test.slack.com/", "team": "Shipday Test", "user": "shipday",
            "team_id": fake.team_id, "user_id": BOT_USER, "bot_id": "B0SHIPDAY", "is_enterprise_install": false
        }),
        "apps.connections.open" => json!({"ok": true, "url": format!("ws://{}/link/?ticket=test", fake.ws_addr)}),
        "chat.postMessage" if body["channel"] == NOT_A_MEMBER => json!({"ok": false, "error": "not_in_channel"}),
        "chat.postMessage" => {
            let mut state = fake.state.lock().unwrap();
            state.next_ts += 1;
            let ts = format!("1700000000.{:06}", state.next_ts);
            let channel = body["channel"].as_str().unwrap_or_default().to_owned();
            state.messages.push(Posted {
                channel: channel.clone(),
                ts: ts.clone(),
                text: body["text"].as_str().unwrap_or_default().into(),
                blocks: body["blocks"].clone(),
                edits: 0,
            });
            let mut answer = contract("chat.postMessage.response.json");
            answer["channel"] = json!(channel);
            answer["ts"] = json!(ts);
            answer["message"]["ts"] = json!(ts);
            answer["message"]["text"] = body["text"].clone();
            answer
        }
        "chat.update" => {
            let mut state = fake.state.lock().unwrap();
            let found = state.messages.iter_mut().find(|m| m.channel == body["channel"] && m.ts == body["ts"]);
            match found {
                Some(message) => {
                    message.text = body["text"].as_str().unwrap_or_default().into();
                    message.blocks = body["blocks"].clone();
                    message.edits += 1;
                    let mut answer = contract("chat.update.response.json");
                    answer["channel"] = body["channel"].clone();
                    answer["ts"] = body["ts"].clone();
                    answer["text"] = body["text"].clone();
                    answer["message"]["text"] = body["text"].clone();
                    answer
                }
                None => json!({"ok": false, "error": "message_not_found"}),
            }
        }
        "chat.postEphemeral" => json!({"ok": true, "message_ts": "1700000000.999999"}),
        "conversations.info" => conversation(body["channel"].as_str().unwrap_or_default()),
        // A DM channel per user, as Slack answers `users` naming one user (a 1:1 DM): the docs
        // give a comma-separated string; JSON clients (slack-morphism) send an array.
        "conversations.open" => match match &body["users"] {
            Value::String(users) => Some(users.clone()),
            Value::Array(users) if users.len() == 1 => users[0].as_str().map(String::from),
            _ => None,
        }
        .filter(|u| u.starts_with('U') && !u.contains(','))
        {
            Some(user) => {
                let mut answer = contract("conversations.open.response.json");
                answer["channel"]["id"] = json!(format!("D{}", &user[1..]));
                answer
            }
            None => json!({"ok": false, "error": "user_not_found"}),
        },
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    fake.record(&method, body, 200);
    reply(StatusCode::OK, answer)
}

/// Slack answers a `response_url` post with a plain `ok`.
async fn response_url(
    State(fake): State<FakeSlack>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut body = parse_body(&headers, &body);
    body["response_url_id"] = json!(id);
    fake.record("response_url", body, 200);
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], "ok").into_response()
}
