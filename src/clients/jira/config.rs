//! The `[jira]` table: where Jira is, who the bot is there, which projects and columns.

use super::{JiraClient, RetryPolicy};
use crate::release::parse_duration;
use crate::secret::SecretRef;
use anyhow::{Context, Result, bail};
use reqwest::Url;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The `[jira]` table of the config: where Jira is, who the bot is there, which projects and
/// which columns it works with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawJiraConfig")]
pub struct JiraConfig {
    /// The site URL (`https://team.atlassian.net`), without a trailing `/`.
    pub base_url: String,
    /// The Atlassian account email the API token belongs to.
    pub email: String,
    /// Where the API token is (`{ env = "JIRA_API_TOKEN" }`).
    pub token: SecretRef,
    /// Project keys whose tickets the bot moves (`["SHOP"]`), upper case.
    pub projects: Vec<String>,
    /// The team's column (status) names.
    pub columns: JiraColumns,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Time limit of one request.
    pub timeout: Duration,
    /// Where each environment's successful deploys move the tickets they shipped, as
    /// configured; `None` means the defaults of [`JiraConfig::deploy_moves`].
    pub on_deploy: Option<BTreeMap<String, DeployMove>>,
}

/// Where a successful deploy of one environment moves the tickets it shipped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployMove {
    /// Only tickets in this column move (so a deploy never drags a card backwards);
    /// `None`: from whichever column they are in.
    pub from: Option<String>,
    /// The column they move to.
    pub to: String,
}

/// The team's board, as status names. Matching is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JiraColumns {
    /// Where a ticket waits while its PR is open.
    #[serde(default = "default_pull_request")]
    pub pull_request: String,
    /// Where a ticket goes once its code is on dev, for its developer to test.
    #[serde(default = "default_dev_testing")]
    pub dev_testing: String,
    /// Where a tested ticket goes, in the drag window.
    #[serde(default = "default_staging")]
    pub staging: String,
    /// Where a ticket goes once its code is in production.
    #[serde(default = "default_done")]
    pub done: String,
    /// Where a staging deploy moves the tickets in `staging` it shipped; none: they stay.
    pub after_staging: Option<String>,
    /// Where `/ticket fail` moves a ticket back; none: it stays, with a comment.
    pub fail_to: Option<String>,
}

fn default_pull_request() -> String {
    "Pull Request".into()
}

fn default_dev_testing() -> String {
    "Dev Testing".into()
}

fn default_staging() -> String {
    "Staging".into()
}

fn default_done() -> String {
    "Done".into()
}

impl Default for JiraColumns {
    fn default() -> Self {
        Self {
            pull_request: default_pull_request(),
            dev_testing: default_dev_testing(),
            staging: default_staging(),
            done: default_done(),
            after_staging: None,
            fail_to: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJiraConfig {
    base_url: String,
    email: String,
    token: SecretRef,
    projects: Vec<String>,
    #[serde(default)]
    columns: JiraColumns,
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    #[serde(default = "default_timeout")]
    timeout: String,
    on_deploy: Option<BTreeMap<String, DeployMove>>,
}

fn default_max_attempts() -> u32 {
    RetryPolicy::default().max_attempts
}

fn default_timeout() -> String {
    "15s".into()
}

impl TryFrom<RawJiraConfig> for JiraConfig {
    type Error = anyhow::Error;

    fn try_from(raw: RawJiraConfig) -> Result<Self> {
        let base_url = check_base_url(&raw.base_url).context("jira.base_url")?;
        if !raw.email.contains('@') {
            bail!("jira.email: `{}` is not the email address of the Atlassian account", raw.email);
        }
        if raw.projects.is_empty() {
            bail!("jira.projects: name at least one project key, like [\"SHOP\"]");
        }
        let mut projects = Vec::new();
        for (i, project) in raw.projects.iter().enumerate() {
            let valid = project.len() <= 32
                && project.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && project.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                bail!(
                    "jira.projects[{i}]: `{project}` is not a project key (letters first, then letters, digits or _)"
                );
            }
            projects.push(project.to_ascii_uppercase());
        }
        let columns = raw.columns;
        let named = [
            ("pull_request", Some(&columns.pull_request)),
            ("dev_testing", Some(&columns.dev_testing)),
            ("staging", Some(&columns.staging)),
            ("done", Some(&columns.done)),
            ("after_staging", columns.after_staging.as_ref()),
            ("fail_to", columns.fail_to.as_ref()),
        ];
        for (key, name) in named {
            if name.is_some_and(|n| n.trim().is_empty()) {
                bail!("jira.columns.{key}: a column name cannot be empty");
            }
        }
        for (env, rule) in raw.on_deploy.iter().flatten() {
            let named = [("to", Some(&rule.to)), ("from", rule.from.as_ref())];
            if named.into_iter().any(|(_, name)| name.is_some_and(|n| n.trim().is_empty())) {
                bail!("jira.on_deploy.{env}: a column name cannot be empty");
            }
        }
        if !(1..=10).contains(&raw.max_attempts) {
            bail!("jira.max_attempts: {} is not between 1 and 10", raw.max_attempts);
        }
        let timeout = parse_duration(&raw.timeout).context("jira.timeout")?;
        Ok(Self {
            base_url,
            email: raw.email,
            token: raw.token,
            projects,
            columns,
            max_attempts: raw.max_attempts,
            timeout,
            on_deploy: raw.on_deploy,
        })
    }
}

impl JiraConfig {
    /// Where each environment's successful deploys move tickets: `on_deploy` as configured,
    /// or the team's defaults for `environments` (in promotion order), which follow a linear
    /// board (Pull Request → Dev Testing → Staging → Done) one column at a time: the first
    /// (dev) moves them from `pull_request` to `dev_testing`; the one after it (staging), if
    /// it is not the last, from `staging` to `after_staging` when that is set; the last
    /// (production) from the column before `done` (`after_staging` if set, else `staging`)
    /// to `done`.
    ///
    /// Why production moves only from that column: a linear workflow has no transition to
    /// Done from Pull Request or Dev Testing, so "to Done from anywhere" gave up (and
    /// announced) every ticket of a release that nobody had passed yet. A ticket still in an
    /// earlier column was not tested; it stays there for a person to look at.
    pub fn deploy_moves(&self, environments: &[String]) -> BTreeMap<String, DeployMove> {
        if let Some(configured) = &self.on_deploy {
            return configured.clone();
        }
        let columns = &self.columns;
        let mut moves = BTreeMap::new();
        if let Some(last) = environments.last() {
            let before_done = columns.after_staging.as_ref().unwrap_or(&columns.staging);
            moves.insert(last.clone(), DeployMove { from: Some(before_done.clone()), to: columns.done.clone() });
        }
        if let (Some(staging), Some(after)) = (environments.get(1), &columns.after_staging)
            && environments.len() > 2
        {
            moves.insert(staging.clone(), DeployMove { from: Some(columns.staging.clone()), to: after.clone() });
        }
        if let Some(dev) = environments.first() {
            let from = Some(columns.pull_request.clone());
            moves.insert(dev.clone(), DeployMove { from, to: columns.dev_testing.clone() });
        }
        moves
    }

    /// A client for this site, with the API token loaded (relative token files resolve
    /// against `base`, the config's directory).
    pub fn client(&self, base: &Path) -> Result<JiraClient> {
        self.client_with_token(self.token.load("jira.token", base)?)
    }

    /// A client for this site with an API token already loaded (at start-up, with the rest of
    /// the config's secrets).
    pub fn client_with_token(&self, token: crate::secret::Secret) -> Result<JiraClient> {
        let retry = RetryPolicy { max_attempts: self.max_attempts, timeout: self.timeout, ..RetryPolicy::default() };
        Ok(JiraClient::new(&self.base_url, &self.email, token)?.with_retry(retry))
    }
}

/// Accepts an https site URL (plain http only on loopback, for tests and tunnels: the API
/// token must not cross a network in clear). Returns it without a trailing `/`.
pub(super) fn check_base_url(text: &str) -> Result<String> {
    let url = Url::parse(text).with_context(|| format!("`{text}` is not a URL like https://team.atlassian.net"))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => bail!("`{text}` must start with https:// (the API token is sent with every request)"),
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        bail!("`{text}` must be the bare site URL, without credentials or a query");
    }
    Ok(text.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const JIRA_TABLE: &str = r#"
[jira]
base_url = "https://team.atlassian.net/"
email = "shipday@team.example"
token = { env = "JIRA_API_TOKEN" }
projects = ["shop", "OPS"]
[jira.columns]
after_staging = "Ready for Release"
"#;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        jira: JiraConfig,
    }

    fn parse_table(text: &str) -> Result<JiraConfig> {
        Ok(toml::from_str::<File>(text).map_err(|e| anyhow::anyhow!("{e}"))?.jira)
    }

    #[test]
    fn the_jira_table_parses_with_the_teams_column_defaults() {
        let config = parse_table(JIRA_TABLE).unwrap();
        assert_eq!(config.base_url, "https://team.atlassian.net");
        assert_eq!(config.projects, ["SHOP", "OPS"]);
        assert_eq!(config.token, SecretRef { env: Some("JIRA_API_TOKEN".into()), file: None });
        assert_eq!(config.columns.pull_request, "Pull Request");
        assert_eq!(config.columns.dev_testing, "Dev Testing");
        assert_eq!(config.columns.staging, "Staging");
        assert_eq!(config.columns.done, "Done");
        assert_eq!(config.columns.after_staging.as_deref(), Some("Ready for Release"));
        assert_eq!(config.columns.fail_to, None);
        assert_eq!((config.max_attempts, config.timeout), (4, Duration::from_secs(15)));
    }

    #[test]
    fn mistakes_in_the_jira_table_name_the_key() {
        let cases = [
            (JIRA_TABLE.replace("after_staging", "after_stagin"), "after_stagin"),
            (JIRA_TABLE.replace("projects", "project"), "project"),
            (JIRA_TABLE.replace("https://team", "http://team"), "jira.base_url"),
            (JIRA_TABLE.replace("\"shop\"", "\"sh-op\""), "jira.projects[0]"),
            (JIRA_TABLE.replace("shipday@team.example", "shipday"), "jira.email"),
            (JIRA_TABLE.replace("\"Ready for Release\"", "\" \""), "jira.columns.after_staging"),
            (JIRA_TABLE.replace("[jira.columns]", "timeout = \"soon\"\n[jira.columns]"), "jira.timeout"),
        ];
        for (text, key) in cases {
            let err = format!("{:#}", parse_table(&text).unwrap_err());
            assert!(err.contains(key), "{key} not named in: {err}");
        }
    }

    #[test]
    fn a_missing_token_names_the_key_and_a_token_file_is_read() {
        let text = JIRA_TABLE.replace("JIRA_API_TOKEN", "SHIPDAY_TEST_JIRA_SURELY_UNSET");
        let err = format!("{:#}", parse_table(&text).unwrap().client(Path::new(".")).unwrap_err());
        assert!(err.contains("jira.token") && err.contains("SHIPDAY_TEST_JIRA_SURELY_UNSET"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jira.token"), "s3cret-token\n").unwrap();
        let text = JIRA_TABLE.replace("{ env = \"JIRA_API_TOKEN\" }", "{ file = \"jira.token\" }");
        let client = parse_table(&text).unwrap().client(dir.path()).unwrap();
        assert_eq!(client.token.expose(), "s3cret-token");
        assert!(!format!("{client:?}").contains("s3cret"), "{client:?}");
    }

    #[test]
    fn deploys_move_tickets_along_the_board_by_default() {
        let envs: Vec<String> = ["dev", "staging", "production"].map(String::from).to_vec();
        let config = parse_table(JIRA_TABLE).unwrap();
        let moves = config.deploy_moves(&envs);
        let dev = DeployMove { from: Some("Pull Request".into()), to: "Dev Testing".into() };
        let staging = DeployMove { from: Some("Staging".into()), to: "Ready for Release".into() };
        assert_eq!(moves.get("dev"), Some(&dev));
        assert_eq!(moves.get("staging"), Some(&staging));
        let done = DeployMove { from: Some("Ready for Release".into()), to: "Done".into() };
        assert_eq!(moves.get("production"), Some(&done), "one column at a time: production takes what staging left");

        // Without after_staging, staging deploys leave tickets where they are, and production
        // moves the tickets that were passed to Staging, never an untested one.
        let plain = parse_table(&JIRA_TABLE.replace("after_staging = \"Ready for Release\"", "")).unwrap();
        assert!(!plain.deploy_moves(&envs).contains_key("staging"));
        let done = DeployMove { from: Some("Staging".into()), to: "Done".into() };
        assert_eq!(plain.deploy_moves(&envs).get("production"), Some(&done));
        // Two environments: dev and the last one.
        let two = plain.deploy_moves(&["dev".to_string(), "production".to_string()]);
        assert_eq!(two.keys().collect::<Vec<_>>(), ["dev", "production"]);
    }

    #[test]
    fn on_deploy_replaces_the_defaults_as_a_whole() {
        let text = format!(
            "{JIRA_TABLE}[jira.on_deploy]\ndev = {{ from = \"In Review\", to = \"QA\" }}\nproduction = {{ to = \"Released\" }}\n"
        );
        let config = parse_table(&text).unwrap();
        let moves = config.deploy_moves(&["dev".to_string(), "staging".to_string(), "production".to_string()]);
        assert_eq!(moves.len(), 2);
        assert_eq!(moves["dev"], DeployMove { from: Some("In Review".into()), to: "QA".into() });
        assert_eq!(moves["production"], DeployMove { from: None, to: "Released".into() });
        let blank = text.replace("\"QA\"", "\"\"");
        assert!(format!("{:#}", parse_table(&blank).unwrap_err()).contains("jira.on_deploy.dev"));
        let typo = text.replace("from = ", "form = ");
        assert!(format!("{:#}", parse_table(&typo).unwrap_err()).contains("form"));
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://localhost:1/").is_ok());
        assert!(check_base_url("http://team.atlassian.net").is_err());
        assert!(check_base_url("https://bot:pw@team.atlassian.net").is_err());
        assert!(check_base_url("team.atlassian.net").is_err());
    }
}
