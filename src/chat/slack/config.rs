//! The `[slack]` config section: which workspace, which channel, which transport, and where
//! each token comes from. Read from the config file by this adapter
//! ([`SlackConfig::from_toml`]) and validated at start-up with the rest of the config, fail
//! closed: a missing secret for the chosen mode stops start-up and names its key.

use crate::command::{CommandBook, CommandNames};
use crate::secret::{Secret, SecretRef};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Slack's Web API.
pub const DEFAULT_API_BASE_URL: &str = "https://slack.com/api/";

/// The validated Slack settings.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The one workspace (`T…`) whose requests are served; every other team is refused.
    pub team_id: String,
    /// The team channel (`C…`) for announcements and deploys nobody's command follows.
    pub channel: String,
    /// Bot token (`xoxb-…`) for the Web API.
    pub bot_token: Secret,
    /// How Slack reaches the bot.
    pub mode: SlackMode,
    /// Web API base URL, without the trailing slash; tests point it at a local fake.
    pub api_base_url: String,
    /// The slash command names registered in this workspace (`/ship-status` for `status` by
    /// default, since Slack keeps `/status` for itself), each one checked against Slack's rules.
    pub commands: CommandNames,
}

/// How Slack delivers commands and events.
#[derive(Debug, Clone)]
pub enum SlackMode {
    /// A WebSocket the bot opens with an app-level token: no public URL needed.
    Socket {
        /// App-level token (`xapp-…`) with the `connections:write` scope.
        app_token: Secret,
    },
    /// Signed HTTPS requests to our routes, on the one listener (`[server] listen`).
    Http {
        /// Verifies `X-Slack-Signature`.
        signing_secret: Secret,
    },
}

impl SlackConfig {
    /// Reads `[slack]` from the config file's text, if the file has one; `base` (the file's
    /// folder) resolves secret files. Errors name the key.
    pub fn from_toml(text: &str, base: &Path) -> Result<Option<Self>> {
        /// The file as this adapter sees it: only its own section.
        #[derive(Deserialize)]
        struct File {
            slack: Option<RawSlack>,
        }
        let file: File = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        file.slack.map(|slack| slack.validate(base)).transpose()
    }

    /// Every secret, so the redactor can remove them from step output.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut out = vec![self.bot_token.clone()];
        match &self.mode {
            SlackMode::Socket { app_token } => out.push(app_token.clone()),
            SlackMode::Http { signing_secret, .. } => out.push(signing_secret.clone()),
        }
        out
    }
}

/// `[slack]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    team_id: String,
    channel: String,
    #[serde(default)]
    mode: RawMode,
    bot_token: Option<SecretRef>,
    app_token: Option<SecretRef>,
    signing_secret: Option<SecretRef>,
    /// Refused: the address moved to `[server] listen`; kept to say so.
    listen: Option<String>,
    api_base_url: Option<String>,
    #[serde(default)]
    commands: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawMode {
    #[default]
    Socket,
    Http,
}

impl RawSlack {
    /// Validates the section; errors name the key (`slack.app_token: …`).
    fn validate(self, base: &Path) -> Result<SlackConfig> {
        if !is_slack_id(&self.team_id, 'T') {
            bail!("slack.team_id: `{}` is not a Slack workspace id (it looks like T0123ABCD)", self.team_id);
        }
        if !(is_slack_id(&self.channel, 'C') || is_slack_id(&self.channel, 'G')) {
            bail!(
                "slack.channel: `{}` is not a channel id (it looks like C0123ABCD; in Slack, open the channel's \
                 details and copy the id at the bottom)",
                self.channel
            );
        }
        let bot_token = required(self.bot_token.as_ref(), "slack.bot_token", "the bot token (xoxb-…)", base)?;
        check_prefix(&bot_token, "slack.bot_token", "xoxb-")?;
        if self.listen.is_some() {
            return Err(crate::config::moved_listen_key("slack.listen"));
        }
        let mode = match self.mode {
            RawMode::Socket => {
                let why = "the app-level token (xapp-…) that Socket Mode needs";
                let app_token = required(self.app_token.as_ref(), "slack.app_token", why, base)?;
                check_prefix(&app_token, "slack.app_token", "xapp-")?;
                SlackMode::Socket { app_token }
            }
            RawMode::Http => {
                let why = "the signing secret that HTTP mode verifies every request with";
                let signing_secret = required(self.signing_secret.as_ref(), "slack.signing_secret", why, base)?;
                SlackMode::Http { signing_secret }
            }
        };
        let api_base_url = api_base_url(self.api_base_url.as_deref().unwrap_or(DEFAULT_API_BASE_URL))?;
        let commands = super::names::names(&CommandBook::builtin(), &self.commands)?;
        Ok(SlackConfig { team_id: self.team_id, channel: self.channel, bot_token, mode, api_base_url, commands })
    }
}

fn required(secret: Option<&SecretRef>, key: &str, what: &str, base: &Path) -> Result<Secret> {
    match secret {
        Some(secret) => secret.load(key, base),
        None => bail!("{key}: missing; it names where {what} comes from, e.g. `{key} = {{ env = \"…\" }}`"),
    }
}

/// Catches a token pasted into the wrong key without ever showing it.
fn check_prefix(secret: &Secret, key: &str, prefix: &str) -> Result<()> {
    if !secret.expose().starts_with(prefix) {
        bail!("{key}: the secret does not start with `{prefix}`; is it the right token?");
    }
    Ok(())
}

fn is_slack_id(id: &str, first: char) -> bool {
    id.len() >= 3 && id.starts_with(first) && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// The token travels with every call, so it only goes over HTTPS, or plain HTTP to this
/// machine (a local fake in tests).
fn api_base_url(url: &str) -> Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("slack.api_base_url: `{url}` is not a URL"))?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
        bail!("slack.api_base_url: `{url}` must be https:// (plain http:// only to 127.0.0.1 or localhost)");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;

    fn config(slack: &str, secrets: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        for (file, value) in secrets {
            std::fs::write(dir.path().join(file), value).unwrap();
        }
        let text = format!(
            "state_dir = \"s\"\n[[environments]]\nname = \"dev\"\nbranch = \"dev\"\n\
             transport = {{ kind = \"local\", dir = \"/x\" }}\n[slack]\n{slack}"
        );
        Settings::from_toml(&text, dir.path())
    }

    const IDS: &str = "team_id = \"T0001\"\nchannel = \"C0001\"\nbot_token = { file = \"bot\" }\n";

    #[test]
    fn socket_mode_needs_the_app_token_and_names_it() {
        let err = format!("{:#}", config(IDS, &[("bot", "xoxb-1")]).unwrap_err());
        assert!(err.contains("slack.app_token") && err.contains("Socket Mode"), "{err}");
        let text = format!("{IDS}app_token = {{ file = \"app\" }}");
        let ok = config(&text, &[("bot", "xoxb-1"), ("app", "xapp-1")]).unwrap();
        let slack = ok.adapters.slack.unwrap();
        assert!(matches!(slack.mode, super::SlackMode::Socket { .. }));
        assert_eq!(slack.api_base_url, "https://slack.com/api");
        assert_eq!(slack.commands.name("status"), "ship-status", "Slack keeps /status for itself");
        assert!(ok.config.secret_values.iter().any(|s| s.expose() == "xapp-1"), "tokens are redacted from output");
    }

    #[test]
    fn http_mode_needs_the_signing_secret_and_a_missing_env_var_is_named() {
        let text = format!("{IDS}mode = \"http\"");
        let err = format!("{:#}", config(&text, &[("bot", "xoxb-1")]).unwrap_err());
        assert!(err.contains("slack.signing_secret"), "{err}");
        let text = format!("{IDS}mode = \"http\"\nsigning_secret = {{ env = \"SHIPDAY_TEST_SURELY_UNSET_SIGNING\" }}");
        let err = format!("{:#}", config(&text, &[("bot", "xoxb-1")]).unwrap_err());
        assert!(err.contains("slack.signing_secret") && err.contains("SHIPDAY_TEST_SURELY_UNSET_SIGNING"), "{err}");
    }

    #[test]
    fn the_old_listen_key_is_refused_and_points_to_the_server_section() {
        let text = format!("{IDS}mode = \"http\"\nsigning_secret = {{ file = \"s\" }}\nlisten = \"0.0.0.0:3000\"");
        let err = format!("{:#}", config(&text, &[("bot", "xoxb-1"), ("s", "secret")]).unwrap_err());
        assert!(err.contains("slack.listen") && err.contains("[server]") && err.contains("listen = "), "{err}");
    }

    #[test]
    fn bad_values_are_named_and_secrets_never_shown() {
        let text = format!("{IDS}app_token = {{ file = \"app\" }}");
        let err = format!("{:#}", config(&text, &[("bot", "xapp-oops-secret"), ("app", "xapp-1")]).unwrap_err());
        assert!(err.contains("slack.bot_token") && !err.contains("oops-secret"), "{err}");
        let text = text.replace("C0001", "general");
        let err = format!("{:#}", config(&text, &[("bot", "xoxb-1"), ("app", "xapp-1")]).unwrap_err());
        assert!(err.contains("slack.channel"), "{err}");
        let text = format!("{IDS}app_token = {{ file = \"app\" }}\napi_base_url = \"http://slack.example/api\"");
        let err = format!("{:#}", config(&text, &[("bot", "xoxb-1"), ("app", "xapp-1")]).unwrap_err());
        assert!(err.contains("slack.api_base_url"), "{err}");
        let text = format!("{IDS}app_token = {{ file = \"app\" }}\ncommands = {{ deploy = \"me\" }}");
        let err = format!("{:#}", config(&text, &[("bot", "xoxb-1"), ("app", "xapp-1")]).unwrap_err());
        assert!(
            err.contains("`/me` is one of Slack's built-in commands") && err.contains("slack.commands.deploy"),
            "{err}"
        );
        let text = format!("{IDS}app_token = {{ file = \"app\" }}\nsigning_secrte = {{ file = \"x\" }}");
        let err = format!("{:#}", config(&text, &[("bot", "xoxb-1"), ("app", "xapp-1")]).unwrap_err());
        assert!(err.contains("signing_secrte"), "{err}");
    }
}
