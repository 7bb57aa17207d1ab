//! `/promote FROM TO` and everything after it: the request with its release notes, approvals
//! (see `votes.rs`), execution exactly once (merge on GitHub, then deploy the merged commit),
//! resuming after a crash, scheduled promotions, and the merge webhook's dev auto-deploy.
//!
//! Every step of execution is recorded in the request *before* its effect, so a restart resumes
//! where it stopped instead of merging or deploying twice.

use super::*;
use crate::clients::github::{FastForward, GitHubClient, MergeOutcome};
use crate::config::{Person, PromoteMode};
use crate::handlers::calendar::scheduler_person;
use crate::handlers::deploy::ShipdayDeploy;
use crate::release::approvals::{PromotionRequest, RequestState, Stage};
use crate::release::deploy::{DeployRecord, Outcome, Trigger};
use crate::release::forge::GitHubEvent;
use crate::release::gitref::{GitRef, Sha};
use crate::release::migrations::Migration;
use crate::release::policy::{calendar_time, previous_environment};
use crate::release::tickets::{MergedPull, extract_keys};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What long promotion work reports back to the loop.
pub(crate) enum PromotionEvent {
    /// The request's facts were gathered (or could not be).
    Prepared { pending: Option<Box<WaitingCommand>>, draft: Box<Result<PromotionRequest, UserError>> },
    /// The source commit was merged into the target branch (or not).
    Merged { id: u64, result: Result<Sha, String> },
    /// The target's deploy was answered (accepted or refused).
    DeployAnswered { id: u64, reply: Box<Reply> },
    /// A lead's `--emergency` on an approved request: carry it out now.
    RunNow { id: u64 },
}

/// Commits whose pull requests are looked up for release notes.
const NOTES_COMMITS: usize = 30;

/// `/promote FROM TO`: gathers the exact commit on FROM (re-read on its host) and the
/// release notes, then posts the request.
pub(crate) fn promote(
    ctx: &mut Context,
    from: &str,
    to: &str,
    emergency: Option<String>,
    force: Option<String>,
    pending: WaitingCommand,
    now: DateTime<Utc>,
) -> Option<(WaitingCommand, Decision)> {
    let person = pending.person.clone().expect("policy lets only configured people promote");
    if emergency.is_some() && !person.has(crate::config::Role::Lead) {
        return Some((pending, Decision::refused("Only a lead can promote with --emergency.")));
    }
    if force.is_some() && !person.has(crate::config::Role::Lead) {
        return Some((
            pending,
            Decision::refused("Only a lead can promote over the CI gate with --force \"reason\". Nothing was changed."),
        ));
    }
    // A frozen target refuses the request at once (a lead's --emergency goes on; its deploy
    // is audited and announced when it starts).
    if let Err(refusal) = check_promotion_freeze(ctx, to, &person, emergency.as_deref(), now) {
        return Some((pending, Decision::refused(refusal.0)));
    }
    if let Some(reason) = &emergency
        && let Some(handled) = emergency_on_open_request(ctx, from, to, &person, reason, now)
    {
        return Some((pending, handled));
    }
    // On success the work answers later, through `PromotionEvent::Prepared`.
    prepare_promotion(ctx, from, to, &person, (emergency, force), Some(pending), now).err().map(|failed| {
        let (pending, refusal) = *failed;
        (pending.expect("given above"), Decision::from(refusal))
    })
}

/// Checks what can be checked at once and starts gathering the request's facts.
fn prepare_promotion(
    ctx: &mut Context,
    from: &str,
    to: &str,
    requester: &Person,
    (emergency, ci_override): (Option<String>, Option<String>),
    pending: Option<WaitingCommand>,
    now: DateTime<Utc>,
) -> Result<(), Box<(Option<WaitingCommand>, UserError)>> {
    match draft_promotion(ctx, from, to, requester, emergency, ci_override, now) {
        Ok(work) => {
            spawn_preparation(ctx, work, pending);
            Ok(())
        }
        Err(refusal) => Err(Box::new((pending, refusal))),
    }
}

/// The request as far as the store knows it, and what is needed to finish it on the hosts.
fn draft_promotion(
    ctx: &mut Context,
    from: &str,
    to: &str,
    requester: &Person,
    emergency: Option<String>,
    ci_override: Option<String>,
    now: DateTime<Utc>,
) -> Result<Preparation, UserError> {
    if previous_environment(&ctx.config.environments, to) != Some(from) {
        let hint = previous_environment(&ctx.config.environments, to)
            .map(|p| format!(" {to} is promoted from {p}: `/promote {p} {to}`."))
            .unwrap_or_else(|| format!(" {to} is the first environment; it is deployed, not promoted."));
        return Err(UserError(format!("Promotions go one step at a time.{hint}")));
    }
    let Some(github) = ctx.github.clone() else {
        return Err(UserError(format!(
            "Promotions need the GitHub integration, which is not configured here. Nothing was changed. A lead can \
             merge {from} into {to}'s branch and run `/deploy {to} BRANCH`."
        )));
    };
    let live = ctx.store.last_ok(from).map_err(|e| UserError::store("read the live deploy", &e))?;
    let Some(live) = live else {
        return Err(UserError(format!("{from} has no successful deploy yet, so there is nothing to promote.")));
    };
    let open = ctx.store.open_promotions().map_err(|e| UserError::store("read the open promotions", &e))?;
    if let Some(existing) = open.iter().find(|r| r.from == from && r.to == to && r.sha == live.sha) {
        return Err(UserError(format!(
            "Promotion #{} of {} from {from} to {to} is already open ({}). React on its message instead.",
            existing.id,
            live.sha.short(),
            existing.tally(ctx.config.timezone)
        )));
    }
    let target_env = ctx.config.environment(to).expect("checked above").clone();
    let source_env = ctx.config.environment(from).expect("checked above").clone();
    let target_sha = ctx.store.last_ok(to).ok().flatten().map(|d| d.sha);
    let transport = ctx.transports.get(from).cloned().expect("every environment has a transport");
    let projects = ctx.config.jira.as_ref().map(|j| j.projects.clone()).unwrap_or_default();
    let id = ctx.store.next_promotion_id().map_err(|e| UserError::store("allocate a promotion id", &e))?;
    // The commit being promoted, the compare with what `to` runs now (on GitHub) and `to`'s URL.
    let links = crate::release::deploy::DeployLinks::new(
        Some(github_web_url(ctx).as_str()).filter(|url| !url.is_empty()),
        &live.sha,
        target_sha.as_ref(),
        &[],
        to,
        target_env.url.as_deref(),
    );
    let draft = PromotionRequest {
        id,
        from: from.to_owned(),
        to: to.to_owned(),
        sha: live.sha.clone(),
        target_sha: target_sha.clone(),
        requester: requester.id.clone(),
        requester_name: requester.name.clone(),
        created_at: now,
        expires_at: now + chrono::Duration::from_std(ctx.config.approval_ttl).unwrap_or(chrono::Duration::hours(24)),
        quorum: target_env.approvals,
        votes: BTreeMap::new(),
        emergency,
        notes: String::new(),
        state: RequestState::Pending,
        ci_override,
        links: Box::new(links),
    };
    Ok(Preparation { draft, github, transport, source_env, target_env, target_sha, projects })
}

/// Gathers a drafted request's facts in the background, then hands it to the loop.
fn spawn_preparation(ctx: &Context, work: Preparation, pending: Option<WaitingCommand>) {
    let Some(events) = ctx.jobs.reporter() else { return };
    let Preparation { draft, github, transport, source_env, target_env, target_sha, projects } = work;
    let from = draft.from.clone();
    let redactor = ctx.redactor.clone();
    let clock = ctx.clock.clone();
    tokio::spawn(async move {
        let result = async {
            let head = read_head(transport.as_ref(), &source_env).await?;
            if head != draft.sha {
                return Err(format!(
                    "{from}'s host runs {}, not {} as Shipday deployed: someone changed it by hand. Redeploy {from} \
                     first; nothing was changed.",
                    head.short(),
                    draft.sha.short()
                ));
            }
            // The CI gate, read once: a failed check refuses the request now; checks still
            // running are waited for when it is carried out.
            if let Some(gate) = target_env.ci.as_ref().filter(|_| draft.ci_override.is_none()) {
                let verdict = super::ci::poll_checks(&github, gate, &draft.sha, &clock, true).await;
                if matches!(verdict, Ok(crate::release::ci_gate::Verdict::Failed { .. }) | Err(_))
                    && let Some(refusal) = super::ci::refusal_words(&draft.to, &draft.sha, &verdict, gate.wait)
                {
                    return Err(refusal);
                }
            }
            let base = match &target_sha {
                Some(sha) => sha.clone(),
                None => github.branch_sha(target_env.branch.as_str()).await.map_err(|e| format!("{e:#}"))?,
            };
            // Notes inform the leads; GitHub failing to give them does not block the request.
            let notes = release_notes(&github, &base, &draft.sha, &projects)
                .await
                .unwrap_or_else(|e| format!("Release notes unavailable: {e}\n"));
            // Outside text (titles, errors) is stored and shown: redacted here, at the source.
            Ok(PromotionRequest { notes: redactor.redact(&notes), ..draft })
        }
        .await;
        let prepared =
            PromotionEvent::Prepared { pending: pending.map(Box::new), draft: Box::new(result.map_err(UserError)) };
        let _ = events.send(Report::Promotion(prepared));
    });
}

/// Handles what promotion work reported.
pub(crate) async fn promotion_event(ctx: &mut Context, event: PromotionEvent) {
    match event {
        PromotionEvent::Prepared { draft, pending } => promotion_prepared(ctx, *draft, pending.map(|p| *p)).await,
        PromotionEvent::Merged { id, result } => promotion_merged(ctx, id, result).await,
        PromotionEvent::DeployAnswered { id, reply } => promotion_deploy_answered(ctx, id, *reply).await,
        PromotionEvent::RunNow { id } => {
            if let Ok(Some(request)) = ctx.store.promotion(id)
                && matches!(request.state, RequestState::Approved { .. })
            {
                execute_promotion(ctx, request).await;
            }
        }
    }
}

async fn promotion_prepared(
    ctx: &mut Context,
    draft: Result<PromotionRequest, UserError>,
    pending: Option<WaitingCommand>,
) {
    let request = match draft {
        Ok(request) => request,
        Err(reason) => {
            match pending {
                Some(pending) => ctx.answer(pending, Decision::from(reason)),
                None => ctx.announce(Announcement::Text(format!("⚠️ A scheduled promotion could not start: {reason}"))),
            }
            return;
        }
    };
    let mut request = request;
    if request.quorum == 0 {
        request.state = RequestState::Approved { at: ctx.clock.now() };
    }
    save_promotion(ctx, &request).await;
    if let Some(pending) = pending {
        let text = format!(
            "Promotion #{} of {} → {} at {} is posted in the team channel. {}",
            request.id,
            request.from,
            request.to,
            request.sha.short(),
            if request.quorum > 0 { "Leads approve by reacting ✅ (❌ rejects)." } else { "It needs no approval." }
        );
        let mut decision =
            format!("accepted: promotion #{} of {} to {} at {}", request.id, request.from, request.to, request.sha);
        let gated = ctx.config.environment(&request.to).is_some_and(|e| e.ci.is_some());
        if let Some(reason) = request.ci_override.as_ref().filter(|_| gated) {
            decision.push_str(&format!("; --force over the CI gate: {reason}"));
            ctx.announce(Announcement::Text(format!(
                "⚠️ CI gate overridden: @{{{}}} is promoting {} ({}) to {} without its required checks. Reason: {reason}",
                request.requester,
                request.from,
                request.sha.short(),
                request.to
            )));
        }
        ctx.answer(pending, Decision { reply: Reply::text(Visibility::Ephemeral, text), decision });
    }
    if matches!(request.state, RequestState::Approved { .. }) {
        promotion_approved(ctx, request).await;
    }
}

/// Quorum was reached: carry it out now if the target's slot (or an emergency) allows,
/// otherwise it waits for the slot (the tick starts it).
pub(crate) async fn promotion_approved(ctx: &mut Context, request: PromotionRequest) {
    let now = ctx.clock.now();
    // Shutting down: the approval is recorded, but nothing new starts (no merge, no deploy)
    // while running deploys drain; an approved request is carried out after the restart.
    if ctx.shutdown.draining() {
        tracing::info!(request = request.id, "promotion approved while shutting down; it runs after the restart");
        ctx.announce(Announcement::Text(format!(
            "✅ Promotion #{} is approved. Shipday is restarting, so it starts nothing now: the promotion runs \
             once Shipday is back (in {}'s slot, or at once if it is an emergency or the slot is open). Until \
             it starts, removing an approval or a lead's ❌ still counts.",
            request.id, request.to
        )));
        return;
    }
    if request.emergency.is_none()
        && let Ok(Some(freeze)) = frozen(ctx, &request.to, now)
    {
        let tz = ctx.config.calendar.timezone();
        ctx.announce(Announcement::Text(format!(
            "✅ Promotion #{} is approved, but {}. It runs once the freeze ends, in {}'s slot (a lead can `/promote {} {} --emergency \"reason\"` to run it now).",
            request.id,
            freeze.describe(&request.to, tz, now),
            request.to,
            request.from,
            request.to
        )));
        return;
    }
    if !slot_allows(ctx, &request, now) {
        let next = ctx
            .config
            .calendar
            .next_slot(&request.to, now)
            .map(|at| calendar_time(&ctx.config.calendar, at))
            .unwrap_or_else(|| "its next slot".into());
        let lapses = match ctx.config.calendar.next_slot(&request.to, now) {
            Some(at) if at >= request.expires_at => format!(
                " It expires before then ({}), unless it runs sooner.",
                calendar_time(&ctx.config.calendar, request.expires_at)
            ),
            _ => String::new(),
        };
        ctx.announce(Announcement::Text(format!(
            "✅ Promotion #{} is approved. It runs in {}'s slot, {next} (a lead can `/promote {} {} --emergency \"reason\"` to run it now; \
             its requester or a lead can `/promote {} {} --cancel`). Until it starts, removing an approval or a lead's ❌ still counts.{lapses}",
            request.id, request.to, request.from, request.to, request.from, request.to
        )));
        return;
    }
    execute_promotion(ctx, request).await;
}

/// Whether `who` may promote to `to` with the freezes as they are (see [`check_deploy_freeze`]).
fn check_promotion_freeze(
    ctx: &Context,
    to: &str,
    who: &Person,
    emergency: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), crate::release::Refusal> {
    let manual =
        ctx.store.freezes().map_err(|e| crate::release::Refusal::new(UserError::store("read the freezes", &e).0))?;
    let (calendar, tz) = (ctx.config.calendar.freezes(), ctx.config.calendar.timezone());
    crate::release::freeze::check_freeze(&manual, calendar, tz, to, who, emergency, false, now).map(|_| ())
}

fn slot_allows(ctx: &Context, request: &PromotionRequest, now: DateTime<Utc>) -> bool {
    // An approved request waits out a freeze of its target (unless a lead's emergency).
    if request.emergency.is_none() {
        match frozen(ctx, &request.to, now) {
            Ok(None) => {}
            Ok(Some(_)) => return false,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot read the freezes");
                return false;
            }
        }
    }
    let calendar = &ctx.config.calendar;
    let needs_slot = ctx.config.environment(&request.to).is_some_and(|e| e.requires_approval);
    !needs_slot
        || request.emergency.is_some()
        || !calendar.has_slot(&request.to)
        || calendar.current_slot(&request.to, now).is_some()
}

/// Re-verifies the source, records the merge stage, then merges on GitHub.
async fn execute_promotion(ctx: &mut Context, mut request: PromotionRequest) {
    let current = ctx.store.last_ok(&request.from).ok().flatten().map(|d| d.sha);
    if !request.check_source(current.as_ref()) {
        save_promotion(ctx, &request).await;
        return;
    }
    request.state = RequestState::Executing { stage: Stage::Merging };
    tracing::info!(request = request.id, from = %request.from, to = %request.to, sha = %request.sha, "promotion carried out: merging");
    save_promotion(ctx, &request).await;
    crate::crashpoint::hit("promotion-merging");
    merge_on_github(ctx, &request);
}

/// Starts the merge of the approved commit into the target's branch.
fn merge_on_github(ctx: &Context, request: &PromotionRequest) {
    let (Some(github), Some(events)) = (ctx.github.clone(), ctx.jobs.reporter()) else { return };
    let Some(source_env) = ctx.config.environment(&request.from).cloned() else { return };
    let Some(target_env) = ctx.config.environment(&request.to).cloned() else { return };
    let transport = ctx.transports.get(&request.from).cloned().expect("every environment has a transport");
    let (id, sha) = (request.id, request.sha.clone());
    let gate = target_env.ci.clone().filter(|_| request.ci_override.is_none());
    let clock = ctx.clock.clone();
    let message = format!("Promote {} to {} ({}), Shipday promotion #{id}", request.from, request.to, sha.short());
    let crashed = events.clone();
    let on_panic = move |message| {
        let _ = crashed.send(Report::Crashed(super::Crashed::PromotionMerge(id), message));
    };
    spawn_guarded(
        "promotion merge",
        async move {
            let result = async {
            // Right before merging: the source must still run the approved commit.
            let head = read_head(transport.as_ref(), &source_env).await?;
            if head != sha {
                return Err(format!("{} now runs {}, not the approved {}", source_env.name, head.short(), sha.short()));
            }
            // The CI gate on the exact commit, waiting while its checks run: nothing is merged
            // unless they passed.
            if let Some(gate) = &gate {
                let verdict = super::ci::poll_checks(&github, gate, &sha, &clock, false).await;
                if let Some(refusal) = super::ci::refusal_words(&target_env.name, &sha, &verdict, gate.wait) {
                    return Err(refusal);
                }
            }
            let branch = target_env.branch.as_str();
            match target_env.promote {
                PromoteMode::Merge => match github.merge(branch, &sha, &message).await.map_err(|e| format!("{e:#}"))? {
                    MergeOutcome::Merged(merged) => Ok(merged),
                    MergeOutcome::NothingToMerge => github.branch_sha(branch).await.map_err(|e| format!("{e:#}")),
                    MergeOutcome::Conflict(why) => Err(format!(
                        "GitHub cannot merge {} into `{branch}`: {why}. Resolve it in a pull request; nothing was deployed.",
                        sha.short()
                    )),
                },
                PromoteMode::FastForward => match github.fast_forward(branch, &sha).await.map_err(|e| format!("{e:#}"))? {
                    FastForward::Moved => Ok(sha.clone()),
                    FastForward::NotFastForward => Err(format!(
                        "`{branch}` has commits {} lacks, so it cannot fast-forward; nothing was deployed.",
                        source_env.name
                    )),
                },
            }
        }
        .await;
            let _ = events.send(Report::Promotion(PromotionEvent::Merged { id, result }));
        },
        on_panic,
    );
}

async fn promotion_merged(ctx: &mut Context, id: u64, result: Result<Sha, String>) {
    crate::crashpoint::hit("promotion-merged");
    let Ok(Some(mut request)) = ctx.store.promotion(id) else { return };
    // Only the request's own merge moves it on: never a second deploy stage.
    if request.state != (RequestState::Executing { stage: Stage::Merging }) {
        return;
    }
    let merged = match result {
        Ok(merged) => merged,
        Err(why) => {
            request.state = if why.contains("now runs") {
                RequestState::Void { why: format!("{why}; ask again with `/promote {} {}`", request.from, request.to) }
            } else {
                RequestState::Failed { why }
            };
            save_promotion(ctx, &request).await;
            return;
        }
    };
    request.state = RequestState::Executing {
        stage: Stage::Deploying { sha: merged.clone(), deploy_id: None, github_deployment: None },
    };
    // Intent before effect: "deploy `merged` for this request" is durable before the deploy
    // starts. If it cannot be recorded, nothing starts.
    if !save_promotion_durably(ctx, &request).await {
        return;
    }
    crate::crashpoint::hit("promotion-deploying");
    deploy_promotion(ctx, &request, &merged).await;
}

/// Deploys the merged commit to the target, through the ordinary deploy path.
async fn deploy_promotion(ctx: &mut Context, request: &PromotionRequest, merged: &Sha) {
    let deploy = ShipdayDeploy {
        env: request.to.clone(),
        git_ref: GitRef::parse(merged.as_str()).expect("a SHA is a valid ref"),
        trigger: Trigger::Promotion,
        emergency: request.emergency.clone(),
        audit_text: format!("/deploy {} {} (promotion #{})", request.to, merged, request.id),
        why: promotion_why(request.id),
    };
    let answered = deploy_as_shipday(ctx, deploy).await;
    if let Some(events) = ctx.jobs.reporter() {
        let id = request.id;
        tokio::spawn(async move {
            if let Ok(reply) = answered.await {
                let _ = events.send(Report::Promotion(PromotionEvent::DeployAnswered { id, reply: Box::new(reply) }));
            }
        });
    }
}

async fn promotion_deploy_answered(ctx: &mut Context, id: u64, reply: Reply) {
    let Ok(Some(mut request)) = ctx.store.promotion(id) else { return };
    let RequestState::Executing { stage: Stage::Deploying { sha, deploy_id: None, .. } } = &request.state else {
        return;
    };
    let sha = sha.clone();
    match reply.body {
        ReplyBody::Deploy(record) => {
            crate::crashpoint::hit("promotion-deploy-started");
            request.state = RequestState::Executing {
                stage: Stage::Deploying { sha, deploy_id: Some(record.id), github_deployment: None },
            };
            // The deploy may have finished before its answer got here.
            if let Ok(Some(now)) = ctx.store.deploy(record.id)
                && now.is_finished()
            {
                save_promotion(ctx, &request).await;
                promotion_deploy_finished(ctx, &now).await;
                return;
            }
        }
        ReplyBody::Refused(why) => {
            request.state = RequestState::Failed { why: format!("the deploy to {} did not start: {why}", request.to) };
        }
        _ => return,
    }
    save_promotion(ctx, &request).await;
}

/// A deploy finished: if it carried out a promotion, the promotion ends with it.
pub(crate) async fn promotion_deploy_finished(ctx: &mut Context, record: &DeployRecord) {
    if record.outcome == Outcome::Succeeded {
        void_promotions_from(ctx, record).await;
    }
    if record.trigger != Trigger::Promotion {
        return;
    }
    let Ok(open) = ctx.store.open_promotions() else { return };
    // By the id it noted, or (its answer not noted yet) by the deploy naming the request.
    let Some(mut request) = open.into_iter().find(|r| match &r.state {
        RequestState::Executing { stage: Stage::Deploying { deploy_id: Some(id), .. } } => *id == record.id,
        RequestState::Executing { stage: Stage::Deploying { deploy_id: None, .. } } => {
            is_promotion_deploy(r.id, record)
        }
        _ => false,
    }) else {
        return;
    };
    request.state = match &record.outcome {
        Outcome::Succeeded => RequestState::Done { deploy_id: record.id },
        Outcome::Failed { step, reason, .. } => RequestState::Failed {
            why: format!(
                "deploy #{} failed at \"{step}\" ({reason}). {}",
                record.id,
                next_steps(&request, &ctx.config)
            ),
        },
        Outcome::Cancelled { by, step, .. } => RequestState::Failed {
            why: format!(
                "deploy #{} was cancelled by {by} at \"{step}\"; {} may run part of it. {}",
                record.id,
                request.to,
                next_steps(&request, &ctx.config)
            ),
        },
        Outcome::Interrupted => RequestState::Failed {
            why: format!(
                "deploy #{} was interrupted by a restart of Shipday{}; {} may run part of it, and nothing was \
                 retried, so no step ran twice. {}",
                record.id,
                record.steps.last().map(|s| format!(" during \"{}\"", s.name)).unwrap_or_default(),
                request.to,
                next_steps(&request, &ctx.config)
            ),
        },
        Outcome::Running => return,
    };
    tracing::info!(request = request.id, deploy = record.id, state = ?request.state, "promotion ended");
    save_promotion(ctx, &request).await;
    let outcome = match &request.state {
        RequestState::Done { .. } => format!(
            "✅ Promotion #{} shipped: {} is on {} (deploy #{}).",
            request.id,
            record.sha.short(),
            request.to,
            record.id
        ),
        _ => format!("❌ Promotion #{} did not ship: {}.", request.id, request.tally(ctx.config.timezone)),
    };
    ctx.announce(Announcement::Text(format!("{outcome}\n{}", request.notes.trim_end())));
}

/// After a restart: requests that were approved or being carried out continue from where
/// their record says they stopped. Never twice: the merge is idempotent on GitHub (a second
/// merge finds nothing to merge) and a deploy already started is looked up, not repeated.
pub(crate) async fn resume_promotions(ctx: &mut Context, at_start: bool) {
    if at_start {
        show_recent_promotions_again(ctx);
    }
    let Ok(open) = ctx.store.open_promotions() else { return };
    let now = ctx.clock.now();
    for mut request in open {
        match request.state.clone() {
            RequestState::Pending | RequestState::Approved { .. } if request.expire(now) => {
                crate::metrics::approval("expired");
                save_promotion(ctx, &request).await
            }
            // A new commit deployed on the source voids it (an unknown source does not).
            RequestState::Pending | RequestState::Approved { .. }
                if ctx
                    .store
                    .last_ok(&request.from)
                    .ok()
                    .flatten()
                    .is_some_and(|d| !request.check_source(Some(&d.sha))) =>
            {
                save_promotion(ctx, &request).await
            }
            RequestState::Approved { .. } if slot_allows(ctx, &request, now) => {
                execute_promotion(ctx, request).await;
            }
            // Work in flight is only picked up again after a restart.
            RequestState::Executing { .. } if !at_start => {}
            RequestState::Executing { stage: Stage::Merging } => {
                tracing::info!(request = request.id, "resuming a promotion at its merge");
                merge_on_github(ctx, &request);
            }
            // The deploy may have started before the crash: a deploy recorded for this request
            // is adopted, never started again. Without such a record no step ran (a deploy
            // is recorded, durably, before its first step), so it starts now, once.
            RequestState::Executing { stage: Stage::Deploying { sha, deploy_id: None, .. } } => {
                match started_promotion_deploy(ctx, &request) {
                    Ok(Some(record)) => {
                        tracing::info!(request = request.id, deploy = record.id, "adopting a promotion's deploy");
                        adopt_promotion_deploy(ctx, request, sha, record).await;
                    }
                    Ok(None) => {
                        tracing::info!(request = request.id, "resuming a promotion at its deploy");
                        deploy_promotion(ctx, &request, &sha).await;
                    }
                    Err(why) => {
                        request.state =
                            RequestState::Failed { why: format!("{why}; {}", next_steps(&request, &ctx.config)) };
                        save_promotion(ctx, &request).await;
                    }
                }
            }
            RequestState::Executing { stage: Stage::Deploying { deploy_id: Some(id), .. } } => {
                match ctx.store.deploy(id).ok().flatten() {
                    Some(record) if record.is_finished() => promotion_deploy_finished(ctx, &record).await,
                    Some(_) => {}
                    None => {
                        request.state = RequestState::Failed {
                            why: format!(
                                "deploy #{id} is missing from the store. {}",
                                next_steps(&request, &ctx.config)
                            ),
                        };
                        save_promotion(ctx, &request).await;
                    }
                }
            }
            _ => {}
        }
    }
}

/// The calendar's slot of a later environment: start its promotion (posted for approval
/// where it needs one), unless one is already open.
pub(crate) fn scheduled_promotion(ctx: &mut Context, env: &str, now: DateTime<Utc>) -> Result<(), UserError> {
    let from = previous_environment(&ctx.config.environments, env).ok_or("no previous environment")?.to_owned();
    let open = ctx.store.open_promotions().map_err(|e| UserError::store("read the open promotions", &e))?;
    if let Some(existing) = open.iter().find(|r| r.to == env) {
        return Err(UserError(format!("promotion #{} to {env} is already open", existing.id)));
    }
    prepare_promotion(ctx, &from, env, &scheduler_person(), (None, None), None, now).map_err(|failed| failed.1)
}

/// A webhook event from GitHub: a merge (or push) into the first environment's branch
/// deploys exactly that commit, once, and never an older one (see `merge_stream.rs`),
/// unless someone holds the environment (then their release brings it, since a release
/// deploys the branch's tip). `done` is answered once the decision is durable.
pub(crate) async fn github_event(ctx: &mut Context, event: GitHubEvent, done: tokio::sync::oneshot::Sender<()>) {
    let Some(first) = ctx.config.environments.first().cloned() else {
        let _ = done.send(());
        return;
    };
    let (branch, sha, what) = match &event {
        GitHubEvent::Merged { base, merge_sha, number, title, author, .. } => {
            (base.clone(), merge_sha.clone(), format!("#{number} {title} by {author}"))
        }
        GitHubEvent::Pushed { branch, after, .. } => (branch.clone(), after.clone(), format!("a push to {branch}")),
    };
    let entry = crate::store::AuditEntry {
        at: ctx.clock.now(),
        platform: "github".into(),
        user_id: "webhook".into(),
        person: None,
        text: format!("{what} → {branch} at {sha}"),
        decision: if branch == first.branch.as_str() {
            format!("merge stream of {}", first.name)
        } else {
            "ignored".into()
        },
    };
    if let Err(error) = ctx.store.audit(&entry).and(Ok(())) {
        tracing::error!(error = format!("{error:#}"), "cannot record a webhook event");
    }
    // The branch name and title, for the tickets of whichever deploy ships this commit (on
    // any environment, whatever the base branch).
    if let GitHubEvent::Merged { merge_sha, number, title, head_ref, .. } = &event {
        let pull = MergedPull {
            number: *number,
            title: title.clone(),
            head_ref: head_ref.clone(),
            merge_sha: merge_sha.to_string(),
            merged_at: ctx.clock.now(),
        };
        if let Err(error) = ctx.store.put_merged_pull(&pull) {
            tracing::error!(error = format!("{error:#}"), "cannot record a merged pull request");
        }
    }
    let _ = ctx.store.flush().await;
    if branch != first.branch.as_str() {
        let _ = done.send(());
        return;
    }
    merge_stream(ctx, &first, sha, what, done).await;
}

/// Tells GitHub's environment view what Shipday deployed (every finished deploy, when GitHub
/// is configured). Best effort: GitHub being down never fails a deploy.
pub(crate) fn report_to_github(ctx: &Context, record: &DeployRecord) {
    let Some(github) = ctx.github.clone() else { return };
    if matches!(record.outcome, Outcome::Running) {
        return;
    }
    let record = record.clone();
    tokio::spawn(async move {
        let description = format!("Shipday deploy #{} of {}", record.id, record.git_ref);
        let state = match record.outcome {
            Outcome::Succeeded => crate::clients::github::DeploymentState::Success,
            Outcome::Failed { .. } => crate::clients::github::DeploymentState::Failure,
            _ => crate::clients::github::DeploymentState::Error,
        };
        let result = async {
            let id = github.create_deployment(&record.sha, &record.env, &description).await?;
            github.deployment_status(id, state, &description, None).await
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(deploy = record.id, error = format!("{error:#}"), "cannot report a deploy to GitHub");
        }
    });
}

/// Reads whether the first environment's branch is protected on GitHub, for `/status`.
pub(crate) fn check_protection(ctx: &Context) {
    let (Some(github), Some(events)) = (ctx.github.clone(), ctx.jobs.reporter()) else { return };
    let Some(first) = ctx.config.environments.first().cloned() else { return };
    tokio::spawn(async move {
        let branch = first.branch.to_string();
        let text = match github.branch_protection(&branch).await {
            Ok(Some(p)) if p.requires_pull_request => {
                format!("`{branch}` is protected on GitHub: changes reach it only through pull requests.")
            }
            Ok(Some(_)) => format!(
                "⚠️ `{branch}` is protected on GitHub but does not require pull requests: the team's rule is that it changes only through PRs."
            ),
            Ok(None) => format!(
                "⚠️ `{branch}` is NOT protected on GitHub: the team's rule is that it changes only through PRs. Protect it (require pull requests)."
            ),
            Err(error) => format!("⚠️ Could not read `{branch}`'s protection on GitHub: {error:#}"),
        };
        let _ = events.send(Report::Protection(text));
    });
}

// ---- Promotions across crashes, cancelling and emergencies (issue 13) ----

/// After a restart, the newest requests are shown again as recorded: a crash can come after
/// a request's change (a vote, its end) was recorded but before its message was edited, and
/// chat catches up here (an edit to the same text changes nothing). What resumes after this
/// edits them again.
fn show_recent_promotions_again(ctx: &Context) {
    let Ok(recent) = ctx.store.recent_promotions(RESHOWN_AFTER_RESTART) else { return };
    for request in recent {
        let messages = ctx.store.promotion_messages(request.id).unwrap_or_default();
        if !messages.is_empty() {
            ctx.announce(Announcement::Promotion(Box::new(super::PromotionView { request, messages })));
        }
    }
}

/// A new commit on `record.env`: requests from it that still wait (pending or approved)
/// are void, and their messages say so.
async fn void_promotions_from(ctx: &mut Context, record: &DeployRecord) {
    let Ok(open) = ctx.store.open_promotions() else { return };
    for mut request in open.into_iter().filter(|r| r.from == record.env && r.is_live()) {
        if !request.check_source(Some(&record.sha)) {
            crate::metrics::approval("void");
            save_promotion(ctx, &request).await;
        }
    }
}

/// Records a request and flushes it; `false` (and the request's message says why, when it
/// can) if the store cannot make it durable, so its next effect must not start.
pub(crate) async fn save_promotion_durably(ctx: &mut Context, request: &PromotionRequest) -> bool {
    let written = match ctx.store.put_promotion(request) {
        Ok(()) => ctx.store.flush().await,
        Err(e) => Err(e),
    };
    if let Err(error) = written {
        tracing::error!(error = format!("{error:#}"), request = request.id, "cannot record a promotion request");
        let mut failed = request.clone();
        failed.state = RequestState::Failed {
            why: format!(
                "Shipday could not record its next step, so it stopped before it. {}",
                next_steps(request, &ctx.config)
            ),
        };
        save_promotion(ctx, &failed).await;
        return false;
    }
    let messages = ctx.store.promotion_messages(request.id).unwrap_or_default();
    ctx.announce(Announcement::Promotion(Box::new(super::PromotionView { request: request.clone(), messages })));
    true
}

/// The deploy recorded for this request, if one was started (its record names the request).
fn started_promotion_deploy(ctx: &Context, request: &PromotionRequest) -> Result<Option<DeployRecord>, String> {
    let history = ctx
        .store
        .history(Some(&request.to), PROMOTION_DEPLOY_LOOKBACK)
        .map_err(|e| format!("Shipday cannot read its deploy history ({e:#}), so it did not deploy again"))?;
    Ok(history.into_iter().find(|d| is_promotion_deploy(request.id, d)))
}

/// Notes the deploy a request started before a crash, and finishes the request if the
/// deploy has ended (an interrupted one says what to do next).
async fn adopt_promotion_deploy(ctx: &mut Context, mut request: PromotionRequest, sha: Sha, record: DeployRecord) {
    request.state = RequestState::Executing {
        stage: Stage::Deploying { sha, deploy_id: Some(record.id), github_deployment: None },
    };
    save_promotion(ctx, &request).await;
    if record.is_finished() {
        promotion_deploy_finished(ctx, &record).await;
    }
}

/// `/promote FROM TO --emergency REASON` while a request from FROM to TO for what FROM runs
/// is open: a lead runs it now if it is approved, as its message promises. `None` when no
/// such request is open (a new request is made).
fn emergency_on_open_request(
    ctx: &mut Context,
    from: &str,
    to: &str,
    person: &Person,
    reason: &str,
    now: DateTime<Utc>,
) -> Option<Decision> {
    let live = ctx.store.last_ok(from).ok().flatten()?;
    let open = ctx.store.open_promotions().ok()?;
    let mut request = open.into_iter().find(|r| r.from == from && r.to == to && r.sha == live.sha)?;
    if let Err(why) = request.run_now(person, reason.to_owned(), now) {
        return Some(Decision::refused(why));
    }
    if let Err(error) = ctx.store.put_promotion(&request) {
        return Some(Decision::store_trouble("record an emergency promotion", &error));
    }
    ctx.announce(Announcement::Text(format!(
        "🚨 Emergency promotion: @{{{}}} is running approved promotion #{} ({} → {} at {}) now, outside {}'s slot. Reason: {reason}",
        person.id,
        request.id,
        request.from,
        request.to,
        request.sha.short(),
        request.to
    )));
    if let Some(events) = ctx.jobs.reporter() {
        let _ = events.send(Report::Promotion(PromotionEvent::RunNow { id: request.id }));
    }
    let text = format!("Approved promotion #{} of {} → {} runs now (emergency: {reason}).", request.id, from, to);
    let decision = format!("accepted: emergency run of promotion #{}: {reason}", request.id);
    Some(Decision { reply: Reply::text(Visibility::Ephemeral, text), decision })
}

/// `/promote FROM TO --cancel`: its requester or a lead cancels the open request from FROM
/// to TO before it is carried out.
pub(crate) fn cancel_promotion(
    ctx: &mut Context,
    from: &str,
    to: &str,
    pending: WaitingCommand,
    now: DateTime<Utc>,
) -> Option<(WaitingCommand, Decision)> {
    let Some(person) = pending.person.clone() else {
        return Some((pending, Decision::refused("Only configured people can cancel a promotion.")));
    };
    let open = match ctx.store.open_promotions() {
        Ok(open) => open,
        Err(error) => return Some((pending, Decision::store_trouble("read the open promotions", &error))),
    };
    let Some(mut request) = open.into_iter().find(|r| r.from == from && r.to == to) else {
        return Some((
            pending,
            Decision::refused(format!("No promotion from {from} to {to} is open, so there is nothing to cancel.")),
        ));
    };
    if let Err(why) = request.cancel(&person, now) {
        // It may have expired just now: record that, and say so.
        if request.state == RequestState::Expired {
            let _ = ctx.store.put_promotion(&request);
        }
        return Some((pending, Decision::refused(why)));
    }
    crate::metrics::approval("cancelled");
    if let Err(error) = ctx.store.put_promotion(&request) {
        return Some((pending, Decision::store_trouble("record a cancelled promotion", &error)));
    }
    let messages = ctx.store.promotion_messages(request.id).unwrap_or_default();
    ctx.announce(Announcement::Promotion(Box::new(super::PromotionView { request: request.clone(), messages })));
    let text = format!(
        "Promotion #{} of {} → {} at {} is cancelled; nothing was merged or deployed.",
        request.id,
        from,
        to,
        request.sha.short()
    );
    let decision = format!("accepted: cancelled promotion #{}", request.id);
    Some((pending, Decision { reply: Reply::text(Visibility::Public, text), decision }))
}

/// How many of the newest ended requests a restart shows again.
const RESHOWN_AFTER_RESTART: usize = 10;

/// How far back a target's history is searched for a deploy a request started before a crash.
const PROMOTION_DEPLOY_LOOKBACK: usize = 200;

/// Why Shipday deploys for request `id`; the deploy's record carries it (as its requester's
/// name), which is how a restart finds a deploy the request started.
fn promotion_why(id: u64) -> String {
    format!("promotion request #{id}")
}

/// Whether `record` is the deploy that request `id` started.
fn is_promotion_deploy(id: u64, record: &DeployRecord) -> bool {
    record.trigger == Trigger::Promotion && record.requested_by_name.ends_with(&format!("({})", promotion_why(id)))
}

/// What the team does next when a promotion stopped after its merge.
fn next_steps(request: &PromotionRequest, config: &crate::config::Config) -> String {
    let branch = config.environment(&request.to).map(|e| e.branch.to_string()).unwrap_or_else(|| request.to.clone());
    format!(
        "Check {to} with `/status {to} --live`; then a lead deploys `{branch}` (which has the merge) with `/deploy {to} \
         {branch} --emergency \"finish promotion #{id}\"`, or rolls back with `/rollback {to}`.",
        to = request.to,
        id = request.id
    )
}

/// A drafted request and what finishing it needs.
struct Preparation {
    draft: PromotionRequest,
    github: Arc<GitHubClient>,
    transport: Arc<dyn crate::clients::RemoteExec>,
    source_env: crate::config::Environment,
    target_env: crate::config::Environment,
    target_sha: Option<Sha>,
    projects: Vec<String>,
}

/// Release notes between what the target runs and the promoted commit: merged pull requests
/// with authors and tickets, the commit count, and the migrations added.
async fn release_notes(
    github: &Arc<GitHubClient>,
    base: &Sha,
    head: &Sha,
    projects: &[String],
) -> Result<String, String> {
    let comparison = github.compare(base, head).await.map_err(|e| format!("{e:#}"))?;
    let mut pulls = BTreeMap::new();
    for commit in comparison.commits.iter().rev().take(NOTES_COMMITS) {
        for pull in github.pulls_for_commit(&commit.sha).await.map_err(|e| format!("{e:#}"))? {
            pulls.entry(pull.number).or_insert(pull);
        }
    }
    let mut out = format!("Changes: {} commit(s), {} pull request(s).\n", comparison.ahead_by, pulls.len());
    for pull in pulls.values() {
        let tickets = extract_keys(projects, [pull.title.as_str(), pull.body.as_str(), pull.head_ref.as_str()]);
        let tickets = if tickets.is_empty() {
            String::new()
        } else {
            format!(" ({})", tickets.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
        };
        out.push_str(&format!("• #{} {}{tickets} by @{}\n", pull.number, pull.title, pull.author));
    }
    // Every ticket once: from the pull requests' branch names, titles and descriptions, and
    // from the commit messages.
    let texts = pulls
        .values()
        .flat_map(|p| [p.head_ref.as_str(), p.title.as_str(), p.body.as_str()])
        .chain(comparison.commits.iter().map(|c| c.message.as_str()));
    let all: Vec<String> = extract_keys(projects, texts).into_iter().map(|k| k.to_string()).collect();
    if !all.is_empty() {
        out.push_str(&format!("Tickets: {}\n", all.join(", ")));
    }
    let migrations: Vec<String> =
        comparison.files.iter().filter_map(|f| Migration::from_path(f)).map(|m| m.to_string()).collect();
    if !migrations.is_empty() {
        out.push_str(&format!("Migrations added: {}\n", migrations.join(", ")));
    }
    Ok(out)
}

/// The GitHub repository's web address, or nothing when `[github]` is not configured.
fn github_web_url(ctx: &Context) -> String {
    ctx.config.github.as_ref().map(|github| github.web_url()).unwrap_or_default()
}
