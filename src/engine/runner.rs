//! The deploy task: runs a plan's steps on one session and reports each as an event.

use super::{Crashed, Engine, Event};
use crate::clients::{ExecSession, OutputTail, health};
use crate::release::deploy::{Outcome, StepResult};
use crate::release::gitref::Sha;
use crate::release::plan::DeployPlan;
use std::time::{Duration, Instant};

/// Starts the task that runs `plan` for deploy `deploy_id` on `session`.
pub(crate) fn spawn_runner(engine: &Engine, deploy_id: u64, session: Box<dyn ExecSession>, plan: DeployPlan) {
    let Some(events) = engine.events.upgrade() else { return };
    let clock = engine.clock.clone();
    let redactor = engine.redactor.clone();
    let http = engine.http.clone();
    let crashed = events.clone();
    let on_panic = move |message| {
        let _ = crashed.send(Event::Crashed(Crashed::Deploy(deploy_id), message));
    };
    super::spawn_guarded(
        "deploy",
        async move {
            let mut session = session;
            // A step starts only once the engine has durably recorded that it may run; if the
            // store can no longer record, the deploy stops here, at a step boundary.
            let started = async |name: &str| {
                let (durable, recorded) = tokio::sync::oneshot::channel();
                let _ = events.send(Event::StepStarted { deploy_id, name: name.to_owned(), at: clock.now(), durable });
                recorded.await.unwrap_or(false).then(Instant::now)
            };
            let unrecorded = |step: &str| Outcome::Failed {
                step: step.to_owned(),
                reason:
                    "not started: Shipday can no longer write to its store, so it stopped the deploy before this step"
                        .into(),
                state_unknown: false,
            };
            let finished = |result: &StepResult, output: &OutputTail, since: Instant| {
                let tail = redactor.redact(&output.text());
                let _ = events.send(Event::StepFinished {
                    deploy_id,
                    result: result.clone(),
                    tail: tail.clone(),
                    output_bytes: output.total_bytes(),
                    duration_ms: since.elapsed().as_millis() as u64,
                });
                tail
            };
            let mut run_step = async |name: &str, script: &str, timeout: Duration| {
                let Some(since) = started(name).await else {
                    return (None, String::new());
                };
                let mut output = OutputTail::default();
                let result = session
                    .run(script, timeout, &mut output)
                    .await
                    .unwrap_or_else(|e| StepResult::Error { message: format!("{e:#}") });
                let tail = finished(&result, &output, since);
                (Some(result), tail)
            };
            let failed = |step: &str, result: &StepResult| Outcome::Failed {
                step: step.to_owned(),
                reason: result.describe(),
                state_unknown: result.leaves_state_unknown(),
            };
            let mut outcome = None;
            for step in &plan.steps {
                match run_step(&step.name, &step.script, step.timeout).await {
                    (None, _) => {
                        outcome = Some(unrecorded(&step.name));
                        break;
                    }
                    (Some(result), _) if !result.is_ok() => {
                        outcome = Some(failed(&step.name, &result));
                        break;
                    }
                    (Some(_), _) => {}
                }
            }
            if outcome.is_none() {
                let (result, tail) = run_step("verify HEAD", &plan.verify, Duration::from_secs(30)).await;
                let Some(result) = result else {
                    session.close().await;
                    let outcome = unrecorded("verify HEAD");
                    let _ = events.send(Event::DeployFinished { deploy_id, outcome });
                    return;
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
                    events.send(Event::Observed { env: None, heads: vec![(plan.env.clone(), head)], pending: None });
            }
            session.close().await;
            if let (None, Some((url, budget))) = (&outcome, &plan.health) {
                let Some(since) = started("health check").await else {
                    let outcome = unrecorded("health check");
                    let _ = events.send(Event::DeployFinished { deploy_id, outcome });
                    return;
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
                    let _ = events.send(Event::Observed {
                        env: None,
                        heads: vec![(plan.env.clone(), head)],
                        pending: None,
                    });
                }
            }
            let _ = events.send(Event::DeployFinished { deploy_id, outcome: outcome.unwrap_or(Outcome::Succeeded) });
        },
        on_panic,
    );
}
