//! Delivery figures an engineering lead asks for (DORA's four keys), from the deploy records.
//!
//! Pure: the records and `now` in, the figures out. Over a window ending at `now`:
//! - **deploy frequency**: successful deploys per day, per environment;
//! - **change failure rate**: the share of finished deploys that failed or were interrupted,
//!   per environment;
//! - **time to restore**: the median time from a failed deploy to the next successful one in the
//!   same environment, per environment (failures not restored yet are left out);
//! - **lead time**: for each successful deploy to the last environment (production), the time
//!   since the oldest change it shipped was merged, that is since the earliest merge
//!   auto-deploy to the first environment after the previous successful production deploy;
//!   the median over the window.

use crate::release::deploy::{DeployRecord, Outcome, Trigger};
use chrono::{DateTime, TimeDelta, Utc};

/// One environment's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentFigures {
    pub env: String,
    /// Successful deploys per day over the window.
    pub deploys_per_day: f64,
    /// Failed or interrupted among finished deploys, 0 to 1; `None` with no finished deploy.
    pub change_failure_rate: Option<f64>,
    /// Median seconds from a failure to the next success; `None` when nothing was restored.
    pub time_to_restore_seconds: Option<f64>,
}

/// The figures for every environment, and the pipeline's lead time.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryFigures {
    pub environments: Vec<EnvironmentFigures>,
    /// Median seconds from merge to production; `None` without a measurable production deploy.
    pub lead_time_seconds: Option<f64>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => values.get(mid).copied(),
        _ => Some((values.get(mid - 1)? + values.get(mid)?) / 2.0),
    }
}

fn seconds(delta: TimeDelta) -> f64 {
    delta.num_milliseconds() as f64 / 1000.0
}

fn failed(record: &DeployRecord) -> bool {
    matches!(record.outcome, Outcome::Failed { .. } | Outcome::Interrupted | Outcome::Cancelled { .. })
}

/// The figures over `window` ending at `now`. `environments` are in pipeline order (dev first,
/// production last). `records` may come in any order and include running deploys.
pub fn figures(
    records: &[DeployRecord],
    environments: &[&str],
    now: DateTime<Utc>,
    window: TimeDelta,
) -> DeliveryFigures {
    let since = now - window;
    let days = (window.num_seconds() as f64 / 86_400.0).max(1.0 / 24.0);
    let mut finished: Vec<&DeployRecord> = records.iter().filter(|r| r.finished_at.is_some()).collect();
    finished.sort_by_key(|r| (r.finished_at, r.id));
    let in_window = |r: &&DeployRecord| r.finished_at.is_some_and(|at| at > since && at <= now);

    let environments_figures = environments
        .iter()
        .map(|env| {
            let own: Vec<&DeployRecord> = finished.iter().copied().filter(|r| r.env == *env).collect();
            let recent: Vec<&DeployRecord> = own.iter().copied().filter(in_window).collect();
            let succeeded = recent.iter().filter(|r| r.outcome == Outcome::Succeeded).count();
            let failures = recent.iter().filter(|r| failed(r)).count();
            let restores = recent
                .iter()
                .filter(|r| failed(r))
                .filter_map(|failure| {
                    let restored =
                        own.iter().find(|r| r.outcome == Outcome::Succeeded && r.finished_at > failure.finished_at)?;
                    Some(seconds(restored.finished_at? - failure.finished_at?))
                })
                .collect();
            EnvironmentFigures {
                env: (*env).to_owned(),
                deploys_per_day: succeeded as f64 / days,
                change_failure_rate: (succeeded + failures > 0)
                    .then(|| failures as f64 / (succeeded + failures) as f64),
                time_to_restore_seconds: median(restores),
            }
        })
        .collect();

    let lead_time_seconds = match (environments.first(), environments.last()) {
        (Some(first), Some(last)) if first != last => {
            let merges: Vec<&DeployRecord> = finished
                .iter()
                .copied()
                .filter(|r| r.env == *first && r.trigger == Trigger::Merge && r.outcome == Outcome::Succeeded)
                .collect();
            let mut previous: Option<DateTime<Utc>> = None;
            let mut leads = Vec::new();
            for shipped in finished.iter().filter(|r| r.env == *last && r.outcome == Outcome::Succeeded) {
                let oldest = merges
                    .iter()
                    .filter(|m| previous.is_none_or(|p| m.started_at > p) && m.started_at <= shipped.started_at)
                    .map(|m| m.started_at)
                    .min();
                if let (Some(oldest), Some(at)) = (oldest, shipped.finished_at)
                    && in_window(shipped)
                {
                    leads.push(seconds(at - oldest));
                }
                previous = shipped.finished_at;
            }
            median(leads)
        }
        _ => None,
    };
    DeliveryFigures { environments: environments_figures, lead_time_seconds }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::gitref::{GitRef, Sha};

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).expect("a valid instant") + TimeDelta::hours(hours)
    }

    fn deploy(id: u64, env: &str, trigger: Trigger, started: i64, outcome: Outcome) -> DeployRecord {
        DeployRecord {
            id,
            env: env.into(),
            git_ref: GitRef::parse("main").expect("a valid ref"),
            sha: Sha::parse(&"a".repeat(40)).expect("a valid sha"),
            requested_by: "ada".into(),
            requested_by_name: "Ada".into(),
            trigger,
            emergency: None,
            migrations: None,
            started_at: at(started),
            finished_at: Some(at(started) + TimeDelta::minutes(1)),
            steps: Vec::new(),
            outcome,
            tickets: Vec::new(),
            claimed_until: None,
            links: Default::default(),
        }
    }

    fn failure() -> Outcome {
        Outcome::Failed { step: "migrate".into(), reason: "exit 1".into(), state_unknown: false }
    }

    #[test]
    fn frequency_failure_rate_restore_and_lead_time_follow_their_definitions() {
        let records = vec![
            deploy(1, "dev", Trigger::Merge, 0, Outcome::Succeeded),
            deploy(2, "dev", Trigger::Merge, 10, Outcome::Succeeded),
            deploy(3, "production", Trigger::Promotion, 24, Outcome::Succeeded),
            deploy(4, "dev", Trigger::Merge, 30, Outcome::Succeeded),
            deploy(5, "production", Trigger::Promotion, 48, failure()),
            deploy(6, "production", Trigger::Promotion, 50, Outcome::Succeeded),
        ];
        let figures = figures(&records, &["dev", "production"], at(72), TimeDelta::days(7));
        let dev = figures.environments.first().expect("dev");
        let production = figures.environments.last().expect("production");
        assert!((dev.deploys_per_day - 3.0 / 7.0).abs() < 1e-9);
        assert_eq!(dev.change_failure_rate, Some(0.0));
        assert_eq!(production.change_failure_rate, Some(1.0 / 3.0));
        // Restored two hours after the failure.
        assert_eq!(production.time_to_restore_seconds, Some(7200.0));
        // Production #3 shipped the merge of hour 0 (24 h + 1 min); #6 the merge of hour 30
        // (20 h + 1 min): the median of two is their mean.
        assert_eq!(figures.lead_time_seconds, Some((24.0 * 3600.0 + 60.0 + 20.0 * 3600.0 + 60.0) / 2.0));
    }

    #[test]
    fn nothing_deployed_gives_no_rates_instead_of_zero_divided_by_zero() {
        let figures = figures(&[], &["dev", "production"], at(0), TimeDelta::days(7));
        assert!(figures.environments.iter().all(|e| e.change_failure_rate.is_none() && e.deploys_per_day == 0.0));
        assert_eq!(figures.lead_time_seconds, None);
    }

    #[test]
    fn a_failure_not_restored_yet_has_no_restore_time() {
        let records = vec![deploy(1, "staging", Trigger::Command, 0, failure())];
        let figures = figures(&records, &["staging"], at(5), TimeDelta::days(7));
        let staging = figures.environments.first().expect("staging");
        assert_eq!(staging.change_failure_rate, Some(1.0));
        assert_eq!(staging.time_to_restore_seconds, None);
    }
}
