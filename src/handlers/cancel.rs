//! `/cancel ENV`: stops the running deploy to an environment. The step running on the host is
//! stopped (its whole process group, on a second connection: [`cancel_script`]), no later step
//! starts (`runner::step_starting` refuses it), and the deploy ends as *cancelled*, saying what
//! state the host was left in (`runner::finished`).

use super::*;
use crate::config::Role;
use crate::release::deploy::{DeployRecord, Outcome};
use crate::release::plan::{CANCEL_GRACE_SECS, CANCEL_KILLED, CANCEL_NONE, CANCEL_STOPPED, cancel_script};
use std::time::Duration;

/// A cancel asked for on a running deploy.
#[derive(Debug, Clone)]
pub(crate) struct CancelRequest {
    /// Who asked (display name).
    pub by: String,
}

/// What the host said when `/cancel` stopped a step there.
#[derive(Debug)]
pub(crate) enum HostStop {
    /// The step's process group ended after TERM.
    Stopped,
    /// It had to be killed (KILL after the grace).
    Killed,
    /// No step ran on the host at that moment (between steps).
    NoStep,
    /// The host could not be reached, or the group did not end: why.
    Failed(String),
}

pub(crate) fn cancel(ctx: &mut Context, env: &str, pending: &WaitingCommand) -> Decision {
    let Some(person) = pending.person.as_ref() else {
        return Decision::refused("Shipday does not know you, so you cannot cancel a deploy.");
    };
    let running = ctx.running.iter_mut().find(|(_, r)| r.record.env == env).map(|(id, r)| (*id, r));
    let Some((deploy_id, running)) = running else {
        if ctx.starting.contains_key(env) {
            return Decision::refused(format!(
                "The deploy to {env} is still resolving its commit: nothing has run on the host yet. Cancel it once \
                 its first step starts (a moment), or wait for it to end."
            ));
        }
        if let Some(stopped) = super::waiting::stop_waiting(ctx, env, &person.id) {
            return stopped;
        }
        return Decision::refused(format!("No deploy is running on {env}, so there is nothing to cancel."));
    };
    let record = &running.record;
    if record.requested_by != person.id && !person.has(Role::Lead) {
        return Decision::refused(format!(
            "Only {} (who started deploy #{}) or a lead can cancel it. Ask them, or wait for it to end.",
            record.requested_by_name, record.id
        ));
    }
    if let Some(already) = &running.cancel {
        return Decision::refused(format!(
            "{} already cancelled deploy #{} to {env}; it stops as soon as the host lets go.",
            already.by, record.id
        ));
    }
    running.cancel = Some(CancelRequest { by: person.name.clone() });
    let step = current_step(record).map(str::to_owned);
    let text = match &step {
        Some(step) => format!(
            "🛑 {} is cancelling deploy #{} of `{}` to {env}: stopping \"{step}\" on the host (its whole process \
             group: TERM, then KILL after {CANCEL_GRACE_SECS}s). No further step will run; the deploy's message will \
             say what state the host was left in.",
            person.name, record.id, record.git_ref
        ),
        None => format!(
            "🛑 {} is cancelling deploy #{} of `{}` to {env}: no further step will run; the deploy's message will say \
             what state the host was left in.",
            person.name, record.id, record.git_ref
        ),
    };
    if step.is_some() {
        stop_on_host(ctx, deploy_id, env);
    }
    Decision { decision: format!("accepted: {text}"), reply: Reply::text(Visibility::Public, text) }
}

/// The step that is running (started, not finished), if any.
fn current_step(record: &DeployRecord) -> Option<&str> {
    record.steps.last().filter(|s| s.result.is_none()).map(|s| s.name.as_str())
}

/// Runs [`cancel_script`] on a connection of its own (the deploy's is busy with the step) and
/// reports what the host said.
fn stop_on_host(ctx: &Context, deploy_id: u64, env: &str) {
    let Some(environment) = ctx.config.environment(env).cloned() else { return };
    let Some(transport) = ctx.transports.get(env).cloned() else { return };
    let Some(events) = ctx.jobs.reporter() else { return };
    let redactor = ctx.redactor.clone();
    tokio::spawn(async move {
        let script = cancel_script(&environment);
        let timeout = Duration::from_secs(CANCEL_GRACE_SECS + 15);
        let said = match run_script(transport.as_ref(), &environment.name, &script, timeout, 4096).await {
            Ok(ran) if ran.output.contains(CANCEL_STOPPED) => HostStop::Stopped,
            Ok(ran) if ran.output.contains(CANCEL_KILLED) => HostStop::Killed,
            Ok(ran) if ran.output.contains(CANCEL_NONE) => HostStop::NoStep,
            Ok(ran) => HostStop::Failed(redactor.redact(&format!("{} ({})", ran.output.trim(), ran.result.describe()))),
            Err(error) => HostStop::Failed(redactor.redact(&error)),
        };
        let _ = events.send(Report::CancelSent { deploy_id, said });
    });
}

/// What the host said about the stop: logged; a failure is announced, since the step then
/// runs on until it ends or its time limit.
pub(crate) fn cancel_sent(ctx: &mut Context, deploy_id: u64, said: HostStop) {
    let env = ctx.running.get(&deploy_id).map(|r| r.record.env.clone());
    match &said {
        HostStop::Failed(why) => {
            tracing::warn!(deploy = deploy_id, %why, "cancel: the step could not be stopped on the host");
            if let Some(env) = env {
                ctx.announce(Announcement::Text(format!(
                    "⚠️ Cancelling deploy #{deploy_id} to {env}: Shipday could not stop the running step on the host \
                     ({why}). It runs until it ends or reaches its time limit; no further step will run."
                )));
            }
        }
        other => tracing::info!(deploy = deploy_id, said = ?other, "cancel: the host answered"),
    }
}

/// The outcome of a deploy someone cancelled, from the outcome its runner reported and HEAD as
/// read on the host at its end. A deploy that succeeded anyway (the cancel came after its last
/// step) stays succeeded.
pub(crate) fn cancelled_outcome(ctx: &Context, record: &DeployRecord, outcome: Outcome, by: String) -> Outcome {
    let (step, stopped_running) = match outcome {
        Outcome::Succeeded => return Outcome::Succeeded,
        Outcome::Cancelled { step, stopped_running, .. } => (step, stopped_running),
        Outcome::Failed { step, .. } => (step, true),
        Outcome::Running | Outcome::Interrupted => {
            (record.steps.last().map(|s| s.name.clone()).unwrap_or_default(), true)
        }
    };
    let head = ctx
        .store
        .observation(&record.env)
        .ok()
        .flatten()
        .filter(|o| o.at >= record.started_at)
        .map(|o| o.head.map(|sha| sha.to_string()));
    Outcome::Cancelled { by, step, stopped_running, head }
}
