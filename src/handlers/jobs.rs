//! Jobs: host, GitHub and Jira work that runs outside the loop and reports back.
//!
//! A job reports through [`Jobs`] (a [`Report`], which the engine hands to [`handle_report`]).
//! The task boundary: a panic inside a job (a deploy, a ref being resolved, a check on a host)
//! is caught where the job was spawned, reported as a failure ([`Report::Crashed`]), and never
//! leaves an environment held by work that no longer runs.

use super::merge_stream::MergeCheck;
use super::promote::PromotionEvent;
use super::reply::Announcement;
use super::{Context, Decision, WaitingCommand};
use crate::release::deploy::{Outcome, StepResult};
use crate::release::gitref::Sha;
use crate::release::ticket_flow::TicketScan;
use crate::release::tickets::TicketKey;
use chrono::{DateTime, Utc};
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tokio::sync::oneshot;
use tracing::Instrument;

/// What a job reports back to the loop.
pub(crate) enum Report {
    /// A ref was resolved on the host (or could not be).
    Resolved(Box<super::deploy::Resolved>),
    /// A deploy step is about to start; `go` says whether it runs (only once it is recorded).
    StepStarted { deploy_id: u64, name: String, at: DateTime<Utc>, go: oneshot::Sender<StepGo> },
    /// A deploy step finished.
    StepFinished { deploy_id: u64, result: StepResult, tail: String, output_bytes: u64, duration_ms: u64 },
    /// A deploy ended.
    DeployFinished { deploy_id: u64, outcome: Outcome },
    /// `/cancel` tried to stop a deploy's running step on the host: what the host said.
    CancelSent { deploy_id: u64, said: super::cancel::HostStop },
    /// Promotion work reported back.
    Promotion(PromotionEvent),
    /// What GitHub says about the first environment's branch protection.
    Protection(String),
    /// The host said where a merged commit stands against the merge head.
    MergeChecked(Box<MergeCheck>),
    /// HEADs were read on the hosts; `waiting` waits for a `/status --live` reply.
    Observed { env: Option<String>, heads: Vec<(String, Result<Sha, String>)>, waiting: Option<Box<WaitingCommand>> },
    /// A deploy's commits were read for ticket keys (or could not be).
    TicketsFound { scan: TicketScan, result: Result<Vec<TicketKey>, String> },
    /// Long work for a command (a Jira call) is done: record the decision and reply.
    Answered(Box<TaskAnswer>),
    /// A deploy waits for its CI checks: `waiting_for` (the first time) is told to the team;
    /// `go` says whether to keep waiting.
    CiWaiting {
        env: String,
        git_ref: String,
        sha: Sha,
        who: Option<String>,
        waiting_for: Option<String>,
        wait: std::time::Duration,
        go: oneshot::Sender<bool>,
    },
    /// The CI gate's verdict on a resolved deploy.
    CiChecked(Box<super::ci::CiChecked>),
    /// A job panicked: what it was doing, and the panic's message.
    Crashed(Crashed, String),
}

/// Whether a deploy's next step may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StepGo {
    /// It is durably recorded: run it.
    Run,
    /// The store cannot record it: the deploy stops before it.
    Unrecorded,
    /// Shipday is shutting down and its grace ran out: the deploy stops before it. Why, as a
    /// sentence's start ("Shipday was stopped (SIGTERM) …").
    Stop(String),
    /// Someone cancelled the deploy (`/cancel`): it stops before this step.
    Cancelled,
}

/// The work a panicked job was doing, so it is recorded as failed.
#[derive(Debug)]
pub(crate) enum Crashed {
    /// A deploy's steps.
    Deploy(u64),
    /// Resolving a deploy's ref (and reading its migrations) on the host.
    Resolve { env: String, dry_run: bool },
    /// Reading a merged commit's ancestry (`env\u{1f}sha`).
    MergeCheck(String),
    /// A promotion's merge on GitHub.
    PromotionMerge(u64),
}

/// What long work for a command decided, for the loop to record and send.
pub(crate) struct TaskAnswer {
    /// The command, waiting for its reply.
    pub waiting: WaitingCommand,
    /// The reply and the decision to record.
    pub decision: Decision,
    /// News for the team, sent after the reply.
    pub announcement: Option<Announcement>,
}

/// Where jobs report. It holds the loop's inbox weakly: the loop ends once every adapter
/// handle and running job is gone.
pub(crate) struct Jobs {
    upgrade: Box<dyn Fn() -> Option<Reporter> + Send + Sync>,
}

/// A running job's line back to the loop (it keeps the loop alive while the job runs).
#[derive(Clone)]
pub(crate) struct Reporter(Arc<dyn Fn(Report) -> bool + Send + Sync>);

impl Jobs {
    /// `upgrade` gives a reporter while the loop runs, `None` once it ended.
    pub(crate) fn new(upgrade: impl Fn() -> Option<Reporter> + Send + Sync + 'static) -> Self {
        Jobs { upgrade: Box::new(upgrade) }
    }

    /// A reporter for a job about to start; `None` when the loop has ended.
    pub(crate) fn reporter(&self) -> Option<Reporter> {
        (self.upgrade)()
    }
}

impl Reporter {
    /// `send` returns whether the report reached the loop.
    pub(crate) fn new(send: impl Fn(Report) -> bool + Send + Sync + 'static) -> Self {
        Reporter(Arc::new(send))
    }

    /// Hands `report` to the loop; `false` when the loop has ended.
    pub(crate) fn send(&self, report: Report) -> bool {
        (self.0)(report)
    }
}

/// Handles what a job reported.
pub(crate) async fn handle_report(ctx: &mut Context, report: Report) {
    match report {
        Report::Resolved(resolved) => super::deploy::resolved(ctx, *resolved).await,
        Report::StepStarted { deploy_id, name, at, go } => {
            let answer = super::runner::step_starting(ctx, deploy_id, name, at).await;
            let _ = go.send(answer);
        }
        Report::StepFinished { deploy_id, result, tail, output_bytes, duration_ms } => {
            super::runner::step_finished(ctx, deploy_id, result, tail, output_bytes, duration_ms).await;
        }
        Report::DeployFinished { deploy_id, outcome } => super::runner::finished(ctx, deploy_id, outcome).await,
        Report::CancelSent { deploy_id, said } => super::cancel::cancel_sent(ctx, deploy_id, said),
        Report::Promotion(event) => super::promote::promotion_event(ctx, event).await,
        Report::Protection(text) => ctx.protection = Some(text),
        Report::MergeChecked(check) => super::merge_stream::merge_checked(ctx, *check).await,
        Report::Observed { env, heads, waiting } => {
            super::status::observed(ctx, env, heads, waiting.map(|w| *w)).await;
        }
        Report::TicketsFound { scan, result } => super::jira::tickets_found(ctx, scan, result).await,
        Report::Answered(answer) => {
            let TaskAnswer { waiting, decision, announcement } = *answer;
            ctx.answer(waiting, decision);
            if let Some(announcement) = announcement {
                ctx.announce(announcement);
            }
        }
        Report::CiWaiting { env, git_ref, sha, who, waiting_for, wait, go } => {
            let _ = go.send(super::ci::waiting(ctx, &env, &git_ref, &sha, who.as_deref(), waiting_for, wait));
        }
        Report::CiChecked(checked) => super::ci::checked(ctx, *checked).await,
        Report::Crashed(job, message) => crashed(ctx, job, message).await,
    }
}

/// A job panicked: record its work as failed and free what it held.
async fn crashed(ctx: &mut Context, job: Crashed, message: String) {
    let message = ctx.redactor.redact(&message);
    tracing::error!(?job, %message, "recording a panicked task as failed");
    match job {
        Crashed::Deploy(deploy_id) => {
            let outcome = Outcome::Failed {
                step: "shipday".into(),
                reason: format!("Shipday hit an internal error and stopped this deploy ({message})"),
                state_unknown: true,
            };
            super::runner::finished(ctx, deploy_id, outcome).await;
        }
        Crashed::Resolve { env, dry_run } => {
            if !dry_run && ctx.starting.get(&env).is_some_and(|s| s.deploy_id == 0) {
                ctx.starting.remove(&env);
            }
            ctx.announce(Announcement::Text(format!(
                "⚠️ Shipday hit an internal error while preparing a deploy to {env}; nothing was changed there. ({message})"
            )));
        }
        Crashed::MergeCheck(key) => {
            ctx.merge_checks.remove(&key);
        }
        Crashed::PromotionMerge(id) => {
            let result = Err(format!("Shipday hit an internal error during the merge ({message})"));
            super::promote::promotion_event(ctx, PromotionEvent::Merged { id, result }).await;
        }
    }
}

/// Runs a future, turning a panic while polling it into `Err(message)`.
pub(crate) struct CatchUnwind<F>(Pin<Box<F>>);

/// Wraps `future` so a panic inside it becomes `Err(message)`.
pub(crate) fn catch_unwind<F: Future>(future: F) -> CatchUnwind<F> {
    CatchUnwind(Box::pin(future))
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        // The future is dropped right after a panic, never polled again, so no broken state
        // of it is observed.
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// The text a panic carried (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Spawns `future`; if it panics, `on_panic` runs with the message (it tells the engine, so the
/// work is recorded as failed).
pub(crate) fn spawn_guarded<F>(task: &'static str, future: F, on_panic: impl FnOnce(String) + Send + 'static)
where
    F: Future<Output = ()> + Send + 'static,
{
    // The job runs in the span it was started from (a command's, a deploy's), across the
    // spawn: what it logs, and what it reports, carries that span's fields.
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            if let Err(message) = catch_unwind(future).await {
                tracing::error!(task, %message, "a task panicked; recorded as a failure");
                on_panic(message);
            }
        }
        .instrument(span),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_inside_a_task_reaches_its_handler_with_the_message() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_guarded(
            "test",
            async {
                tokio::task::yield_now().await;
                panic!("byte index 4 is not a char boundary");
            },
            move |message| {
                let _ = tx.send(message);
            },
        );
        assert_eq!(rx.await.unwrap(), "byte index 4 is not a char boundary");
        assert_eq!(catch_unwind(async { 7 }).await, Ok(7));
    }
}
