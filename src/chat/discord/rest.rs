//! The Discord REST calls the adapter makes, and who paces them.
//!
//! Against discord.com, serenity's own client sends every call: its rate limiter knows
//! Discord's buckets and waits before a call would be refused. serenity sends calls to another
//! base URL (a local Discord-compatible server) only with that limiter turned off, so there
//! Shipday sends the same requests itself and honours the server's answer instead: on HTTP 429
//! it waits the `retry_after` the body gives (or the `Retry-After` header) and tries again, a
//! bounded number of times, and gives up with an error rather than wait without end.

use super::config::{DEFAULT_API_BASE_URL, DiscordConfig};
use anyhow::{Context, Result, anyhow, bail};
use serde::de::DeserializeOwned;
use serde_json::Value;
use serenity::all::{
    ApplicationId, ChannelId, GuildId, InteractionId, Member, Message, MessageId, ReactionType, User, UserId,
};
use serenity::http::{ErrorResponse, Http, HttpBuilder, HttpError, LightMethod, Request, Route};
use std::time::Duration;

/// How calls to a base URL other than discord.com retry when the server answers 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The longest wait Shipday accepts; a server asking for more gets an error at once.
    pub max_wait: Duration,
    /// The wait when a 429 says nothing about how long (neither body nor header).
    pub default_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 4, max_wait: Duration::from_secs(60), default_wait: Duration::from_secs(1) }
    }
}

/// Who paces REST calls, decided from `discord.api_base_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pacing {
    /// discord.com: serenity's rate limiter.
    Serenity,
    /// Another Discord-compatible server: Shipday's own 429 handling.
    Own {
        /// The server's origin (the base URL without `/api/v10`), which replaces
        /// `https://discord.com` in every request.
        origin: String,
    },
}

impl Pacing {
    /// The pacing for a validated `[discord]` section. `check-config` and `serve` both call it
    /// (through [`crate::serve::validate`]), so they agree on what is valid.
    pub fn for_settings(settings: &DiscordConfig) -> Result<Self> {
        let base = settings.api_base_url.as_str();
        if base == DEFAULT_API_BASE_URL {
            return Ok(Self::Serenity);
        }
        let origin = base
            .strip_suffix("/api/v10")
            .with_context(|| format!("discord.api_base_url: `{base}` must end in /api/v10"))?;
        url::Url::parse(origin).with_context(|| format!("discord.api_base_url: `{base}` is not a URL"))?;
        Ok(Self::Own { origin: origin.to_owned() })
    }

    /// The loud start-up warning for a server that is not discord.com, if any.
    pub fn warning(&self) -> Option<String> {
        match self {
            Self::Serenity => None,
            Self::Own { origin } => Some(format!(
                "DISCORD IS NOT discord.com: REST and the gateway go to {origin} (discord.api_base_url). \
                 The bot token is sent there. Use this only with a local Discord-compatible server; remove \
                 the key to talk to Discord"
            )),
        }
    }
}

/// The adapter's REST client: every call it makes, paced by serenity against discord.com and
/// by Shipday elsewhere. Public so tests can drive it against the fake Discord.
pub struct Rest {
    /// serenity's client: the one that sends every call against discord.com.
    http: Http,
    own: Option<Own>,
    application_id: ApplicationId,
}

/// What Shipday needs to send calls itself.
struct Own {
    client: reqwest::Client,
    origin: String,
    token: String,
    policy: RetryPolicy,
}

/// serenity's REST client for `pacing`: with its rate limiter against discord.com, without it
/// (pointed at the origin) otherwise. The gateway client uses one too, to ask for its URL.
pub(crate) fn serenity_http(settings: &DiscordConfig, pacing: &Pacing) -> Http {
    let mut builder =
        HttpBuilder::new(settings.bot_token.expose()).application_id(ApplicationId::new(settings.application_id));
    // serenity's own client has no timeouts: ours has a connect and a total timeout.
    match crate::clients::outbound::http_client() {
        Ok(client) => builder = builder.client(client),
        Err(error) => tracing::warn!(%error, "Discord REST keeps serenity's client, without timeouts"),
    }
    match pacing {
        Pacing::Serenity => builder.build(),
        Pacing::Own { origin } => builder.proxy(origin.as_str()).ratelimiter_disabled(true).build(),
    }
}

impl Rest {
    /// A client for `settings`' base URL, paced as `pacing` says.
    pub fn new(settings: &DiscordConfig, pacing: &Pacing, policy: RetryPolicy) -> Result<Self> {
        let http = serenity_http(settings, pacing);
        let own = match pacing {
            Pacing::Serenity => None,
            Pacing::Own { origin } => Some(Own {
                client: crate::clients::outbound::http_client()?,
                origin: origin.clone(),
                token: http.token().to_owned(),
                policy,
            }),
        };
        Ok(Self { http, own, application_id: ApplicationId::new(settings.application_id) })
    }

    /// Sends `request` and reads the JSON answer.
    async fn fire<T: DeserializeOwned>(&self, request: Request<'_>) -> Result<T> {
        match &self.own {
            None => Ok(self.http.fire(request).await?),
            Some(own) => {
                let response = own.send(request).await?;
                let bytes = response.bytes().await.context("cannot read Discord's answer")?;
                serde_json::from_slice(&bytes).context("Discord's answer did not parse")
            }
        }
    }

    /// Sends `request` whose answer has no body worth reading.
    async fn wind(&self, request: Request<'_>) -> Result<()> {
        match &self.own {
            None => self.http.request(request).await.map(drop).map_err(Into::into),
            Some(own) => own.send(request).await.map(drop),
        }
    }

    /// The first response to an interaction (`POST /interactions/{id}/{token}/callback`).
    pub async fn create_interaction_response(&self, id: InteractionId, token: &str, body: &Value) -> Result<()> {
        let route = Route::InteractionResponse { interaction_id: id, token };
        self.wind(Request::new(route, LightMethod::Post).body(Some(serde_json::to_vec(body)?))).await
    }

    /// Edits the interaction's `@original` response.
    pub async fn edit_original_interaction_response(&self, token: &str, body: &Value) -> Result<Message> {
        let route = Route::WebhookOriginalInteractionResponse { application_id: self.application_id, token };
        self.fire(Request::new(route, LightMethod::Patch).body(Some(serde_json::to_vec(body)?))).await
    }

    /// Deletes the `@original` response (a placeholder whose visibility was wrong).
    pub async fn delete_original_interaction_response(&self, token: &str) -> Result<()> {
        let route = Route::WebhookOriginalInteractionResponse { application_id: self.application_id, token };
        self.wind(Request::new(route, LightMethod::Delete)).await
    }

    /// A follow-up message of an interaction.
    pub async fn create_followup_message(&self, token: &str, body: &Value) -> Result<Message> {
        let route = Route::WebhookFollowupMessages { application_id: self.application_id, token };
        self.fire(Request::new(route, LightMethod::Post).body(Some(serde_json::to_vec(body)?))).await
    }

    /// Edits a follow-up message.
    pub async fn edit_followup_message(&self, token: &str, id: MessageId, body: &Value) -> Result<Message> {
        let route = Route::WebhookFollowupMessage { application_id: self.application_id, token, message_id: id };
        self.fire(Request::new(route, LightMethod::Patch).body(Some(serde_json::to_vec(body)?))).await
    }

    /// Posts a message in a channel (announcements, and progress after the token expired).
    pub async fn send_message(&self, channel: ChannelId, body: &Value) -> Result<Message> {
        let route = Route::ChannelMessages { channel_id: channel };
        self.fire(Request::new(route, LightMethod::Post).body(Some(serde_json::to_vec(body)?))).await
    }

    /// Opens (or finds) the direct-message channel with `user` (`POST /users/@me/channels`
    /// with `recipient_id`), for a message only they see.
    pub async fn create_dm_channel(&self, user: UserId) -> Result<ChannelId> {
        let body = serde_json::json!({ "recipient_id": user.to_string() });
        let route = Route::UserMeDmChannels;
        let channel: Value =
            self.fire(Request::new(route, LightMethod::Post).body(Some(serde_json::to_vec(&body)?))).await?;
        let id = channel.get("id").and_then(Value::as_str).and_then(|id| id.parse::<u64>().ok()).filter(|id| *id != 0);
        id.map(ChannelId::new).context("Discord's DM channel has no id")
    }

    /// Edits a channel message.
    pub async fn edit_message(&self, channel: ChannelId, id: MessageId, body: &Value) -> Result<Message> {
        let route = Route::ChannelMessage { channel_id: channel, message_id: id };
        self.fire(Request::new(route, LightMethod::Patch).body(Some(serde_json::to_vec(body)?))).await
    }

    /// Reads a message (who wrote it, its reactions).
    pub async fn get_message(&self, channel: ChannelId, id: MessageId) -> Result<Message> {
        self.fire(Request::new(Route::ChannelMessage { channel_id: channel, message_id: id }, LightMethod::Get)).await
    }

    /// One page of the users who reacted with `emoji`.
    pub async fn get_reaction_users(
        &self,
        channel: ChannelId,
        id: MessageId,
        emoji: &ReactionType,
        limit: u8,
        after: Option<u64>,
    ) -> Result<Vec<User>> {
        let reaction = emoji.as_data();
        let route = Route::ChannelMessageReactionEmoji { channel_id: channel, message_id: id, reaction: &reaction };
        let mut params = vec![("limit", limit.to_string())];
        if let Some(after) = after {
            params.push(("after", after.to_string()));
        }
        self.fire(Request::new(route, LightMethod::Get).params(Some(params))).await
    }

    /// The bot's own user (`GET /users/@me`), for `check-config --online`.
    pub async fn current_user(&self) -> Result<BotUser> {
        self.fire(Request::new(Route::UserMe, LightMethod::Get)).await
    }

    /// A server's name (`GET /guilds/{id}`), for `check-config --online`: Discord answers only
    /// when the bot is in it.
    pub async fn guild(&self, guild: GuildId) -> Result<GuildName> {
        self.fire(Request::new(Route::Guild { guild_id: guild }, LightMethod::Get)).await
    }

    /// A guild member, for their roles.
    pub async fn get_member(&self, guild: GuildId, user: UserId) -> Result<Member> {
        let route = Route::GuildMember { guild_id: guild, user_id: user };
        let mut member: Value = self.fire(Request::new(route, LightMethod::Get)).await?;
        // As serenity does: the member object does not name its guild.
        if let Some(map) = member.as_object_mut() {
            map.insert("guild_id".into(), guild.get().into());
        }
        Ok(serde_json::from_value(member)?)
    }
}

/// The parts of Discord's user object `check-config --online` shows.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BotUser {
    /// The user's snowflake, as Discord sends it (a string).
    pub id: String,
    /// The user name.
    pub username: String,
}

/// The parts of Discord's guild object `check-config --online` shows.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct GuildName {
    /// The guild's snowflake.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// Discord's answer to a refused call: its HTTP status and its own message and JSON error code
/// (`404`, `Unknown Guild`, `10004`), when `error` is one.
pub fn refusal(error: &anyhow::Error) -> Option<(u16, String, isize)> {
    match error.downcast_ref::<serenity::Error>() {
        Some(serenity::Error::Http(HttpError::UnsuccessfulRequest(response))) => {
            Some((response.status_code.as_u16(), response.error.message.clone(), response.error.code))
        }
        _ => None,
    }
}

impl Own {
    /// Sends `request` to the origin, waiting out 429s within the policy; any other
    /// unsuccessful answer is serenity's error for it, as serenity's client would give.
    async fn send(&self, request: Request<'_>) -> Result<reqwest::Response> {
        let mut attempt = 1;
        loop {
            let built = request.clone().build(&self.client, &self.token, Some(&self.origin))?.build()?;
            let (method, url) = (built.method().clone(), built.url().clone());
            let response =
                self.client.execute(built).await.with_context(|| format!("cannot reach Discord at {url}"))?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status.as_u16() != 429 {
                let error = ErrorResponse::from_response(response, method).await;
                return Err(serenity::Error::Http(HttpError::UnsuccessfulRequest(error)).into());
            }
            let header = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = response.bytes().await.unwrap_or_default();
            let wait = retry_after(header.as_deref(), &body).unwrap_or(self.policy.default_wait);
            if wait > self.policy.max_wait {
                bail!(
                    "Discord at {} rate-limited {method} {} for {:.1} s, longer than Shipday waits ({} s)",
                    self.origin,
                    url.path(),
                    wait.as_secs_f64(),
                    self.policy.max_wait.as_secs()
                );
            }
            if attempt >= self.policy.attempts {
                return Err(anyhow!(
                    "Discord at {} kept rate-limiting {method} {} ({attempt} attempts)",
                    self.origin,
                    url.path()
                ));
            }
            tracing::warn!(%method, path = url.path(), wait = wait.as_secs_f64(), attempt, "Discord rate-limited a call; waiting and retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// How long a 429 asks to wait: the body's `retry_after` (float seconds, as in
/// `error.ratelimited.json`), else the `Retry-After` header (seconds). `None` when neither
/// holds a finite, non-negative number of seconds.
pub fn retry_after(header: Option<&str>, body: &[u8]) -> Option<Duration> {
    let seconds = |s: f64| (0.0..1e9).contains(&s).then(|| Duration::from_secs_f64(s));
    let from_body =
        serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("retry_after")?.as_f64()).and_then(seconds);
    from_body.or_else(|| header?.trim().parse::<f64>().ok().and_then(seconds))
}

/// Whether `error` is Discord answering 404 (the message or member is gone).
pub(crate) fn is_not_found(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<serenity::Error>(),
        Some(serenity::Error::Http(e)) if e.status_code().is_some_and(|s| s.as_u16() == 404)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn contract() -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/contracts/discord/error.ratelimited.json");
        std::fs::read(path).unwrap()
    }

    #[test]
    fn the_bodys_retry_after_wins_over_the_header() {
        assert_eq!(retry_after(Some("3"), &contract()), Some(Duration::from_secs_f64(64.57)));
        assert_eq!(retry_after(Some("3"), b""), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some(" 0.25 "), b"{\"message\":\"slow down\"}"), Some(Duration::from_millis(250)));
        assert_eq!(retry_after(None, b"not json"), None);
        assert_eq!(retry_after(Some("soon"), b"{\"retry_after\":-1}"), None);
        assert_eq!(retry_after(Some("2"), b"{\"retry_after\":\"NaN\"}"), Some(Duration::from_secs(2)));
    }

    proptest! {
        #[test]
        fn any_answer_gives_a_sane_wait_or_none(header in proptest::option::of(".{0,20}"), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(wait) = retry_after(header.as_deref(), &body) {
                prop_assert!(wait.as_secs_f64() < 1e9);
            }
        }

        #[test]
        fn a_well_formed_body_is_read_back(seconds in 0.0f64..3600.0) {
            let body = serde_json::json!({ "message": "You are being rate limited.", "retry_after": seconds, "global": false });
            let wait = retry_after(None, body.to_string().as_bytes()).unwrap();
            prop_assert!((wait.as_secs_f64() - seconds).abs() < 1e-6);
        }
    }
}
