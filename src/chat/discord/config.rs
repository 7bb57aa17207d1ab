//! The `[discord]` config section: ids, the bot token (a secret reference), and the optional
//! HTTP interactions endpoint. Read from the config file by this adapter
//! ([`DiscordConfig::from_toml`]) and validated at start-up; every error names its key.

use crate::command::{CommandBook, CommandNames};
use crate::secret::{Secret, SecretRef};
use anyhow::{Result, anyhow, bail};
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Discord's REST API, version 10.
pub const DEFAULT_API_BASE_URL: &str = "https://discord.com/api/v10";

/// The section as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscordConfig {
    application_id: String,
    guild_id: String,
    channel: String,
    lead_role: Option<String>,
    bot_token: SecretRef,
    public_key: Option<String>,
    /// Refused: the address moved to `[server] listen`; kept to say so.
    http_listen: Option<String>,
    #[serde(default = "default_api_base_url")]
    api_base_url: String,
    #[serde(default)]
    allow_direct_messages: bool,
    #[serde(default)]
    other_guilds: Vec<String>,
    #[serde(default)]
    commands: BTreeMap<String, String>,
}

fn default_api_base_url() -> String {
    DEFAULT_API_BASE_URL.into()
}

/// The validated `[discord]` section.
#[derive(Debug, Clone)]
pub struct DiscordConfig {
    /// The application (and bot user) id from the Developer Portal.
    pub application_id: u64,
    /// The team's server: commands are registered and accepted there.
    pub guild_id: u64,
    /// The team channel, where announcements go.
    pub channel: u64,
    /// The guild role whose members count as leads, checked from the member data Discord sends.
    pub lead_role: Option<u64>,
    /// The bot token.
    pub bot_token: Secret,
    /// The application's public key, which turns on the HTTP interactions endpoint (served on
    /// the one listener, `[server] listen`).
    pub public_key: Option<VerifyingKey>,
    /// REST base URL, ending in `/api/v10`. Anything but discord.com's is a local
    /// Discord-compatible server, for trying the bot without Discord: `serve` warns loudly and
    /// paces calls itself (see [`super::rest::Pacing`]); the gateway URL comes from that server.
    pub api_base_url: String,
    /// Whether commands sent in direct messages are accepted.
    pub allow_direct_messages: bool,
    /// Further servers whose commands are accepted.
    pub other_guilds: Vec<u64>,
    /// The command names registered on Discord: the canonical ones unless `[discord] commands`
    /// renames some.
    pub commands: CommandNames,
}

impl DiscordConfig {
    /// Reads `[discord]` from the config file's text, if the file has one, and loads the bot
    /// token; `base` (the file's folder) resolves secret files. Errors name the key.
    pub fn from_toml(text: &str, base: &Path) -> Result<Option<Self>> {
        /// The file as this adapter sees it: only its own section.
        #[derive(Deserialize)]
        struct File {
            discord: Option<RawDiscordConfig>,
        }
        let file: File = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
        file.discord.map(|discord| discord.validate(base)).transpose()
    }

    /// Whether a command from `guild` (`None`: a direct message) is accepted.
    pub fn accepts(&self, guild: Option<u64>) -> bool {
        match guild {
            None => self.allow_direct_messages,
            Some(id) => id == self.guild_id || self.other_guilds.contains(&id),
        }
    }
}

impl RawDiscordConfig {
    /// Validates the section and loads the bot token; `base` resolves secret files.
    fn validate(self, base: &Path) -> Result<DiscordConfig> {
        let public_key = self.public_key.as_deref().map(parse_public_key).transpose()?;
        if self.http_listen.is_some() {
            return Err(crate::config::moved_listen_key("discord.http_listen"));
        }
        let api_base_url = self.api_base_url.trim_end_matches('/').to_owned();
        let scheme_ok = api_base_url.starts_with("https://") || api_base_url.starts_with("http://");
        if !scheme_ok || !api_base_url.ends_with("/api/v10") {
            bail!("discord.api_base_url: `{api_base_url}` must be an http(s) URL ending in /api/v10");
        }
        let other_guilds = self
            .other_guilds
            .iter()
            .enumerate()
            .map(|(i, id)| snowflake(&format!("discord.other_guilds[{i}]"), id))
            .collect::<Result<_>>()?;
        Ok(DiscordConfig {
            application_id: snowflake("discord.application_id", &self.application_id)?,
            guild_id: snowflake("discord.guild_id", &self.guild_id)?,
            channel: snowflake("discord.channel", &self.channel)?,
            lead_role: self.lead_role.as_deref().map(|r| snowflake("discord.lead_role", r)).transpose()?,
            bot_token: self.bot_token.load("discord.bot_token", base)?,
            public_key,
            api_base_url,
            allow_direct_messages: self.allow_direct_messages,
            other_guilds,
            commands: command_names(&self.commands)?,
        })
    }
}

/// The `[discord] commands` names on top of the canonical ones, each checked against Discord's
/// rule for command names (1 to 32 letters, digits, `-` or `_`, lowercase).
fn command_names(overrides: &BTreeMap<String, String>) -> Result<CommandNames> {
    let names = CommandNames::new(&CommandBook::builtin(), &[], overrides, "discord.commands")?;
    for (command, name) in names.iter() {
        let valid = name.chars().count() <= 32
            && name.chars().all(|c| (c.is_alphanumeric() || c == '-' || c == '_') && !c.is_uppercase());
        if !valid {
            bail!(
                "discord.commands.{command}: Discord refuses `/{name}`; use 1 to 32 lowercase letters, digits, `-` or `_`"
            );
        }
    }
    Ok(names)
}

/// A Discord id: a positive 64-bit number, written as a string in the config as in the API.
fn snowflake(key: &str, text: &str) -> Result<u64> {
    match text.trim().parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => bail!(
            "{key}: `{text}` is not a Discord id (a number like 290926798626357999; turn on Developer Mode \
             in Discord and use Copy ID)"
        ),
    }
}

fn parse_public_key(hex_key: &str) -> Result<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| {
        anyhow!("discord.public_key: must be the 64 hex characters shown as the application's Public Key")
    })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| anyhow!("discord.public_key: is not a valid Ed25519 public key"))
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;

    const BASE: &str = r#"
state_dir = "state"
[[environments]]
name = "dev"
branch = "dev"
transport = { kind = "local", dir = "/srv/dev" }
"#;

    fn load(section: &str) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "secret-token\n").unwrap();
        Settings::from_toml(&format!("{BASE}\n[discord]\n{section}"), dir.path())
    }

    fn error(section: &str) -> String {
        format!("{:#}", load(section).unwrap_err())
    }

    const GOOD: &str = r#"application_id = "172150183260323840"
guild_id = "290926798626357999"
channel = "645027906669510667"
lead_role = "539082325061836999"
bot_token = { file = "token" }
"#;

    #[test]
    fn a_complete_section_loads_and_its_token_is_redacted_from_step_output() {
        let config = load(GOOD).unwrap();
        let discord = config.adapters.discord.as_ref().unwrap();
        assert_eq!(discord.guild_id, 290926798626357999);
        assert_eq!(discord.lead_role, Some(539082325061836999));
        assert_eq!(discord.bot_token.expose(), "secret-token");
        assert_eq!(discord.api_base_url, super::DEFAULT_API_BASE_URL);
        assert!(discord.accepts(Some(290926798626357999)) && !discord.accepts(Some(1)) && !discord.accepts(None));
        assert!(config.config.secret_values.iter().any(|s| s.expose() == "secret-token"));
        assert!(
            load(&format!("{GOOD}allow_direct_messages = true\nother_guilds = [\"7\"]"))
                .unwrap()
                .adapters
                .discord
                .unwrap()
                .accepts(Some(7))
        );
    }

    #[test]
    fn every_error_names_its_key() {
        assert!(error(&GOOD.replace("290926798626357999", "my-server")).contains("discord.guild_id: `my-server`"));
        assert!(error(&GOOD.replace("539082325061836999", "Leads")).contains("discord.lead_role"));
        let missing = GOOD.replace("{ file = \"token\" }", "{ env = \"SHIPDAY_TEST_SURELY_UNSET_DISCORD\" }");
        let err = error(&missing);
        assert!(err.contains("discord.bot_token") && err.contains("SHIPDAY_TEST_SURELY_UNSET_DISCORD"), "{err}");
        assert!(error(&format!("{GOOD}colour = \"red\"")).contains("colour"));
        let moved = error(&format!("{GOOD}http_listen = \"127.0.0.1:8080\""));
        assert!(moved.contains("discord.http_listen") && moved.contains("[server]"), "{moved}");
        assert!(error(&format!("{GOOD}public_key = \"abc\"")).contains("discord.public_key"));
        assert!(error(&format!("{GOOD}api_base_url = \"https://discord.com/api\"")).contains("discord.api_base_url"));
        assert!(error(&format!("{GOOD}commands = {{ status = \"Status\" }}")).contains("discord.commands.status"));
    }

    #[test]
    fn discord_keeps_the_canonical_names_unless_configured() {
        let config = load(GOOD).unwrap();
        let names = &config.adapters.discord.as_ref().unwrap().commands;
        assert_eq!((names.name("status"), names.name("help")), ("status", "help"));
        let config = load(&format!("{GOOD}commands = {{ status = \"ship-status\" }}")).unwrap();
        assert_eq!(config.adapters.discord.unwrap().commands.command("ship-status"), Some("status"));
    }
}
