//! The Jira outbox: ticket moves that deploys queued in the store, delivered by one worker.
//!
//! A deploy never waits for Jira and never fails because of it: its moves are written to the
//! store (and flushed) when it finishes, and this worker delivers them in the background. A
//! move that fails because Jira is down or busy is tried again later with a growing wait
//! ([`crate::release::ticket_flow::retry_delay`]); one Jira refuses (a transition missing from
//! the workflow, an unknown ticket) or that keeps failing is given up, announced, and listed in
//! `/status`. Moves live in the store, so a restart loses none: the worker picks them up again.

use crate::clients::jira::{JiraClient, MoveOutcome, is_transient};
use crate::clock::Clock;
use crate::config::Config;
use crate::release::ticket_flow::{MoveState, TicketMove, given_up_notice};
use crate::store::Store;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

/// How often the worker looks for moves that became due, when nothing wakes it.
pub const POLL: Duration = Duration::from_secs(10);

/// Wakes the outbox worker so that it delivers due moves now.
#[derive(Clone, Debug, Default)]
pub struct OutboxHandle(Arc<Notify>);

impl OutboxHandle {
    /// Delivers due moves as soon as the worker is free (a wake while it works is kept).
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// What the worker needs: the store holding the moves, Jira, time, and the team channel.
pub(crate) struct Outbox {
    pub store: Store,
    pub client: Arc<JiraClient>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    /// Tells the team channel (the engine redacts and broadcasts it).
    pub tell_team: TellTeam,
}

/// How the worker tells the team channel: text, handed to whoever started it.
pub(crate) type TellTeam = Arc<dyn Fn(String) + Send + Sync>;

impl Outbox {
    /// Starts the worker; it stops once `stop`'s sender is dropped (the engine loop ended).
    pub(crate) fn spawn(self, mut stop: watch::Receiver<()>) -> OutboxHandle {
        let handle = OutboxHandle::default();
        let wake = handle.0.clone();
        tokio::spawn(async move {
            // Deploys whose give-up notice waits for more of their moves (see `deliver_due`).
            let mut waiting_deploys = BTreeSet::new();
            loop {
                self.deliver_due(&mut waiting_deploys).await;
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => return,
                }
            }
        });
        handle
    }

    /// One round: every move that is due, oldest first. A ticket's later moves wait while an
    /// earlier one of the same ticket is still pending, so its card never jumps out of order.
    /// Then the give-ups of each deploy that settled this round (or was `waiting_deploys`) are
    /// announced together; a deploy with moves still to come stays in `waiting_deploys`.
    async fn deliver_due(&self, waiting_deploys: &mut BTreeSet<u64>) {
        let pending = match self.store.pending_jira_moves() {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot read the Jira outbox");
                return;
            }
        };
        crate::metrics::jira_outbox_depth(pending.len());
        let mut waiting: HashSet<String> = HashSet::new();
        // Deploys whose moves settled this round, and settled moves no deploy queued.
        let mut settled: BTreeSet<u64> = BTreeSet::new();
        let mut loose_given_up: Vec<TicketMove> = Vec::new();
        for mut ticket_move in pending {
            let key = ticket_move.key.to_string();
            if waiting.contains(&key) || !ticket_move.is_due(self.clock.now()) {
                waiting.insert(key);
                continue;
            }
            // A move a deploy queued is logged with that deploy (and who asked for it).
            let user = ticket_move
                .deploy_id
                .and_then(|id| self.store.deploy(id).ok().flatten())
                .map(|deploy| deploy.requested_by);
            let span = tracing::error_span!(
                "ticket move",
                id = ticket_move.id,
                key = %key,
                to = %ticket_move.to,
                deploy_id = ticket_move.deploy_id,
                env = ticket_move.env.as_deref().map(tracing::field::display),
                person = user.as_deref().map(tracing::field::display),
            );
            self.attempt(&mut ticket_move).instrument(span).await;
            if matches!(ticket_move.state, crate::release::ticket_flow::MoveState::GivenUp { .. }) {
                crate::metrics::jira_gave_up();
            }
            if ticket_move.is_pending() {
                waiting.insert(key);
            }
            let written = match self.store.put_jira_move(&ticket_move) {
                Ok(()) => self.store.flush().await,
                Err(e) => Err(e),
            };
            if let Err(error) = written {
                tracing::error!(error = format!("{error:#}"), id = ticket_move.id, "cannot record a ticket move");
            }
            match (ticket_move.is_pending(), ticket_move.deploy_id) {
                (true, _) => {}
                (false, Some(deploy)) => {
                    settled.insert(deploy);
                }
                (false, None) => loose_given_up.extend(given_up(ticket_move)),
            }
        }
        for ticket_move in &loose_given_up {
            self.announce(given_up_notice(std::slice::from_ref(ticket_move)));
        }
        settled.append(waiting_deploys);
        for deploy in settled {
            if self.announce_deploy_given_up(deploy) == Notice::LookAgain {
                waiting_deploys.insert(deploy);
            }
        }
    }

    /// Once none of a deploy's moves is pending any more, announces the ones given up, in one
    /// message: a release of many tickets that Jira refuses is one warning, not one per ticket.
    /// While the deploy's ticket scan is still in the store, the engine may still be queueing
    /// its moves (it removes the scan after the last one, then wakes this worker), so the
    /// notice waits for them too.
    fn announce_deploy_given_up(&self, deploy: u64) -> Notice {
        let scanning = self.store.ticket_scans().map(|scans| scans.iter().any(|scan| scan.deploy_id == deploy));
        let moves = match (scanning, self.store.jira_moves_of_deploy(deploy)) {
            (Ok(false), Ok(moves)) => moves,
            (Ok(true), _) => return Notice::LookAgain,
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(error = format!("{error:#}"), deploy, "cannot read a deploy's ticket moves");
                return Notice::LookAgain;
            }
        };
        if moves.iter().any(TicketMove::is_pending) {
            // Looked at again when the last of them settles.
            return Notice::WhenTheRestSettles;
        }
        let given_up: Vec<TicketMove> = moves.into_iter().filter_map(given_up).collect();
        self.announce(given_up_notice(&given_up));
        Notice::Done
    }

    fn announce(&self, notice: Option<String>) {
        if let Some(text) = notice {
            (self.tell_team)(text);
        }
    }

    /// One attempt at one move, recorded in `ticket_move`.
    async fn attempt(&self, ticket_move: &mut TicketMove) {
        let key = ticket_move.key.to_string();
        let result = match &ticket_move.from {
            Some(from) => self.client.move_if_in(&key, from, &ticket_move.to).await,
            None => self.client.move_to(&key, &ticket_move.to).await,
        };
        let now = self.clock.now();
        match result {
            Ok(outcome) => {
                let words = match &outcome {
                    MoveOutcome::Moved { from } => format!("moved from {from}"),
                    MoveOutcome::AlreadyThere => "already there".to_owned(),
                    MoveOutcome::LeftAlone { status } => format!("left in {status}"),
                };
                tracing::info!(outcome = %words, "ticket move delivered");
                ticket_move.delivered(words, now);
                if ticket_move.mention_assignee && matches!(outcome, MoveOutcome::Moved { .. }) {
                    self.mention_assignee(ticket_move).await;
                }
            }
            Err(error) => {
                let why = format!("{error:#}");
                let transient = is_transient(&error);
                tracing::warn!(%why, transient, attempt = ticket_move.attempts + 1, "ticket move failed");
                // Announced with the rest of its deploy's moves once they have all settled.
                ticket_move.failed(why, transient, now);
            }
        }
    }

    /// Tells the assignee their ticket's code is on the environment, for them to test.
    async fn mention_assignee(&self, ticket_move: &TicketMove) {
        let key = ticket_move.key.to_string();
        let issue = match self.client.issue(&key).await {
            Ok(issue) => issue,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot read the assignee to mention");
                return;
            }
        };
        let env = ticket_move.env.as_deref().unwrap_or("dev");
        let who = match &issue.assignee {
            Some(assignee) => format!("{}, it is yours to test", assignee_mention(&self.config, assignee)),
            None => "nobody is assigned to test it".to_owned(),
        };
        (self.tell_team)(format!(
            "🧪 {key} {} is on {env} and in {}: {who}. `/ticket {key} pass` once it works, in the drag window.",
            issue.summary, ticket_move.to
        ));
    }
}

/// Where a deploy's give-up notice stands after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    /// Sent (or nothing was given up).
    Done,
    /// Some of its moves are pending: their settling brings the deploy back.
    WhenTheRestSettles,
    /// Its moves may still be being queued (or the store could not be read): next round.
    LookAgain,
}

/// The move, if it was given up.
fn given_up(ticket_move: TicketMove) -> Option<TicketMove> {
    matches!(ticket_move.state, MoveState::GivenUp { .. }).then_some(ticket_move)
}

/// A Jira assignee as the team channel writes them: a mention (`@{grace}`) when they are one
/// of the configured people, otherwise their Jira name.
pub(crate) fn assignee_mention(config: &Config, assignee: &crate::clients::jira::Assignee) -> String {
    match config.person_by_jira(&assignee.account_id) {
        Some(person) => format!("@{{{}}}", person.id),
        None => assignee.display_name.clone(),
    }
}
