//! A deploy's steps: the job that runs a plan on one session and reports each step, and the
//! loop's side that records each step before it runs and each result after.

use super::jobs::{Crashed, Report, StepGo};
use super::reply::ProgressUpdate;
use super::{Context, RunningDeploy};
use crate::clients::{ExecSession, OutputTail, health};
use crate::release::deploy::DeployEvent;
use crate::release::deploy::{Outcome, StepResult};
use crate::release::gitref::Sha;
use crate::release::plan::DeployPlan;
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// Starts the task that runs `plan` for deploy `deploy_id` on `session`.
pub(crate) fn spawn_runner(ctx: &Context, deploy_id: u64, session: Box<dyn ExecSession>, plan: DeployPlan) {
    let Some(events) = ctx.jobs.reporter() else { return };
    let clock = ctx.clock.clone();
    let redactor = ctx.redactor.clone();
    let http = ctx.http.clone();
    let crashed = events.clone();
    let on_panic = move |message| {
        let _ = crashed.send(Report::Crashed(Crashed::Deploy(deploy_id), message));
    };
    super::jobs::spawn_guarded(
        "deploy",
        async move {
            let mut session = session;
            // A step starts only once the engine has durably recorded that it may run; if the
            // store can no longer record, the deploy stops here, at a step boundary.
            let started = async |name: &str| {
                let (go, answered) = tokio::sync::oneshot::channel();
                let _ = events.send(Report::StepStarted { deploy_id, name: name.to_owned(), at: clock.now(), go });
                match answered.await.unwrap_or(StepGo::Unrecorded) {
                    StepGo::Run => Ok(Instant::now()),
                    halt => Err(halt),
                }
            };
            // Every step the plan would still run from `step` on (it included), for a deploy
            // stopped before it.
            let mut names: Vec<String> = plan.steps.iter().map(|s| s.name.clone()).collect();
            names.push("verify HEAD".into());
            if plan.health.is_some() {
                names.push("health check".into());
            }
            let halted = |step: &str, halt: StepGo| {
                match halt {
                StepGo::Stop(why) => {
                    let rest = names.iter().skip_while(|n| n.as_str() != step).cloned().collect::<Vec<_>>();
                    Outcome::Failed {
                        step: step.to_owned(),
                        reason: format!("not started: {why}, so it ended the deploy before this step; {} did not run", rest.join(", ")),
                        state_unknown: false,
                    }
                }
                // Who cancelled and what HEAD is are filled in by `finished`.
                StepGo::Cancelled => Outcome::Cancelled {
                    by: String::new(),
                    step: step.to_owned(),
                    stopped_running: false,
                    head: None,
                },
                StepGo::Run | StepGo::Unrecorded => Outcome::Failed {
                    step: step.to_owned(),
                    reason:
                        "not started: Shipday can no longer write to its store, so it stopped the deploy before this step"
                            .into(),
                    state_unknown: false,
                },
            }
            };
            let finished = |result: &StepResult, output: &OutputTail, since: Instant| {
                let tail = redactor.redact(&output.text());
                let _ = events.send(Report::StepFinished {
                    deploy_id,
                    result: result.clone(),
                    tail: tail.clone(),
                    output_bytes: output.total_bytes(),
                    duration_ms: since.elapsed().as_millis() as u64,
                });
                tail
            };
            let mut run_step = async |name: &str, script: &str, timeout: Duration| {
                let since = match started(name).await {
                    Ok(since) => since,
                    Err(halt) => return (Err(halt), String::new()),
                };
                let mut output = OutputTail::default();
                let result = session
                    .run(script, timeout, &mut output)
                    .await
                    .unwrap_or_else(|e| StepResult::Error { message: format!("{e:#}") });
                let tail = finished(&result, &output, since);
                (Ok(result), tail)
            };
            let failed = |step: &str, result: &StepResult| Outcome::Failed {
                step: step.to_owned(),
                reason: result.describe(),
                state_unknown: result.leaves_state_unknown(),
            };
            let mut outcome = None;
            for step in &plan.steps {
                match run_step(&step.name, &step.script, step.timeout).await {
                    (Err(halt), _) => {
                        outcome = Some(halted(&step.name, halt));
                        break;
                    }
                    (Ok(result), _) if !result.is_ok() => {
                        outcome = Some(failed(&step.name, &result));
                        break;
                    }
                    (Ok(_), _) => {}
                }
            }
            if outcome.is_none() {
                let (result, tail) = run_step("verify HEAD", &plan.verify, Duration::from_secs(30)).await;
                let result = match result {
                    Ok(result) => result,
                    Err(halt) => {
                        session.close().await;
                        let outcome = halted("verify HEAD", halt);
                        let _ = events.send(Report::DeployFinished { deploy_id, outcome });
                        return;
                    }
                };
                let head = tail.lines().rev().find_map(|line| Sha::parse(line.trim()).ok());
                outcome = match (result.is_ok(), head) {
                    (true, Some(head)) if head == plan.sha => None,
                    (true, Some(head)) => Some(Outcome::Failed {
                        step: "verify HEAD".into(),
                        reason: format!("HEAD is {} after the steps, not {}", head.short(), plan.sha.short()),
                        state_unknown: false,
                    }),
                    _ => Some(failed("verify HEAD", &result)),
                };
            }
            if outcome.is_some() {
                // What the host runs now, read at the end of a failed deploy: `/status` shows
                // it labelled as such, not the last successful deploy's commit.
                let mut output = OutputTail::default();
                let head = match session.run(&plan.verify, Duration::from_secs(30), &mut output).await {
                    Ok(result) if result.is_ok() => {
                        Sha::parse(output.text().trim()).map_err(|_| "unexpected output".to_owned())
                    }
                    Ok(result) => Err(format!("git rev-parse HEAD: {}", result.describe())),
                    Err(error) => Err(redactor.redact(&format!("{error:#}"))),
                };
                let _ =
                    events.send(Report::Observed { env: None, heads: vec![(plan.env.clone(), head)], waiting: None });
            }
            session.close().await;
            if let (None, Some((url, budget))) = (&outcome, &plan.health) {
                let since = match started("health check").await {
                    Ok(since) => since,
                    Err(halt) => {
                        let outcome = halted("health check", halt);
                        let _ = events.send(Report::DeployFinished { deploy_id, outcome });
                        return;
                    }
                };
                let mut output = OutputTail::default();
                let result = match health::check(&http, url, *budget).await {
                    Ok(summary) => {
                        output.push(summary.as_bytes());
                        StepResult::Ok
                    }
                    Err(problem) => StepResult::Check { message: redactor.redact(&problem) },
                };
                finished(&result, &output, since);
                if !result.is_ok() {
                    outcome = Some(failed("health check", &result));
                    // HEAD was verified just before: the failed deploy's commit runs.
                    let head = Ok(plan.sha.clone());
                    let _ = events.send(Report::Observed {
                        env: None,
                        heads: vec![(plan.env.clone(), head)],
                        waiting: None,
                    });
                }
            }
            let _ = events.send(Report::DeployFinished { deploy_id, outcome: outcome.unwrap_or(Outcome::Succeeded) });
        },
        on_panic,
    );
}

/// A step is about to start: it is recorded durably first, and runs only then. Otherwise the
/// runner stops before it: when the store cannot record it ([`StepGo::Unrecorded`]), or when
/// Shipday is shutting down and its grace ran out ([`StepGo::Stop`]).
pub(crate) async fn step_starting(ctx: &mut Context, deploy_id: u64, name: String, at: DateTime<Utc>) -> StepGo {
    if let Some(why) = &ctx.shutdown.stop {
        tracing::warn!(deploy = deploy_id, step = %name, "shutting down: the deploy stops before this step");
        return StepGo::Stop(why.clone());
    }
    let Some(running) = ctx.running.get_mut(&deploy_id) else { return StepGo::Unrecorded };
    if running.cancel.is_some() {
        tracing::info!(deploy = deploy_id, step = %name, "cancelled: the deploy stops before this step");
        return StepGo::Cancelled;
    }
    running.record.steps.push(crate::release::deploy::StepRecord {
        name,
        started_at: at,
        duration_ms: None,
        result: None,
        tail: String::new(),
        output_bytes: 0,
    });
    let index = running.record.steps.len() - 1;
    let record = running.record.clone();
    let watcher = running.watcher.clone();
    let durable = match ctx.store.put_deploy(&record) {
        Ok(()) => ctx.store.flush().await,
        Err(error) => Err(error),
    };
    if let Err(error) = durable {
        tracing::error!(
            deploy = deploy_id,
            error = format!("{error:#}"),
            "cannot record a step; the deploy stops before it"
        );
        if let Some(running) = ctx.running.get_mut(&deploy_id) {
            running.record.steps.pop();
        }
        return StepGo::Unrecorded;
    }
    ctx.forward(watcher.as_ref(), ProgressUpdate { event: DeployEvent::StepStarted { index }, record });
    StepGo::Run
}

/// A step finished: its result is recorded and forwarded.
pub(crate) async fn step_finished(
    ctx: &mut Context,
    deploy_id: u64,
    result: crate::release::deploy::StepResult,
    tail: String,
    output_bytes: u64,
    duration_ms: u64,
) {
    let Some(RunningDeploy { record, watcher, .. }) = ctx.running.get_mut(&deploy_id) else {
        return;
    };
    let index = record.steps.len().saturating_sub(1);
    if let Some(step) = record.steps.last_mut() {
        crate::metrics::step_finished(&record.env, &step.name, std::time::Duration::from_millis(duration_ms));
        if !result.is_ok() {
            tracing::warn!(step = %step.name, result = %result.describe(), duration_ms, "deploy step failed");
        }
        step.result = Some(result);
        step.tail = tail;
        step.output_bytes = output_bytes;
        step.duration_ms = Some(duration_ms);
    }
    let record = record.clone();
    let watcher = watcher.clone();
    ctx.record(&record).await;
    ctx.forward(watcher.as_ref(), ProgressUpdate { event: DeployEvent::StepFinished { index }, record });
}

/// A deploy ended: the deploy lock is freed, what it leaves behind is recorded (migration
/// debts, the claim a release gives back), a promotion it carried out ends, GitHub is told,
/// and the final record is stored and forwarded.
pub(crate) async fn finished(ctx: &mut Context, deploy_id: u64, outcome: crate::release::deploy::Outcome) {
    let Some(RunningDeploy { mut record, watcher, pays_debt, new_debt, cancel }) = ctx.running.remove(&deploy_id)
    else {
        return;
    };
    record.outcome = match cancel {
        Some(cancel) => super::cancel::cancelled_outcome(ctx, &record, outcome, cancel.by),
        None => outcome,
    };
    let now = ctx.clock.now();
    record.finished_at = Some(now);
    let outcome = match record.outcome {
        crate::release::deploy::Outcome::Succeeded => "succeeded",
        crate::release::deploy::Outcome::Interrupted => "interrupted",
        crate::release::deploy::Outcome::Cancelled { .. } => "cancelled",
        crate::release::deploy::Outcome::Failed { .. } | crate::release::deploy::Outcome::Running => "failed",
    };
    crate::metrics::deploy_finished(&record.env, outcome, (now - record.started_at).to_std().unwrap_or_default());
    tracing::info!(deploy = deploy_id, env = %record.env, sha = %record.sha, outcome = ?record.outcome, "deploy finished");
    if let Err(error) = ctx.store.set_active(&record.env, None) {
        tracing::error!(error = format!("{error:#}"), "cannot free the deploy lock");
    }
    if let Err(error) = super::deploy::record_what_it_left(ctx, &record, pays_debt, new_debt) {
        tracing::error!(error = format!("{error:#}"), "cannot record what a deploy left behind");
    }
    super::promote::promotion_deploy_finished(ctx, &record).await;
    super::promote::report_to_github(ctx, &record);
    ctx.record(&record).await;
    ctx.forward(watcher.as_ref(), ProgressUpdate { event: DeployEvent::Finished, record });
    if ctx.shutdown.draining() {
        // Kept until the adapter made its last edit (it lets go of the channel then), so
        // Shipday exits only once the chat message says how the deploy ended.
        ctx.shutdown.watchers.extend(watcher);
    }
}
