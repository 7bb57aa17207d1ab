//! The deploy targets: each environment, how its steps reach the machine, and its steps. The
//! config file's `[[environments]]` are validated into these (re-exported from `config`).

use crate::release::gitref::GitRef;
use crate::release::migrations::MigrationConfig;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// One deploy target.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Short name used in commands (`dev`).
    pub name: String,
    /// Other names every command taking an environment accepts (`prod` for `production`):
    /// validated like names, unique across names and aliases.
    pub aliases: Vec<String>,
    /// Where people open the running app (`https://staging.shop.example`), linked from deploy
    /// and promotion messages.
    pub url: Option<String>,
    /// The git branch that feeds it (`dev`, `staging`, `master`).
    pub branch: GitRef,
    /// How the steps reach the machine.
    pub transport: TransportConfig,
    /// Steps run in order for every deploy.
    pub steps: Vec<StepTemplate>,
    /// Optional URL checked after the steps.
    pub health_url: Option<String>,
    /// How long the health URL may take to answer 2xx after a restart.
    pub health_timeout: Duration,
    /// The migration guard (Django), if the app has migrations.
    pub migrations: Option<MigrationConfig>,
    /// Lead approvals a promotion into this environment needs (default: 1 where
    /// `requires_approval`, else 0).
    pub approvals: usize,
    /// How a promotion moves this environment's branch: a merge commit, or fast-forward only.
    pub promote: PromoteMode,
    /// Whether branches other than `branch` may be deployed (and claim the environment).
    pub personal_branches: bool,
    /// Whether a deploy here needs a lead (or, later, an approved promotion).
    pub requires_approval: bool,
    /// How long a personal-branch claim lasts without `/release`.
    pub claim_ttl: Duration,
    /// Default per-step time limit.
    pub step_timeout: Duration,
    /// The CI gate (`required_checks`): GitHub's checks that must pass on a commit before it
    /// is deployed or promoted here; `None`: no gate.
    pub ci: Option<crate::release::ci_gate::CiGate>,
}

impl Environment {
    /// The directory the steps run in, on whichever host.
    pub fn work_dir(&self) -> String {
        match &self.transport {
            TransportConfig::Local { dir } => dir.display().to_string(),
            TransportConfig::Ssh(ssh) => ssh.dir.clone(),
        }
    }
}

/// How a promotion moves the target branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PromoteMode {
    /// Merge the source commit into the branch (GitHub's merge API).
    #[default]
    Merge,
    /// Move the branch to the source commit; refuse if that is not a fast-forward.
    FastForward,
}

/// How an environment's steps are executed.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TransportConfig {
    /// On this host, in a directory: for a bot living on the droplet, and the playground.
    Local {
        /// The app checkout.
        dir: PathBuf,
    },
    /// Over SSH, with a pinned host key.
    Ssh(SshTarget),
}

/// An SSH target: where, as whom, with which key, and which host key to expect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshTarget {
    /// Host name or address.
    pub host: String,
    /// Port (22).
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Remote user.
    pub user: String,
    /// Private key file; without it, the ssh-agent at `SSH_AUTH_SOCK` is used.
    pub key_file: Option<PathBuf>,
    /// known_hosts file holding the pinned host key. Required: keys are never learned.
    pub known_hosts: Option<PathBuf>,
    /// The app checkout on the host.
    pub dir: String,
    /// Seconds between keepalives; three missed keepalives end the deploy.
    #[serde(default = "default_keepalive")]
    pub keepalive_secs: u64,
}

fn default_ssh_port() -> u16 {
    22
}

fn default_keepalive() -> u64 {
    10
}

/// A configured step: a shell template whose only placeholders are validated values.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StepTemplate {
    /// Shown in progress messages.
    pub name: String,
    /// Shell text; `{{sha}}`, `{{ref}}`, `{{branch}}` and `{{env}}` are replaced, shell-quoted.
    pub run: String,
    /// Overrides the environment's step timeout (`30s`, `5m`).
    pub timeout: Option<String>,
}

/// Placeholders a step template may use.
pub const PLACEHOLDERS: [&str; 4] = ["sha", "ref", "branch", "env"];

/// The team's manual process, as default steps.
pub fn default_steps() -> Vec<StepTemplate> {
    let step = |name: &str, run: &str| StepTemplate { name: name.into(), run: run.into(), timeout: None };
    vec![
        step("fetch", "git fetch --all --prune --quiet"),
        step("checkout", "git checkout --quiet --detach {{sha}}"),
        step("restart gunicorn", "sudo -n systemctl restart gunicorn"),
        step("reload nginx", "sudo -n systemctl reload nginx"),
    ]
}
