//! Deploy records: what was asked, what was resolved, what each step did, and the outcome.

use super::gitref::{GitRef, Sha};
use super::migrations::BranchMigrations;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One deploy, as stored and as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRecord {
    /// Store id, increasing.
    pub id: u64,
    /// Target environment.
    pub env: String,
    /// What was asked for.
    pub git_ref: GitRef,
    /// The exact commit it resolved to.
    pub sha: Sha,
    /// Person id of the requester.
    pub requested_by: String,
    /// Their display name at the time.
    pub requested_by_name: String,
    /// Why it ran.
    pub trigger: Trigger,
    /// A lead's reason for deploying outside the environment's slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
    /// Migrations a personal branch brings (the migration guard's findings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<BranchMigrations>,
    /// When it was accepted.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Each step, in order; steps not reached are absent.
    pub steps: Vec<StepRecord>,
    /// Where it stands.
    pub outcome: Outcome,
    /// Jira tickets it shipped (keys in its commit messages), once read after it succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tickets: Vec<String>,
    /// Until when the requester holds the environment, when this deploy claimed it (a
    /// personal branch): the reply tells them so, with the way out (`/release ENV`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_until: Option<DateTime<Utc>>,
    /// Where to look: the commit, the compare with what was live, the pull requests, the
    /// environment's URL (each platform writes them in its own link syntax).
    /// Boxed: most records are read for other things, and replies carry records by value.
    #[serde(default, skip_serializing_if = "no_links")]
    pub links: Box<DeployLinks>,
}

fn no_links(links: &DeployLinks) -> bool {
    links.is_empty()
}

/// One link: what it says and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The words shown (`a1b2c3d`, `#12`, `compare`).
    pub text: String,
    /// The address.
    pub url: String,
}

/// The links of a deploy's message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployLinks {
    /// The deployed commit on GitHub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<Link>,
    /// GitHub's compare of what was live with the deployed commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<Link>,
    /// The pull requests merged as this commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pulls: Vec<Link>,
    /// Where people open the environment (its configured `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Link>,
}

impl DeployLinks {
    /// The links of a deploy of `sha` to `env` (named `env_name`, opened at `env_url`), on the
    /// GitHub repository at `repository` (`https://github.com/owner/repo`), where `live` ran
    /// before and `pulls` (number, whether it merged as `sha`) were merged.
    pub fn new(
        repository: Option<&str>,
        sha: &Sha,
        live: Option<&Sha>,
        pulls: &[u64],
        env_name: &str,
        env_url: Option<&str>,
    ) -> Self {
        let repository = repository.map(|r| r.trim_end_matches('/'));
        Self {
            commit: repository.map(|r| Link { text: sha.short().to_owned(), url: format!("{r}/commit/{sha}") }),
            compare: repository.zip(live.filter(|live| *live != sha)).map(|(r, live)| Link {
                text: format!("{}...{}", live.short(), sha.short()),
                url: format!("{r}/compare/{live}...{sha}"),
            }),
            pulls: repository
                .map(|r| pulls.iter().map(|n| Link { text: format!("#{n}"), url: format!("{r}/pull/{n}") }).collect())
                .unwrap_or_default(),
            environment: env_url.map(|url| Link { text: env_name.to_owned(), url: url.to_owned() }),
        }
    }

    /// Whether there is nothing to link.
    pub fn is_empty(&self) -> bool {
        self.commit.is_none() && self.compare.is_none() && self.pulls.is_empty() && self.environment.is_none()
    }

    /// Every link, labelled, in the order messages show them: commit, compare, pull requests,
    /// environment.
    pub fn labelled(&self) -> Vec<(&'static str, &Link)> {
        let mut out = Vec::new();
        if let Some(link) = &self.commit {
            out.push(("commit", link));
        }
        if let Some(link) = &self.compare {
            out.push(("changes", link));
        }
        for link in &self.pulls {
            out.push(("pull request", link));
        }
        if let Some(link) = &self.environment {
            out.push(("open", link));
        }
        out
    }
}

/// What started a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `/deploy`.
    Command,
    /// `/release` (or a claim expiry) putting the environment's own branch back.
    Release,
    /// The environment's deploy slot in the release calendar.
    Scheduled,
    /// `/rollback`: a commit the environment ran before.
    Rollback,
    /// An approved promotion from the previous environment.
    Promotion,
    /// A pull request merged into the environment's branch (GitHub's webhook).
    Merge,
}

/// One step's run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step name.
    pub name: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took, once finished.
    pub duration_ms: Option<u64>,
    /// How it ended, once finished.
    pub result: Option<StepResult>,
    /// The last few KB of its output, secrets redacted.
    pub tail: String,
    /// How many bytes it printed in all.
    #[serde(default)]
    pub output_bytes: u64,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepResult {
    /// Exit code 0.
    Ok,
    /// Non-zero exit code.
    Exit {
        /// The code.
        code: i32,
    },
    /// Killed by a signal.
    Signal {
        /// Signal name.
        signal: String,
    },
    /// Ran past its time limit and was killed.
    TimedOut {
        /// The limit.
        limit_secs: u64,
    },
    /// A check Shipday made itself failed (HEAD verification, health URL).
    Check {
        /// What the check found.
        message: String,
    },
    /// Could not be run at all (connection lost, for example).
    Error {
        /// What went wrong.
        message: String,
    },
}

impl StepResult {
    /// Whether the deploy may go on.
    pub fn is_ok(&self) -> bool {
        matches!(self, StepResult::Ok)
    }

    /// Short words for people: `exit 3`, `timed out after 30s`.
    pub fn describe(&self) -> String {
        match self {
            StepResult::Ok => "ok".into(),
            StepResult::Exit { code } => format!("exit code {code}"),
            StepResult::Signal { signal } => format!("killed by {signal}"),
            StepResult::TimedOut { limit_secs } => format!("timed out after {limit_secs}s"),
            StepResult::Error { message } | StepResult::Check { message } => message.clone(),
        }
    }

    /// Whether the host may be half-way through a change we cannot see.
    pub fn leaves_state_unknown(&self) -> bool {
        matches!(self, StepResult::TimedOut { .. } | StepResult::Error { .. } | StepResult::Signal { .. })
    }
}

/// Where a deploy stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Steps are running.
    Running,
    /// Every step passed and HEAD is the resolved SHA.
    Succeeded,
    /// A step failed; later steps did not run.
    Failed {
        /// The failing step.
        step: String,
        /// What happened.
        reason: String,
        /// Whether the host's state is unknown (a timeout or a lost connection).
        state_unknown: bool,
    },
    /// The bot stopped while it ran; the host's state is unknown.
    Interrupted,
    /// Someone cancelled it (`/cancel`): the step that ran was stopped on the host (its whole
    /// process group), and no later step ran.
    Cancelled {
        /// Who cancelled it (display name).
        by: String,
        /// The step it stopped, or the first step it kept from starting.
        step: String,
        /// Whether `step` was running (stopped on the host) or had not started.
        stopped_running: bool,
        /// HEAD on the host once it stopped, or why it could not be read.
        head: Option<Result<String, String>>,
    },
}

impl DeployRecord {
    /// The steps that ran to the end, in order.
    pub fn completed_steps(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| s.result.as_ref().is_some_and(StepResult::is_ok))
            .map(|s| s.name.as_str())
            .collect()
    }

    /// Whether the deploy is over.
    pub fn is_finished(&self) -> bool {
        !matches!(self.outcome, Outcome::Running)
    }

    /// Total duration so far or in all.
    pub fn elapsed_ms(&self, now: DateTime<Utc>) -> u64 {
        let end = self.finished_at.unwrap_or(now);
        (end - self.started_at).num_milliseconds().max(0) as u64
    }
}

/// HEAD as read on an environment's host, to catch drift (a deploy by hand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// What HEAD was, or why it could not be read.
    pub head: Result<Sha, String>,
}

/// How the host's HEAD compares with what Shipday deployed there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// HEAD is the last deployed commit.
    None,
    /// HEAD is something else: someone changed the host outside Shipday.
    Differs {
        /// What Shipday deployed last (`None`: Shipday never deployed there).
        deployed: Option<Sha>,
        /// What the host has.
        found: Sha,
    },
    /// HEAD could not be read.
    Unreadable(String),
}

impl Observation {
    /// Compares the reading with the last successful deploy. A deploy finished after the
    /// reading makes the reading stale, so it is not drift.
    pub fn drift(&self, last_ok: Option<&DeployRecord>) -> Drift {
        match (&self.head, last_ok) {
            (Err(error), _) => Drift::Unreadable(error.clone()),
            (Ok(found), Some(deployed)) if *found == deployed.sha => Drift::None,
            (Ok(_), Some(deployed)) if deployed.finished_at.is_some_and(|f| f > self.at) => Drift::None,
            (Ok(found), deployed) => Drift::Differs { deployed: deployed.map(|d| d.sha.clone()), found: found.clone() },
        }
    }
}

/// A progress event of a running deploy, as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployEvent {
    /// The deploy was accepted and recorded.
    Accepted,
    /// Step `index` started.
    StepStarted {
        /// Position in the plan.
        index: usize,
    },
    /// Step `index` finished.
    StepFinished {
        /// Position in the plan.
        index: usize,
    },
    /// The deploy ended.
    Finished,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_links_its_commit_the_compare_its_pulls_and_the_environment() {
        let (old, new) = (Sha::parse(&"a".repeat(40)).unwrap(), Sha::parse(&"b".repeat(40)).unwrap());
        let links = DeployLinks::new(
            Some("https://github.com/acme/shop/"),
            &new,
            Some(&old),
            &[12],
            "staging",
            Some("https://staging.shop.example"),
        );
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        assert_eq!(links.commit.as_ref().unwrap().url, format!("https://github.com/acme/shop/commit/{b}"));
        assert_eq!(links.commit.as_ref().unwrap().text, "bbbbbbbb");
        assert_eq!(links.compare.as_ref().unwrap().url, format!("https://github.com/acme/shop/compare/{a}...{b}"));
        assert_eq!(links.pulls[0].url, "https://github.com/acme/shop/pull/12");
        assert_eq!(links.labelled().len(), 4);
        let same = DeployLinks::new(Some("https://github.com/acme/shop"), &new, Some(&new), &[], "dev", None);
        assert!(same.compare.is_none(), "nothing to compare with itself");
        assert!(DeployLinks::new(None, &new, Some(&old), &[3], "dev", None).is_empty());
    }
}
