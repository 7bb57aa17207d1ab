//! Locks and claims. A running deploy holds its environment; a personal branch claims it for
//! its owner until `/release`, a lead's `/unlock`, or the claim's time limit; `/lock` holds it
//! with a reason. All decisions here are pure: state and `now` in, decision out.

use super::gitref::GitRef;
use super::{Refusal, age};
use crate::release::environment::Environment;
use crate::release::people::{Person, Role};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A claim or lock on an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// What kind of hold.
    pub kind: HoldKind,
    /// Person id of the holder.
    pub holder: String,
    /// Their display name.
    pub holder_name: String,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// Kinds of hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HoldKind {
    /// A personal branch is deployed; it expires.
    Claim {
        /// The branch.
        git_ref: GitRef,
        /// When it lapses.
        expires_at: DateTime<Utc>,
    },
    /// An explicit lock.
    Lock {
        /// Why.
        reason: String,
    },
}

impl Hold {
    /// Whether a claim has lapsed (locks do not lapse).
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        matches!(&self.kind, HoldKind::Claim { expires_at, .. } if *expires_at <= now)
    }

    /// One line for people.
    pub fn describe(&self, env: &str, now: DateTime<Utc>) -> String {
        match &self.kind {
            HoldKind::Claim { git_ref, expires_at } => {
                if *expires_at <= now {
                    format!("{env}'s claim by {} for `{git_ref}` has expired", self.holder_name)
                } else {
                    format!(
                        "{env} is claimed by {} for `{git_ref}` (for {}, expires in {})",
                        self.holder_name,
                        age(now, self.since),
                        age(*expires_at, now)
                    )
                }
            }
            HoldKind::Lock { reason } => {
                format!("{env} is locked by {} (for {}): {reason}", self.holder_name, age(now, self.since))
            }
        }
    }
}

/// The deploy currently running on an environment: the environment's deploy lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveDeploy {
    /// The deploy record.
    pub deploy_id: u64,
    /// Who runs it.
    pub who_name: String,
    /// What.
    pub git_ref: GitRef,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// What a decision does to the environment's hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldChange {
    /// Leave it as it is.
    Keep,
    /// Set (or renew) this hold.
    Set(Hold),
    /// Remove it.
    Clear,
}

/// The current hold, treating a lapsed claim as no hold.
fn live(hold: Option<&Hold>, now: DateTime<Utc>) -> Option<&Hold> {
    hold.filter(|h| !h.is_expired(now))
}

fn refuse_busy(env: &str, active: &ActiveDeploy, now: DateTime<Utc>) -> Refusal {
    Refusal::new(format!(
        "{} is deploying `{}` to {env} (started {} ago). Wait for it to finish; `/status {env}` shows its progress.",
        active.who_name,
        active.git_ref,
        age(now, active.since)
    ))
}

fn refuse_held(env: &str, hold: &Hold, now: DateTime<Utc>) -> Refusal {
    let what_to_do = match hold.kind {
        HoldKind::Claim { .. } => {
            format!("Ask {} to `/release {env}`, or a lead to `/unlock {env}`.", hold.holder_name)
        }
        HoldKind::Lock { .. } => {
            format!("Ask {} or a lead to `/unlock {env}`.", hold.holder_name)
        }
    };
    Refusal::new(format!("{}. {what_to_do}", hold.describe(env, now)))
}

/// Decides whether `who` may deploy `git_ref` to `env` now, and what that does to the hold.
pub fn admit_deploy(
    now: DateTime<Utc>,
    env: &Environment,
    who: &Person,
    git_ref: &GitRef,
    hold: Option<&Hold>,
    active: Option<&ActiveDeploy>,
) -> Result<HoldChange, Refusal> {
    if let Some(active) = active {
        return Err(refuse_busy(&env.name, active, now));
    }
    let hold = live(hold, now);
    if let Some(hold) = hold
        && hold.holder != who.id
    {
        return Err(refuse_held(&env.name, hold, now));
    }
    let personal = *git_ref != env.branch;
    if personal {
        let since = match hold {
            Some(h) if matches!(h.kind, HoldKind::Claim { .. }) => h.since,
            Some(_) => return Ok(HoldChange::Keep),
            None => now,
        };
        let ttl = chrono::Duration::from_std(env.claim_ttl).unwrap_or(chrono::Duration::hours(8));
        return Ok(HoldChange::Set(Hold {
            kind: HoldKind::Claim { git_ref: git_ref.clone(), expires_at: now + ttl },
            holder: who.id.clone(),
            holder_name: who.name.clone(),
            since,
        }));
    }
    match hold {
        Some(h) if matches!(h.kind, HoldKind::Claim { .. }) => Ok(HoldChange::Clear),
        _ => Ok(HoldChange::Keep),
    }
}

/// Decides a `/release`: only the claim's holder gives it back.
pub fn admit_release(
    now: DateTime<Utc>,
    env: &Environment,
    who: &Person,
    hold: Option<&Hold>,
    active: Option<&ActiveDeploy>,
) -> Result<(), Refusal> {
    let name = &env.name;
    match hold {
        None => Err(Refusal::new(format!(
            "{name} is not claimed, so there is nothing to release. `/status {name}` shows who deployed what."
        ))),
        Some(h) if h.holder != who.id => Err(Refusal::new(format!(
            "You do not hold {name}; {} does. Only the holder can `/release {name}`; a lead can `/unlock {name}`.",
            h.holder_name
        ))),
        Some(Hold { kind: HoldKind::Lock { .. }, .. }) => {
            Err(Refusal::new(format!("{name} is locked, not claimed. Use `/unlock {name}` to lift your lock.")))
        }
        Some(_) => match active {
            Some(active) => Err(refuse_busy(name, active, now)),
            None => Ok(()),
        },
    }
}

/// Decides a `/lock`: leads, or the person who holds the environment's claim.
pub fn admit_lock(
    now: DateTime<Utc>,
    env: &Environment,
    who: &Person,
    reason: &str,
    hold: Option<&Hold>,
) -> Result<Hold, Refusal> {
    let name = &env.name;
    match live(hold, now) {
        Some(h) if h.holder != who.id => return Err(refuse_held(name, h, now)),
        Some(_) => {}
        None if !who.has(Role::Lead) => {
            return Err(Refusal::new(format!(
                "Only a lead, or the person who holds {name}'s claim, can lock it. Ask a lead to `/lock {name} REASON`."
            )));
        }
        None => {}
    }
    Ok(Hold {
        kind: HoldKind::Lock { reason: reason.to_owned() },
        holder: who.id.clone(),
        holder_name: who.name.clone(),
        since: now,
    })
}

/// Decides an `/unlock`: the holder or a lead.
pub fn admit_unlock(env: &Environment, who: &Person, hold: Option<&Hold>) -> Result<(), Refusal> {
    let name = &env.name;
    match hold {
        None => Err(Refusal::new(format!("{name} is neither locked nor claimed."))),
        Some(h) if h.holder != who.id && !who.has(Role::Lead) => Err(Refusal::new(format!(
            "{name} is held by {}. Only they or a lead can unlock it; ask them to `/release {name}` or `/unlock {name}`.",
            h.holder_name
        ))),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TransportConfig, default_steps};
    use std::time::Duration;

    fn env() -> Environment {
        Environment {
            name: "dev".into(),
            aliases: Vec::new(),
            url: None,
            branch: GitRef::parse("dev").unwrap(),
            transport: TransportConfig::Local { dir: "/tmp".into() },
            steps: default_steps(),
            health_url: None,
            health_timeout: Duration::from_secs(30),
            migrations: None,
            approvals: 0,
            promote: crate::config::PromoteMode::Merge,
            personal_branches: true,
            requires_approval: false,
            claim_ttl: Duration::from_secs(8 * 3600),
            step_timeout: Duration::from_secs(60),
            ci: None,
        }
    }

    fn person(id: &str, role: Role) -> Person {
        Person::for_tests(id, &[role])
    }

    fn at(hour: u32) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 23, hour, 0, 0).unwrap()
    }

    fn r(s: &str) -> GitRef {
        GitRef::parse(s).unwrap()
    }

    #[test]
    fn a_personal_branch_claims_for_the_ttl() {
        let grace = person("grace", Role::Developer);
        let change = admit_deploy(at(9), &env(), &grace, &r("feature/a"), None, None).unwrap();
        let HoldChange::Set(hold) = change else { panic!("{change:?}") };
        assert_eq!(hold.holder, "grace");
        assert_eq!(hold.kind, HoldKind::Claim { git_ref: r("feature/a"), expires_at: at(17) });
    }

    #[test]
    fn another_persons_deploy_is_refused_while_the_claim_stands_and_names_the_holder() {
        let grace = person("grace", Role::Developer);
        let linus = person("linus", Role::Developer);
        let HoldChange::Set(hold) = admit_deploy(at(9), &env(), &grace, &r("feature/a"), None, None).unwrap() else {
            panic!()
        };
        let err = admit_deploy(at(10), &env(), &linus, &r("feature/b"), Some(&hold), None).unwrap_err();
        assert!(err.0.contains("GRACE") && err.0.contains("/release dev"), "{}", err.0);
        // Even the environment's own branch waits for the claim.
        assert!(admit_deploy(at(10), &env(), &linus, &r("dev"), Some(&hold), None).is_err());
        // After the TTL the claim no longer stands.
        let change = admit_deploy(at(18), &env(), &linus, &r("feature/b"), Some(&hold), None).unwrap();
        assert!(matches!(change, HoldChange::Set(h) if h.holder == "linus"));
    }

    #[test]
    fn the_holder_redeploying_renews_and_deploying_the_base_branch_ends_the_claim() {
        let grace = person("grace", Role::Developer);
        let HoldChange::Set(hold) = admit_deploy(at(9), &env(), &grace, &r("feature/a"), None, None).unwrap() else {
            panic!()
        };
        let renewed = admit_deploy(at(12), &env(), &grace, &r("feature/a2"), Some(&hold), None).unwrap();
        assert!(matches!(renewed, HoldChange::Set(Hold { since, .. }) if since == at(9)));
        assert_eq!(admit_deploy(at(12), &env(), &grace, &r("dev"), Some(&hold), None), Ok(HoldChange::Clear));
    }

    #[test]
    fn a_running_deploy_refuses_a_second_one() {
        let active = ActiveDeploy { deploy_id: 1, who_name: "Ada".into(), git_ref: r("dev"), since: at(9) };
        let err = admit_deploy(at(9), &env(), &person("ada", Role::Lead), &r("dev"), None, Some(&active)).unwrap_err();
        assert!(err.0.contains("Ada is deploying `dev`"), "{}", err.0);
    }

    #[test]
    fn release_and_unlock_rules() {
        let grace = person("grace", Role::Developer);
        let linus = person("linus", Role::Developer);
        let ada = person("ada", Role::Lead);
        let HoldChange::Set(hold) = admit_deploy(at(9), &env(), &grace, &r("feature/a"), None, None).unwrap() else {
            panic!()
        };
        assert!(admit_release(at(10), &env(), &linus, Some(&hold), None).unwrap_err().0.contains("GRACE does"));
        assert!(admit_release(at(10), &env(), &grace, None, None).is_err());
        assert!(admit_release(at(10), &env(), &grace, Some(&hold), None).is_ok());
        assert!(admit_unlock(&env(), &linus, Some(&hold)).is_err());
        assert!(admit_unlock(&env(), &grace, Some(&hold)).is_ok());
        assert!(admit_unlock(&env(), &ada, Some(&hold)).is_ok());
    }

    #[test]
    fn locks_are_for_leads_and_holders() {
        let grace = person("grace", Role::Developer);
        let ada = person("ada", Role::Lead);
        assert!(admit_lock(at(9), &env(), &grace, "qa", None).is_err());
        let lock = admit_lock(at(9), &env(), &ada, "qa", None).unwrap();
        let err = admit_deploy(at(10), &env(), &grace, &r("dev"), Some(&lock), None).unwrap_err();
        assert!(err.0.contains("locked by ADA") && err.0.contains("qa"), "{}", err.0);
    }
}

/// Someone waiting for an environment to be free, after a `/deploy` refused because it was
/// held or deploying: with `--notify` they are told once when it is free; with `--when-free`
/// their deploy starts then (their permissions and the slot checked again at that time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    /// Person id.
    pub person: String,
    /// Their display name when they asked.
    pub name: String,
    /// The platform they asked on, and their id there (the deploy runs as them).
    pub platform: String,
    /// See `platform`.
    pub user_id: String,
    /// What they want deployed.
    pub git_ref: GitRef,
    /// Deploy it when free (`--when-free`), or only tell them (`--notify`).
    pub deploy: bool,
    /// Since when they wait.
    pub since: DateTime<Utc>,
}

impl Waiter {
    /// One line for `/status`: who waits for what, since when.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        let what = if self.deploy { "deploys `{}` when free" } else { "to be told (for `{}`)" };
        format!("{} {}, for {}", self.name, what.replace("{}", self.git_ref.as_str()), age(now, self.since))
    }
}

/// Whether `env` is free for a waiter: no deploy runs or is starting, and no live hold of
/// someone else's.
pub fn is_free_for(waiter: &Waiter, hold: Option<&Hold>, active: Option<&ActiveDeploy>, now: DateTime<Utc>) -> bool {
    active.is_none() && live(hold, now).is_none_or(|h| h.holder == waiter.person)
}
