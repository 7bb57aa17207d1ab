//! The whole config file: the core [`Config`] and the sections that live with their adapters
//! (`[slack]` with `chat::slack`, `[discord]` with `chat::discord`, `[server]` with the
//! [`listener`](crate::listener)). Each part reads its own keys from the same text; the core
//! reserves the adapters' names, so an unknown top-level key is still an error naming it.
//!
//! `serve`, `check-config`, `console` and `playground` all read the file through here, so a
//! bad section stops each of them the same way.

use crate::chat::discord::DiscordConfig;
use crate::chat::slack::SlackConfig;
use crate::config::Config;
use crate::listener::ServerConfig;
use anyhow::Result;
use std::path::Path;

/// The validated config file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The core: people, environments, calendar, GitHub, Jira. Its `secret_values` include the
    /// adapters' secrets too, so every secret is redacted from step output and logs.
    pub config: Config,
    /// The adapters' own sections.
    pub adapters: Adapters,
}

/// The sections that live with the adapters, handed to each when it starts.
#[derive(Debug, Clone)]
pub struct Adapters {
    /// The Slack adapter, when a `[slack]` section is present.
    pub slack: Option<SlackConfig>,
    /// The Discord adapter, when a `[discord]` section is present.
    pub discord: Option<DiscordConfig>,
    /// The one HTTP listener every inbound route shares (`[server]`, defaults when absent).
    pub server: ServerConfig,
}

impl Settings {
    /// Reads and validates the file at `path`; every error names the file and the key.
    pub fn load(path: &Path) -> Result<Self> {
        crate::config::load_file(path, Self::from_toml)
    }

    /// Parses and validates config text; relative paths resolve against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self> {
        let mut config = Config::from_toml(text, base)?;
        let server = ServerConfig::from_toml(text)?;
        let discord = DiscordConfig::from_toml(text, base)?;
        let slack = SlackConfig::from_toml(text, base)?;
        // Scrubbed from step output and logs like every other secret.
        config.secret_values.extend(discord.iter().map(|discord| discord.bot_token.clone()));
        config.secret_values.extend(slack.iter().flat_map(SlackConfig::secrets));
        Ok(Self { config, adapters: Adapters { slack, discord, server } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "state_dir = \"s\"\n[[environments]]\nname = \"dev\"\nbranch = \"dev\"\n\
                           transport = { kind = \"local\", dir = \"/x\" }\n";

    #[test]
    fn without_adapter_sections_the_listener_has_its_defaults() {
        let settings = Settings::from_toml(MINIMAL, Path::new("/")).unwrap();
        assert!(settings.adapters.slack.is_none() && settings.adapters.discord.is_none());
        assert_eq!(settings.adapters.server, ServerConfig::default());
    }

    #[test]
    fn each_section_is_checked_and_unknown_keys_are_still_named() {
        let text = format!("{MINIMAL}[server]\nlisten = \"127.0.0.1:3001\"\n");
        assert_eq!(Settings::from_toml(&text, Path::new("/")).unwrap().adapters.server.listen.port(), 3001);
        let err = format!("{:#}", Settings::from_toml(&format!("colour = 1\n{MINIMAL}"), Path::new("/")).unwrap_err());
        assert!(err.contains("colour"), "{err}");
        let text = format!("{MINIMAL}[server]\nlisten = \"nowhere\"\n");
        let err = format!("{:#}", Settings::from_toml(&text, Path::new("/")).unwrap_err());
        assert!(err.contains("server.listen: `nowhere`"), "{err}");
        let text = format!("{MINIMAL}[slack]\nteam_id = \"T0001\"\nchannel = \"C0001\"\nteam = 1\n");
        let err = format!("{:#}", Settings::from_toml(&text, Path::new("/")).unwrap_err());
        assert!(err.contains("unknown field `team`"), "{err}");
    }

    #[test]
    fn the_adapters_secrets_are_redacted_with_the_cores() {
        let dir = tempfile::tempdir().unwrap();
        for (file, value) in [("bot", "xoxb-1"), ("app", "xapp-1"), ("discord", "discord-token"), ("r", "extra")] {
            std::fs::write(dir.path().join(file), value).unwrap();
        }
        let text = format!(
            "redact = [{{ file = \"r\" }}]\n{MINIMAL}[slack]\nteam_id = \"T0001\"\nchannel = \"C0001\"\n\
             bot_token = {{ file = \"bot\" }}\napp_token = {{ file = \"app\" }}\n[discord]\n\
             application_id = \"1\"\nguild_id = \"2\"\nchannel = \"3\"\nbot_token = {{ file = \"discord\" }}\n"
        );
        let settings = Settings::from_toml(&text, dir.path()).unwrap();
        let secrets: Vec<&str> = settings.config.secret_values.iter().map(|s| s.expose()).collect();
        for secret in ["extra", "xoxb-1", "xapp-1", "discord-token"] {
            assert!(secrets.contains(&secret), "{secret} is redacted: {secrets:?}");
        }
    }
}
