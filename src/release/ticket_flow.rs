//! How Jira tickets follow the code, as pure decisions (time comes in as `now`): which deploys
//! ship tickets and what they are compared with, the outbox's moves and their retry schedule,
//! who may pass a ticket, and which tickets in Staging do not match what was deployed.

use super::Refusal;
use super::deploy::{DeployRecord, Observation, Outcome, Trigger};
use super::gitref::Sha;
use super::plan::{host_script, quote};
use super::tickets::TicketKey;
use crate::release::environment::Environment;
use crate::release::people::{Person, Role};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A move is given up after this many attempts…
pub const MAX_ATTEMPTS: u32 = 12;
/// …or once it has been failing for this long, whichever comes first.
pub const GIVE_UP_AFTER: Duration = Duration::hours(24);
/// The wait after the first failed attempt; it doubles after each further one.
const FIRST_RETRY: Duration = Duration::seconds(30);
/// The longest wait between two attempts, so a long outage is still retried a few times a day.
const LONGEST_RETRY: Duration = Duration::hours(4);
/// Most commits a deploy's ticket scan reads; a longer range is not one release's work.
const SCAN_MAX_COMMITS: u32 = 2000;

/// One ticket move waiting for (or done by) the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketMove {
    /// Outbox id, increasing: moves of one ticket are delivered in this order.
    pub id: u64,
    /// The ticket.
    pub key: TicketKey,
    /// Only move it from this column (a deploy never drags a card backwards); `None`: from any.
    pub from: Option<String>,
    /// The column it goes to.
    pub to: String,
    /// Why, for people (`deploy #12 of `dev` to dev`).
    pub reason: String,
    /// The deploy that shipped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_id: Option<u64>,
    /// That deploy's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Whether to tell the assignee once it moved (a dev deploy: "on dev, yours to test").
    #[serde(default)]
    pub mention_assignee: bool,
    /// When it was queued.
    pub requested_at: DateTime<Utc>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not tried again before this.
    pub next_attempt_at: DateTime<Utc>,
    /// What the last failed attempt saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Where it stands.
    pub state: MoveState,
}

/// Where a ticket move stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MoveState {
    /// Waiting for its next attempt.
    Pending,
    /// Jira has it where it should be (or it was left alone on purpose).
    Done {
        /// What happened, for people (`moved from Pull Request`, `already there`).
        outcome: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Shipday stopped trying; a person has to move it.
    GivenUp {
        /// Why, for people.
        why: String,
        /// When.
        at: DateTime<Utc>,
    },
}

impl TicketMove {
    /// A new move, due at once.
    pub fn new(id: u64, key: TicketKey, from: Option<String>, to: String, reason: String, now: DateTime<Utc>) -> Self {
        Self {
            id,
            key,
            from,
            to,
            reason,
            deploy_id: None,
            env: None,
            mention_assignee: false,
            requested_at: now,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            state: MoveState::Pending,
        }
    }

    /// Whether it waits for an attempt.
    pub fn is_pending(&self) -> bool {
        self.state == MoveState::Pending
    }

    /// Whether its next attempt is due.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.is_pending() && self.next_attempt_at <= now
    }

    /// Records an attempt that settled it.
    pub fn delivered(&mut self, outcome: impl Into<String>, now: DateTime<Utc>) {
        self.attempts += 1;
        self.state = MoveState::Done { outcome: outcome.into(), at: now };
    }

    /// Records a failed attempt: a transient failure (Jira down or busy) is tried again after
    /// a growing wait, until [`MAX_ATTEMPTS`] or [`GIVE_UP_AFTER`]; anything else needs a
    /// person at once. Returns whether the move was given up.
    pub fn failed(&mut self, why: impl Into<String>, transient: bool, now: DateTime<Utc>) -> bool {
        let why = why.into();
        self.attempts += 1;
        let next = now + retry_delay(self.attempts);
        let out_of_time = next - self.requested_at > GIVE_UP_AFTER;
        if transient && self.attempts < MAX_ATTEMPTS && !out_of_time {
            self.next_attempt_at = next;
            self.last_error = Some(why);
            return false;
        }
        let why = if transient {
            format!(
                "{why} (still failing after {} attempts over {})",
                self.attempts,
                super::age(now, self.requested_at)
            )
        } else {
            why
        };
        self.state = MoveState::GivenUp { why, at: now };
        true
    }

    /// The column it goes to, with the one it must come from.
    pub fn describe(&self) -> String {
        match &self.from {
            Some(from) => format!("{} from {from} to {}", self.key, self.to),
            None => format!("{} to {}", self.key, self.to),
        }
    }
}

/// What the team channel is told about the moves Shipday gave up: one message for a deploy's
/// whole batch (`given_up`, the moves of one deploy that were given up), however many tickets
/// it shipped. One per move once turned a single release into seven warnings in a row. `None`
/// when nothing was given up.
pub fn given_up_notice(given_up: &[TicketMove]) -> Option<String> {
    let why = |m: &TicketMove| match &m.state {
        MoveState::GivenUp { why, .. } => why.clone(),
        _ => "not given up".to_owned(),
    };
    match given_up {
        [] => None,
        [one] => Some(format!(
            "⚠️ Shipday gave up moving {} in Jira ({}): {}. Move it by hand; `/status` lists moves given up.",
            one.describe(),
            one.reason,
            why(one)
        )),
        [first, ..] => {
            let lines: Vec<String> = given_up.iter().map(|m| format!("• {}: {}", m.describe(), why(m))).collect();
            Some(format!(
                "⚠️ Shipday gave up moving {} tickets in Jira ({}). Move them by hand; `/status` lists moves given up:\n{}",
                given_up.len(),
                first.reason,
                lines.join("\n")
            ))
        }
    }
}

/// The wait after `attempts` failed attempts: 30 s, 1 min, 2 min… up to 4 h.
pub fn retry_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    (FIRST_RETRY * (1 << doublings)).min(LONGEST_RETRY)
}

/// A deploy's commits to read for ticket keys: `base..head` in `env`'s checkout. Kept in the
/// store until read, so a restart between the deploy and the read loses nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketScan {
    /// The deploy that shipped the commits.
    pub deploy_id: u64,
    /// Its environment.
    pub env: String,
    /// What the environment ran before (from the deploy records or the start-up HEAD read).
    pub base: Sha,
    /// What it runs now.
    pub head: Sha,
}

/// What starts each commit in a scan's output: a record separator (no commit message holds
/// one in practice, and if one does its commit is merely split, never mixed with another).
const COMMIT_START: char = '\u{1e}';

impl TicketScan {
    /// The read-only script that prints each commit of `base..head` on the host: its SHA on
    /// one line, then its message, each commit starting with [`COMMIT_START`]
    /// (read back by [`parse_scan`]).
    pub fn script(&self, env: &Environment) -> String {
        let range = format!("{}..{}", self.base, self.head);
        let command = format!("git log --format=%x1e%H%n%B -n {SCAN_MAX_COMMITS} {}", quote(&range));
        host_script(env, &command, std::time::Duration::from_secs(60))
    }
}

/// A scan's output as `(sha, message)` pairs. Text before the first commit, or a commit whose
/// first line is not a SHA, keeps its words as a message with no SHA (its keys still count;
/// it just matches no pull request).
pub fn parse_scan(output: &str) -> Vec<(String, String)> {
    output
        .split(COMMIT_START)
        .filter(|chunk| !chunk.trim().is_empty())
        .map(|chunk| {
            let (first, rest) = chunk.split_once('\n').unwrap_or((chunk, ""));
            match Sha::parse(first.trim()) {
                Ok(sha) => (sha.as_str().to_owned(), rest.to_owned()),
                Err(_) => (String::new(), chunk.to_owned()),
            }
        })
        .collect()
}

/// Whether a finished deploy ships tickets: it succeeded, and it is not a personal branch
/// (a `/deploy` of a branch other than the environment's own), whose work is not merged yet.
pub fn ships_tickets(env: &Environment, record: &DeployRecord) -> bool {
    record.outcome == Outcome::Succeeded && !is_personal(env, record)
}

fn is_personal(env: &Environment, record: &DeployRecord) -> bool {
    record.trigger == Trigger::Command && record.git_ref != env.branch
}

/// What `record` is compared with to find the commits it shipped: the newest earlier
/// successful deploy of `env` that was not a personal branch (`history` is newest first);
/// without one, the HEAD read on the host at start-up, if that was before this deploy. `None`
/// when nothing is known or nothing changed.
pub fn scan_base(
    env: &Environment,
    record: &DeployRecord,
    history: &[DeployRecord],
    observed: Option<&Observation>,
) -> Option<Sha> {
    let earlier = history
        .iter()
        .filter(|d| d.id < record.id && d.outcome == Outcome::Succeeded && !is_personal(env, d))
        .map(|d| d.sha.clone())
        .next();
    let base = earlier.or_else(|| {
        let observed = observed.filter(|o| o.at <= record.started_at)?;
        observed.head.clone().ok()
    })?;
    (base != record.sha).then_some(base)
}

/// `/ticket KEY pass`: whether `person` may pass a ticket that is in `status` and assigned to
/// `assignee` (Jira account id, name shown), where tested tickets wait in `dev_testing`. The
/// drag window is checked before, by [`super::policy::check_drag_window`].
pub fn check_pass(
    key: &TicketKey,
    status: &str,
    assignee: Option<(&str, &str)>,
    person: &Person,
    dev_testing: &str,
) -> Result<(), Refusal> {
    if !status.trim().eq_ignore_ascii_case(dev_testing.trim()) {
        return Err(Refusal::new(format!("{key} is in {status}, not {dev_testing}.")));
    }
    if person.has(Role::Lead) {
        return Ok(());
    }
    match assignee {
        Some((account, _)) if person.jira.as_deref() == Some(account) => Ok(()),
        Some((_, name)) => Err(Refusal::new(format!("Only the assignee ({name}) or a lead can pass {key}."))),
        None => Err(Refusal::new(format!("{key} has no assignee in Jira, so only a lead can pass it."))),
    }
}

/// Where Shipday's deploy records say each ticket's code is: ticket → environments, each with
/// the newest successful deploy there that shipped it. `history` is per environment, newest
/// first, in promotion order.
pub fn where_tickets_are(history: &[(String, Vec<DeployRecord>)]) -> BTreeMap<String, Vec<(String, DeployRecord)>> {
    let mut found: BTreeMap<String, Vec<(String, DeployRecord)>> = BTreeMap::new();
    for (env, records) in history {
        for record in records.iter().filter(|r| r.outcome == Outcome::Succeeded) {
            for key in &record.tickets {
                let places = found.entry(key.clone()).or_default();
                if !places.iter().any(|(e, _)| e == env) {
                    places.push((env.clone(), record.clone()));
                }
            }
        }
    }
    found
}

/// Tickets in Staging, sorted by what the deploy records say about their code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagingCheck {
    /// Their code is on staging.
    pub on_staging: Vec<String>,
    /// Their code is on dev but not on staging yet: they go with staging's next deploy.
    pub waiting: Vec<String>,
    /// Drift: no deploy put their code on dev or staging, so nobody can have tested them there.
    pub drift: Vec<String>,
}

/// Sorts `tickets` (keys found in Staging) by where their code is, per `places`
/// ([`where_tickets_are`]); `dev` and `staging` name those environments.
pub fn check_staging(
    tickets: &[String],
    places: &BTreeMap<String, Vec<(String, DeployRecord)>>,
    dev: &str,
    staging: &str,
) -> StagingCheck {
    let mut check = StagingCheck::default();
    for ticket in tickets {
        let on = |env: &str| places.get(ticket).is_some_and(|p| p.iter().any(|(e, _)| e == env));
        let list = if on(staging) {
            &mut check.on_staging
        } else if on(dev) {
            &mut check.waiting
        } else {
            &mut check.drift
        };
        list.push(ticket.clone());
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PromoteMode, TransportConfig, default_steps};
    use crate::release::gitref::GitRef;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 17, 0, 0).unwrap()
    }

    fn key(text: &str) -> TicketKey {
        text.parse().unwrap()
    }

    fn sha(digit: char) -> Sha {
        Sha::parse(&digit.to_string().repeat(40)).unwrap()
    }

    fn dev() -> Environment {
        Environment {
            name: "dev".into(),
            aliases: Vec::new(),
            url: None,
            branch: GitRef::parse("dev").unwrap(),
            transport: TransportConfig::Local { dir: "/srv/dev app".into() },
            steps: default_steps(),
            health_url: None,
            health_timeout: std::time::Duration::from_secs(30),
            migrations: None,
            approvals: 0,
            promote: PromoteMode::Merge,
            personal_branches: true,
            requires_approval: false,
            claim_ttl: std::time::Duration::from_secs(3600),
            step_timeout: std::time::Duration::from_secs(60),
            ci: None,
        }
    }

    fn deploy(id: u64, git_ref: &str, trigger: Trigger, sha_digit: char, outcome: Outcome) -> DeployRecord {
        DeployRecord {
            id,
            env: "dev".into(),
            git_ref: GitRef::parse(git_ref).unwrap(),
            sha: sha(sha_digit),
            requested_by: "grace".into(),
            requested_by_name: "Grace".into(),
            trigger,
            emergency: None,
            migrations: None,
            started_at: t0() + Duration::minutes(id as i64),
            finished_at: Some(t0() + Duration::minutes(id as i64 + 1)),
            steps: Vec::new(),
            outcome,
            tickets: Vec::new(),
            claimed_until: None,
            links: Default::default(),
        }
    }

    fn person(id: &str, roles: &[Role], jira: Option<&str>) -> Person {
        Person { name: id.into(), jira: jira.map(String::from), ..Person::for_tests(id, roles) }
    }

    #[test]
    fn a_scan_reads_each_commit_with_its_sha() {
        let output = format!(
            "\u{1e}{}\nSHOP-1 one\n\nbody\n\n\u{1e}{}\nMerge pull request #2\n",
            "a".repeat(40),
            "b".repeat(40)
        );
        let commits = parse_scan(&output);
        assert_eq!(commits.len(), 2);
        assert_eq!(commits[0], ("a".repeat(40), "SHOP-1 one\n\nbody\n\n".to_owned()));
        assert_eq!(commits[1].0, "b".repeat(40));
        assert_eq!(parse_scan("SHOP-4 stray words"), [(String::new(), "SHOP-4 stray words".to_owned())]);
        assert!(parse_scan("").is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { failure_persistence: None, ..proptest::prelude::ProptestConfig::with_cases(2_000) })]

        /// Whatever the host prints, reading it answers without panicking, and every word of a
        /// message is kept.
        #[test]
        fn any_scan_output_is_read_without_losing_words(output in "\\PC{0,200}") {
            let commits = parse_scan(&output);
            for (sha, message) in &commits {
                proptest::prop_assert!(sha.is_empty() || Sha::parse(sha).is_ok());
                proptest::prop_assert!(output.contains(message.as_str()));
            }
        }
    }

    #[test]
    fn transient_failures_back_off_and_are_given_up_after_twelve_attempts() {
        let mut move_ = TicketMove::new(1, key("SHOP-1"), None, "Done".into(), "deploy #1".into(), t0());
        assert!(move_.is_due(t0()));
        let mut now = t0();
        let mut waits = Vec::new();
        while move_.is_pending() {
            if move_.failed("Jira answered 503", true, now) {
                break;
            }
            waits.push(move_.next_attempt_at - now);
            assert!(!move_.is_due(now));
            now = move_.next_attempt_at;
        }
        assert_eq!(move_.attempts, MAX_ATTEMPTS);
        assert_eq!(waits[..3], [Duration::seconds(30), Duration::minutes(1), Duration::minutes(2)]);
        assert_eq!(*waits.last().unwrap(), Duration::hours(4));
        let MoveState::GivenUp { why, .. } = &move_.state else { panic!("{move_:?}") };
        assert!(why.contains("Jira answered 503") && why.contains("12 attempts"), "{why}");
        assert!(now - t0() < GIVE_UP_AFTER);
    }

    #[test]
    fn a_day_of_failures_gives_up_even_with_attempts_left_and_refusals_give_up_at_once() {
        let mut move_ = TicketMove::new(1, key("SHOP-1"), None, "Done".into(), "deploy #1".into(), t0());
        assert!(!move_.failed("down", true, t0() + Duration::hours(1)));
        let late = t0() + Duration::hours(24) - Duration::seconds(30);
        assert!(move_.failed("down", true, late), "the next try would be past 24h");

        let mut move_ = TicketMove::new(2, key("SHOP-2"), None, "Done".into(), "deploy #2".into(), t0());
        assert!(move_.failed("the workflow offers only `Staging`", false, t0()));
        assert_eq!(
            move_.state,
            MoveState::GivenUp { why: "the workflow offers only `Staging`".into(), at: t0() },
            "a refusal needs a person"
        );
    }

    #[test]
    fn a_deploys_give_ups_make_one_notice() {
        let refused = |id: u64, ticket: &str, from: &str| {
            let mut move_ = TicketMove::new(
                id,
                key(ticket),
                None,
                "Done".into(),
                "deploy #7 of `master` to production".into(),
                t0(),
            );
            let why = format!("{ticket} cannot move from `{from}` to `Done`: the workflow offers only `Staging`");
            assert!(move_.failed(why, false, t0()));
            move_
        };
        assert_eq!(given_up_notice(&[]), None);
        let one = given_up_notice(&[refused(1, "SHOP-2", "Dev Testing")]).unwrap();
        insta::assert_snapshot!("one_move_given_up", one);
        let three = [
            refused(1, "SHOP-2", "Dev Testing"),
            refused(2, "SHOP-6", "Pull Request"),
            refused(3, "SHOP-9", "Dev Testing"),
        ];
        insta::assert_snapshot!("a_deploys_moves_given_up", given_up_notice(&three).unwrap());
    }

    #[test]
    fn personal_branches_ship_no_tickets_and_are_never_the_base() {
        let env = dev();
        let personal = deploy(2, "feature/login", Trigger::Command, 'b', Outcome::Succeeded);
        assert!(!ships_tickets(&env, &personal));
        let own = deploy(3, "dev", Trigger::Command, 'c', Outcome::Succeeded);
        assert!(ships_tickets(&env, &own));
        let scheduled = deploy(3, "dev", Trigger::Scheduled, 'c', Outcome::Succeeded);
        assert!(ships_tickets(&env, &scheduled));
        let failed = deploy(3, "dev", Trigger::Command, 'c', Outcome::Interrupted);
        assert!(!ships_tickets(&env, &failed));

        let first = deploy(1, "dev", Trigger::Scheduled, 'a', Outcome::Succeeded);
        let history = [own.clone(), personal.clone(), first.clone()];
        assert_eq!(scan_base(&env, &own, &history, None), Some(sha('a')), "the personal branch is skipped");
        let redeploy = deploy(4, "dev", Trigger::Release, 'c', Outcome::Succeeded);
        assert_eq!(scan_base(&env, &redeploy, &[own.clone(), personal, first], None), None, "nothing changed");
    }

    #[test]
    fn the_first_deploy_compares_with_the_head_read_before_it() {
        let env = dev();
        let record = deploy(1, "dev", Trigger::Command, 'c', Outcome::Succeeded);
        let before = Observation { at: record.started_at, head: Ok(sha('a')) };
        assert_eq!(scan_base(&env, &record, &[], Some(&before)), Some(sha('a')));
        let after = Observation { at: record.started_at + Duration::seconds(1), head: Ok(sha('a')) };
        assert_eq!(scan_base(&env, &record, &[], Some(&after)), None);
        let unreadable = Observation { at: record.started_at, head: Err("no".into()) };
        assert_eq!(scan_base(&env, &record, &[], Some(&unreadable)), None);
        assert_eq!(scan_base(&env, &record, &[], None), None);
    }

    #[test]
    fn the_scan_is_a_quoted_read_only_git_log() {
        let scan = TicketScan { deploy_id: 1, env: "dev".into(), base: sha('a'), head: sha('b') };
        let script = scan.script(&dev());
        let range = format!("{}..{}", sha('a'), sha('b'));
        assert!(script.starts_with("cd '/srv/dev app' && exec timeout"), "{script}");
        assert!(script.contains(&format!("git log --format=%x1e%H%n%B -n 2000 {range}")), "{script}");
    }

    #[test]
    fn only_the_assignee_or_a_lead_passes_a_ticket_in_dev_testing() {
        let columns = "Dev Testing";
        let shop = key("SHOP-12");
        let grace = person("grace", &[Role::Developer], Some("acc-grace"));
        let linus = person("linus", &[Role::Developer], Some("acc-linus"));
        let ada = person("ada", &[Role::Lead], None);
        let assignee = Some(("acc-grace", "Grace"));
        assert!(check_pass(&shop, "Dev Testing", assignee, &grace, columns).is_ok());
        assert!(check_pass(&shop, "dev testing", assignee, &ada, columns).is_ok());
        let err = check_pass(&shop, "Dev Testing", assignee, &linus, columns).unwrap_err();
        assert_eq!(err.0, "Only the assignee (Grace) or a lead can pass SHOP-12.");
        let err = check_pass(&shop, "Staging", assignee, &ada, columns).unwrap_err();
        assert_eq!(err.0, "SHOP-12 is in Staging, not Dev Testing.");
        assert!(check_pass(&shop, "Dev Testing", None, &grace, columns).unwrap_err().0.contains("no assignee"));
    }

    #[test]
    fn staging_tickets_are_sorted_by_where_their_code_is() {
        let mut on_dev = deploy(1, "dev", Trigger::Scheduled, 'a', Outcome::Succeeded);
        on_dev.tickets = vec!["SHOP-1".into(), "SHOP-2".into()];
        let mut on_staging = deploy(2, "staging", Trigger::Command, 'b', Outcome::Succeeded);
        on_staging.env = "staging".into();
        on_staging.tickets = vec!["SHOP-1".into()];
        let mut failed = deploy(3, "staging", Trigger::Command, 'c', Outcome::Interrupted);
        failed.tickets = vec!["SHOP-2".into()];
        let places = where_tickets_are(&[("dev".into(), vec![on_dev]), ("staging".into(), vec![failed, on_staging])]);
        assert_eq!(
            places["SHOP-1"].iter().map(|(e, d)| (e.as_str(), d.id)).collect::<Vec<_>>(),
            [("dev", 1), ("staging", 2)]
        );
        let tickets = ["SHOP-1", "SHOP-2", "SHOP-3"].map(String::from);
        let check = check_staging(&tickets, &places, "dev", "staging");
        assert_eq!(check.on_staging, ["SHOP-1"]);
        assert_eq!(check.waiting, ["SHOP-2"]);
        assert_eq!(check.drift, ["SHOP-3"]);
    }
}
