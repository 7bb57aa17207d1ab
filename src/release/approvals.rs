//! Approvals of promotion requests, by reaction. Pure: the request, a vote, `now` in; the new
//! state out. The engine keeps requests durable and applies these rules.
//!
//! An approval is bound to exactly what the leads saw: `(from, to, sha, requester)`. Only
//! configured leads count (by platform user id or a platform-vouched lead role, never by
//! display name), the requester cannot approve their own request, any lead's ❌ rejects,
//! removing a reaction withdraws that vote, requests expire, and a request whose source
//! commit changed is void.
//!
//! Approval stays live until execution starts: while an approved request waits (for the
//! target's slot), a withdrawal that drops it below quorum makes it pending again, a lead's ❌
//! rejects it, it expires, it is void when the source moves, its requester or any lead can
//! cancel it, and a lead can run it now with an emergency reason. Once execution has started,
//! votes change nothing ([`VoteOutcome::TooLate`]).

use super::gitref::Sha;
use crate::release::people::{Person, Role};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Reactions that approve (Slack names and Discord's unicode).
pub const APPROVE: [&str; 4] = ["white_check_mark", "heavy_check_mark", "✅", "✔️"];
/// Reactions that reject.
pub const REJECT: [&str; 3] = ["x", "❌", "no_entry"];

/// A vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    /// ✅
    Approve,
    /// ❌
    Reject,
}

impl Vote {
    /// The vote an emoji casts, if any.
    pub fn from_emoji(emoji: &str) -> Option<Self> {
        let emoji = emoji.trim_matches(':');
        if APPROVE.contains(&emoji) {
            Some(Vote::Approve)
        } else if REJECT.contains(&emoji) {
            Some(Vote::Reject)
        } else {
            None
        }
    }
}

/// One lead's vote, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ballot {
    /// Approve or reject.
    pub vote: Vote,
    /// The lead's display name when they voted.
    pub name: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Where a promotion request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for votes.
    Pending,
    /// Quorum reached; execution follows (in the target's slot, or now in an emergency).
    Approved {
        /// When quorum was reached.
        at: DateTime<Utc>,
    },
    /// A lead rejected it.
    Rejected {
        /// Who.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Nobody decided in time (or an approved request waited past its expiry).
    Expired,
    /// Its requester or a lead cancelled it before execution started.
    Cancelled {
        /// Who (display name).
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The source changed, or the request was replaced; a new request is needed.
    Void {
        /// Why.
        why: String,
    },
    /// Being carried out: the stage says how far, so a restart resumes instead of redoing.
    Executing {
        /// How far.
        stage: Stage,
    },
    /// Carried out: the deploy that shipped it.
    Done {
        /// The deploy record.
        deploy_id: u64,
    },
    /// Execution failed (a merge conflict, a failed deploy); nothing more will happen.
    Failed {
        /// What went wrong.
        why: String,
    },
}

/// Execution stages, recorded before each external effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// About to merge the source commit into the target branch.
    Merging,
    /// Merged (or nothing to merge); deploying this commit.
    Deploying {
        /// The commit to deploy on the target.
        sha: Sha,
        /// The deploy record, once started.
        deploy_id: Option<u64>,
        /// The GitHub deployment, once created.
        github_deployment: Option<u64>,
    },
}

/// A request to promote `sha` (what runs on `from`) to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRequest {
    /// Store id.
    pub id: u64,
    /// Source environment.
    pub from: String,
    /// Target environment.
    pub to: String,
    /// The exact commit running on `from` when the request was made.
    pub sha: Sha,
    /// What `to` ran then, if known.
    pub target_sha: Option<Sha>,
    /// Person id of who asked (Shipday itself for scheduled promotions).
    pub requester: String,
    /// Their display name.
    pub requester_name: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it lapses.
    pub expires_at: DateTime<Utc>,
    /// Approvals needed (0: none, e.g. dev → staging).
    pub quorum: usize,
    /// Votes by person id.
    pub votes: BTreeMap<String, Ballot>,
    /// A lead's reason to run it outside the target's slot.
    pub emergency: Option<String>,
    /// The release notes shown with it.
    pub notes: String,
    /// Where it stands.
    pub state: RequestState,
    /// A lead's reason to carry it out over the target's CI gate (`--force "reason"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_override: Option<String>,
    /// Where leads look before they vote: the commit, the compare with what the target runs
    /// now, the target's URL (each platform writes them in its own link syntax).
    #[serde(default, skip_serializing_if = "no_links")]
    pub links: Box<crate::release::deploy::DeployLinks>,
}

fn no_links(links: &crate::release::deploy::DeployLinks) -> bool {
    links.is_empty()
}

/// What a reaction did to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Not a vote that counts; why (for the log, not the channel).
    Ignored(&'static str),
    /// Recorded; still pending.
    Counted,
    /// A vote was withdrawn.
    Withdrawn,
    /// This vote completed the quorum.
    Approved,
    /// A lead rejected it.
    Rejected,
    /// A withdrawal took an approved request below its quorum: it is pending again.
    Reopened,
    /// A lead's vote after execution started: recorded in the log, changes nothing.
    TooLate,
}

impl PromotionRequest {
    /// Approvals from leads other than the requester.
    pub fn approvals(&self) -> usize {
        self.votes.iter().filter(|(id, b)| b.vote == Vote::Approve && **id != self.requester).count()
    }

    /// Whether it is still waiting for votes.
    pub fn is_open(&self) -> bool {
        self.state == RequestState::Pending
    }

    /// Whether votes, expiry, a moved source and cancelling still change it: pending, or
    /// approved but not yet being carried out.
    pub fn is_live(&self) -> bool {
        matches!(self.state, RequestState::Pending | RequestState::Approved { .. })
    }

    /// Whether execution has started (or ended): votes no longer change anything.
    pub fn has_started(&self) -> bool {
        matches!(self.state, RequestState::Executing { .. } | RequestState::Done { .. } | RequestState::Failed { .. })
    }

    /// Marks it expired if its time has passed, pending or approved-but-waiting. Returns
    /// whether it changed.
    pub fn expire(&mut self, now: DateTime<Utc>) -> bool {
        if self.is_live() && now >= self.expires_at {
            self.state = RequestState::Expired;
            return true;
        }
        false
    }

    /// Applies a reaction by `voter` (the configured person, with platform-vouched roles).
    pub fn react(&mut self, voter: Option<&Person>, emoji: &str, added: bool, now: DateTime<Utc>) -> VoteOutcome {
        if self.expire(now) {
            return VoteOutcome::Ignored("the request expired");
        }
        let Some(vote) = Vote::from_emoji(emoji) else { return VoteOutcome::Ignored("not a voting emoji") };
        let Some(voter) = voter else { return VoteOutcome::Ignored("not a configured person") };
        if !voter.has(Role::Lead) {
            return VoteOutcome::Ignored("not a lead");
        }
        if self.has_started() {
            return VoteOutcome::TooLate;
        }
        if !self.is_live() {
            return VoteOutcome::Ignored("the request is closed");
        }
        let was_approved = matches!(self.state, RequestState::Approved { .. });
        if !added {
            return match self.votes.get(&voter.id) {
                Some(ballot) if ballot.vote == vote => {
                    self.votes.remove(&voter.id);
                    if was_approved && self.approvals() < self.quorum {
                        self.state = RequestState::Pending;
                        VoteOutcome::Reopened
                    } else {
                        VoteOutcome::Withdrawn
                    }
                }
                _ => VoteOutcome::Ignored("no such vote to withdraw"),
            };
        }
        if vote == Vote::Approve && voter.id == self.requester {
            return VoteOutcome::Ignored("the requester cannot approve their own request");
        }
        self.votes.insert(voter.id.clone(), Ballot { vote, name: voter.name.clone(), at: now });
        if vote == Vote::Reject {
            self.state = RequestState::Rejected { by: voter.name.clone(), at: now };
            return VoteOutcome::Rejected;
        }
        if was_approved {
            return VoteOutcome::Counted;
        }
        if self.approvals() >= self.quorum {
            self.state = RequestState::Approved { at: now };
            return VoteOutcome::Approved;
        }
        VoteOutcome::Counted
    }

    /// Cancels it for `by`: its requester or any lead, before execution starts.
    pub fn cancel(&mut self, by: &Person, now: DateTime<Utc>) -> Result<(), String> {
        if by.id != self.requester && !by.has(Role::Lead) {
            return Err(format!(
                "Only {} (who asked) or a lead can cancel promotion #{}. Nothing was changed.",
                self.requester_name, self.id
            ));
        }
        if self.expire(now) {
            return Err(format!("Promotion #{} had already expired. Nothing was changed.", self.id));
        }
        if self.has_started() {
            return Err(format!(
                "Promotion #{} is already being carried out (or finished), so it cannot be cancelled. Nothing was changed.",
                self.id
            ));
        }
        if !self.is_live() {
            return Err(format!("Promotion #{} is already closed. Nothing was changed.", self.id));
        }
        self.state = RequestState::Cancelled { by: by.name.clone(), at: now };
        Ok(())
    }

    /// A lead runs an approved request now, outside the target's slot, for `reason`.
    pub fn run_now(&mut self, by: &Person, reason: String, now: DateTime<Utc>) -> Result<(), String> {
        if !by.has(Role::Lead) {
            return Err("Only a lead can promote with --emergency.".into());
        }
        if self.expire(now) {
            return Err(format!("Promotion #{} expired before it ran. Nothing was changed.", self.id));
        }
        match self.state {
            RequestState::Approved { .. } => {
                self.emergency = Some(reason);
                Ok(())
            }
            RequestState::Pending => Err(format!(
                "Promotion #{} still needs {} more lead approval(s) before it can run; approve it by reacting ✅ on its message. Nothing was changed.",
                self.id,
                self.quorum.saturating_sub(self.approvals())
            )),
            _ => Err(format!("Promotion #{} is already being carried out or closed. Nothing was changed.", self.id)),
        }
    }

    /// Voids the request if `from` no longer runs the approved commit.
    pub fn check_source(&mut self, current: Option<&Sha>) -> bool {
        let still = current == Some(&self.sha);
        if !still && matches!(self.state, RequestState::Pending | RequestState::Approved { .. }) {
            let now_runs = current.map(|s| s.short().to_owned()).unwrap_or_else(|| "something unknown".into());
            self.state = RequestState::Void {
                why: format!(
                    "{} changed from {} to {now_runs} after the request; ask again with `/promote {} {}`",
                    self.from,
                    self.sha.short(),
                    self.from,
                    self.to
                ),
            };
        }
        still
    }

    /// One line on what is still needed, for the edited message. Approval times are shown in
    /// `tz`, the team's zone, like every other time Shipday shows.
    pub fn tally(&self, tz: chrono_tz::Tz) -> String {
        let approvers: Vec<String> = self
            .votes
            .values()
            .filter(|b| b.vote == Vote::Approve)
            .map(|b| format!("{} ({})", b.name, b.at.with_timezone(&tz).format("%H:%M %Z")))
            .collect();
        let approved_by = if approvers.is_empty() {
            "no approvals yet".to_owned()
        } else {
            format!("approved by {}", approvers.join(", "))
        };
        match &self.state {
            RequestState::Pending => {
                let needed = self.quorum.saturating_sub(self.approvals());
                format!("{approved_by}; {needed} more lead approval(s) needed (react ✅ to approve, ❌ to reject)")
            }
            RequestState::Approved { .. } => format!("✅ {approved_by}: approved"),
            RequestState::Rejected { by, .. } => format!("❌ rejected by {by}"),
            RequestState::Expired => "⌛ expired without being carried out".into(),
            RequestState::Cancelled { by, .. } => format!("🚫 cancelled by {by}"),
            RequestState::Void { why } => format!("🚫 void: {why}"),
            RequestState::Executing { .. } => format!("⏳ {approved_by}: being carried out"),
            RequestState::Done { deploy_id } => format!("✅ {approved_by}: shipped (deploy #{deploy_id})"),
            RequestState::Failed { why } => format!("❌ failed: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, role: Option<Role>) -> Person {
        Person::for_tests(id, role.as_slice())
    }

    fn at(minute: u32) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 2, 4, minute, 0).unwrap()
    }

    fn request(quorum: usize) -> PromotionRequest {
        PromotionRequest {
            id: 1,
            from: "staging".into(),
            to: "production".into(),
            sha: Sha::parse(&"a".repeat(40)).unwrap(),
            target_sha: None,
            requester: "grace".into(),
            requester_name: "Grace".into(),
            created_at: at(0),
            expires_at: at(0) + chrono::Duration::hours(24),
            quorum,
            votes: BTreeMap::new(),
            emergency: None,
            notes: String::new(),
            state: RequestState::Pending,
            ci_override: None,
            links: Default::default(),
        }
    }

    #[test]
    fn one_lead_approves_by_default() {
        let mut r = request(1);
        assert_eq!(
            r.react(Some(&person("ada", Some(Role::Lead))), "white_check_mark", true, at(1)),
            VoteOutcome::Approved
        );
        assert_eq!(r.state, RequestState::Approved { at: at(1) });
    }

    #[test]
    fn self_approval_non_leads_strangers_and_other_emoji_do_not_count() {
        let mut r = request(1);
        let grace_lead = person("grace", Some(Role::Lead));
        assert!(matches!(r.react(Some(&grace_lead), "✅", true, at(1)), VoteOutcome::Ignored(_)));
        assert!(matches!(
            r.react(Some(&person("linus", Some(Role::Developer))), "✅", true, at(1)),
            VoteOutcome::Ignored(_)
        ));
        assert!(matches!(r.react(None, "✅", true, at(1)), VoteOutcome::Ignored(_)));
        assert!(matches!(
            r.react(Some(&person("ada", Some(Role::Lead))), "tada", true, at(1)),
            VoteOutcome::Ignored(_)
        ));
        assert_eq!(r.state, RequestState::Pending);
    }

    #[test]
    fn a_quorum_of_two_and_a_withdrawn_vote() {
        let mut r = request(2);
        let (ada, bob) = (person("ada", Some(Role::Lead)), person("bob", Some(Role::Lead)));
        assert_eq!(r.react(Some(&ada), "✅", true, at(1)), VoteOutcome::Counted);
        assert_eq!(r.react(Some(&ada), "✅", false, at(2)), VoteOutcome::Withdrawn);
        assert_eq!(r.react(Some(&bob), "✅", true, at(3)), VoteOutcome::Counted);
        assert!(r.tally(chrono_tz::UTC).contains("1 more lead approval"), "{}", r.tally(chrono_tz::UTC));
        assert_eq!(r.react(Some(&ada), "✅", true, at(4)), VoteOutcome::Approved);
        assert!(
            r.tally(chrono_tz::UTC).contains("approved by ADA") && r.tally(chrono_tz::UTC).contains("BOB"),
            "{}",
            r.tally(chrono_tz::UTC)
        );
    }

    #[test]
    fn any_leads_cross_rejects_and_votes_end() {
        let mut r = request(2);
        assert_eq!(r.react(Some(&person("ada", Some(Role::Lead))), "✅", true, at(1)), VoteOutcome::Counted);
        assert_eq!(r.react(Some(&person("bob", Some(Role::Lead))), "x", true, at(2)), VoteOutcome::Rejected);
        assert!(matches!(r.react(Some(&person("cy", Some(Role::Lead))), "✅", true, at(3)), VoteOutcome::Ignored(_)));
        assert!(r.tally(chrono_tz::UTC).contains("rejected by BOB"));
    }

    #[test]
    fn requests_expire_and_void_when_the_source_moves() {
        let mut r = request(1);
        let later = r.expires_at + chrono::Duration::minutes(1);
        assert!(matches!(r.react(Some(&person("ada", Some(Role::Lead))), "✅", true, later), VoteOutcome::Ignored(_)));
        assert_eq!(r.state, RequestState::Expired);
        let mut r = request(1);
        r.react(Some(&person("ada", Some(Role::Lead))), "✅", true, at(1));
        let other = Sha::parse(&"b".repeat(40)).unwrap();
        assert!(!r.check_source(Some(&other)));
        assert!(matches!(&r.state, RequestState::Void { why } if why.contains("/promote staging production")));
    }

    fn approved(quorum: usize) -> PromotionRequest {
        let mut r = request(quorum);
        for lead in ["ada", "bob"].iter().take(quorum) {
            r.react(Some(&person(lead, Some(Role::Lead))), "✅", true, at(1));
        }
        assert!(matches!(r.state, RequestState::Approved { .. }), "{:?}", r.state);
        r
    }

    #[test]
    fn a_withdrawal_below_quorum_makes_an_approved_request_pending_again() {
        let mut r = approved(1);
        assert_eq!(r.react(Some(&person("ada", Some(Role::Lead))), "✅", false, at(2)), VoteOutcome::Reopened);
        assert_eq!(r.state, RequestState::Pending);
        assert!(r.tally(chrono_tz::UTC).contains("1 more lead approval"), "{}", r.tally(chrono_tz::UTC));
        // A third lead's approval on a request of quorum 2 keeps it approved when one withdraws.
        let mut r = approved(2);
        assert_eq!(r.react(Some(&person("cy", Some(Role::Lead))), "✅", true, at(2)), VoteOutcome::Counted);
        assert_eq!(r.react(Some(&person("ada", Some(Role::Lead))), "✅", false, at(3)), VoteOutcome::Withdrawn);
        assert!(matches!(r.state, RequestState::Approved { .. }));
    }

    #[test]
    fn a_leads_cross_rejects_an_approved_request_that_waits() {
        let mut r = approved(1);
        assert_eq!(r.react(Some(&person("bob", Some(Role::Lead))), "x", true, at(2)), VoteOutcome::Rejected);
        assert!(matches!(&r.state, RequestState::Rejected { by, .. } if by == "BOB"));
        // A developer's ❌ is no veto.
        let mut r = approved(1);
        let outcome = r.react(Some(&person("linus", Some(Role::Developer))), "x", true, at(2));
        assert!(matches!(outcome, VoteOutcome::Ignored(_)));
        assert!(matches!(r.state, RequestState::Approved { .. }));
    }

    #[test]
    fn an_approved_request_expires_and_is_void_when_the_source_moves() {
        let mut r = approved(1);
        assert!(!r.expire(at(30)));
        assert!(r.expire(r.expires_at));
        assert_eq!(r.state, RequestState::Expired);
        let mut r = approved(1);
        assert!(!r.check_source(Some(&Sha::parse(&"c".repeat(40)).unwrap())));
        assert!(matches!(r.state, RequestState::Void { .. }));
    }

    #[test]
    fn the_requester_or_a_lead_cancels_before_execution_starts() {
        let mut r = approved(1);
        let linus = person("linus", Some(Role::Developer));
        assert!(r.cancel(&linus, at(2)).unwrap_err().contains("Only Grace (who asked) or a lead"));
        r.cancel(&person("grace", Some(Role::Developer)), at(2)).unwrap();
        assert!(matches!(&r.state, RequestState::Cancelled { by, .. } if by == "GRACE"));
        assert!(r.cancel(&person("ada", Some(Role::Lead)), at(3)).unwrap_err().contains("already closed"));
        let mut r = request(1);
        r.cancel(&person("bob", Some(Role::Lead)), at(2)).unwrap();
        assert!(r.tally(chrono_tz::UTC).contains("cancelled by BOB"));
        let mut r = approved(1);
        r.state = RequestState::Executing { stage: Stage::Merging };
        assert!(r.cancel(&person("bob", Some(Role::Lead)), at(2)).unwrap_err().contains("already being carried out"));
    }

    #[test]
    fn a_lead_runs_an_approved_request_now_with_an_emergency_reason() {
        let mut r = request(1);
        let ada = person("ada", Some(Role::Lead));
        assert!(r.run_now(&ada, "down".into(), at(2)).unwrap_err().contains("1 more lead approval"));
        let mut r = approved(1);
        assert!(r.run_now(&person("grace", Some(Role::Developer)), "down".into(), at(2)).is_err());
        r.run_now(&ada, "checkout is down".into(), at(2)).unwrap();
        assert_eq!(r.emergency.as_deref(), Some("checkout is down"));
    }

    #[test]
    fn votes_after_execution_started_change_nothing() {
        for state in [
            RequestState::Executing { stage: Stage::Merging },
            RequestState::Done { deploy_id: 3 },
            RequestState::Failed { why: "x".into() },
        ] {
            let mut r = approved(1);
            r.state = state.clone();
            let votes = r.votes.clone();
            assert_eq!(r.react(Some(&person("bob", Some(Role::Lead))), "x", true, at(2)), VoteOutcome::TooLate);
            assert_eq!(r.react(Some(&person("ada", Some(Role::Lead))), "✅", false, at(2)), VoteOutcome::TooLate);
            assert_eq!((r.state, r.votes), (state, votes));
        }
    }
}
