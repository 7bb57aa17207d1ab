//! The one configuration file: TOML, validated at start-up, fail closed.
//!
//! Secrets never live in the file itself: the file names an environment variable or a file
//! that holds each one ([`SecretRef`]). Unknown keys are errors, so a typo cannot silently
//! turn a safety setting off.
//!
//! This is the core of the file. The adapters' sections (`[slack]`, `[discord]` and the
//! listener's `[server]`) live with their adapters, which read them from the same text; only
//! their names are reserved here, so an unknown top-level key is still an error that names it.
//! [`crate::settings::Settings`] reads the whole file.

use crate::clients::github::GitHubConfig;
use crate::clients::jira::JiraConfig;
use crate::release::calendar::{Calendar, CalendarConfig, ReminderEvent};
pub use crate::release::environment::{
    Environment, PLACEHOLDERS, PromoteMode, SshTarget, StepTemplate, TransportConfig, default_steps,
};
use crate::release::gitref::GitRef;
use crate::release::migrations::MigrationConfig;
pub use crate::release::parse_duration;
pub use crate::release::people::{Person, Role};
pub use crate::secret::{Secret, SecretRef};
use anyhow::{Context, Result, bail};
use chrono_tz::Tz;
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The validated configuration the whole bot runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the time zone of the team's calendar is (default Africa/Nairobi).
    pub timezone: Tz,
    /// Directory of the durable store.
    pub state_dir: PathBuf,
    /// Everyone the bot knows; anyone else gets read-only commands.
    pub people: Vec<Person>,
    /// Environments in promotion order (dev, staging, production).
    pub environments: Vec<Environment>,
    /// Secret values loaded at start-up, kept so they can be redacted from step output.
    pub secret_values: Vec<Secret>,
    /// Deploy slots, the ticket-drag window and reminders, in `timezone`.
    pub calendar: Calendar,
    /// How long a promotion request waits for votes.
    pub approval_ttl: Duration,
    /// How long `serve`, on SIGTERM or SIGINT, lets running deploys finish before it stops
    /// each at its next step boundary (default 120s, systemd's `TimeoutStopSec` in
    /// `contrib/systemd`).
    pub shutdown_grace: Duration,
    /// The GitHub integration (`[github]`): promotions, the merge webhook, deployments.
    pub github: Option<GitHubConfig>,
    /// Where the config file is, to resolve `[github]`'s secret files.
    pub base_dir: PathBuf,
    /// The Jira integration (`[jira]`), if configured.
    pub jira: Option<JiraConfig>,
    /// The Jira API token, loaded at start-up: present exactly when `jira` is.
    pub jira_token: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_timezone")]
    timezone: String,
    state_dir: PathBuf,
    #[serde(default)]
    people: Vec<Person>,
    environments: Vec<RawEnvironment>,
    /// Extra secret values to redact from step output (for example a database password
    /// that a step might print).
    #[serde(default)]
    redact: Vec<SecretRef>,
    /// The release calendar; absent, the team's defaults for the configured environments.
    calendar: Option<CalendarConfig>,
    #[serde(default = "default_approval_ttl")]
    approval_ttl: String,
    #[serde(default = "default_shutdown_grace")]
    shutdown_grace: String,
    /// The Discord adapter's section: read by `chat::discord`, reserved here.
    #[serde(rename = "discord")]
    _discord: Option<IgnoredAny>,
    /// The Slack adapter's section: read by `chat::slack`, reserved here.
    #[serde(rename = "slack")]
    _slack: Option<IgnoredAny>,
    /// GitHub: promotions merge and deploy through it; its webhook auto-deploys dev.
    github: Option<GitHubConfig>,
    /// Jira: moves tickets with the code, `/ticket`, ticket lists in reminders.
    jira: Option<JiraConfig>,
    /// The one HTTP listener (Slack's HTTP mode, Discord's endpoint and GitHub's webhook):
    /// read by `listener`, reserved here.
    #[serde(rename = "server")]
    _server: Option<IgnoredAny>,
}

fn default_approval_ttl() -> String {
    "24h".into()
}

fn default_shutdown_grace() -> String {
    "120s".into()
}

fn default_timezone() -> String {
    "Africa/Nairobi".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvironment {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    url: Option<String>,
    branch: String,
    transport: TransportConfig,
    steps: Option<Vec<StepTemplate>>,
    health_url: Option<String>,
    #[serde(default)]
    personal_branches: bool,
    #[serde(default)]
    requires_approval: bool,
    #[serde(default = "default_claim_ttl")]
    claim_ttl: String,
    #[serde(default = "default_step_timeout")]
    step_timeout: String,
    #[serde(default = "default_health_timeout")]
    health_timeout: String,
    migrations: Option<MigrationConfig>,
    approvals: Option<usize>,
    #[serde(default)]
    promote: PromoteMode,
    /// The CI gate: a list of check names, or `"all"`.
    required_checks: Option<RawRequiredChecks>,
    /// How long a deploy waits for pending checks (default 15m).
    ci_wait: Option<String>,
    /// How often GitHub is asked again while waiting (default 10s).
    ci_poll: Option<String>,
}

/// `required_checks = ["ci/test", "lint"]` or `required_checks = "all"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRequiredChecks {
    Named(Vec<String>),
    Word(String),
}

fn default_health_timeout() -> String {
    "30s".into()
}

fn default_claim_ttl() -> String {
    "8h".into()
}

/// Reads the config file at `path` and parses it with `parse` (relative paths resolve against
/// the file's folder); every error names the file.
pub fn load_file<T>(path: &Path, parse: impl FnOnce(&str, &Path) -> Result<T>) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).with_context(|| format!("invalid config {}", path.display()))
}

fn default_step_timeout() -> String {
    "10m".into()
}

impl Config {
    /// Reads and validates the core of the file at `path`; every error names the file and the
    /// key. The adapters' sections are not read: [`crate::settings::Settings::load`] reads
    /// the whole file.
    pub fn load(path: &Path) -> Result<Self> {
        load_file(path, Self::from_toml)
    }

    /// Parses and validates config text; relative paths resolve against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let timezone: Tz = raw.timezone.parse().map_err(|_| {
            anyhow::anyhow!("timezone: `{}` is not an IANA time zone name (for example Africa/Nairobi)", raw.timezone)
        })?;
        validate_people(&raw.people)?;
        if raw.environments.is_empty() {
            bail!("environments: configure at least one environment");
        }
        let mut names = HashSet::new();
        let mut environments = Vec::new();
        for (i, env) in raw.environments.into_iter().enumerate() {
            let env = validate_environment(env, base).with_context(|| format!("environments[{i}]"))?;
            if !names.insert(env.name.clone()) {
                bail!("environments[{i}].name: `{}` is configured twice", env.name);
            }
            environments.push(env);
        }
        check_aliases(&environments)?;
        let mut secret_values = Vec::new();
        for (i, secret) in raw.redact.iter().enumerate() {
            secret_values.push(secret.load(&format!("redact[{i}]"), base)?);
        }
        let calendar = match raw.calendar {
            Some(mut calendar) => {
                // A `[calendar]` that only adds freezes keeps the team's default slots, trimmed
                // to the environments that exist like a config without `[calendar]`.
                let defaults = CalendarConfig::default();
                if calendar.slots == defaults.slots && calendar.reminders == defaults.reminders {
                    let trimmed = default_calendar_for(&names);
                    calendar.slots = trimmed.slots;
                    calendar.reminders = trimmed.reminders;
                }
                for (i, slot) in calendar.slots.iter().enumerate() {
                    if !names.contains(&slot.env) {
                        bail!("calendar.slots[{i}].env: there is no environment `{}`", slot.env);
                    }
                }
                for (i, freeze) in calendar.freezes.iter().enumerate() {
                    if let Some(env) = freeze.envs.iter().find(|env| !names.contains(*env)) {
                        bail!("calendar.freezes[{i}].envs: there is no environment `{env}`");
                    }
                }
                calendar
            }
            None => default_calendar_for(&names),
        };
        let calendar = Calendar::new(&calendar, timezone)?;
        let approval_ttl = parse_duration(&raw.approval_ttl).context("approval_ttl")?;
        let shutdown_grace = parse_duration(&raw.shutdown_grace).context("shutdown_grace")?;
        if raw.github.is_none()
            && let Some(env) = environments.iter().find(|e| e.ci.is_some())
        {
            bail!(
                "environments.{}.required_checks: the CI gate reads GitHub's checks, so it needs a [github] section",
                env.name
            );
        }
        if raw.github.as_ref().is_some_and(|github| github.listen.is_some()) {
            return Err(moved_listen_key("github.listen"));
        }
        let jira_token = match &raw.jira {
            Some(jira) => {
                for env in jira.on_deploy.iter().flat_map(|moves| moves.keys()) {
                    if !names.contains(env) {
                        bail!("jira.on_deploy.{env}: there is no environment `{env}`");
                    }
                }
                let token = jira.token.load("jira.token", base)?;
                // Scrubbed from step output like every other secret.
                secret_values.push(token.clone());
                Some(token)
            }
            None => None,
        };
        Ok(Self {
            timezone,
            calendar,
            approval_ttl,
            shutdown_grace,
            state_dir: base.join(raw.state_dir),
            people: raw.people,
            environments,
            secret_values,
            github: raw.github,
            base_dir: base.to_path_buf(),
            jira: raw.jira,
            jira_token,
        })
    }

    /// The environment called `name` (its canonical name: the parser has resolved aliases).
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// Environment names in configured order.
    pub fn environment_names(&self) -> Vec<String> {
        self.environments.iter().map(|e| e.name.clone()).collect()
    }

    /// The configured person with this handle.
    pub fn person(&self, id: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.id == id)
    }

    /// The configured person with this Jira account id (`people[].jira`).
    pub fn person_by_jira(&self, account_id: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.jira.as_deref() == Some(account_id))
    }
}

/// The refusal for a listening key from before the one listener (`github.listen`,
/// `slack.listen`, `discord.http_listen`), naming where it went.
pub fn moved_listen_key(key: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{key}: every route is now served on one listener; remove `{key}` and set the address once, as \
         `[server]` `listen = \"0.0.0.0:3000\"` (see the README's configuration reference)"
    )
}

/// The team's default calendar, keeping only slots (and their reminders) for environments
/// that exist, so a config with other environment names still starts.
fn default_calendar_for(environments: &HashSet<String>) -> CalendarConfig {
    let mut calendar = CalendarConfig::default();
    calendar.slots.retain(|slot| environments.contains(&slot.env));
    calendar.reminders.retain(|reminder| match &reminder.event {
        ReminderEvent::Slot { env } => environments.contains(env),
        _ => true,
    });
    calendar
}

fn validate_people(people: &[Person]) -> Result<()> {
    let mut seen = HashSet::new();
    for (i, person) in people.iter().enumerate() {
        if person.id.is_empty() || !person.id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            bail!("people[{i}].id: `{}` must be letters, digits, `.`, `_` or `-`", person.id);
        }
        let ids = [("id", Some(&person.id)), ("slack", person.slack.as_ref()), ("discord", person.discord.as_ref())];
        for (platform, id) in ids {
            if let Some(id) = id
                && !seen.insert((platform, id.clone()))
            {
                bail!("people[{i}].{platform}: `{id}` belongs to two people");
            }
        }
    }
    Ok(())
}

/// Whether `name` can name an environment in a command on every platform: 1 to 32 lowercase
/// letters, digits or `-` (Slack's and Discord's option values, typed without quoting).
fn valid_environment_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Every alias names one environment: none is another environment's name, another alias, or
/// its own environment's name.
fn check_aliases(environments: &[Environment]) -> Result<()> {
    let mut taken: std::collections::HashMap<&str, &str> =
        environments.iter().map(|e| (e.name.as_str(), e.name.as_str())).collect();
    for (i, env) in environments.iter().enumerate() {
        for (j, alias) in env.aliases.iter().enumerate() {
            if let Some(owner) = taken.insert(alias, &env.name) {
                if owner == alias {
                    bail!("environments[{i}].aliases[{j}]: `{alias}` is already the name of an environment");
                }
                bail!("environments[{i}].aliases[{j}]: `{alias}` is already an alias of `{owner}`");
            }
        }
    }
    Ok(())
}

fn validate_environment(raw: RawEnvironment, base: &Path) -> Result<Environment> {
    if !valid_environment_name(&raw.name) {
        bail!("name: `{}` must be 1 to 32 lowercase letters, digits or `-`", raw.name);
    }
    for (j, alias) in raw.aliases.iter().enumerate() {
        if !valid_environment_name(alias) {
            bail!("aliases[{j}]: `{alias}` must be 1 to 32 lowercase letters, digits or `-`, like a name");
        }
    }
    if let Some(url) = &raw.url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        bail!("url: `{url}` must start with http:// or https://");
    }
    let branch = GitRef::parse(&raw.branch).map_err(|e| anyhow::anyhow!("branch: {e}"))?;
    let transport = match raw.transport {
        TransportConfig::Local { dir } => TransportConfig::Local { dir: base.join(dir) },
        TransportConfig::Ssh(mut ssh) => {
            let Some(known_hosts) = &ssh.known_hosts else {
                bail!(
                    "transport.known_hosts: the host key of {} is not pinned. Run `ssh-keyscan -p {} {}` \
                     on a trusted network, check the fingerprint with the droplet's console, save it to a \
                     file and name that file here",
                    ssh.host,
                    ssh.port,
                    ssh.host
                );
            };
            ssh.known_hosts = Some(base.join(known_hosts));
            ssh.key_file = ssh.key_file.map(|k| base.join(k));
            TransportConfig::Ssh(ssh)
        }
    };
    let steps = raw.steps.unwrap_or_else(default_steps);
    if steps.is_empty() {
        bail!("steps: an environment needs at least one step");
    }
    for (i, step) in steps.iter().enumerate() {
        check_template(&step.run).with_context(|| format!("steps[{i}].run ({})", step.name))?;
        if let Some(t) = &step.timeout {
            parse_duration(t).with_context(|| format!("steps[{i}].timeout"))?;
        }
    }
    Ok(Environment {
        name: raw.name,
        aliases: raw.aliases,
        url: raw.url,
        branch,
        transport,
        steps,
        health_timeout: parse_duration(&raw.health_timeout).context("health_timeout")?,
        migrations: raw.migrations,
        approvals: raw.approvals.unwrap_or(usize::from(raw.requires_approval)),
        promote: raw.promote,
        health_url: match raw.health_url {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                bail!("health_url: `{url}` must start with http:// or https://")
            }
            other => other,
        },
        personal_branches: raw.personal_branches,
        requires_approval: raw.requires_approval,
        claim_ttl: parse_duration(&raw.claim_ttl).context("claim_ttl")?,
        step_timeout: parse_duration(&raw.step_timeout).context("step_timeout")?,
        ci: ci_gate(raw.required_checks, raw.ci_wait, raw.ci_poll)?,
    })
}

/// The CI gate from `required_checks`, `ci_wait` and `ci_poll`.
fn ci_gate(
    required: Option<RawRequiredChecks>,
    wait: Option<String>,
    poll: Option<String>,
) -> Result<Option<crate::release::ci_gate::CiGate>> {
    use crate::release::ci_gate::{CiGate, RequiredChecks};
    let Some(required) = required else {
        if wait.is_some() || poll.is_some() {
            bail!(
                "ci_wait and ci_poll only apply with required_checks; set required_checks = [\"ci/test\"] or \"all\""
            );
        }
        return Ok(None);
    };
    let required = match required {
        RawRequiredChecks::Word(word) if word == "all" => RequiredChecks::All,
        RawRequiredChecks::Word(word) => {
            bail!("required_checks: `{word}` is neither \"all\" nor a list; write [\"{word}\"] for one check")
        }
        RawRequiredChecks::Named(names) if names.is_empty() => {
            bail!("required_checks: the list is empty; name the checks, use \"all\", or leave the key out")
        }
        RawRequiredChecks::Named(names) => {
            let mut seen = HashSet::new();
            for (i, name) in names.iter().enumerate() {
                if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
                    bail!("required_checks[{i}]: `{}` is not a check name", name.escape_debug());
                }
                if !seen.insert(name.as_str()) {
                    bail!("required_checks[{i}]: `{name}` is named twice");
                }
            }
            RequiredChecks::Named(names)
        }
    };
    let wait = parse_duration(wait.as_deref().unwrap_or("15m")).context("ci_wait")?;
    let poll = parse_duration(poll.as_deref().unwrap_or("10s")).context("ci_poll")?;
    if poll > wait {
        bail!("ci_poll: it is longer than ci_wait, so Shipday would never ask GitHub again while it waits");
    }
    Ok(Some(CiGate { required, wait, poll }))
}

/// Checks that a template only uses known `{{placeholders}}`.
pub fn check_template(template: &str) -> Result<()> {
    let mut rest = template;
    while let Some((_, after)) = rest.split_once("{{") {
        let Some((inside, next)) = after.split_once("}}") else {
            bail!("unclosed `{{{{` in `{template}`");
        };
        let name = inside.trim();
        if !PLACEHOLDERS.contains(&name) {
            bail!(
                "unknown placeholder `{{{{{name}}}}}`; use one of {}",
                PLACEHOLDERS.map(|p| format!("{{{{{p}}}}}")).join(", ")
            );
        }
        rest = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
state_dir = "state"
[[people]]
id = "ada"
name = "Ada"
roles = ["lead"]
[[environments]]
name = "dev"
branch = "dev"
personal_branches = true
transport = { kind = "local", dir = "/srv/dev" }
"#;

    #[test]
    fn minimal_config_gets_the_teams_defaults() {
        let config = Config::from_toml(MINIMAL, Path::new("/etc/shipday")).unwrap();
        assert_eq!(config.timezone, chrono_tz::Africa::Nairobi);
        assert_eq!(config.state_dir, PathBuf::from("/etc/shipday/state"));
        let dev = config.environment("dev").unwrap();
        assert_eq!(dev.claim_ttl, Duration::from_secs(8 * 3600));
        assert_eq!(dev.steps, default_steps());
        assert_eq!(config.shutdown_grace, Duration::from_secs(120));
    }

    /// `[[calendar.freezes]]` alone keeps the default slots (trimmed to the environments that
    /// exist); its environments, dates and reason are checked and errors name the key.
    #[test]
    fn calendar_freezes_are_read_and_checked() {
        let freeze =
            "[[calendar.freezes]]\nfrom = 2026-12-24\nto = 2027-01-02\nreason = \"holidays\"\nenvs = [\"dev\"]\n";
        let config = Config::from_toml(&format!("{MINIMAL}\n{freeze}"), Path::new(".")).unwrap();
        let range = &config.calendar.freezes()[0];
        assert_eq!((range.from.to_string(), range.to.to_string()), ("2026-12-24".into(), "2027-01-02".into()));
        assert_eq!((range.reason.as_str(), range.envs.clone()), ("holidays", vec!["dev".to_owned()]));
        assert!(config.calendar.has_slot("dev"), "the default slots stay");
        let err = |text: String| {
            format!("{:#}", Config::from_toml(&format!("{MINIMAL}\n{text}"), Path::new(".")).unwrap_err())
        };
        assert!(
            err(freeze.replace("[\"dev\"]", "[\"qa\"]"))
                .contains("calendar.freezes[0].envs: there is no environment `qa`")
        );
        assert!(
            err(freeze.replace("2027-01-02", "2026-12-01"))
                .contains("calendar.freezes[0]: `to` (2026-12-01) is before")
        );
        assert!(err(freeze.replace("\"holidays\"", "\" \"")).contains("calendar.freezes[0].reason"));
        assert!(err(freeze.replace("2026-12-24", "\"Christmas\"")).contains("is not a date like 2026-11-04"));
    }

    #[test]
    fn shutdown_grace_is_a_duration() {
        let config = Config::from_toml(&format!("shutdown_grace = \"5m\"\n{MINIMAL}"), Path::new(".")).unwrap();
        assert_eq!(config.shutdown_grace, Duration::from_secs(300));
        let err = format!(
            "{:#}",
            Config::from_toml(&format!("shutdown_grace = \"soon\"\n{MINIMAL}"), Path::new(".")).unwrap_err()
        );
        assert!(err.contains("shutdown_grace"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = MINIMAL.replace("personal_branches", "personal_branchs");
        let err = format!("{:#}", Config::from_toml(&text, Path::new(".")).unwrap_err());
        assert!(err.contains("personal_branchs"), "{err}");
        let text = format!("colour = \"blue\"\n{MINIMAL}");
        let err = format!("{:#}", Config::from_toml(&text, Path::new(".")).unwrap_err());
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn a_bad_time_zone_is_named() {
        let text = format!("timezone = \"Mars/Olympus\"\n{MINIMAL}");
        let err = format!("{:#}", Config::from_toml(&text, Path::new(".")).unwrap_err());
        assert!(err.contains("timezone") && err.contains("Mars/Olympus"), "{err}");
    }

    #[test]
    fn an_ssh_environment_without_a_pinned_key_is_refused() {
        let text = MINIMAL.replace(
            r#"transport = { kind = "local", dir = "/srv/dev" }"#,
            r#"transport = { kind = "ssh", host = "dev.example", user = "deploy", dir = "/srv/app" }"#,
        );
        let err = format!("{:#}", Config::from_toml(&text, Path::new(".")).unwrap_err());
        assert!(err.contains("known_hosts") && err.contains("ssh-keyscan"), "{err}");
    }

    #[test]
    fn a_missing_secret_is_named() {
        let text = format!("redact = [{{ env = \"SHIPDAY_TEST_SURELY_UNSET\" }}]\n{MINIMAL}");
        let err = format!("{:#}", Config::from_toml(&text, Path::new(".")).unwrap_err());
        assert!(err.contains("redact[0]") && err.contains("SHIPDAY_TEST_SURELY_UNSET"), "{err}");
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        let text = MINIMAL.replace(
            "personal_branches = true",
            "personal_branches = true\nsteps = [{ name = \"x\", run = \"echo {{user_text}}\" }]",
        );
        let err = format!("{:#}", Config::from_toml(&text, Path::new(".")).unwrap_err());
        assert!(err.contains("user_text"), "{err}");
    }

    #[test]
    fn the_jira_table_is_checked_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jira.token"), "jira-secret-1\n").unwrap();
        let jira = r#"
[jira]
base_url = "https://team.atlassian.net"
email = "shipday@team.example"
token = { file = "jira.token" }
projects = ["SHOP"]
"#;
        let config = Config::from_toml(&format!("{MINIMAL}{jira}"), dir.path()).unwrap();
        assert_eq!(config.jira.as_ref().unwrap().projects, ["SHOP"]);
        assert_eq!(config.jira_token.as_ref().map(Secret::expose), Some("jira-secret-1"));
        assert!(config.secret_values.iter().any(|s| s.expose() == "jira-secret-1"), "redacted from step output");
        assert!(!format!("{config:?}").contains("jira-secret-1"));

        let missing = jira.replace("{ file = \"jira.token\" }", "{ env = \"SHIPDAY_TEST_JIRA_TOKEN_SURELY_UNSET\" }");
        let err = format!("{:#}", Config::from_toml(&format!("{MINIMAL}{missing}"), dir.path()).unwrap_err());
        assert!(err.contains("jira.token") && err.contains("SHIPDAY_TEST_JIRA_TOKEN_SURELY_UNSET"), "{err}");

        let unknown = format!("{MINIMAL}{jira}[jira.on_deploy]\nqa = {{ to = \"Done\" }}\n");
        let err = format!("{:#}", Config::from_toml(&unknown, dir.path()).unwrap_err());
        assert!(err.contains("jira.on_deploy.qa"), "{err}");
        assert!(Config::from_toml(MINIMAL, dir.path()).unwrap().jira.is_none());
    }

    #[test]
    fn the_adapters_sections_are_reserved_but_left_to_the_adapters() {
        let text = format!("{MINIMAL}[server]\nanything = 1\n[slack]\nteam = 2\n[discord]\nguild = 3\n");
        Config::from_toml(&text, Path::new("/")).unwrap();
    }

    #[test]
    fn the_old_github_listen_key_is_refused_and_points_to_the_server_section() {
        let text = format!("{MINIMAL}[github]\nowner = \"o\"\nrepo = \"r\"\ntoken = {{ env = \"T\" }}\n");
        Config::from_toml(&text, Path::new("/")).unwrap();
        let old = format!("{text}listen = \"0.0.0.0:3001\"\n");
        let err = format!("{:#}", Config::from_toml(&old, Path::new("/")).unwrap_err());
        assert!(err.contains("github.listen") && err.contains("[server]"), "{err}");
    }

    #[bounded::test]
    fn required_checks_name_checks_or_all_and_need_github() {
        use crate::release::ci_gate::RequiredChecks;
        let github = "[github]\nowner = \"o\"\nrepo = \"r\"\ntoken = { env = \"T\" }\n";
        let with = |gate: &str| {
            let text = MINIMAL.replace("personal_branches = true", &format!("personal_branches = true\n{gate}"));
            Config::from_toml(&format!("{text}{github}"), Path::new("/"))
        };
        let config = with("required_checks = [\"ci/test\", \"lint\"]\nci_wait = \"5m\"").unwrap();
        let gate = config.environment("dev").unwrap().ci.clone().unwrap();
        assert_eq!(gate.required, RequiredChecks::Named(vec!["ci/test".into(), "lint".into()]));
        assert_eq!((gate.wait, gate.poll), (Duration::from_secs(300), Duration::from_secs(10)));
        let all = with("required_checks = \"all\"").unwrap();
        assert_eq!(all.environment("dev").unwrap().ci.as_ref().unwrap().required, RequiredChecks::All);
        assert_eq!(all.environment("dev").unwrap().ci.as_ref().unwrap().wait, Duration::from_secs(900));
        assert!(Config::from_toml(MINIMAL, Path::new("/")).unwrap().environment("dev").unwrap().ci.is_none());
        for (bad, named) in [
            ("required_checks = \"every\"", "required_checks"),
            ("required_checks = []", "required_checks"),
            ("required_checks = [\"a\", \"a\"]", "required_checks[1]"),
            ("required_checks = [\" \"]", "required_checks[0]"),
            ("ci_wait = \"5m\"", "ci_wait"),
            ("required_checks = \"all\"\nci_wait = \"soon\"", "ci_wait"),
            ("required_checks = \"all\"\nci_wait = \"1m\"\nci_poll = \"2m\"", "ci_poll"),
        ] {
            let err = format!("{:#}", with(bad).unwrap_err());
            assert!(err.contains(named), "{bad}: {err}");
        }
        let text = MINIMAL.replace("personal_branches = true", "personal_branches = true\nrequired_checks = \"all\"");
        let err = format!("{:#}", Config::from_toml(&text, Path::new("/")).unwrap_err());
        assert!(err.contains("[github]") && err.contains("environments.dev.required_checks"), "{err}");
    }

    #[test]
    fn aliases_are_names_that_clash_with_nothing() {
        let with = |aliases: &str| {
            let text = format!(
                "{MINIMAL}[[environments]]\nname = \"production\"\nbranch = \"master\"\n{aliases}\n\
                 transport = {{ kind = \"local\", dir = \"/srv/prod\" }}\n"
            );
            Config::from_toml(&text, Path::new("/")).map_err(|e| format!("{e:#}"))
        };
        let config = with("aliases = [\"prod\", \"live\"]\nurl = \"https://shop.example\"").unwrap();
        assert!(config.environment("prod").is_none(), "aliases are resolved by the parser, once");
        assert_eq!(config.environment("production").unwrap().aliases, ["prod", "live"]);
        assert_eq!(config.environment("production").unwrap().url.as_deref(), Some("https://shop.example"));
        let err = with("aliases = [\"dev\"]").unwrap_err();
        assert!(err.contains("environments[1].aliases[0]") && err.contains("already the name"), "{err}");
        let err = with("aliases = [\"prod\", \"prod\"]").unwrap_err();
        assert!(err.contains("aliases[1]") && err.contains("already an alias of `production`"), "{err}");
        let err = with("aliases = [\"production\"]").unwrap_err();
        assert!(err.contains("already the name"), "{err}");
        let err = with("aliases = [\"Prod Env\"]").unwrap_err();
        assert!(err.contains("aliases[0]") && err.contains("lowercase"), "{err}");
        let err = with("url = \"shop.example\"").unwrap_err();
        assert!(err.contains("url") && err.contains("https://"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
