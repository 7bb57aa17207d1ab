//! A local fake Discord: REST (recording every call) and a WebSocket gateway, speaking the
//! payloads in `tests/fixtures/contracts/discord/`, completed the way Discord sends them (serenity
//! silently drops events that lack fields it requires).
//!
//! The REST side is stateful like Discord: interaction responses and channel messages become
//! messages, reactions live on messages and can be listed, members have roles.
//!
//! It can also rate-limit chosen calls the way Discord does: HTTP 429 with the body of
//! `error.ratelimited.json` and a `Retry-After` header.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;

pub const APPLICATION_ID: &str = "172150183260323840";
pub const BOT_ID: &str = "80351110224678912";
pub const GUILD_ID: &str = "290926798626357999";
pub const CHANNEL_ID: &str = "645027906669510667";
pub const LEAD_ROLE: &str = "539082325061836999";
pub const OTHER_ROLE: &str = "539082325061836000";

/// A contract payload from `tests/fixtures/contracts/discord/`.
pub fn contract(name: &str) -> Value {
    let path = super::fixture(&format!("contracts/discord/{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// One REST call as the bot made it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The path after `/api/v10`.
    pub path: String,
    pub body: Value,
    /// When the fake received it.
    pub at: std::time::Instant,
}

/// Calls the fake answers with 429, like a rate-limited bucket.
struct Limit {
    method: String,
    /// Calls whose path starts with this.
    prefix: String,
    remaining: usize,
    /// Seconds, as the 429 body's `retry_after`.
    retry_after: f64,
}

#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: u64,
    pub channel: String,
    pub author: String,
    pub body: Value,
    pub flags: u64,
    pub deleted: bool,
    /// Written through an interaction webhook (a response or follow-up), not posted directly.
    pub via_interaction: bool,
    /// Emoji → user ids, in order of reacting.
    pub reactions: BTreeMap<String, Vec<String>>,
}

#[derive(Default)]
struct Rest {
    calls: Vec<Call>,
    /// User id → the DM channel opened with them.
    dm_channels: BTreeMap<String, u64>,
    messages: BTreeMap<u64, StoredMessage>,
    /// Interaction token → its `@original` message.
    originals: HashMap<String, u64>,
    /// User id → role ids.
    members: HashMap<String, Vec<String>>,
    next_id: u64,
    /// 429s to answer.
    limits: Vec<Limit>,
}

#[derive(Default)]
struct Gateway {
    identifies: Vec<Value>,
    resumes: usize,
    reject_resumes: bool,
    /// The connection that has a session, if any.
    live: Option<mpsc::UnboundedSender<Control>>,
    /// Gateway connections still to be accepted and never answered (no handshake).
    silent: usize,
    /// Connections accepted silently so far, held open.
    held: Vec<tokio::net::TcpStream>,
}

enum Control {
    Dispatch(&'static str, Value),
    /// Drops the TCP connection without a close frame, like a network failure.
    Drop,
}

#[derive(Clone)]
pub struct FakeDiscord {
    pub api_base: String,
    pub gateway_url: String,
    rest: Arc<Mutex<Rest>>,
    gateway: Arc<Mutex<Gateway>>,
}

impl FakeDiscord {
    pub async fn start() -> Self {
        let rest_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Self {
            api_base: format!("http://{}/api/v10", rest_listener.local_addr().unwrap()),
            gateway_url: format!("ws://{}", gateway_listener.local_addr().unwrap()),
            rest: Arc::new(Mutex::new(Rest { next_id: 1_300_000_000_000_000_000, ..Rest::default() })),
            gateway: Arc::new(Mutex::new(Gateway::default())),
        };
        let router = Router::new().fallback(rest).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(rest_listener, router).await.unwrap() });
        let gateway = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = gateway_listener.accept().await {
                let mut state = gateway.gateway.lock().unwrap();
                if state.silent > 0 {
                    state.silent -= 1;
                    state.held.push(stream);
                    continue;
                }
                drop(state);
                tokio::spawn(gateway.clone().connection(stream));
            }
        });
        fake
    }

    // ---- the test's view ----

    pub fn calls(&self) -> Vec<Call> {
        self.rest.lock().unwrap().calls.clone()
    }

    /// Calls about one interaction token, in order.
    pub fn interaction_calls(&self, token: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.path.contains(&format!("/{token}"))).collect()
    }

    pub fn message(&self, id: u64) -> StoredMessage {
        self.rest.lock().unwrap().messages[&id].clone()
    }

    /// The first stored message whose content contains `fragment`.
    pub fn find_message(&self, fragment: &str) -> Option<StoredMessage> {
        let rest = self.rest.lock().unwrap();
        rest.messages.values().find(|m| m.body["content"].as_str().is_some_and(|c| c.contains(fragment))).cloned()
    }

    /// The `@original` message of an interaction.
    pub fn original(&self, token: &str) -> Option<StoredMessage> {
        let rest = self.rest.lock().unwrap();
        rest.originals.get(token).map(|id| rest.messages[id].clone())
    }

    pub fn set_member_roles(&self, user: &str, roles: &[&str]) {
        self.rest.lock().unwrap().members.insert(user.into(), roles.iter().map(|r| r.to_string()).collect());
    }

    /// Answers the next `times` registrations with 429.
    pub fn rate_limit_next(&self, times: usize) {
        self.rate_limit("PUT", "/applications/", times, 0.05);
    }

    /// Answers the next `times` calls of `method` on paths starting with `prefix` with 429,
    /// the body of `error.ratelimited.json` (its `retry_after` set to `retry_after` seconds)
    /// and the headers Discord sends with it.
    pub fn rate_limit(&self, method: &str, prefix: &str, times: usize, retry_after: f64) {
        let limit = Limit { method: method.into(), prefix: prefix.into(), remaining: times, retry_after };
        self.rest.lock().unwrap().limits.push(limit);
    }

    /// The calls of `method` on paths starting with `prefix`, in order.
    pub fn calls_to(&self, method: &str, prefix: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method == method && c.path.starts_with(prefix)).collect()
    }

    pub fn identifies(&self) -> Vec<Value> {
        self.gateway.lock().unwrap().identifies.clone()
    }

    pub fn resumes(&self) -> usize {
        self.gateway.lock().unwrap().resumes
    }

    pub fn reject_resumes(&self) {
        self.gateway.lock().unwrap().reject_resumes = true;
    }

    /// Waits until `check` holds, or fails the test naming `what`.
    pub async fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        match super::within(Duration::from_secs(10), || check(self)).await {
            Some(found) => found,
            None => panic!("timed out waiting for {what}; calls: {:#?}", self.calls()),
        }
    }

    /// Waits until the bot has a gateway session (READY sent), `count` sessions in all.
    /// The next `count` gateway connections are accepted and never answered: no WebSocket
    /// handshake, no HELLO, the TCP connection held open.
    pub fn silent_gateways(&self, count: usize) {
        self.gateway.lock().unwrap().silent = count;
    }

    /// How many gateway connections were accepted silently so far.
    pub fn silent_connections(&self) -> usize {
        self.gateway.lock().unwrap().held.len()
    }

    pub async fn wait_for_sessions(&self, count: usize) {
        self.wait_for(&format!("{count} gateway sessions"), |f| {
            let g = f.gateway.lock().unwrap();
            (g.identifies.len() >= count && g.live.is_some()).then_some(())
        })
        .await
    }

    fn dispatch(&self, t: &'static str, d: Value) {
        let gateway = self.gateway.lock().unwrap();
        gateway.live.as_ref().expect("no gateway session").send(Control::Dispatch(t, d)).unwrap();
    }

    /// Drops the gateway connection, as a network failure would.
    pub fn drop_connection(&self) {
        let mut gateway = self.gateway.lock().unwrap();
        gateway.live.take().expect("no gateway session").send(Control::Drop).unwrap();
    }

    /// Sends an application command from `user` with `roles`; returns the interaction token.
    pub fn command(&self, user: &str, roles: &[&str], name: &str, options: Value) -> String {
        let id = self.next_id();
        let token = format!("token-{id}");
        self.dispatch("INTERACTION_CREATE", interaction(id, &token, user, roles, name, options));
        token
    }

    /// A member adds (or removes) a reaction: Discord's state changes and the gateway says so.
    pub fn react(&self, user: &str, roles: &[&str], message: u64, emoji: &str, added: bool) {
        let author = self.set_reaction(user, message, emoji, added);
        let d = reaction_event(user, roles, message, emoji, added, &author);
        self.dispatch(if added { "MESSAGE_REACTION_ADD" } else { "MESSAGE_REACTION_REMOVE" }, d);
    }

    /// A reaction changes while the bot is not connected: no event.
    pub fn react_unseen(&self, user: &str, message: u64, emoji: &str, added: bool) {
        self.set_reaction(user, message, emoji, added);
    }

    /// Posts a message by someone else in the team channel (the bot never wrote it).
    pub fn post_as(&self, author: &str, content: &str) -> u64 {
        let id = self.next_id();
        self.store_message(id, CHANNEL_ID, author, json!({ "content": content }), 0);
        id
    }

    fn set_reaction(&self, user: &str, message: u64, emoji: &str, added: bool) -> String {
        let mut rest = self.rest.lock().unwrap();
        let stored = rest.messages.get_mut(&message).expect("no such message");
        let users = stored.reactions.entry(emoji.into()).or_default();
        users.retain(|u| u != user);
        if added {
            users.push(user.into());
        }
        stored.reactions.retain(|_, users| !users.is_empty());
        stored.author.clone()
    }

    /// Discord's side of an interaction answered in an HTTP response body (the fake sees no
    /// callback for it): the `@original` message exists from then on.
    pub fn answered_over_http(&self, token: &str, response: &Value) {
        let flags = response["data"]["flags"].as_u64().unwrap_or(0);
        self.store_original(token, response["data"].clone(), flags);
    }

    fn store_original(&self, token: &str, body: Value, flags: u64) {
        let id = self.next_id();
        self.store_message(id, CHANNEL_ID, BOT_ID, body, flags);
        let mut rest = self.rest.lock().unwrap();
        rest.messages.get_mut(&id).unwrap().via_interaction = true;
        rest.originals.insert(token.to_string(), id);
    }

    /// The DM channel id of `user`, opened on first use.
    fn dm_channel(&self, user: &str) -> u64 {
        if let Some(id) = self.rest.lock().unwrap().dm_channels.get(user) {
            return *id;
        }
        let id = self.next_id();
        self.rest.lock().unwrap().dm_channels.insert(user.to_owned(), id);
        id
    }

    /// The DM channel opened with `user`, if any.
    pub fn dm_channel_of(&self, user: &str) -> Option<u64> {
        self.rest.lock().unwrap().dm_channels.get(user).copied()
    }

    /// The messages posted in channel `channel`, oldest first.
    pub fn messages_in(&self, channel: &str) -> Vec<StoredMessage> {
        let rest = self.rest.lock().unwrap();
        let mut found: Vec<StoredMessage> = rest.messages.values().filter(|m| m.channel == channel).cloned().collect();
        found.sort_by_key(|m| m.id);
        found
    }

    fn next_id(&self) -> u64 {
        let mut rest = self.rest.lock().unwrap();
        rest.next_id += 1;
        rest.next_id
    }

    fn store_message(&self, id: u64, channel: &str, author: &str, body: Value, flags: u64) -> Value {
        let stored = StoredMessage {
            id,
            channel: channel.into(),
            author: author.into(),
            body,
            flags,
            deleted: false,
            via_interaction: false,
            reactions: BTreeMap::new(),
        };
        let json = message_json(&stored);
        self.rest.lock().unwrap().messages.insert(id, stored);
        json
    }

    // ---- REST ----

    fn handle(&self, method: &Method, path: &str, body: Value) -> (StatusCode, Value) {
        let segments: Vec<String> = path.trim_start_matches('/').split('/').map(percent_decode).collect();
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (method.as_str(), s.as_slice()) {
            ("GET", ["gateway"]) => (StatusCode::OK, json!({ "url": self.gateway_url })),
            ("GET", ["gateway", "bot"]) => (
                StatusCode::OK,
                json!({
                    "url": self.gateway_url,
                    "shards": 1,
                    "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1 }
                }),
            ),
            ("POST", ["interactions", _id, token, "callback"]) => {
                let flags = body["data"]["flags"].as_u64().unwrap_or(0);
                let content = match body["type"].as_u64() {
                    Some(5) => json!({ "content": "", "embeds": [], "deferred": true }),
                    _ => body["data"].clone(),
                };
                self.store_original(token, content, flags);
                (StatusCode::NO_CONTENT, Value::Null)
            }
            ("PATCH", ["webhooks", _app, token, "messages", which]) => {
                let id = match *which {
                    "@original" => self.rest.lock().unwrap().originals.get(*token).copied(),
                    other => other.parse().ok(),
                };
                self.edit(id, body)
            }
            ("DELETE", ["webhooks", _app, token, "messages", "@original"]) => {
                let mut rest = self.rest.lock().unwrap();
                match rest.originals.get(*token).copied() {
                    Some(id) => {
                        rest.messages.get_mut(&id).unwrap().deleted = true;
                        (StatusCode::NO_CONTENT, Value::Null)
                    }
                    None => not_found(),
                }
            }
            ("POST", ["webhooks", _app, _token]) => {
                let id = self.next_id();
                let flags = body["flags"].as_u64().unwrap_or(0);
                self.store_message(id, CHANNEL_ID, BOT_ID, body, flags);
                let mut rest = self.rest.lock().unwrap();
                let message = rest.messages.get_mut(&id).unwrap();
                message.via_interaction = true;
                (StatusCode::OK, message_json(message))
            }
            // Discord's DM channel object (type 1) with the one recipient; one channel per user.
            ("POST", ["users", "@me", "channels"]) => match body["recipient_id"].as_str() {
                Some(user) if user.parse::<u64>().is_ok() => {
                    let id = self.dm_channel(user);
                    (
                        StatusCode::OK,
                        json!({ "id": id.to_string(), "type": 1, "last_message_id": null, "flags": 0, "recipients": [user_json(user)] }),
                    )
                }
                _ => (StatusCode::BAD_REQUEST, json!({ "code": 50035, "message": "Invalid Form Body" })),
            },
            ("POST", ["channels", channel, "messages"]) => {
                let id = self.next_id();
                (StatusCode::OK, self.store_message(id, channel, BOT_ID, body, 0))
            }
            ("PATCH", ["channels", _channel, "messages", id]) => self.edit(id.parse().ok(), body),
            ("GET", ["channels", _channel, "messages", id]) => {
                let rest = self.rest.lock().unwrap();
                match id.parse().ok().and_then(|id: u64| rest.messages.get(&id)).filter(|m| !m.deleted) {
                    Some(message) => (StatusCode::OK, message_json(message)),
                    None => not_found(),
                }
            }
            ("GET", ["channels", _channel, "messages", id, "reactions", emoji]) => {
                let rest = self.rest.lock().unwrap();
                let users = id
                    .parse()
                    .ok()
                    .and_then(|id: u64| rest.messages.get(&id))
                    .and_then(|m| m.reactions.get(*emoji).cloned())
                    .unwrap_or_default();
                (StatusCode::OK, Value::Array(users.iter().map(|u| user_json(u)).collect()))
            }
            ("GET", ["users", "@me"]) => (StatusCode::OK, user_json(BOT_ID)),
            ("GET", ["guilds", guild]) if *guild == GUILD_ID => (StatusCode::OK, guild_json()),
            // Discord's JSON error for a server id it does not know (code 10004, Unknown Guild).
            ("GET", ["guilds", _guild]) => {
                (StatusCode::NOT_FOUND, json!({ "message": "Unknown Guild", "code": 10004 }))
            }
            ("GET", ["guilds", _guild, "members", user]) => {
                let roles = self.rest.lock().unwrap().members.get(*user).cloned().unwrap_or_default();
                (StatusCode::OK, member_json(user, &roles.iter().map(String::as_str).collect::<Vec<_>>()))
            }
            ("PUT", ["applications", _app, "guilds", _, "commands"] | ["applications", _app, "commands"]) => {
                let registered: Vec<Value> = body
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        let mut c = c.clone();
                        c["id"] = json!("1100000000000000001");
                        c["application_id"] = json!(APPLICATION_ID);
                        c["version"] = json!("1");
                        c
                    })
                    .collect();
                (StatusCode::OK, Value::Array(registered))
            }
            _ => not_found(),
        }
    }

    fn edit(&self, id: Option<u64>, body: Value) -> (StatusCode, Value) {
        let mut rest = self.rest.lock().unwrap();
        let Some(message) = id.and_then(|id| rest.messages.get_mut(&id)).filter(|m| !m.deleted) else {
            return not_found();
        };
        message.body = body;
        (StatusCode::OK, message_json(message))
    }

    // ---- gateway ----

    async fn connection(self, stream: tokio::net::TcpStream) {
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
        let (mut out, mut inbox) = ws.split();
        let (control, mut controls) = mpsc::unbounded_channel();
        let mut seq = 0u64;
        let hello = contract("gateway-hello.json");
        if out.send(Ws::Text(hello.to_string().into())).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                frame = inbox.next() => {
                    let Some(Ok(Ws::Text(text))) = frame else { return };
                    let payload: Value = serde_json::from_str(&text).unwrap();
                    let reply = match payload["op"].as_u64() {
                        Some(1) => Some(json!({ "op": 11 })),
                        Some(2) => {
                            let mut gateway = self.gateway.lock().unwrap();
                            gateway.identifies.push(payload["d"].clone());
                            gateway.live = Some(control.clone());
                            seq += 1;
                            Some(ready(gateway.identifies.len(), seq, &self.gateway_url))
                        }
                        Some(6) => {
                            let mut gateway = self.gateway.lock().unwrap();
                            gateway.resumes += 1;
                            if gateway.reject_resumes {
                                Some(json!({ "op": 9, "d": false }))
                            } else {
                                gateway.live = Some(control.clone());
                                seq += 1;
                                Some(json!({ "op": 0, "s": seq, "t": "RESUMED", "d": {} }))
                            }
                        }
                        _ => None,
                    };
                    if let Some(reply) = reply
                        && out.send(Ws::Text(reply.to_string().into())).await.is_err()
                    {
                        return;
                    }
                }
                Some(command) = controls.recv() => match command {
                    Control::Dispatch(t, d) => {
                        seq += 1;
                        let event = json!({ "op": 0, "s": seq, "t": t, "d": d });
                        if out.send(Ws::Text(event.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                    Control::Drop => return,
                },
            }
        }
    }
}

async fn rest(State(fake): State<FakeDiscord>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().strip_prefix("/api/v10").unwrap_or(uri.path()).to_owned();
    let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
    let call =
        Call { method: method.to_string(), path: path.clone(), body: body.clone(), at: std::time::Instant::now() };
    let limited = {
        let mut rest = fake.rest.lock().unwrap();
        rest.calls.push(call);
        let limit = rest
            .limits
            .iter_mut()
            .find(|l| l.remaining > 0 && l.method == method.as_str() && path.starts_with(&l.prefix));
        limit.map(|limit| {
            limit.remaining -= 1;
            limit.retry_after
        })
    };
    if let Some(retry_after) = limited {
        let mut body = contract("error.ratelimited.json");
        body["retry_after"] = json!(retry_after);
        let headers = [
            ("retry-after", (retry_after.ceil() as u64).to_string()),
            ("x-ratelimit-scope", "user".to_owned()),
            ("x-ratelimit-remaining", "0".to_owned()),
        ];
        return (StatusCode::TOO_MANY_REQUESTS, headers, axum::Json(body)).into_response();
    }
    let (status, answer) = fake.handle(&method, &path, body);
    if answer.is_null() { status.into_response() } else { (status, axum::Json(answer)).into_response() }
}

fn not_found() -> (StatusCode, Value) {
    (StatusCode::NOT_FOUND, json!({ "message": "Unknown Message", "code": 10008 }))
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&segment[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

// ---- complete objects, from the contract payloads ----

pub fn user_json(id: &str) -> Value {
    let mut user = contract("gateway-message-reaction-add.json")["d"]["member"]["user"].clone();
    user["id"] = json!(id);
    user["username"] = json!(format!("user{}", &id[id.len().saturating_sub(3)..]));
    user["global_name"] = Value::Null;
    user["avatar"] = Value::Null;
    user["bot"] = json!(id == BOT_ID);
    user["flags"] = json!(0);
    user["public_flags"] = json!(0);
    user
}

/// The fake's server, shaped like the "Example Guild" of Discord's guild resource docs
/// (developers/resources/guild.mdx), with the fake's ids.
pub fn guild_json() -> Value {
    json!({
        "id": GUILD_ID,
        "name": "Shipday Test",
        "icon": null,
        "icon_hash": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": "73193882359173120",
        "afk_channel_id": null,
        "afk_timeout": 300,
        "widget_enabled": false,
        "verification_level": 1,
        "default_message_notifications": 1,
        "explicit_content_filter": 0,
        "roles": [],
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": CHANNEL_ID,
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "max_presences": null,
        "max_members": 500000,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "max_video_channel_users": 25,
        "approximate_member_count": null,
        "approximate_presence_count": null,
        "nsfw_level": 0,
        "stickers": [],
        "premium_progress_bar_enabled": false,
        "safety_alerts_channel_id": null
    })
}

pub fn member_json(user: &str, roles: &[&str]) -> Value {
    let mut member = contract("interaction-application-command.json")["member"].clone();
    member["user"] = user_json(user);
    member["roles"] = json!(roles);
    // serenity requires these; Discord always sends them.
    member["flags"] = json!(0);
    member["avatar"] = Value::Null;
    member["banner"] = Value::Null;
    member["communication_disabled_until"] = Value::Null;
    member["unusual_dm_activity_until"] = Value::Null;
    member
}

fn ready(session: usize, seq: u64, gateway_url: &str) -> Value {
    let mut ready = contract("gateway-ready.json");
    ready["s"] = json!(seq);
    ready["d"]["user"]["id"] = json!(BOT_ID);
    ready["d"]["user"]["bot"] = json!(true);
    ready["d"]["session_id"] = json!(format!("session-{session}"));
    ready["d"]["resume_gateway_url"] = json!(gateway_url);
    ready["d"]["guilds"] = json!([{ "id": GUILD_ID, "unavailable": true }]);
    ready["d"]["application"]["id"] = json!(APPLICATION_ID);
    ready
}

pub fn interaction(id: u64, token: &str, user: &str, roles: &[&str], name: &str, options: Value) -> Value {
    let mut event = contract("interaction-application-command.json");
    event["id"] = json!(id.to_string());
    event["token"] = json!(token);
    event["application_id"] = json!(APPLICATION_ID);
    event["version"] = json!(1);
    event["guild_id"] = json!(GUILD_ID);
    event["channel_id"] = json!(CHANNEL_ID);
    event["channel"] = json!({
        "id": CHANNEL_ID, "type": 0, "name": "releases", "guild_id": GUILD_ID,
        "permissions": "2147483647", "flags": 0, "last_message_id": null, "nsfw": false,
        "parent_id": null, "position": 0, "rate_limit_per_user": 0, "topic": null
    });
    event["member"] = member_json(user, roles);
    event["data"] = json!({ "id": "771825006014889984", "name": name, "type": 1, "options": options });
    // serenity 0.12.5 silently drops an INTERACTION_CREATE without these two.
    event["entitlements"] = json!([]);
    event["attachment_size_limit"] = json!(10485760);
    event["authorizing_integration_owners"] = json!({ "0": GUILD_ID });
    event["context"] = json!(0);
    event
}

fn reaction_event(user: &str, roles: &[&str], message: u64, emoji: &str, added: bool, author: &str) -> Value {
    let file = if added { "gateway-message-reaction-add.json" } else { "gateway-message-reaction-remove.json" };
    let mut d = contract(file)["d"].clone();
    d["user_id"] = json!(user);
    d["channel_id"] = json!(CHANNEL_ID);
    d["message_id"] = json!(message.to_string());
    d["guild_id"] = json!(GUILD_ID);
    d["emoji"] = json!({ "id": null, "name": emoji });
    if added {
        d["member"] = member_json(user, roles);
        d["message_author_id"] = json!(author);
        d["burst_colors"] = json!([]);
    }
    d
}

fn message_json(message: &StoredMessage) -> Value {
    let reactions: Vec<Value> = message
        .reactions
        .iter()
        .map(|(emoji, users)| {
            json!({
                "count": users.len(), "count_details": { "burst": 0, "normal": users.len() },
                "me": users.iter().any(|u| u == BOT_ID), "me_burst": false,
                "emoji": { "id": null, "name": emoji }, "burst_colors": []
            })
        })
        .collect();
    let embeds: Vec<Value> = message.body["embeds"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut e| {
            e["type"] = json!("rich");
            e
        })
        .collect();
    json!({
        "id": message.id.to_string(),
        "channel_id": message.channel,
        "author": user_json(&message.author),
        "content": message.body["content"].as_str().unwrap_or(""),
        "timestamp": "2026-03-02T10:00:00.000000+00:00",
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": embeds,
        "reactions": reactions,
        "pinned": false,
        "type": if message.via_interaction { 20 } else { 0 },
        "flags": message.flags,
        "components": [],
        "application_id": if message.author == BOT_ID { json!(APPLICATION_ID) } else { Value::Null },
        "webhook_id": if message.via_interaction { json!(APPLICATION_ID) } else { Value::Null },
    })
}
