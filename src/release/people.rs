//! Who is who: the people the bot knows and what they may do. The config file's `[[people]]`
//! deserialize into these directly (re-exported as `config::{Person, Role}`).

use serde::Deserialize;

/// A person and their identities on each platform.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Short handle, also the name used by `shipday console --as`.
    pub id: String,
    /// Display name used in replies.
    pub name: String,
    /// What this person may do.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Slack member id (`U…`).
    pub slack: Option<String>,
    /// Discord user id (a snowflake).
    pub discord: Option<String>,
    /// GitHub login.
    pub github: Option<String>,
    /// Jira account id.
    pub jira: Option<String>,
    /// Whether Shipday sends this person a direct message when a deploy they asked for ends
    /// (`dm = false` opts out).
    #[serde(default = "default_dm")]
    pub dm: bool,
}

fn default_dm() -> bool {
    true
}

impl Person {
    /// Whether the person has `role` (a lead can do everything a developer can).
    pub fn has(&self, role: Role) -> bool {
        match role {
            Role::Developer => self.roles.iter().any(|r| matches!(r, Role::Developer | Role::Lead)),
            Role::Lead => self.roles.contains(&Role::Lead),
        }
    }

    /// For the core's unit tests: `id` with `roles`, named `id` in capitals, known on no
    /// platform, DMs on.
    #[cfg(test)]
    pub(crate) fn for_tests(id: &str, roles: &[Role]) -> Self {
        Self {
            id: id.into(),
            name: id.to_uppercase(),
            roles: roles.to_vec(),
            slack: None,
            discord: None,
            github: None,
            jira: None,
            dm: true,
        }
    }
}

/// A role granted in the config. Permissions deny by default: no role, read-only.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May deploy to environments that need no approval, claim, lock and release.
    Developer,
    /// Everything a developer may, plus production and unlocking others' holds.
    Lead,
}
