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
            let started = |name: &str| {
                let _ = events.send(Event::StepStarted { deploy_id, name: name.to_owned(), at: clock.now() });
                Instant::now()
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
                let since = started(name);
                let mut output = OutputTail::default();
                let result = session
                    .run(script, timeout, &mut output)
                    .await
                    .unwrap_or_else(|e| StepResult::Error { message: format!("{e:#}") });
                let tail = finished(&result, &output, since);
                (result, tail)
            };
            let failed = |step: &str, result: &StepResult| Outcome::Failed {
                step: step.to_owned(),
                reason: result.describe(),
                state_unknown: result.leaves_state_unknown(),
            };
            let mut outcome = None;
            for step in &plan.steps {
                let (result, _) = run_step(&step.name, &step.script, step.timeout).await;
                if !result.is_ok() {
                    outcome = Some(failed(&step.name, &result));
                    break;
                }
            }
            if outcome.is_none() {
                let (result, tail) = run_step("verify HEAD", &plan.verify, Duration::from_secs(30)).await;
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
            session.close().await;
            if let (None, Some((url, budget))) = (&outcome, &plan.health) {
                let since = started("health check");
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
                }
            }
            let _ = events.send(Event::DeployFinished { deploy_id, outcome: outcome.unwrap_or(Outcome::Succeeded) });
        },
        on_panic,
    );
}
