//! Outbound Slack Web API calls, through slack-morphism's hyper client with a configurable base
//! URL. Every call checks `ok` (slack-morphism turns `ok: false` into an error), honours
//! `Retry-After` on 429 a bounded number of times, and has a connect timeout and a total
//! timeout per attempt, so a Slack that accepts connections and never answers cannot hang it.

use crate::clients::outbound::{CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use crate::command::CommandNames;
use crate::config::Secret;
use crate::engine::MessageRef;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// slack-morphism's hyper connector over rustls (ring, webpki roots).
pub type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// How many times one call is retried after a 429.
const RATE_LIMIT_RETRIES: u32 = 3;
/// Slack's own SDKs wait this long when a 429 carries no `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// A longer wait than this is not worth holding a message for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why a call failed. Callers branch on [`ApiError::Slack`] codes such as `not_in_channel`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Slack answered `ok: false` with this code.
    #[error("{method}: Slack answered `{code}`")]
    Slack {
        /// The Web API method.
        method: &'static str,
        /// Slack's error code.
        code: String,
    },
    /// Still rate limited after the retries.
    #[error("{method}: still rate limited after {RATE_LIMIT_RETRIES} retries")]
    RateLimited {
        /// The Web API method.
        method: &'static str,
    },
    /// The request did not get an answer Slack-shaped enough to read.
    #[error("{method}: {message}")]
    Transport {
        /// The Web API method.
        method: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl ApiError {
    /// Slack's error code, if Slack answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Slack { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The Web API as the adapter uses it: a concrete client with a base URL and the bot token.
///
/// Every message leaves Slack's adapter through here (or as a command's ack), so this is where
/// the canonical command references in it become the names registered in the workspace.
#[derive(Clone)]
pub struct SlackApi {
    client: Arc<SlackClient<Connector>>,
    token: SlackApiToken,
    base_url: url::Url,
    names: Option<Arc<CommandNames>>,
}

/// Who the bot is, from `auth.test`.
#[derive(Debug, Clone)]
pub struct BotIdentity {
    /// The workspace the bot token belongs to.
    pub team_id: String,
    /// The bot user's member id: reactions by it are ignored, reactions on its messages count.
    pub user_id: String,
    /// The bot user's name (`shipday`), when Slack gives it.
    pub user_name: Option<String>,
}

/// What `conversations.info` says about a channel, as far as the bot's membership goes.
#[derive(Debug, Clone)]
pub struct ChannelMembership {
    /// The channel's name, without `#`, when Slack gives it.
    pub name: Option<String>,
    /// Whether the bot is a member (it receives the channel's reaction events only then).
    pub is_member: bool,
    /// Whether the channel is archived (nothing can be posted there).
    pub is_archived: bool,
}

impl SlackApi {
    /// A client for `base_url` (e.g. `https://slack.com/api`) acting with `bot_token`.
    pub fn new(base_url: &str, bot_token: &Secret) -> anyhow::Result<Self> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            // Config allows plain http only to loopback (the tests' fake Slack).
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let connector = SlackClientHyperConnector::with_connector(https).with_slack_api_url(base_url);
        let base_url = url::Url::parse(&format!("{base_url}/"))
            .map_err(|e| anyhow::anyhow!("slack.api_base_url `{base_url}`: {e}"))?;
        Ok(Self {
            client: Arc::new(SlackClient::new(connector)),
            token: SlackApiToken::new(bot_token.expose().into()),
            base_url,
            names: None,
        })
    }

    /// Names commands in every message as `names` registers them (see [`super::render::localize`]).
    pub fn with_names(mut self, names: CommandNames) -> Self {
        self.names = Some(Arc::new(names));
        self
    }

    /// `content` with its command references named as registered in the workspace.
    fn outgoing(&self, content: &SlackMessageContent) -> SlackMessageContent {
        match &self.names {
            Some(names) => super::render::localize(content, names),
            None => content.clone(),
        }
    }

    /// The underlying client (Socket Mode opens its connections with it).
    pub fn client(&self) -> Arc<SlackClient<Connector>> {
        self.client.clone()
    }

    /// `auth.test`: which workspace and bot user the token belongs to.
    pub async fn auth_test(&self) -> Result<BotIdentity, ApiError> {
        let session = self.client.open_session(&self.token);
        let found = retrying("auth.test", || session.auth_test()).await?;
        Ok(BotIdentity { team_id: found.team_id.0, user_id: found.user_id.0, user_name: found.user })
    }

    /// `conversations.info`: whether the bot is in `channel` (needs `channels:read`, and
    /// `groups:read` for a private channel). Used by `check-config --online`.
    pub async fn channel_membership(&self, channel: &str) -> Result<ChannelMembership, ApiError> {
        let session = self.client.open_session(&self.token);
        let request = SlackApiConversationsInfoRequest::new(channel.into());
        let found = retrying("conversations.info", || session.conversations_info(&request)).await?;
        let flags = found.channel.flags;
        Ok(ChannelMembership {
            name: found.channel.name,
            is_member: flags.is_member.unwrap_or(false),
            is_archived: flags.is_archived.unwrap_or(false),
        })
    }

    /// `chat.postMessage`: returns where the message is, to edit it later.
    pub async fn post_message(&self, channel: &str, content: &SlackMessageContent) -> Result<MessageRef, ApiError> {
        let session = self.client.open_session(&self.token);
        let request = SlackApiChatPostMessageRequest::new(channel.into(), self.outgoing(content));
        let posted = retrying("chat.postMessage", || session.chat_post_message(&request)).await?;
        Ok(MessageRef { channel: posted.channel.0, id: posted.ts.0 })
    }

    /// `conversations.open` with one user, then `chat.postMessage` there: a direct message
    /// from the bot (needs the `im:write` scope).
    pub async fn direct_message(&self, user: &str, content: &SlackMessageContent) -> Result<MessageRef, ApiError> {
        let session = self.client.open_session(&self.token);
        let request = SlackApiConversationsOpenRequest::new().with_users(vec![user.into()]);
        let opened = retrying("conversations.open", || session.conversations_open(&request)).await?;
        self.post_message(&opened.channel.id.0, content).await
    }

    /// `chat.update`: replaces the message's text and blocks.
    pub async fn update(&self, message: &MessageRef, content: &SlackMessageContent) -> Result<(), ApiError> {
        let session = self.client.open_session(&self.token);
        let request = SlackApiChatUpdateRequest::new(
            message.channel.clone().into(),
            self.outgoing(content),
            message.id.clone().into(),
        );
        retrying("chat.update", || session.chat_update(&request)).await?;
        Ok(())
    }

    /// `chat.postEphemeral`: only `user` sees it (needs the bot in the channel).
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        content: &SlackMessageContent,
    ) -> Result<(), ApiError> {
        let session = self.client.open_session(&self.token);
        let request = SlackApiChatPostEphemeralRequest::new(channel.into(), user.into(), self.outgoing(content));
        retrying("chat.postEphemeral", || session.chat_post_ephemeral(&request)).await?;
        Ok(())
    }

    /// Posts an ephemeral follow-up to a command's `response_url`.
    pub async fn respond(&self, response_url: &url::Url, content: &SlackMessageContent) -> Result<(), ApiError> {
        let request = SlackApiPostWebhookMessageRequest::new(self.outgoing(content));
        let url = SlackResponseUrl(response_url.clone());
        retrying("response_url", || self.client.respond_to_event(&url, &request)).await?;
        Ok(())
    }

    /// Whether a `response_url` from a payload may be posted to: Slack's own hosts over HTTPS,
    /// or the configured API's origin (a local fake). Nothing else receives our requests.
    pub fn trusted_response_url(&self, url: &str) -> Option<url::Url> {
        let url = url::Url::parse(url).ok()?;
        let slack =
            url.scheme() == "https" && url.host_str().is_some_and(|h| h == "slack.com" || h.ends_with(".slack.com"));
        let same_origin = url.origin() == self.base_url.origin();
        (slack || same_origin).then_some(url)
    }
}

/// Runs `call`, waiting out 429s as Slack asks; each attempt is cut off after
/// [`REQUEST_TIMEOUT`].
async fn retrying<T, F>(method: &'static str, call: impl Fn() -> F) -> Result<T, ApiError>
where
    F: Future<Output = ClientResult<T>>,
{
    let mut retries = 0;
    loop {
        let Ok(answer) = tokio::time::timeout(REQUEST_TIMEOUT, call()).await else {
            let message = format!("Slack did not answer within {}s", REQUEST_TIMEOUT.as_secs());
            return Err(ApiError::Transport { method, message });
        };
        match answer {
            Ok(value) => return Ok(value),
            Err(SlackClientError::RateLimitError(limited)) => {
                if retries == RATE_LIMIT_RETRIES {
                    return Err(ApiError::RateLimited { method });
                }
                retries += 1;
                let wait = limited.retry_after.unwrap_or(DEFAULT_RETRY_AFTER).min(MAX_RETRY_AFTER);
                tracing::warn!(method, wait_ms = wait.as_millis() as u64, retries, "rate limited by Slack; waiting");
                tokio::time::sleep(wait).await;
            }
            Err(SlackClientError::ApiError(error)) => return Err(ApiError::Slack { method, code: error.code }),
            Err(other) => return Err(ApiError::Transport { method, message: other.to_string() }),
        }
    }
}
