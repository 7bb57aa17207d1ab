//! `shipday register discord`: puts the commands from `commands/` on Discord, replacing what
//! was registered before (a bulk overwrite, so removed commands disappear too).

use super::DiscordConfig;
use crate::chat::manifest;
use crate::command::CommandBook;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::time::Duration;

/// Where commands are registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One server: updates show at once. The default, for the configured server.
    Guild(u64),
    /// Every server the bot is in: Discord may take a while to show changes.
    Global,
}

/// How often a rate-limited registration is retried.
const ATTEMPTS: usize = 3;
/// The longest wait on one 429.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Registers the commands (with `environments` as the environment choices) and returns the
/// names Discord now lists.
pub async fn register(settings: &DiscordConfig, environments: &[String], scope: Scope) -> Result<Vec<String>> {
    let commands = manifest::discord(&CommandBook::builtin(), &settings.commands, environments);
    let base = &settings.api_base_url;
    let app = settings.application_id;
    let url = match scope {
        Scope::Guild(guild) => format!("{base}/applications/{app}/guilds/{guild}/commands"),
        Scope::Global => format!("{base}/applications/{app}/commands"),
    };
    let http = reqwest::Client::builder()
        .user_agent(concat!("DiscordBot (shipday, ", env!("CARGO_PKG_VERSION"), ")"))
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?;
    for attempt in 1..=ATTEMPTS {
        let response = http
            .put(&url)
            .header("Authorization", format!("Bot {}", settings.bot_token.expose()))
            .json(&commands)
            .send()
            .await
            .with_context(|| format!("cannot reach Discord at {base}"))?;
        let status = response.status();
        let header = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.as_u16() == 429 && attempt < ATTEMPTS {
            let wait = super::rest::retry_after(header.as_deref(), &bytes).unwrap_or(Duration::from_secs(1));
            let wait = wait.min(MAX_RETRY_AFTER);
            tracing::warn!(wait = wait.as_secs_f64(), "Discord rate-limited the registration; retrying");
            tokio::time::sleep(wait).await;
            continue;
        }
        if !status.is_success() {
            let message = body.get("message").and_then(Value::as_str).unwrap_or("no message");
            let errors = body.get("errors").unwrap_or(&Value::Null);
            bail!("Discord refused the registration: {status}: {message} ({errors})");
        }
        let names = body
            .as_array()
            .context("Discord answered the registration with something other than a list of commands")?
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
            .collect();
        return Ok(names);
    }
    bail!("Discord kept rate-limiting the registration; try again in a minute")
}
