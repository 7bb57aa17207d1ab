//! Text → typed [`Command`], driven by the specs in `commands/`. No I/O here.

pub mod authorize;
pub mod help;
pub mod names;
pub mod parse;
pub mod spec;

use crate::release::gitref::GitRef;
use serde::{Deserialize, Serialize};

pub use names::CommandNames;
pub use parse::{ParseError, parse};
pub use spec::{CommandBook, CommandSpec, MinRole};

/// A command a person asked for, with every value already validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Deploy `git_ref` to `env`.
    Deploy {
        /// Target environment.
        env: String,
        /// What to deploy.
        git_ref: GitRef,
        /// Only resolve and show the plan.
        #[serde(default)]
        dry_run: bool,
        /// A lead's reason for deploying outside the environment's slot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        emergency: Option<String>,
        /// Deploy despite conflicting or irreversible migrations.
        #[serde(default)]
        force: bool,
        /// A lead's reason to deploy over the CI gate (`--force "reason"`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        force_reason: Option<String>,
        /// If the environment is held or deploying: tell me once it is free.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        notify: bool,
        /// If the environment is held or deploying: deploy it once it is free.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        when_free: bool,
    },
    /// Promote what runs on `from` to `to`.
    Promote {
        /// Source environment.
        from: String,
        /// Target environment.
        to: String,
        /// A lead's reason to carry it out outside the target's slot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        emergency: Option<String>,
        /// Cancel the open request from `from` to `to` instead.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cancel: bool,
        /// A lead's reason to promote over the CI gate (`--force "reason"`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        force: Option<String>,
    },
    /// Show the state of one or all environments.
    Status {
        /// Only this environment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<String>,
        /// Read HEAD on the hosts now.
        #[serde(default)]
        live: bool,
    },
    /// Give back a claimed environment.
    Release {
        /// The environment.
        env: String,
    },
    /// Lock an environment.
    Lock {
        /// The environment.
        env: String,
        /// Why.
        reason: String,
    },
    /// Remove a lock or claim.
    Unlock {
        /// The environment.
        env: String,
    },
    /// Stop the running deploy to `env`.
    Cancel {
        /// The environment.
        env: String,
    },
    /// List recent deploys.
    History {
        /// Only this environment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<String>,
        /// How many.
        limit: usize,
    },
    /// Redeploy a commit the environment ran before.
    Rollback {
        /// The environment.
        env: String,
        /// `previous` or a full SHA.
        target: String,
        /// A lead's reason to do it outside the environment's slot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        emergency: Option<String>,
    },
    /// List the coming deploy slots and drag windows.
    Schedule {
        /// How many days ahead.
        days: usize,
    },
    /// Pass, fail or look up a Jira ticket.
    Ticket {
        /// The ticket's key, upper case (its project is checked against the config later).
        key: String,
        /// What to do with it.
        action: TicketAction,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// A lead's reason to pass it outside the drag window.
        #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
        override_reason: Option<String>,
    },
    /// Stop every deploy to an environment, or to all of them.
    Freeze {
        /// The environment, or `all`.
        env: String,
        /// Why.
        reason: String,
        /// When it ends, as typed (read in the team's zone by the handler).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<String>,
    },
    /// Lift a freeze.
    Unfreeze {
        /// The environment, or `all`.
        env: String,
    },
    /// Skip the next automatic deploy of an environment.
    Skip {
        /// The environment.
        env: String,
    },
    /// Withdraw a skip.
    Unskip {
        /// The environment.
        env: String,
    },
    /// Explain the commands.
    Help {
        /// One command to explain.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    },
}

impl Command {
    /// Names of every variant, as spec names. A test checks them against `commands/` (where
    /// the umbrella `shipday` has no variant: it parses to the command it runs).
    pub const NAMES: [&'static str; 16] = [
        "deploy", "promote", "status", "release", "lock", "unlock", "history", "help", "schedule", "rollback",
        "ticket", "freeze", "unfreeze", "skip", "unskip", "cancel",
    ];

    /// The spec name of this command.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Deploy { .. } => "deploy",
            Command::Promote { .. } => "promote",
            Command::Status { .. } => "status",
            Command::Release { .. } => "release",
            Command::Lock { .. } => "lock",
            Command::Unlock { .. } => "unlock",
            Command::History { .. } => "history",
            Command::Help { .. } => "help",
            Command::Schedule { .. } => "schedule",
            Command::Rollback { .. } => "rollback",
            Command::Ticket { .. } => "ticket",
            Command::Freeze { .. } => "freeze",
            Command::Unfreeze { .. } => "unfreeze",
            Command::Skip { .. } => "skip",
            Command::Unskip { .. } => "unskip",
            Command::Cancel { .. } => "cancel",
        }
    }

    /// The environment the command acts on, if exactly one.
    pub fn env(&self) -> Option<&str> {
        match self {
            Command::Deploy { env, .. }
            | Command::Release { env }
            | Command::Lock { env, .. }
            | Command::Unlock { env }
            | Command::Rollback { env, .. }
            | Command::Cancel { env }
            | Command::Skip { env }
            | Command::Unskip { env } => Some(env),
            Command::Freeze { env, .. } | Command::Unfreeze { env } => {
                (env != crate::release::freeze::ALL).then_some(env.as_str())
            }
            Command::Promote { to, .. } => Some(to),
            Command::Status { env, .. } | Command::History { env, .. } => env.as_deref(),
            Command::Help { .. } | Command::Schedule { .. } | Command::Ticket { .. } => None,
        }
    }
}

/// What `/ticket` does with a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketAction {
    /// Tested on dev: Dev Testing → Staging.
    Pass,
    /// Failed on dev: a comment with who and why.
    Fail,
    /// Column, assignee, and where its code is.
    Status,
}
