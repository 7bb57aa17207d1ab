//! The deploy task: runs a plan's steps on one session and reports each as an event.

use super::{Engine, Event};
use crate::clients::{ExecSession, OutputTail};
use crate::release::deploy::{Outcome, StepResult};
use crate::release::gitref::Sha;
use crate::release::plan::DeployPlan;
use std::time::{Duration, Instant};

/// Starts the task that runs `plan` for deploy `deploy_id` on `session`.
pub(crate) fn spawn_runner(engine: &Engine, deploy_id: u64, session: Box<dyn ExecSession>, plan: DeployPlan) {
    let Some(events) = engine.events.upgrade() else { return };
    let clock = engine.clock.clone();
    let redactor = engine.redactor.clone();
    tokio::spawn(async move {
        let mut session = session;
        let send = |event| {
            let _ = events.send(event);
        };
        let mut run_step = async |name: &str, script: &str, timeout: Duration| {
            send(Event::StepStarted { deploy_id, name: name.to_owned(), at: clock.now() });
            let started = Instant::now();
            let mut output = OutputTail::default();
            let result = session
                .run(script, timeout, &mut output)
                .await
                .unwrap_or_else(|e| StepResult::Error { message: format!("{e:#}") });
            let tail = redactor.redact(&output.text());
            let duration_ms = started.elapsed().as_millis() as u64;
            let output_bytes = output.total_bytes();
            send(Event::StepFinished {
                deploy_id,
                result: result.clone(),
                tail: tail.clone(),
                output_bytes,
                duration_ms,
            });
            (result, tail)
        };
        let mut outcome = None;
        for step in &plan.steps {
            let (result, _) = run_step(&step.name, &step.script, step.timeout).await;
            if !result.is_ok() {
                outcome = Some(Outcome::Failed {
                    step: step.name.clone(),
                    reason: result.describe(),
                    state_unknown: result.leaves_state_unknown(),
                });
                break;
            }
        }
        let outcome = match outcome {
            Some(failed) => failed,
            None => {
                let (result, tail) = run_step("verify HEAD", &plan.verify, Duration::from_secs(30)).await;
                let head = tail.lines().rev().find_map(|line| Sha::parse(line.trim()).ok());
                match (result.is_ok(), head) {
                    (true, Some(head)) if head == plan.sha => Outcome::Succeeded,
                    (true, Some(head)) => Outcome::Failed {
                        step: "verify HEAD".into(),
                        reason: format!("HEAD is {} after the steps, not {}", head.short(), plan.sha.short()),
                        state_unknown: false,
                    },
                    _ => Outcome::Failed {
                        step: "verify HEAD".into(),
                        reason: format!("could not read HEAD ({})", result.describe()),
                        state_unknown: true,
                    },
                }
            }
        };
        session.close().await;
        send(Event::DeployFinished { deploy_id, outcome });
    });
}
