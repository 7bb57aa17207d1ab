//! `/deploy` (and the deploys `/release`, `/rollback` and Shipday start): resolve the ref on the host (and, with the migration guard, read
//! what a personal branch would migrate), decide, record, run; and record what a finished
//! deploy leaves behind (claims, migration debts).

use super::runner::spawn_runner;
use super::*;
use crate::clients::ExecSession;
use crate::clients::OutputTail;
use crate::config::{Environment, Role};
use crate::release::Refusal;
use crate::release::deploy::StepResult;
use crate::release::deploy::{DeployEvent, DeployRecord, Outcome, Trigger};
use crate::release::gitref::{GitRef, Sha};
use crate::release::locks::{ActiveDeploy, Hold, HoldChange, HoldKind, admit_deploy, admit_release};
use crate::release::migrations::{BranchMigrations, MigrationDebt};
use crate::release::plan::{
    DeployPlan, HOST_LOCK, LOCK_BUSY_EXIT, LOCK_WAIT_SECS, build_plan, parse_resolution, resolve_script, undo_steps,
};
use crate::release::policy::check_deploy_slot;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

/// A deploy whose ref is being resolved on the host.
#[derive(Clone)]
pub(crate) struct DeployRequest {
    pub env: String,
    pub git_ref: GitRef,
    pub dry_run: bool,
    /// A lead's reason for deploying outside the environment's slot.
    pub emergency: Option<String>,
    /// Deploy despite conflicting or irreversible migrations.
    pub force: bool,
    pub trigger: Trigger,
    /// A lead's reason to deploy over the CI gate (`--force "reason"`).
    pub ci_override: Option<String>,
    /// The CI gate already passed this commit (set by `ci::checked`).
    pub ci_passed: bool,
}

impl DeployRequest {
    /// A deploy of `git_ref` to `env` for `trigger`: no dry run, no emergency, no force over
    /// the migration guard or the CI gate.
    pub(crate) fn new(env: &str, git_ref: GitRef, trigger: Trigger) -> Self {
        Self {
            env: env.to_owned(),
            git_ref,
            dry_run: false,
            emergency: None,
            force: false,
            trigger,
            ci_override: None,
            ci_passed: false,
        }
    }
}

/// A ref resolved on the host: the deploy's open session, the commit, and what the migration
/// guard found on the branch.
pub(crate) struct ResolvedRef {
    pub session: Box<dyn ExecSession>,
    pub sha: Sha,
    pub migrations: Option<BranchMigrations>,
}

/// The result of resolving a ref: the open session and the commit, or a reason for the user.
pub(crate) struct Resolved {
    pub pending: WaitingCommand,
    pub request: DeployRequest,
    pub result: Result<ResolvedRef, UserError>,
}

/// A deploy in flight, with what it changes when it ends.
pub(crate) struct RunningDeploy {
    pub record: DeployRecord,
    /// The command following its progress, if any (otherwise it is announced).
    pub watcher: Option<mpsc::UnboundedSender<ProgressUpdate>>,
    /// The migration debt its first steps undo.
    pub pays_debt: Option<MigrationDebt>,
    /// The migration debt it leaves once its code is checked out.
    pub new_debt: Option<MigrationDebt>,
    /// Someone cancelled it (`/cancel`): no further step starts.
    pub cancel: Option<super::cancel::CancelRequest>,
}

/// A deploy accepted and recorded, waiting for its answer to be durable before it runs.
pub(crate) struct AcceptedDeploy {
    /// The span of the command that asked for it (with its `deploy_id`): the deploy's steps
    /// and everything logged about them run in it.
    pub span: tracing::Span,
    /// Behind a lock only so the context stays `Sync`: nothing else touches it.
    session: std::sync::Mutex<Box<dyn ExecSession>>,
    plan: DeployPlan,
    record: DeployRecord,
    /// The hold before this deploy, restored if it does not start.
    held_before: Option<Hold>,
    watcher: Option<mpsc::UnboundedSender<ProgressUpdate>>,
    pays_debt: Option<MigrationDebt>,
    new_debt: Option<MigrationDebt>,
}

/// The prefix of the steps that undo a migration debt.
pub(crate) const UNDO_STEP: &str = "undo ";

/// First half of a deploy: check policy and locks, then resolve the ref on the host.
pub(crate) fn deploy(
    ctx: &mut Context,
    request: DeployRequest,
    pending: WaitingCommand,
    now: DateTime<Utc>,
) -> Option<(WaitingCommand, Decision)> {
    // Whoever asked (a command, or Shipday itself), its resolve job runs in this span.
    let _entered = pending.span.clone().entered();
    if let Some(person) = &pending.person
        && let Some(refusal) = super::ci::check_override(&request, person)
    {
        return Some((pending, Decision::refused(refusal)));
    }
    if let Err(refusal) = admit(ctx, &request, &pending, now) {
        return Some((pending, Decision::refused(refusal.0)));
    }
    // A freeze stops every deploy but giving back a claim (which puts the environment's own
    // branch back); a lead's --emergency goes through, audited and announced.
    if request.trigger != Trigger::Release && !request.dry_run {
        let automatic = matches!(request.trigger, Trigger::Scheduled | Trigger::Merge);
        let emergency = request.emergency.as_deref();
        if let Err(refusal) = check_deploy_freeze(ctx, &request.env, &pending, emergency, automatic, now) {
            return Some((pending, Decision::refused(refusal.0)));
        }
    }
    if matches!(request.trigger, Trigger::Command | Trigger::Rollback) && !request.dry_run {
        let environment = ctx.config.environment(&request.env).expect("parser checked the environment");
        let person = pending.person.as_ref().expect("policy lets only configured people deploy");
        let checked = check_deploy_slot(&ctx.config.calendar, environment, person, request.emergency.as_deref(), now);
        if let Err(refusal) = checked {
            return Some((pending, Decision::refused(refusal.0)));
        }
    }
    start_resolving(ctx, request, pending, now);
    None
}

/// Whether this deploy may go ahead with the state as it is now.
fn admit(
    ctx: &Context,
    request: &DeployRequest,
    pending: &WaitingCommand,
    now: DateTime<Utc>,
) -> Result<HoldChange, Refusal> {
    let environment = ctx.config.environment(&request.env).expect("parser checked the environment");
    let person = pending.person.as_ref().expect("policy lets only configured people deploy");
    let store = |e: anyhow::Error| Refusal::new(UserError::store("read the locks", &e).0);
    let hold = ctx.store.hold(&request.env).map_err(store)?;
    let active = match ctx.starting.get(&request.env) {
        Some(starting) => Some(starting.clone()),
        None => ctx.store.active(&request.env).map_err(store)?,
    };
    match request.trigger {
        // A dry run changes nothing, so holds and running deploys do not stop it; its
        // reply says whether the real deploy would be refused (see `would_refuse`).
        Trigger::Command if request.dry_run => {
            admit_deploy(now, environment, person, &request.git_ref, None, None).map(|_| HoldChange::Keep)
        }
        Trigger::Command | Trigger::Scheduled => {
            admit_deploy(now, environment, person, &request.git_ref, hold.as_ref(), active.as_ref())
        }
        // Rollbacks, promotions and merges deploy the environment's own history: never a claim.
        Trigger::Rollback | Trigger::Promotion | Trigger::Merge => {
            admit_deploy(now, environment, person, &request.git_ref, hold.as_ref(), active.as_ref())
                .map(|_| HoldChange::Keep)
        }
        // Shipday itself releases a claim that has expired.
        Trigger::Release if person.id == crate::handlers::calendar::scheduler_person().id => match (&hold, &active) {
            (Some(h), None) if h.is_expired(now) => Ok(HoldChange::Keep),
            _ => Err(Refusal::new(format!("{}'s claim has not expired.", request.env))),
        },
        Trigger::Release => {
            admit_release(now, environment, person, hold.as_ref(), active.as_ref()).map(|()| HoldChange::Keep)
        }
    }
}

/// Why the deploy a dry run shows would be refused if it were real, now.
fn would_refuse(
    ctx: &Context,
    request: &DeployRequest,
    pending: &WaitingCommand,
    now: DateTime<Utc>,
) -> Option<String> {
    let real = DeployRequest { dry_run: false, ..request.clone() };
    if let Err(refusal) = admit(ctx, &real, pending, now) {
        return Some(refusal.0);
    }
    let environment = ctx.config.environment(&request.env)?;
    let person = pending.person.as_ref()?;
    if request.trigger != Trigger::Release {
        let manual = ctx.store.freezes().unwrap_or_default();
        let (calendar, tz) = (ctx.config.calendar.freezes(), ctx.config.calendar.timezone());
        let emergency = request.emergency.as_deref();
        let checked =
            crate::release::freeze::check_freeze(&manual, calendar, tz, &request.env, person, emergency, false, now);
        if let Err(refusal) = checked {
            return Some(refusal.0);
        }
    }
    check_deploy_slot(&ctx.config.calendar, environment, person, request.emergency.as_deref(), now).err().map(|r| r.0)
}

fn start_resolving(ctx: &mut Context, request: DeployRequest, pending: WaitingCommand, now: DateTime<Utc>) {
    let environment = ctx.config.environment(&request.env).expect("parser checked the environment").clone();
    let transport = ctx.transports.get(&request.env).cloned().expect("every environment has a transport");
    if !request.dry_run {
        let who_name = pending.person.as_ref().map(|p| p.name.clone()).unwrap_or_default();
        ctx.starting.insert(
            request.env.clone(),
            ActiveDeploy { deploy_id: 0, who_name, git_ref: request.git_ref.clone(), since: now },
        );
    }
    let Some(events) = ctx.jobs.reporter() else { return };
    let redactor = ctx.redactor.clone();
    let crashed = events.clone();
    let crash = Crashed::Resolve { env: request.env.clone(), dry_run: request.dry_run };
    let on_panic = move |message| {
        let _ = crashed.send(Report::Crashed(crash, message));
    };
    spawn_guarded(
        "resolve",
        async move {
            let script = resolve_script(&environment, &request.git_ref);
            let name = &environment.name;
            let result = async {
            let mut session = transport.connect().await.map_err(|e| {
                format!("Cannot reach {name}'s host ({}): {e:#}. Nothing was changed.", transport.target())
            })?;
            let mut output = OutputTail::new(64 * 1024);
            let run = session.run(&script, environment.step_timeout, &mut output).await;
            let text = output.text();
            let sha = match (run, parse_resolution(&request.git_ref, &text)) {
                (Ok(result), Some(sha)) if result.is_ok() => sha,
                (Ok(StepResult::Exit { code: LOCK_BUSY_EXIT }), _) => {
                    session.close().await;
                    return Err(format!(
                        "A step of an earlier deploy is still running on {name}'s host (it holds {HOST_LOCK}; Shipday \
                         waited {LOCK_WAIT_SECS}s). Nothing was changed. Try again once it ends; `/status {name}` says what ran."
                    ));
                }
                (Ok(result), _) if text.contains("flock: ") || result == StepResult::Exit { code: 127 } => {
                    session.close().await;
                    let said = redactor.redact(text.trim());
                    return Err(format!(
                        "Shipday cannot take its deploy lock ({HOST_LOCK}, with `flock` from util-linux) on {name}'s host ({}): {said}. \
                         Its `dir` must be a git checkout. Nothing was changed.",
                        result.describe()
                    ));
                }
                (Ok(result), _) => {
                    session.close().await;
                    tracing::info!(output = %redactor.redact(text.trim()), result = %result.describe(), "ref not resolved");
                    return Err(format!(
                        "`{}` is not a branch or tag on {name}'s origin. Check the name, or push it first. Nothing was changed.",
                        request.git_ref
                    ));
                }
                (Err(e), _) => {
                    session.close().await;
                    return Err(format!("Could not resolve `{}` on {name}: {e:#}. Nothing was changed.", request.git_ref));
                }
            };
            let migrations = match &environment.migrations {
                Some(config) if request.git_ref != environment.branch => {
                    match super::migrations::assess_branch(session.as_mut(), &environment, config, &sha)
                        .await
                    {
                        Ok(found) => Some(found),
                        Err(error) => {
                            session.close().await;
                            return Err(format!(
                                "Could not check `{}`'s migrations on {name}: {error}. Nothing was changed.",
                                request.git_ref
                            ));
                        }
                    }
                }
                _ => None,
            };
            Ok(ResolvedRef { session, sha, migrations })
        }
        .await;
            let _ = events.send(Report::Resolved(Box::new(Resolved {
                pending,
                request,
                result: result.map_err(UserError),
            })));
        },
        on_panic,
    );
}

/// Second half of a deploy: the commit is known; decide again, record, then run.
pub(crate) async fn resolved(ctx: &mut Context, resolved: Resolved) {
    let Resolved { pending, request, result } = resolved;
    if !request.dry_run {
        ctx.starting.remove(&request.env);
    }
    let ResolvedRef { session, sha, migrations } = match result {
        Ok(found) => found,
        Err(reason) => return ctx.answer(pending, Decision::from(reason)),
    };
    let now = ctx.clock.now();
    let environment = ctx.config.environment(&request.env).expect("parser checked the environment").clone();
    let person = pending.person.clone().expect("policy lets only configured people deploy");
    if let Err(refusal) = check_migrations(&request, &person, migrations.as_ref()) {
        session.close().await;
        return ctx.answer(pending, Decision::refused(refusal.0));
    }
    // The CI gate reads GitHub's checks on exactly this commit, waiting outside the loop while
    // they run; `ci::checked` comes back here once they passed.
    if let Some(gate) = super::ci::gate_for(ctx, &request) {
        let found = ResolvedRef { session, sha, migrations };
        return super::ci::spawn_gate(ctx, Resolved { pending, request, result: Ok(found) }, gate);
    }
    let debt = match ctx.store.migration_debt(&request.env) {
        Ok(debt) => debt,
        Err(error) => {
            session.close().await;
            return ctx.answer(pending, Decision::store_trouble("read a migration debt", &error));
        }
    };
    let (plan, pays_debt, new_debt) = plan_with_guard(&environment, &request, &sha, &person, migrations, debt);
    if request.dry_run {
        session.close().await;
        let mut plan = plan;
        plan.would_refuse = would_refuse(ctx, &request, &pending, now);
        let decision = format!("dry run of `{}` on {} at {sha}", request.git_ref, request.env);
        let reply = Reply { visibility: Visibility::Ephemeral, body: ReplyBody::DryRun(plan) };
        return ctx.answer(pending, Decision { reply, decision });
    }
    let change = match admit(ctx, &request, &pending, now) {
        Ok(change) => change,
        Err(refusal) => {
            session.close().await;
            return ctx.answer(pending, Decision::refused(refusal.0));
        }
    };
    let links = deploy_links(ctx, &request.env, &sha);
    let record = match ctx.store.next_deploy_id() {
        Ok(id) => DeployRecord {
            id,
            env: request.env.clone(),
            git_ref: request.git_ref.clone(),
            sha: sha.clone(),
            requested_by: person.id.clone(),
            requested_by_name: person.name.clone(),
            trigger: request.trigger,
            emergency: request.emergency.clone(),
            migrations: plan.migrations.clone(),
            started_at: now,
            finished_at: None,
            steps: Vec::new(),
            outcome: Outcome::Running,
            tickets: Vec::new(),
            claimed_until: match &change {
                HoldChange::Set(Hold { kind: HoldKind::Claim { expires_at, .. }, .. }) => Some(*expires_at),
                _ => None,
            },
            links: Box::new(links),
        },
        Err(error) => {
            session.close().await;
            return ctx.answer(pending, Decision::store_trouble("allocate a deploy id", &error));
        }
    };
    pending.record_deploy(record.id);
    let held_before = ctx.store.hold(&request.env).ok().flatten();
    let existing_debt = ctx.store.migration_debt(&request.env).ok().flatten();
    let intent = crate::store::DeployIntent {
        deploy_id: record.id,
        debt: possible_debt(existing_debt.as_ref(), new_debt.as_ref()),
    };
    let written = ctx.store.put_deploy(&record).and_then(|()| {
        let active = ActiveDeploy {
            deploy_id: record.id,
            who_name: person.name.clone(),
            git_ref: request.git_ref.clone(),
            since: now,
        };
        // Intent before effect: what this deploy may leave behind is durable before its
        // first step runs (the flush below comes before the runner starts).
        ctx.store.set_deploy_intent(&request.env, Some(&intent))?;
        ctx.store.set_active(&request.env, Some(&active))?;
        // Resolving took the host's deploy lock, so no step of an interrupted deploy runs.
        ctx.store.set_interrupted(&request.env, None)?;
        match &change {
            HoldChange::Keep => Ok(()),
            HoldChange::Set(hold) => ctx.store.set_hold(&request.env, Some(hold)),
            HoldChange::Clear => ctx.store.set_hold(&request.env, None),
        }
    });
    let written = match written {
        Ok(()) => ctx.store.flush().await,
        Err(error) => Err(error),
    };
    if let Err(error) = written {
        session.close().await;
        tracing::error!(error = format!("{error:#}"), "cannot record a deploy");
        abandon_start(ctx, &record, held_before.as_ref());
        let text = format!(
            "Shipday could not record this deploy in its store ({}), so it did not start it. Nothing was changed on {}. An operator can check its logs.",
            store_problem(&error),
            request.env
        );
        return ctx.answer(pending, Decision::refused(text));
    }
    let mut decision = format!("accepted: deploy #{} of `{}` to {} at {sha}", record.id, request.git_ref, request.env);
    if let HoldChange::Set(hold) = &change {
        decision.push_str(&format!("; {}", hold.describe(&request.env, now)));
    }
    if let Some(debt) = &pays_debt {
        decision.push_str(&format!("; first undoes the migrations of `{}`", debt.git_ref));
    }
    if request.force {
        decision.push_str("; --force over the migration guard");
    }
    if let Some(reason) = request.ci_override.as_ref().filter(|_| environment.ci.is_some()) {
        decision.push_str(&format!("; --force over the CI gate: {reason}"));
        ctx.announce(Announcement::Text(format!(
            "⚠️ CI gate overridden: @{{{}}} is deploying `{}` ({}) to {} without waiting for its required checks. \
             Reason: {reason}",
            person.id,
            request.git_ref,
            sha.short(),
            request.env
        )));
    }
    if let Some(reason) = &request.emergency {
        decision.push_str(&format!("; EMERGENCY outside the slot: {reason}"));
        ctx.announce(Announcement::Text(format!(
            "🚨 Emergency deploy: @{{{}}} is deploying `{}` to {} outside its slot. Reason: {reason}",
            person.id, request.git_ref, request.env
        )));
    }
    let watcher = pending.invocation.progress.clone();
    let reply = Reply { visibility: Visibility::Public, body: ReplyBody::Deploy(record.clone()) };
    // The reply is sent only after the record, lock and audit entry are flushed, and the
    // steps start only after that (see `start_accepted`).
    let session = std::sync::Mutex::new(session);
    let span = pending.span.clone();
    let accepted = AcceptedDeploy { span, session, plan, record, held_before, watcher, pays_debt, new_debt };
    ctx.answers.push(Answer {
        waiting: pending,
        decision: Decision { reply, decision },
        starts: Some(Box::new(accepted)),
    });
}

/// A deploy whose acceptance was answered: `durable` says whether the answer and everything
/// recorded with it reached the disk. If so its steps start; if not, the people were told that
/// nothing was done, so nothing is.
pub(crate) async fn start_accepted(ctx: &mut Context, accepted: AcceptedDeploy, durable: bool) {
    let AcceptedDeploy { span: _, session, plan, record, held_before, watcher, pays_debt, new_debt } = accepted;
    let session = session.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !durable {
        session.close().await;
        abandon_start(ctx, &record, held_before.as_ref());
        return;
    }
    if let Some(watcher) = &watcher {
        let _ = watcher.send(ProgressUpdate { event: DeployEvent::Accepted, record: record.clone() });
    }
    tracing::info!(deploy = record.id, env = %record.env, git_ref = %record.git_ref, sha = %record.sha, "deploy started");
    ctx.running.insert(record.id, RunningDeploy { record: record.clone(), watcher, pays_debt, new_debt, cancel: None });
    spawn_runner(ctx, record.id, session, plan);
}

/// What a finished deploy leaves behind: migration debts paid or taken on, and the claim
/// a release gives back (only once it succeeded).
pub(crate) fn record_what_it_left(
    ctx: &mut Context,
    record: &DeployRecord,
    pays_debt: Option<MigrationDebt>,
    new_debt: Option<MigrationDebt>,
) -> anyhow::Result<()> {
    let env = &record.env;
    // What follows records what the deploy really left behind: its intent is spent.
    if ctx.store.deploy_intent(env)?.is_some_and(|i| i.deploy_id == record.id) {
        ctx.store.set_deploy_intent(env, None)?;
    }
    // A cancel that stopped an undo step (or kept one from starting) leaves the debt unpaid,
    // like an undo that failed: the next deploy undoes it first.
    let undo_failed = matches!(&record.outcome, Outcome::Failed { step, .. } | Outcome::Cancelled { step, .. } if step.starts_with(UNDO_STEP));
    let reached_code = record.steps.iter().any(|s| !s.name.starts_with(UNDO_STEP));
    if pays_debt.is_some() && !undo_failed && record.steps.iter().any(|s| s.name.starts_with(UNDO_STEP)) {
        ctx.store.set_migration_debt(env, None)?;
    }
    if let Some(debt) = &new_debt
        && reached_code
    {
        ctx.store.set_migration_debt(env, Some(debt))?;
    }
    let now = ctx.clock.now();
    let hold = ctx.store.hold(env)?;
    if record.trigger == Trigger::Release {
        match (&record.outcome, hold) {
            (Outcome::Succeeded, Some(hold)) if matches!(hold.kind, HoldKind::Claim { .. }) => {
                ctx.store.set_hold(env, None)?;
            }
            (Outcome::Succeeded, _) => {}
            (_, Some(mut hold)) => {
                // Keep the claim, and give it a new term so an expired one is not retried
                // every tick.
                if let HoldKind::Claim { expires_at, .. } = &mut hold.kind {
                    let ttl = ctx.config.environment(env).map(|e| e.claim_ttl).unwrap_or_default();
                    *expires_at = now + chrono::Duration::from_std(ttl).unwrap_or_default();
                }
                ctx.store.set_hold(env, Some(&hold))?;
            }
            (_, None) => {}
        }
    }
    if undo_failed && let Some(debt) = pays_debt {
        announce_undo_failure(ctx, record, &debt);
    }
    queue_ticket_scan(ctx, record);
    Ok(())
}

fn announce_undo_failure(ctx: &Context, record: &DeployRecord, debt: &MigrationDebt) {
    let env = &record.env;
    let Some(environment) = ctx.config.environment(env) else { return };
    let Outcome::Failed { step, reason, .. } = &record.outcome else { return };
    let dir = crate::release::plan::quote(&environment.work_dir());
    // The command that just failed is not offered again: `--fake` only records the
    // migrations as unapplied, which is the way out when the reverse cannot run.
    let fake = environment
        .migrations
        .as_ref()
        .map(|config| {
            debt.migrations
                .previous
                .iter()
                .map(|(app, previous)| {
                    let target = previous.as_deref().unwrap_or("zero");
                    let command =
                        config.manage_command(&["migrate", app, target, "--fake"], crate::release::plan::quote);
                    format!("`cd {dir} && {command}`")
                })
                .collect::<Vec<_>>()
                .join(" then ")
        })
        .unwrap_or_default();
    // What to do afterwards, and who holds the environment, as the store says now.
    let hold = ctx.store.hold(env).ok().flatten();
    let (held, then) = match &hold {
        Some(Hold { kind: HoldKind::Claim { .. }, holder, .. }) => {
            (format!(" and @{{{holder}}} still holds {env}"), format!("`/release {env}`"))
        }
        Some(Hold { kind: HoldKind::Lock { .. }, holder, .. }) => (
            format!(" and {env} is locked by @{{{holder}}}"),
            format!("`/unlock {env}`, then `/deploy {env} {}`", environment.branch),
        ),
        None => (String::new(), format!("`/deploy {env} {}`", environment.branch)),
    };
    let leads: Vec<String> =
        ctx.config.people.iter().filter(|p| p.has(Role::Lead)).map(|p| format!("@{{{}}}", p.id)).collect();
    ctx.announce(Announcement::Text(format!(
        "❌ {env} was NOT switched: undoing `{}`'s migrations failed at \"{step}\" ({reason}). `{}` stays checked out{held}. \
         Running the same undo again will fail the same way. The options, on the host: \
         (1) give the migration a reverse (e.g. `reverse_code` for RunPython), push it to `{}` and deploy it, then {then}; \
         (2) undo its changes to the database by hand (or accept them), then mark it unapplied with {fake}: this changes no table, \
         so whatever the migration created or changed stays in the database, and a later migrate of it can fail or lose data; \
         (3) restore the database from a backup taken before `{}` was deployed (that undoes the migration and its record). \
         Then {then}. {}",
        debt.git_ref,
        debt.git_ref,
        debt.git_ref,
        debt.git_ref,
        leads.join(" ")
    )));
}

/// The migration guard's refusals: a branch whose migrations conflict with its base's needs
/// `--force`; one that cannot be undone needs a lead's `--force`.
fn check_migrations(
    request: &DeployRequest,
    person: &crate::config::Person,
    migrations: Option<&BranchMigrations>,
) -> Result<(), Refusal> {
    let Some(migrations) = migrations else { return Ok(()) };
    if request.dry_run {
        return Ok(());
    }
    if !migrations.conflicts.is_empty() && !request.force {
        return Err(Refusal::new(format!(
            "`{}` and {} both add migrations to {} (two leaf nodes). Merge {} into your branch and add a merge \
             migration (`manage.py makemigrations --merge`), or deploy with --force.",
            request.git_ref,
            request.env,
            migrations.conflicts.join(", "),
            request.env
        )));
    }
    let lead_forced = request.force && person.has(Role::Lead);
    if !migrations.irreversible.is_empty() && !lead_forced {
        let list: Vec<String> = migrations.irreversible.iter().map(|(m, why)| format!("{m} ({why})")).collect();
        return Err(Refusal::new(format!(
            "`{}` adds migrations that cannot be undone automatically: {}. A lead can deploy it with --force; they \
             will then have to be undone by hand before {} gets other code.",
            request.git_ref,
            list.join(", "),
            request.env
        )));
    }
    Ok(())
}

/// The plan, with undo steps first when another branch's migrations are still applied, and the
/// debts this deploy pays and takes on.
fn plan_with_guard(
    environment: &Environment,
    request: &DeployRequest,
    sha: &crate::release::gitref::Sha,
    person: &crate::config::Person,
    migrations: Option<BranchMigrations>,
    debt: Option<MigrationDebt>,
) -> (DeployPlan, Option<MigrationDebt>, Option<MigrationDebt>) {
    let mut plan = build_plan(environment, &request.git_ref, sha);
    let Some(config) = &environment.migrations else { return (plan, None, None) };
    let same_branch = debt.as_ref().is_some_and(|d| d.git_ref == request.git_ref.as_str());
    let pays_debt = match debt.clone() {
        Some(debt) if !same_branch => {
            plan.steps.splice(0..0, undo_steps(environment, config, &debt));
            Some(debt)
        }
        _ => None,
    };
    let new_debt = migrations.as_ref().filter(|m| !m.is_empty()).map(|found| {
        let mut found = found.clone();
        // Redeploying the same branch: the state to go back to is still the one from before it.
        if let Some(old) = debt.filter(|_| same_branch) {
            for (app, previous) in old.migrations.previous {
                found.previous.insert(app, previous);
            }
        }
        MigrationDebt {
            owner: person.id.clone(),
            owner_name: person.name.clone(),
            git_ref: request.git_ref.to_string(),
            migrations: found,
        }
    });
    plan.migrations = migrations;
    (plan, pays_debt, new_debt)
}

/// A deploy Shipday starts itself: a calendar slot, an expired claim, a merge, a promotion.
pub(crate) struct ShipdayDeploy {
    pub env: String,
    pub git_ref: crate::release::gitref::GitRef,
    pub trigger: Trigger,
    pub emergency: Option<String>,
    /// What the audit log shows as the command.
    pub audit_text: String,
    /// Why Shipday deploys, for people: "dev's deploy slot", "merge of PR #12". It names the
    /// requester ("Shipday (merge of PR #12)"), so the team sees what started each deploy.
    pub why: String,
}

/// Starts `deploy` through the ordinary deploy path, as Shipday (a lead), and returns where
/// its reply (accepted or refused) arrives.
pub(crate) async fn deploy_as_shipday(
    ctx: &mut Context,
    shipday: ShipdayDeploy,
) -> tokio::sync::oneshot::Receiver<Reply> {
    let (reply, answered) = tokio::sync::oneshot::channel();
    let invocation = super::Invocation::new("scheduler", "shipday", &shipday.audit_text);
    let mut person = crate::handlers::calendar::scheduler_person();
    person.name = format!("Shipday ({})", shipday.why);
    let pending = WaitingCommand::new(invocation, Some(person), reply);
    pending.record_env(&shipday.env);
    let request = DeployRequest {
        emergency: shipday.emergency,
        ..DeployRequest::new(&shipday.env, shipday.git_ref, shipday.trigger)
    };
    let now = ctx.clock.now();
    if let Some((pending, handled)) = deploy(ctx, request, pending, now) {
        ctx.answer(pending, handled);
    }
    answered
}

/// Starts `deploy` as Shipday and tells the team `if_refused: REASON` should it be refused.
pub(crate) async fn deploy_as_shipday_or_say_why(ctx: &mut Context, shipday: ShipdayDeploy, if_refused: String) {
    let answered = deploy_as_shipday(ctx, shipday).await;
    let announcements = ctx.announcements.clone();
    tokio::spawn(async move {
        if let Ok(Reply { body: ReplyBody::Refused(reason), .. }) = answered.await {
            let _ = announcements.send(Announcement::Text(format!("{if_refused}: {reason}")));
        }
    });
}

// ---- Crash safety (issue 13, deploy side) ----

/// The migration debt `env` has if every step of a deploy runs, given the debt it has now
/// (which the deploy may pay, or only partly) and the one the deploy takes on.
fn possible_debt(existing: Option<&MigrationDebt>, new_debt: Option<&MigrationDebt>) -> Option<MigrationDebt> {
    match (existing, new_debt) {
        (None, new_debt) => new_debt.cloned(),
        (Some(existing), None) => Some(existing.clone()),
        (Some(existing), Some(new_debt)) if existing.git_ref == new_debt.git_ref => Some(new_debt.clone()),
        (Some(existing), Some(new_debt)) => {
            // Both may be applied: undo everything back to the state before the older branch.
            let mut merged = new_debt.clone();
            for migration in &existing.migrations.added {
                if !merged.migrations.added.contains(migration) {
                    merged.migrations.added.push(migration.clone());
                }
            }
            for (app, previous) in &existing.migrations.previous {
                merged.migrations.previous.insert(app.clone(), previous.clone());
            }
            merged.migrations.irreversible.extend(existing.migrations.irreversible.iter().cloned());
            Some(merged)
        }
    }
}

/// Short words for a store failure: a full disk is named as such.
fn store_problem(error: &anyhow::Error) -> String {
    let full = error
        .chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull);
    if full { "its disk is full".to_owned() } else { "it cannot write".to_owned() }
}

/// A deploy whose start could not be made durable: it is not started, and what was
/// written for it (in memory only) says so, should a later flush make it durable.
fn abandon_start(ctx: &mut Context, record: &DeployRecord, held_before: Option<&Hold>) {
    let mut record = record.clone();
    record.outcome = Outcome::Failed {
        step: "shipday".into(),
        reason: "not started: Shipday could not record it in its store".into(),
        state_unknown: false,
    };
    record.finished_at = Some(ctx.clock.now());
    let undone = ctx
        .store
        .put_deploy(&record)
        .and_then(|()| ctx.store.set_active(&record.env, None))
        .and_then(|()| ctx.store.set_deploy_intent(&record.env, None))
        .and_then(|()| ctx.store.set_hold(&record.env, held_before));
    if let Err(error) = undone {
        tracing::error!(error = format!("{error:#}"), deploy = record.id, "cannot undo a deploy that did not start");
    }
}

/// The links of a deploy of `sha` to `env`: on GitHub (when configured) the commit, the compare
/// with what `env` ran last and the pull requests merged as this commit (heard from the merge
/// webhook); the environment's configured `url`.
fn deploy_links(ctx: &Context, env: &str, sha: &Sha) -> crate::release::deploy::DeployLinks {
    let repository = ctx.config.github.as_ref().map(|github| github.web_url());
    let live = ctx.store.last_ok(env).ok().flatten().map(|record| record.sha);
    let pulls: Vec<u64> = ctx
        .store
        .merged_pulls()
        .unwrap_or_default()
        .into_iter()
        .filter(|pull| pull.merge_sha.eq_ignore_ascii_case(sha.as_str()))
        .map(|pull| pull.number)
        .collect();
    let environment = ctx.config.environment(env);
    crate::release::deploy::DeployLinks::new(
        repository.as_deref(),
        sha,
        live.as_ref(),
        &pulls,
        env,
        environment.and_then(|e| e.url.as_deref()),
    )
}
