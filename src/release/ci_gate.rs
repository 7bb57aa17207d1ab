//! The CI gate: whether GitHub's checks on one exact commit let it be deployed or promoted.
//!
//! Two GitHub answers describe a commit's CI: the combined status
//! (`GET /repos/{o}/{r}/commits/{sha}/status`, the legacy statuses, one per `context`) and the
//! check runs (`GET /repos/{o}/{r}/commits/{sha}/check-runs`, GitHub Actions and apps). Both are
//! parsed here into [`Check`]s, and [`decide`] turns them and what the environment requires
//! into a [`Verdict`]. No I/O: the client fetches the text, the handlers wait and poll.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What an environment's `required_checks` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequiredChecks {
    /// These checks (status contexts or check-run names) must pass.
    Named(Vec<String>),
    /// Every check reported on the commit must pass, and at least one must be reported.
    All,
}

/// An environment's CI gate, from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiGate {
    /// What must pass.
    pub required: RequiredChecks,
    /// How long a deploy or promotion waits for pending checks before it is refused.
    pub wait: Duration,
    /// How often GitHub is asked again while waiting.
    pub poll: Duration,
}

/// Where one check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    /// Queued or running.
    Pending,
    /// Passed (also `neutral` and `skipped`, which GitHub's branch protection accepts).
    Passed,
    /// Failed, errored, cancelled, timed out, stale or needs action.
    Failed,
}

/// One check on the commit, from either API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The status's `context` or the check run's `name`.
    pub name: String,
    /// Where it stands.
    pub state: CheckState,
    /// GitHub's own word for it (`failure`, `timed_out`, `in_progress`…), for messages.
    pub detail: String,
    /// Where to read it: the status's `target_url`, the check run's `html_url` or `details_url`.
    pub url: Option<String>,
}

/// What the gate decides about a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every required check passed.
    Pass,
    /// A required check failed: the first one, in the order required (or by name for "all").
    Failed {
        /// Its name.
        name: String,
        /// GitHub's word for how it failed.
        detail: String,
        /// Its link, when GitHub gave one.
        url: Option<String>,
    },
    /// Required checks still running (none failed so far).
    Pending {
        /// Those still running, then those not reported yet.
        names: Vec<String>,
    },
    /// Nothing runs and nothing failed, but required checks were never reported on the commit
    /// (with "all": no check at all; `names` is then empty).
    Missing {
        /// The required checks GitHub does not know on this commit.
        names: Vec<String>,
    },
}

impl Verdict {
    /// Whether waiting longer could change the verdict.
    pub fn waits(&self) -> bool {
        matches!(self, Verdict::Pending { .. } | Verdict::Missing { .. })
    }

    /// What it still waits for, for people: "ci/test, lint (not reported yet)".
    pub fn waiting_for(&self) -> String {
        match self {
            Verdict::Pending { names } => names.join(", "),
            Verdict::Missing { names } if names.is_empty() => "any check to be reported".to_owned(),
            Verdict::Missing { names } => format!("{} (not reported yet)", names.join(", ")),
            Verdict::Pass | Verdict::Failed { .. } => String::new(),
        }
    }
}

/// Decides from the commit's `checks` (both APIs together) whether `required` is met. A name
/// reported by both APIs, or by several check runs, counts by its worst state: a failure
/// anywhere fails it, and it passes only when every report of it passed.
pub fn decide(required: &RequiredChecks, checks: &[Check]) -> Verdict {
    let mut by_name: BTreeMap<&str, &Check> = BTreeMap::new();
    for check in checks {
        let worse = |old: &Check| rank(check.state) > rank(old.state);
        match by_name.get(check.name.as_str()) {
            Some(old) if !worse(old) => {}
            _ => {
                by_name.insert(check.name.as_str(), check);
            }
        }
    }
    let names: Vec<String> = match required {
        RequiredChecks::Named(names) => names.clone(),
        RequiredChecks::All if by_name.is_empty() => return Verdict::Missing { names: Vec::new() },
        RequiredChecks::All => by_name.keys().map(|n| (*n).to_owned()).collect(),
    };
    let mut pending = Vec::new();
    let mut missing = Vec::new();
    for name in &names {
        match by_name.get(name.as_str()) {
            Some(check) if check.state == CheckState::Failed => {
                return Verdict::Failed { name: name.clone(), detail: check.detail.clone(), url: check.url.clone() };
            }
            Some(check) if check.state == CheckState::Pending => pending.push(name.clone()),
            Some(_) => {}
            None => missing.push(name.clone()),
        }
    }
    match (pending.is_empty(), missing.is_empty()) {
        (true, true) => Verdict::Pass,
        (true, false) => Verdict::Missing { names: missing },
        (false, _) => {
            pending.extend(missing.into_iter().map(|m| format!("{m} (not reported yet)")));
            Verdict::Pending { names: pending }
        }
    }
}

fn rank(state: CheckState) -> u8 {
    match state {
        CheckState::Passed => 0,
        CheckState::Pending => 1,
        CheckState::Failed => 2,
    }
}

/// GitHub's combined status, as far as the gate reads it.
#[derive(Deserialize)]
struct CombinedStatus {
    statuses: Vec<RawStatus>,
}

#[derive(Deserialize)]
struct RawStatus {
    context: String,
    state: String,
    target_url: Option<String>,
}

/// One page of check runs.
#[derive(Deserialize)]
struct CheckRuns {
    total_count: u64,
    check_runs: Vec<RawCheckRun>,
}

#[derive(Deserialize)]
struct RawCheckRun {
    id: u64,
    name: String,
    status: String,
    conclusion: Option<String>,
    html_url: Option<String>,
    details_url: Option<String>,
}

/// Reads `GET /repos/{o}/{r}/commits/{sha}/status`: one check per status `context` (GitHub
/// already keeps only each context's latest status there).
pub fn parse_combined_status(body: &str) -> Result<Vec<Check>, String> {
    let combined: CombinedStatus =
        serde_json::from_str(body).map_err(|e| format!("GitHub's combined status is unreadable: {e}"))?;
    Ok(combined
        .statuses
        .into_iter()
        .map(|status| {
            let state = match status.state.as_str() {
                "success" => CheckState::Passed,
                "pending" => CheckState::Pending,
                // `failure`, `error`, and anything GitHub may add: never a pass.
                _ => CheckState::Failed,
            };
            Check {
                name: status.context,
                state,
                detail: status.state,
                url: status.target_url.filter(|u| !u.is_empty()),
            }
        })
        .collect())
}

/// Reads one page of `GET /repos/{o}/{r}/commits/{sha}/check-runs`: its `total_count` and one
/// check per name (a re-run replaces the earlier run of the same name: the highest id wins).
pub fn parse_check_runs(body: &str) -> Result<(u64, Vec<Check>), String> {
    let page: CheckRuns = serde_json::from_str(body).map_err(|e| format!("GitHub's check runs are unreadable: {e}"))?;
    let listed = page.check_runs.len();
    let mut latest: BTreeMap<String, RawCheckRun> = BTreeMap::new();
    for run in page.check_runs {
        match latest.get(&run.name) {
            Some(old) if old.id > run.id => {}
            _ => {
                latest.insert(run.name.clone(), run);
            }
        }
    }
    let checks = latest
        .into_values()
        .map(|run| {
            let (state, detail) = match (run.status.as_str(), run.conclusion.as_deref()) {
                ("completed", Some(c @ ("success" | "neutral" | "skipped"))) => (CheckState::Passed, c.to_owned()),
                ("completed", Some(c)) => (CheckState::Failed, c.to_owned()),
                ("completed", None) => (CheckState::Failed, "completed without a conclusion".to_owned()),
                (status, _) => (CheckState::Pending, status.to_owned()),
            };
            let url = run.html_url.filter(|u| !u.is_empty()).or(run.details_url.filter(|u| !u.is_empty()));
            Check { name: run.name, state, detail, url }
        })
        .collect();
    Ok((page.total_count.max(listed as u64), checks))
}

/// The refusal for a failed check, with `link` rendering the check's URL in the platform's
/// syntax (the reply is plain text with a URL, which every adapter links).
pub fn failed_words(env: &str, sha_short: &str, name: &str, detail: &str, url: Option<&str>) -> String {
    let link = url.map(|u| format!(" ({u})")).unwrap_or_default();
    format!(
        "CI check `{name}` {detail} on {sha_short}{link}, so it does not go to {env}. Fix it and push again; a lead \
         can override with --force \"reason\". Nothing was changed."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, state: CheckState) -> Check {
        Check { name: name.into(), state, detail: format!("{state:?}"), url: Some(format!("https://ci/{name}")) }
    }

    fn named(names: &[&str]) -> RequiredChecks {
        RequiredChecks::Named(names.iter().map(|n| (*n).to_owned()).collect())
    }

    #[bounded::test]
    fn named_checks_pass_only_when_each_passed() {
        let checks = [check("ci/test", CheckState::Passed), check("lint", CheckState::Passed)];
        assert_eq!(decide(&named(&["ci/test", "lint"]), &checks), Verdict::Pass);
        // Checks nobody asked for do not matter.
        let extra = [check("ci/test", CheckState::Passed), check("flaky", CheckState::Failed)];
        assert_eq!(decide(&named(&["ci/test"]), &extra), Verdict::Pass);
    }

    #[bounded::test]
    fn a_failure_wins_over_pending_and_names_its_link() {
        let checks = [check("ci/test", CheckState::Pending), check("lint", CheckState::Failed)];
        assert_eq!(
            decide(&named(&["ci/test", "lint"]), &checks),
            Verdict::Failed { name: "lint".into(), detail: "Failed".into(), url: Some("https://ci/lint".into()) }
        );
    }

    #[bounded::test]
    fn pending_and_missing_wait() {
        let checks = [check("ci/test", CheckState::Pending)];
        let verdict = decide(&named(&["ci/test", "lint"]), &checks);
        assert_eq!(verdict, Verdict::Pending { names: vec!["ci/test".into(), "lint (not reported yet)".into()] });
        assert!(verdict.waits());
        assert_eq!(verdict.waiting_for(), "ci/test, lint (not reported yet)");
        let missing = decide(&named(&["lint"]), &[check("ci/test", CheckState::Passed)]);
        assert_eq!(missing, Verdict::Missing { names: vec!["lint".into()] });
        assert_eq!(missing.waiting_for(), "lint (not reported yet)");
    }

    #[bounded::test]
    fn all_means_every_reported_check_and_at_least_one() {
        assert_eq!(decide(&RequiredChecks::All, &[]), Verdict::Missing { names: vec![] });
        let checks = [check("a", CheckState::Passed), check("b", CheckState::Pending)];
        assert_eq!(decide(&RequiredChecks::All, &checks), Verdict::Pending { names: vec!["b".into()] });
        let checks = [check("a", CheckState::Passed), check("b", CheckState::Passed)];
        assert_eq!(decide(&RequiredChecks::All, &checks), Verdict::Pass);
    }

    #[bounded::test]
    fn a_name_reported_twice_counts_by_its_worst_report() {
        let checks = [check("ci", CheckState::Passed), check("ci", CheckState::Failed)];
        assert!(matches!(decide(&named(&["ci"]), &checks), Verdict::Failed { .. }));
        let checks = [check("ci", CheckState::Pending), check("ci", CheckState::Passed)];
        assert!(matches!(decide(&named(&["ci"]), &checks), Verdict::Pending { .. }));
    }

    #[bounded::test]
    fn the_documented_samples_parse() {
        let status = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/contracts/github/commit.combined-status.response.json"
        ))
        .unwrap();
        let checks = parse_combined_status(&status).unwrap();
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].name, "continuous-integration/jenkins");
        assert_eq!(checks[0].state, CheckState::Passed);
        assert_eq!(checks[0].url.as_deref(), Some("https://ci.example.com/1000/output"));
        assert_eq!(checks[1].state, CheckState::Passed);
        let runs = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/contracts/github/commit.check-runs.response.json"
        ))
        .unwrap();
        let (total, checks) = parse_check_runs(&runs).unwrap();
        assert_eq!(total, 1);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].name, "mighty_readme");
        assert_eq!(checks[0].state, CheckState::Passed);
        assert_eq!(checks[0].detail, "neutral");
        assert_eq!(checks[0].url.as_deref(), Some("https://github.com/github/hello-world/runs/4"));
    }

    #[bounded::test]
    fn check_run_states_map_to_the_gate() {
        let body = |status: &str, conclusion: &str| {
            format!(
                r#"{{"total_count":1,"check_runs":[{{"id":1,"name":"t","status":"{status}","conclusion":{conclusion},"html_url":null,"details_url":"https://d"}}]}}"#
            )
        };
        let state = |status, conclusion| parse_check_runs(&body(status, conclusion)).unwrap().1[0].state;
        assert_eq!(state("queued", "null"), CheckState::Pending);
        assert_eq!(state("in_progress", "null"), CheckState::Pending);
        assert_eq!(state("completed", "\"success\""), CheckState::Passed);
        assert_eq!(state("completed", "\"skipped\""), CheckState::Passed);
        assert_eq!(state("completed", "\"timed_out\""), CheckState::Failed);
        assert_eq!(state("completed", "\"cancelled\""), CheckState::Failed);
        assert_eq!(state("completed", "null"), CheckState::Failed);
        assert_eq!(parse_check_runs(&body("queued", "null")).unwrap().1[0].url.as_deref(), Some("https://d"));
        // A re-run (higher id) replaces the earlier run of the same name.
        let rerun = r#"{"total_count":2,"check_runs":[
            {"id":7,"name":"t","status":"completed","conclusion":"success","html_url":"https://7","details_url":null},
            {"id":3,"name":"t","status":"completed","conclusion":"failure","html_url":"https://3","details_url":null}]}"#;
        let (_, checks) = parse_check_runs(rerun).unwrap();
        assert_eq!((checks.len(), checks[0].state), (1, CheckState::Passed));
        assert!(parse_check_runs("{\"check_runs\": 3}").is_err());
        assert!(parse_combined_status("[]").is_err());
    }
}
