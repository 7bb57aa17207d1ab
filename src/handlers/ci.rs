//! The CI gate for deploys: before a resolved commit is deployed to an environment with
//! `required_checks`, a job reads GitHub's checks on that exact SHA and waits (polling, outside
//! the loop) while they are pending, up to the environment's `ci_wait`. It reports back with the
//! [`Verdict`]; the deploy then goes on, or is refused naming the failed check and its link, or
//! what is still pending. A lead's `--force "reason"` skips the gate, audited and announced.

use super::deploy::{Resolved, ResolvedRef};
use super::*;
use crate::config::Role;
use crate::release::ci_gate::{CiGate, Verdict, decide, failed_words};
use crate::release::deploy::Trigger;
use crate::release::locks::ActiveDeploy;
use tokio::sync::oneshot;

/// What the gate job found about a resolved deploy's commit.
pub(crate) struct CiChecked {
    /// The deploy, with its open session.
    pub resolved: Box<Resolved>,
    /// The last verdict, or why GitHub could not be read (or the wait was stopped).
    pub verdict: Result<Verdict, String>,
    /// How long the gate was allowed to wait, for the refusal's words.
    pub waited: std::time::Duration,
}

/// The gate `request` must pass on `env`, if any: the environment has `required_checks`, no
/// lead overrode it, it was not passed already, and the deploy is one the gate covers (not a
/// dry run, not a claim's release, not a promotion, whose source commit the promotion gated).
pub(crate) fn gate_for(ctx: &Context, request: &super::deploy::DeployRequest) -> Option<CiGate> {
    if request.dry_run || request.ci_passed || request.ci_override.is_some() {
        return None;
    }
    if matches!(request.trigger, Trigger::Release | Trigger::Promotion) {
        return None;
    }
    ctx.config.environment(&request.env)?.ci.clone()
}

/// Refuses a `--force "reason"` (the CI override) from anyone but a lead.
pub(crate) fn check_override(request: &super::deploy::DeployRequest, person: &crate::config::Person) -> Option<String> {
    (request.ci_override.is_some() && !person.has(Role::Lead)).then(|| {
        "Only a lead can deploy over the CI gate with --force \"reason\". Nothing was changed. (A plain --force, \
         without a reason, only passes the migration guard.)"
            .to_owned()
    })
}

/// Holds the environment as starting and starts the job that waits for the commit's checks.
pub(crate) fn spawn_gate(ctx: &mut Context, resolved: Resolved, gate: CiGate) {
    let Resolved { pending, request, result } = resolved;
    let Ok(found) = result else { return };
    let env = request.env.clone();
    let who_name = pending.person.as_ref().map(|p| p.name.clone()).unwrap_or_default();
    ctx.starting.insert(
        env.clone(),
        ActiveDeploy { deploy_id: 0, who_name, git_ref: request.git_ref.clone(), since: ctx.clock.now() },
    );
    let resolved = Box::new(Resolved { pending, request, result: Ok(found) });
    let Some(github) = ctx.github.clone() else {
        let checked =
            CiChecked { resolved, verdict: Err("the GitHub integration is not running".into()), waited: gate.wait };
        // Answered through the loop like any other report, so the session is closed there.
        if let Some(events) = ctx.jobs.reporter() {
            let _ = events.send(Report::CiChecked(Box::new(checked)));
        }
        return;
    };
    let Some(events) = ctx.jobs.reporter() else { return };
    let clock = ctx.clock.clone();
    let crashed = events.clone();
    let crash = Crashed::Resolve { env, dry_run: false };
    let on_panic = move |message| {
        let _ = crashed.send(Report::Crashed(crash, message));
    };
    spawn_guarded(
        "ci gate",
        async move {
            let Ok(ResolvedRef { sha, .. }) = &resolved.result else { return };
            let sha = sha.clone();
            let deadline = clock.now() + chrono::Duration::from_std(gate.wait).unwrap_or(chrono::Duration::MAX);
            let mut told = false;
            let verdict = loop {
                let verdict = match github.commit_checks(&sha).await {
                    Ok(checks) => decide(&gate.required, &checks),
                    Err(error) => break Err(format!("Shipday could not read the checks from GitHub ({error:#})")),
                };
                if !verdict.waits() || clock.now() >= deadline {
                    break Ok(verdict);
                }
                // Each round asks the loop whether to go on (not while Shipday shuts down); the
                // first one also tells the team what the deploy waits for.
                let (go, answer) = oneshot::channel();
                let waiting_for = (!told).then(|| verdict.waiting_for());
                told = true;
                let asked = events.send(Report::CiWaiting {
                    env: resolved.request.env.clone(),
                    waiting_for,
                    sha: sha.clone(),
                    git_ref: resolved.request.git_ref.to_string(),
                    who: resolved.pending.person.as_ref().map(|p| p.id.clone()),
                    wait: gate.wait,
                    go,
                });
                if !asked || answer.await != Ok(true) {
                    break Err("Shipday is restarting, so it stopped waiting for the checks".into());
                }
                tokio::time::sleep(gate.poll).await;
            };
            let _ = events.send(Report::CiChecked(Box::new(CiChecked { resolved, verdict, waited: gate.wait })));
        },
        on_panic,
    );
}

/// A round of the wait: tells the team what the deploy waits for (the first time), and says
/// whether to keep waiting.
pub(crate) fn waiting(
    ctx: &Context,
    env: &str,
    git_ref: &str,
    sha: &crate::release::gitref::Sha,
    who: Option<&str>,
    waiting_for: Option<String>,
    wait: std::time::Duration,
) -> bool {
    if let Some(names) = waiting_for {
        let who = who.map(|id| format!("@{{{id}}}'s ")).unwrap_or_default();
        ctx.announce(Announcement::Text(format!(
            "⏳ {who}deploy of `{git_ref}` ({}) to {env} waits for CI: {names}. It starts once they pass, or is \
             refused if one fails or they are still pending after {}.",
            sha.short(),
            crate::release::duration_words(wait.as_secs())
        )));
    }
    !ctx.shutdown.draining()
}

/// The gate's verdict on a resolved deploy: go on with it, or refuse it.
pub(crate) async fn checked(ctx: &mut Context, checked: CiChecked) {
    let CiChecked { resolved, verdict, waited } = checked;
    let Resolved { pending, mut request, result } = *resolved;
    let refusal = match &result {
        Ok(found) => refusal_words(&request.env, &found.sha, &verdict, waited),
        Err(_) => None,
    };
    match refusal {
        None => {
            request.ci_passed = true;
            // `resolved` takes the environment off `starting` and decides again, as usual.
            super::deploy::resolved(ctx, Resolved { pending, request, result }).await;
        }
        Some(text) => {
            ctx.starting.remove(&request.env);
            if let Ok(found) = result {
                found.session.close().await;
            }
            ctx.answer(pending, Decision::refused(text));
        }
    }
}

/// Why the gate refuses `sha` for `env`, given its last verdict; `None` when it passed.
pub(crate) fn refusal_words(
    env: &str,
    sha: &crate::release::gitref::Sha,
    verdict: &Result<Verdict, String>,
    waited: std::time::Duration,
) -> Option<String> {
    match verdict {
        Ok(Verdict::Pass) => None,
        Ok(Verdict::Failed { name, detail, url }) => Some(failed_words(env, sha.short(), name, detail, url.as_deref())),
        Ok(still @ (Verdict::Pending { .. } | Verdict::Missing { .. })) => Some(format!(
            "CI on {} is still not done after {}: waiting for {}. It does not go to {env}; nothing was changed. Try \
             again once the checks pass; a lead can override with --force \"reason\".",
            sha.short(),
            crate::release::duration_words(waited.as_secs()),
            still.waiting_for(),
        )),
        Err(why) => Some(format!(
            "{why}, so {} cannot be checked against {env}'s required checks. Nothing was changed. Try again; a lead \
             can override with --force \"reason\".",
            sha.short(),
        )),
    }
}

/// Reads the checks on `sha` until they no longer wait or `gate.wait` has passed (on `clock`);
/// with `once`, reads them one time only. For promotions, whose job already runs outside the
/// loop.
pub(crate) async fn poll_checks(
    github: &crate::clients::github::GitHubClient,
    gate: &CiGate,
    sha: &crate::release::gitref::Sha,
    clock: &std::sync::Arc<dyn crate::clock::Clock>,
    once: bool,
) -> Result<Verdict, String> {
    let deadline = clock.now() + chrono::Duration::from_std(gate.wait).unwrap_or(chrono::Duration::MAX);
    loop {
        let checks = github
            .commit_checks(sha)
            .await
            .map_err(|error| format!("Shipday could not read the checks from GitHub ({error:#})"))?;
        let verdict = decide(&gate.required, &checks);
        if once || !verdict.waits() || clock.now() >= deadline {
            return Ok(verdict);
        }
        tokio::time::sleep(gate.poll).await;
    }
}
