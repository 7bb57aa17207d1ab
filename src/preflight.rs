//! `shipday check-config --online`: asks every configured integration whether the config
//! works, with the production clients at the configured base URLs, and says what to do about
//! each thing that does not.
//!
//! - Slack: `auth.test` with the bot token (and that it belongs to `slack.team_id`), and
//!   `conversations.info` on the team channel (is the bot a member?).
//! - Discord: the bot user (`GET /users/@me`) and the server (`GET /guilds/{id}`).
//! - GitHub: the repository (`GET /repos/{owner}/{repo}`) and the protection of the first
//!   environment's branch (the one changes reach only through pull requests).
//! - Jira: the bot's account (`GET /rest/api/3/myself`) and, per project, that every status
//!   the config names exists in its workflows (a transition is chosen by the status it leads
//!   to, so a misspelt column never finds one).
//! - Each environment's host: an SSH connection with the pinned host key and the configured
//!   key (or the local machine), and that `dir` is a git checkout.
//!
//! One [`Check`] per line; an integration that is not configured gives one `skip` line. Every
//! check has a time limit, so a dead host cannot hang the command, and every line goes through
//! the redactor, so no secret is printed.

use crate::chat::discord::rest::{Rest, RetryPolicy};
use crate::chat::discord::{self, DiscordConfig};
use crate::chat::slack::{ApiError, SlackApi, SlackConfig};
use crate::clients::github::{GitHubClient, GitHubConfig};
use crate::clients::jira::{JiraClient, JiraConfig};
use crate::clients::{OutputTail, RemoteExec};
use crate::config::{Config, Environment, Secret, TransportConfig};
use crate::redact::Redactor;
use crate::release::plan::{host_script, quote};
use crate::settings::Settings;
use anyhow::{Result, anyhow};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long one check may take by default (`--timeout`). SSH's own connect limit is shorter.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `git rev-parse` may run on a host.
const GIT_TIMEOUT: Duration = Duration::from_secs(15);

/// The exit code of the host script when `dir` does not exist.
const NO_DIRECTORY: i32 = 3;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It works.
    Ok,
    /// It does not; the text says what to do.
    Fail,
    /// Not configured, so not checked.
    Skip,
}

/// One printed line: `ok   slack: auth.test as @shipday (U…) in workspace T…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What it found.
    pub verdict: Verdict,
    /// What was checked (`slack`, `github`, `ssh dev`…).
    pub subject: String,
    /// What was found, and for a failure what to do.
    pub text: String,
}

impl Check {
    fn ok(subject: &str, text: impl Into<String>) -> Self {
        Self { verdict: Verdict::Ok, subject: subject.to_owned(), text: text.into() }
    }

    fn fail(subject: &str, text: impl Into<String>) -> Self {
        Self { verdict: Verdict::Fail, subject: subject.to_owned(), text: text.into() }
    }

    fn skip(subject: &str, text: impl Into<String>) -> Self {
        Self { verdict: Verdict::Skip, subject: subject.to_owned(), text: text.into() }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.verdict {
            Verdict::Ok => "ok",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        };
        write!(f, "{word:<4} {}: {}", self.subject, self.text)
    }
}

/// Runs every check of `settings` (each at most `timeout`), the integrations side by side,
/// and returns the lines in a fixed order: Slack, Discord, GitHub, Jira, then the hosts in
/// the config's order. Secrets are redacted from every line.
pub async fn run(settings: &Settings, timeout: Duration) -> Vec<Check> {
    let config = &settings.config;
    let (slack, discord, github, jira, hosts) = tokio::join!(
        slack(settings.adapters.slack.as_ref(), timeout),
        discord(settings.adapters.discord.as_ref(), timeout),
        github(config.github.as_ref(), config, timeout),
        jira(config.jira.as_ref(), config.jira_token.as_ref(), config, timeout),
        hosts(config, timeout),
    );
    let redactor = Redactor::new(config.secret_values.clone());
    [slack, discord, github, jira, hosts]
        .into_iter()
        .flatten()
        .map(|check| Check { text: redactor.redact(&check.text), ..check })
        .collect()
}

/// `call`, cut off after `timeout`.
async fn bounded<T, E: Into<anyhow::Error>>(timeout: Duration, call: impl Future<Output = Result<T, E>>) -> Result<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(answer) => answer.map_err(Into::into),
        Err(_) => Err(anyhow!("no answer within {}s", timeout.as_secs_f32())),
    }
}

// ---- Slack ----

async fn slack(settings: Option<&SlackConfig>, timeout: Duration) -> Vec<Check> {
    const SUBJECT: &str = "slack";
    let Some(settings) = settings else {
        return vec![Check::skip(SUBJECT, "not configured (no [slack] section)")];
    };
    let api = match SlackApi::new(&settings.api_base_url, &settings.bot_token) {
        Ok(api) => api,
        Err(error) => return vec![Check::fail(SUBJECT, format!("{error:#}"))],
    };
    let bot = match tokio::time::timeout(timeout, api.auth_test()).await {
        Ok(Ok(bot)) => bot,
        Ok(Err(error)) => return vec![Check::fail(SUBJECT, slack_auth_failure(&error, &settings.api_base_url))],
        Err(_) => {
            let text = format!(
                "auth.test: no answer from {} within {}s: check slack.api_base_url and this machine's network",
                settings.api_base_url,
                timeout.as_secs_f32()
            );
            return vec![Check::fail(SUBJECT, text)];
        }
    };
    let name = bot.user_name.as_deref().map(|n| format!("@{n}")).unwrap_or_else(|| "the bot".to_owned());
    if bot.team_id != settings.team_id {
        let text = format!(
            "auth.test: the bot token belongs to workspace {}, but slack.team_id is {}: set slack.team_id to {} or \
             use the bot token of workspace {}",
            bot.team_id, settings.team_id, bot.team_id, settings.team_id
        );
        return vec![Check::fail(SUBJECT, text)];
    }
    let mut checks =
        vec![Check::ok(SUBJECT, format!("auth.test as {name} ({}) in workspace {}", bot.user_id, bot.team_id))];
    let channel = &settings.channel;
    checks.push(match tokio::time::timeout(timeout, api.channel_membership(channel)).await {
        Ok(Ok(found)) => {
            let shown = match &found.name {
                Some(label) => format!("#{label} ({channel})"),
                None => channel.clone(),
            };
            if found.is_archived {
                Check::fail(
                    SUBJECT,
                    format!("channel {shown} is archived: unarchive it, or set slack.channel to the team's channel"),
                )
            } else if !found.is_member {
                Check::fail(
                    SUBJECT,
                    format!(
                        "{name} is not in channel {shown} (slack.channel): invite it there with `/invite {name}`; \
                         Slack sends the approval reactions only from channels the bot is in"
                    ),
                )
            } else {
                Check::ok(SUBJECT, format!("{name} is in channel {shown}"))
            }
        }
        Ok(Err(error)) => Check::fail(SUBJECT, slack_channel_failure(&error, channel)),
        Err(_) => Check::fail(SUBJECT, format!("conversations.info: no answer within {}s", timeout.as_secs_f32())),
    });
    checks
}

fn slack_auth_failure(error: &ApiError, base_url: &str) -> String {
    match error.code() {
        Some("invalid_auth" | "not_authed" | "token_revoked" | "token_expired" | "account_inactive") => format!(
            "{error}: Slack refused the bot token; copy the Bot User OAuth Token (xoxb-…) from the app's \
             OAuth & Permissions page into slack.bot_token's secret"
        ),
        Some(_) => format!("{error}"),
        None => format!("{error}: check slack.api_base_url ({base_url}) and this machine's network"),
    }
}

fn slack_channel_failure(error: &ApiError, channel: &str) -> String {
    match error.code() {
        Some("channel_not_found") => format!(
            "{error}: the bot cannot see channel {channel}: check slack.channel (the id at the bottom of the \
             channel's details) and, for a private channel, invite the bot there"
        ),
        Some("missing_scope") => format!(
            "{error}: the app may not read channel {channel}: add the channels:read and groups:read bot scopes \
             (`shipday manifest slack` lists them) and reinstall the app"
        ),
        _ => format!("{error}"),
    }
}

// ---- Discord ----

async fn discord(settings: Option<&DiscordConfig>, timeout: Duration) -> Vec<Check> {
    const SUBJECT: &str = "discord";
    let Some(settings) = settings else {
        return vec![Check::skip(SUBJECT, "not configured (no [discord] section)")];
    };
    let rest = match discord::check(settings).and_then(|pacing| Rest::new(settings, &pacing, RetryPolicy::default())) {
        Ok(rest) => rest,
        Err(error) => return vec![Check::fail(SUBJECT, format!("{error:#}"))],
    };
    let mut checks = Vec::new();
    match bounded(timeout, rest.current_user()).await {
        Ok(user) => checks.push(Check::ok(SUBJECT, format!("bot user {} ({})", user.username, user.id))),
        Err(error) => {
            let text = match discord::rest::refusal(&error) {
                Some((401, message, _)) => format!(
                    "GET /users/@me: Discord refused the bot token (401 {message}): reset the token on the \
                     application's Bot page in the Developer Portal and put it in discord.bot_token's secret"
                ),
                _ => format!("GET /users/@me: {error:#}: check discord.api_base_url and this machine's network"),
            };
            // Without a working token the server cannot be asked either.
            return vec![Check::fail(SUBJECT, text)];
        }
    }
    let guild = settings.guild_id;
    checks.push(match bounded(timeout, rest.guild(serenity::all::GuildId::new(guild))).await {
        Ok(found) => Check::ok(SUBJECT, format!("the bot is in server \"{}\" ({})", found.name, found.id)),
        Err(error) => Check::fail(
            SUBJECT,
            match discord::rest::refusal(&error) {
                Some((404, message, code)) => format!(
                    "GET /guilds/{guild}: Discord knows no server {guild} (404 {message}, code {code}): check \
                     discord.guild_id (with Developer Mode on, right-click the server and Copy Server ID)"
                ),
                Some((403, message, code)) => format!(
                    "GET /guilds/{guild}: the bot is not in server {guild} (403 {message}, code {code}): invite it \
                     with the OAuth2 URL Generator (scopes bot and applications.commands)"
                ),
                _ => format!("GET /guilds/{guild}: {error:#}"),
            },
        ),
    });
    checks
}

// ---- GitHub ----

async fn github(settings: Option<&GitHubConfig>, config: &Config, timeout: Duration) -> Vec<Check> {
    const SUBJECT: &str = "github";
    let Some(settings) = settings else {
        return vec![Check::skip(SUBJECT, "not configured (no [github] section)")];
    };
    let client = match GitHubClient::new(settings, &config.base_dir) {
        Ok(client) => client.with_call_timeout(timeout),
        Err(error) => return vec![Check::fail(SUBJECT, format!("{error:#}"))],
    };
    let name = client.full_name();
    let mut checks = Vec::new();
    match bounded(timeout, client.repository()).await {
        Ok(Some(repository)) => {
            let can_push = repository.permissions.as_ref().is_none_or(|p| p.push);
            if !can_push {
                let text = format!(
                    "{} is readable, but github.token's account may not push to it: promotions merge and \
                     fast-forward branches, so give it write access",
                    repository.full_name
                );
                return vec![Check::fail(SUBJECT, text)];
            }
            let visibility = if repository.private { "private" } else { "public" };
            checks.push(Check::ok(
                SUBJECT,
                format!("{} ({visibility}, default branch {})", repository.full_name, repository.default_branch),
            ));
        }
        Ok(None) => {
            let text = format!(
                "no access to {name} (404): GitHub has no such repository, or github.token may not see it: check \
                 github.owner and github.repo, and give the token access to the repository (a fine-grained \
                 token must list it)"
            );
            return vec![Check::fail(SUBJECT, text)];
        }
        Err(error) => return vec![Check::fail(SUBJECT, format!("{error:#}"))],
    }
    let Some(first) = config.environments.first() else { return checks };
    let branch = first.branch.to_string();
    checks.push(match bounded(timeout, client.branch_protection(&branch)).await {
        Ok(Some(protection)) if protection.requires_pull_request => Check::ok(
            SUBJECT,
            format!("`{branch}` ({}'s branch) is protected: changes reach it only through pull requests", first.name),
        ),
        Ok(Some(_)) => Check::fail(
            SUBJECT,
            format!(
                "`{branch}` ({}'s branch) is protected but does not require pull requests: in {name}'s Settings → \
                 Branches, edit its rule and require a pull request before merging",
                first.name
            ),
        ),
        Ok(None) => Check::fail(
            SUBJECT,
            format!(
                "`{branch}` ({}'s branch) is not protected, or github.token may not read its protection (404): in \
                 {name}'s Settings → Branches, add a rule for `{branch}` that requires a pull request before \
                 merging (a fine-grained token also needs Administration: read)",
                first.name
            ),
        ),
        Err(error) => Check::fail(SUBJECT, format!("{error:#}")),
    });
    checks
}

// ---- Jira ----

async fn jira(settings: Option<&JiraConfig>, token: Option<&Secret>, config: &Config, timeout: Duration) -> Vec<Check> {
    const SUBJECT: &str = "jira";
    let (Some(settings), Some(token)) = (settings, token) else {
        return vec![Check::skip(SUBJECT, "not configured (no [jira] section)")];
    };
    let client = match settings.client_with_token(token.clone()) {
        Ok(client) => client,
        Err(error) => return vec![Check::fail(SUBJECT, format!("{error:#}"))],
    };
    let mut checks = Vec::new();
    match bounded(timeout, client.myself()).await {
        Ok(account) => checks.push(Check::ok(
            SUBJECT,
            format!("signed in to {} as {} ({})", settings.base_url, account.display_name, account.account_id),
        )),
        Err(error) => return vec![Check::fail(SUBJECT, format!("{error:#}"))],
    }
    let named = named_statuses(settings, &config.environment_names());
    for project in &settings.projects {
        checks.push(match bounded(timeout, client.project_statuses(project)).await {
            Ok(statuses) => {
                let missing: Vec<String> = named
                    .iter()
                    .filter(|(_, status)| !JiraClient::has_status(&statuses, status))
                    .map(|(key, status)| format!("`{status}` ({key})"))
                    .collect();
                if missing.is_empty() {
                    let all: Vec<&str> = named.iter().map(|(_, status)| status.as_str()).collect();
                    Check::ok(
                        SUBJECT,
                        format!("project {project} has every status the config names: {}", all.join(", ")),
                    )
                } else {
                    Check::fail(
                        SUBJECT,
                        format!(
                            "project {project} has no status {}, so no transition leads there: rename it in the \
                             config to one of the project's statuses ({}), or add it to the project's workflow",
                            missing.join(", "),
                            statuses.join(", ")
                        ),
                    )
                }
            }
            Err(error) => Check::fail(
                SUBJECT,
                format!("{error:#}: check jira.projects (`{project}`) and that the bot's account can browse it"),
            ),
        });
    }
    checks
}

/// Every status the config names, once, with the key that names it first.
fn named_statuses(settings: &JiraConfig, environments: &[String]) -> Vec<(String, String)> {
    let columns = &settings.columns;
    let mut named: Vec<(String, String)> = [
        ("jira.columns.pull_request", Some(&columns.pull_request)),
        ("jira.columns.dev_testing", Some(&columns.dev_testing)),
        ("jira.columns.staging", Some(&columns.staging)),
        ("jira.columns.done", Some(&columns.done)),
        ("jira.columns.after_staging", columns.after_staging.as_ref()),
        ("jira.columns.fail_to", columns.fail_to.as_ref()),
    ]
    .into_iter()
    .filter_map(|(key, status)| status.map(|status| (key.to_owned(), status.clone())))
    .collect();
    if settings.on_deploy.is_some() {
        for (env, rule) in settings.deploy_moves(environments) {
            named.push((format!("jira.on_deploy.{env}.to"), rule.to));
            if let Some(from) = rule.from {
                named.push((format!("jira.on_deploy.{env}.from"), from));
            }
        }
    }
    let mut unique: Vec<(String, String)> = Vec::new();
    for (key, status) in named {
        if !unique.iter().any(|(_, known)| known.trim().eq_ignore_ascii_case(status.trim())) {
            unique.push((key, status));
        }
    }
    unique
}

// ---- Hosts ----

async fn hosts(config: &Config, timeout: Duration) -> Vec<Check> {
    let transports = match crate::app::transports(config) {
        Ok(transports) => transports,
        Err(error) => return vec![Check::fail("hosts", format!("{error:#}"))],
    };
    let mut running = tokio::task::JoinSet::new();
    for (index, env) in config.environments.iter().enumerate() {
        let Some(transport) = transports.get(&env.name).cloned() else { continue };
        let env = env.clone();
        running.spawn(async move { (index, host(&env, transport, timeout).await) });
    }
    let mut checks = Vec::new();
    while let Some(done) = running.join_next().await {
        match done {
            Ok(found) => checks.push(found),
            Err(panic) => checks.push((usize::MAX, Check::fail("hosts", format!("a host check crashed: {panic}")))),
        }
    }
    checks.sort_by_key(|(index, _)| *index);
    checks.into_iter().map(|(_, check)| check).collect()
}

/// Connects to `env`'s host (the pinned key and the login, for SSH) and asks git whether
/// `dir` is a checkout.
async fn host(env: &Environment, transport: Arc<dyn RemoteExec>, timeout: Duration) -> Check {
    let (subject, place) = match &env.transport {
        TransportConfig::Ssh(_) => (format!("ssh {}", env.name), transport.target()),
        TransportConfig::Local { .. } => (format!("local {}", env.name), "this machine".to_owned()),
    };
    let dir = env.work_dir();
    let mut session = match bounded(timeout, transport.connect()).await {
        Ok(session) => session,
        Err(error) => return Check::fail(&subject, format!("{place}: {error:#}")),
    };
    // Only the configured directory goes into the script, shell-quoted.
    let script = format!(
        "test -d {} || exit {NO_DIRECTORY}; {}",
        quote(&dir),
        host_script(env, "git rev-parse --git-dir", GIT_TIMEOUT)
    );
    let mut output = OutputTail::new(2048);
    let ran = bounded(timeout, session.run(&script, GIT_TIMEOUT, &mut output)).await;
    session.close().await;
    let connected = match &env.transport {
        TransportConfig::Ssh(_) => format!("{place} answers with the pinned host key; "),
        TransportConfig::Local { .. } => String::new(),
    };
    let key = format!("`dir` of environment {}'s transport", env.name);
    match ran {
        Ok(result) if result.is_ok() => Check::ok(&subject, format!("{connected}{dir} is a git checkout")),
        Ok(crate::release::deploy::StepResult::Exit { code: NO_DIRECTORY }) => Check::fail(
            &subject,
            format!(
                "{connected}but there is no directory {dir} on {place}: clone the app there (`git clone URL {dir}`), \
                 or fix the {key}"
            ),
        ),
        Ok(result) => {
            let said = output.text();
            let said = said.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("no output");
            Check::fail(
                &subject,
                format!(
                    "{connected}but {dir} is not a git checkout ({}: {said}): clone the app there \
                     (`git clone URL {dir}`), or fix the {key}",
                    result.describe()
                ),
            )
        }
        Err(error) => Check::fail(&subject, format!("{connected}but `git rev-parse` in {dir} failed: {error:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_starts_with_a_four_letter_verdict() {
        assert_eq!(Check::ok("slack", "fine").to_string(), "ok   slack: fine");
        assert_eq!(Check::fail("ssh dev", "broken").to_string(), "FAIL ssh dev: broken");
        assert_eq!(Check::skip("jira", "not configured").to_string(), "skip jira: not configured");
    }

    fn jira(extra: &str) -> JiraConfig {
        toml::from_str(&format!(
            "base_url = \"https://team.atlassian.net\"\nemail = \"bot@team.example\"\ntoken = {{ env = \"T\" }}\n\
             projects = [\"SHOP\"]\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn every_status_the_config_names_is_checked_once_under_the_key_that_names_it_first() {
        let envs = ["dev".to_owned(), "staging".to_owned(), "production".to_owned()];
        let named = named_statuses(&jira("columns = { fail_to = \"pull request\" }"), &envs);
        let keys: Vec<(&str, &str)> = named.iter().map(|(k, s)| (k.as_str(), s.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("jira.columns.pull_request", "Pull Request"),
                ("jira.columns.dev_testing", "Dev Testing"),
                ("jira.columns.staging", "Staging"),
                ("jira.columns.done", "Done"),
            ],
            "fail_to names Pull Request again (case aside)"
        );
        let configured = "[on_deploy.dev]\nfrom = \"Review\"\nto = \"QA\"\n";
        let named = named_statuses(&jira(configured), &envs);
        assert!(named.contains(&("jira.on_deploy.dev.to".to_owned(), "QA".to_owned())), "{named:?}");
        assert!(named.contains(&("jira.on_deploy.dev.from".to_owned(), "Review".to_owned())), "{named:?}");
    }
}
