//! The merge stream: what GitHub says was merged or pushed into the first environment's branch,
//! turned into at most one deploy per commit, never backwards.
//!
//! One GitHub merge arrives as several deliveries (the pull request closing, the push, any
//! redelivery), each with its own delivery id, and the signature does not cover that id, so a
//! captured delivery can be resent with a fresh one. Shipday therefore decides on the content:
//!
//! 1. A commit the merge stream already handled for the environment (durable, for
//!    [`crate::store::MERGE_TTL`]) is not deployed again.
//! 2. A commit that is an ancestor of (or equal to) the newest commit the merge stream deployed
//!    (the *merge head*, which never expires) is older than what the environment runs: it is
//!    logged and ignored, never deployed. Ancestry is read on the host, in its checkout, after a
//!    fetch (`git merge-base --is-ancestor`). When it cannot be read, nothing is deployed and
//!    the team is told (fail closed).
//! 3. Everything else deploys exactly that commit, and becomes the merge head.
//!
//! Every decision is taken in the engine's serial loop; a commit whose ancestry is being read is
//! remembered in memory, so a second delivery of it arriving meanwhile is a duplicate.

use super::*;
use crate::clients::OutputTail;
use crate::config::Environment;
use crate::handlers::deploy::ShipdayDeploy;
use crate::release::deploy::Trigger;
use crate::release::gitref::{GitRef, Sha};
use crate::release::plan::{host_script, quote};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long reading ancestry on the host may take (a fetch, then a local check).
const ANCESTRY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a delivered commit stands against the merge head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ancestry {
    /// The commit is the merge head or one of its ancestors: deploying it would go backwards.
    Older,
    /// The commit is not behind the merge head (a descendant, or a rewritten branch).
    Newer,
    /// The host could not say, and why.
    Unknown(String),
}

/// The answer of an ancestry read, back in the loop.
pub(crate) struct MergeCheck {
    pub env: String,
    pub sha: Sha,
    /// The merge head it was compared with.
    pub base: Sha,
    /// What announced it, for people (`#7 Title by login`).
    pub what: String,
    pub verdict: Ancestry,
    /// Answered once the decision is durable (the webhook route records the delivery then).
    pub done: oneshot::Sender<()>,
}

/// A commit announced on the first environment's branch: deploy it once, never backwards.
/// `done` is answered once the decision is durable.
pub(crate) async fn merge_stream(
    ctx: &mut Context,
    first: &Environment,
    sha: Sha,
    what: String,
    done: oneshot::Sender<()>,
) {
    let env = first.name.clone();
    let key = format!("{env}\u{1f}{sha}");
    match ctx.store.merge_seen(&env, sha.as_str()) {
        Ok(false) if !ctx.merge_checks.contains(&key) => {}
        Ok(_) => {
            tracing::info!(%env, %sha, %what, "this commit was already handled by the merge stream; not deployed again");
            audit_merge(ctx, &what, &sha, "duplicate: already handled, not deployed again").await;
            let _ = done.send(());
            return;
        }
        Err(error) => {
            // Fail closed: without the record there is no telling whether this is a replay.
            tracing::error!(error = format!("{error:#}"), "cannot read the merge stream's records; not deployed");
            ctx.announce(Announcement::Text(format!(
                "⏭️ {env} did not auto-deploy {what}: Shipday cannot read its store. Deploy it with `/deploy {env} {sha}`."
            )));
            return;
        }
    }
    let now = ctx.clock.now();
    if let Some(hold) = ctx.store.hold(&env).ok().flatten().filter(|h| !h.is_expired(now)) {
        mark_merge_handled(ctx, &env, &sha).await;
        ctx.announce(Announcement::Text(format!(
            "🔀 {what} is merged into `{}` ({}); {env} reaches it when @{{{}}} releases it (`/release {env}`).",
            first.branch,
            sha.short(),
            hold.holder,
        )));
        let _ = done.send(());
        return;
    }
    let head = match ctx.store.merge_head(&env) {
        Ok(head) => head.and_then(|h| Sha::parse(&h).ok()),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "cannot read the merge head; not deployed");
            ctx.announce(Announcement::Text(format!(
                "⏭️ {env} did not auto-deploy {what}: Shipday cannot read its store. Deploy it with `/deploy {env} {sha}`."
            )));
            return;
        }
    };
    match head {
        None => {
            deploy_merge(ctx, first, sha, what).await;
            let _ = done.send(());
        }
        Some(base) => {
            ctx.merge_checks.insert(key);
            check_ancestry(ctx, first, base, sha, what, done);
        }
    }
}

/// Reads on the host whether `sha` is behind `base`, and reports back as an event.
fn check_ancestry(ctx: &Context, first: &Environment, base: Sha, sha: Sha, what: String, done: oneshot::Sender<()>) {
    let Some(events) = ctx.jobs.reporter() else { return };
    let transport = ctx.transports.get(&first.name).cloned();
    let env = first.clone();
    let redactor = ctx.redactor.clone();
    let crashed = events.clone();
    let key = format!("{}\u{1f}{sha}", first.name);
    let on_panic = move |message| {
        let _ = crashed.send(Report::Crashed(Crashed::MergeCheck(key), message));
    };
    spawn_guarded(
        "merge check",
        async move {
            let verdict = match transport {
                Some(transport) => ancestry(transport.as_ref(), &env, &base, &sha).await,
                None => Ancestry::Unknown("no transport".into()),
            };
            let verdict = match verdict {
                Ancestry::Unknown(why) => Ancestry::Unknown(redactor.redact(&why)),
                known => known,
            };
            let check = MergeCheck { env: env.name.clone(), sha, base, what, verdict, done };
            let _ = events.send(Report::MergeChecked(Box::new(check)));
        },
        on_panic,
    );
}

/// The host answered: deploy, ignore, or (when it could not say) tell the team.
pub(crate) async fn merge_checked(ctx: &mut Context, check: MergeCheck) {
    let MergeCheck { env, sha, base, what, verdict, done } = check;
    let key = format!("{env}\u{1f}{sha}");
    let Some(first) = ctx.config.environments.first().filter(|e| e.name == env).cloned() else {
        ctx.merge_checks.remove(&key);
        return;
    };
    // Another commit became the head meanwhile: compare with that one instead.
    let head = ctx.store.merge_head(&env).ok().flatten().and_then(|h| Sha::parse(&h).ok());
    if let Some(head) = head.filter(|h| *h != base) {
        check_ancestry(ctx, &first, head, sha, what, done);
        return;
    }
    ctx.merge_checks.remove(&key);
    match verdict {
        Ancestry::Newer => deploy_merge(ctx, &first, sha, what).await,
        Ancestry::Older => {
            tracing::warn!(
                %env, %sha, head = %base, %what,
                "a delivery names a commit older than what the merge stream deployed; ignored, not rolled back"
            );
            mark_merge_handled(ctx, &env, &sha).await;
            audit_merge(ctx, &what, &sha, &format!("ignored: older than {} which {env} already runs", base.short()))
                .await;
        }
        Ancestry::Unknown(why) => {
            tracing::warn!(%env, %sha, %why, "cannot tell whether a merged commit is newer; not deployed");
            ctx.announce(Announcement::Text(format!(
                "⏭️ {env} did not auto-deploy {what}: Shipday could not check on the host that {} is newer than {} ({why}). \
                 If it is, deploy it with `/deploy {env} {sha}`.",
                sha.short(),
                base.short()
            )));
        }
    }
    let _ = done.send(());
}

/// Deploys a merged commit to the first environment and makes it the merge head.
async fn deploy_merge(ctx: &mut Context, first: &Environment, sha: Sha, what: String) {
    if let Err(error) = ctx.store.set_merge_head(&first.name, sha.as_str()) {
        tracing::error!(error = format!("{error:#}"), "cannot record the merge head");
    }
    mark_merge_handled(ctx, &first.name, &sha).await;
    if let Some(skip) = take_skip(ctx, &first.name).await {
        let skipped = skip.describe(ctx.config.calendar.timezone());
        ctx.announce(Announcement::Text(format!(
            "⏭️ {} did not auto-deploy {what}: {skipped} with `/skip {}`. Deploy it with `/deploy {} {sha}` if you want it.",
            first.name, first.name, first.name
        )));
        audit_merge(ctx, &what, &sha, &format!("skipped: {skipped}")).await;
        return;
    }
    let Ok(git_ref) = GitRef::parse(sha.as_str()) else { return };
    let deploy = ShipdayDeploy {
        env: first.name.clone(),
        git_ref,
        trigger: Trigger::Merge,
        emergency: None,
        audit_text: format!("/deploy {} {sha} (merged {what})", first.name),
        why: match what.split(' ').next() {
            Some(number) if number.starts_with('#') => format!("merge of PR {number}"),
            _ => what.clone(),
        },
    };
    deploy_as_shipday_or_say_why(ctx, deploy, format!("⏭️ {} did not auto-deploy {what}", first.name)).await;
}

/// Records durably that the merge stream handled `sha`.
async fn mark_merge_handled(ctx: &mut Context, env: &str, sha: &Sha) {
    let result = match ctx.store.mark_merge(env, sha.as_str(), ctx.clock.now()) {
        Ok(()) => ctx.store.flush().await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        tracing::error!(error = format!("{error:#}"), "cannot record a handled merge");
    }
}

async fn audit_merge(ctx: &mut Context, what: &str, sha: &Sha, decision: &str) {
    let entry = crate::store::AuditEntry {
        at: ctx.clock.now(),
        platform: "github".into(),
        user_id: "webhook".into(),
        person: None,
        text: format!("{what} at {sha}"),
        decision: decision.to_owned(),
    };
    let result = match ctx.store.audit(&entry) {
        Ok(()) => ctx.store.flush().await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        tracing::error!(error = format!("{error:#}"), "cannot record a webhook decision");
    }
}

/// Whether `sha` is `base` or behind it, read in the environment's checkout after a fetch.
async fn ancestry(transport: &dyn crate::clients::RemoteExec, env: &Environment, base: &Sha, sha: &Sha) -> Ancestry {
    let command = format!(
        "git fetch --quiet origin >/dev/null 2>&1; git merge-base --is-ancestor {} {} >/dev/null 2>&1; echo \"ancestry=$?\"",
        quote(sha.as_str()),
        quote(base.as_str())
    );
    let script = host_script(env, &command, ANCESTRY_TIMEOUT);
    match run_script(transport, &env.name, &script, ANCESTRY_TIMEOUT, OutputTail::DEFAULT_CAPACITY).await {
        Ok(ran) if ran.result.is_ok() => parse_ancestry(&ran.output),
        Ok(ran) => Ancestry::Unknown(format!("the check failed: {}", ran.result.describe())),
        Err(error) => Ancestry::Unknown(error),
    }
}

/// Reads `ancestry=N` (the exit code of `git merge-base --is-ancestor`): 0 is behind or equal,
/// 1 is not behind, anything else (an unknown commit) is unknown.
pub(crate) fn parse_ancestry(output: &str) -> Ancestry {
    match output.lines().rev().find_map(|line| line.trim().strip_prefix("ancestry=")) {
        Some("0") => Ancestry::Older,
        Some("1") => Ancestry::Newer,
        Some(_) => Ancestry::Unknown("the host does not know one of the commits".into()),
        None => Ancestry::Unknown("the host gave no answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestry_is_read_from_the_exit_code_line() {
        assert_eq!(parse_ancestry("noise\nancestry=0\n"), Ancestry::Older);
        assert_eq!(parse_ancestry("ancestry=1"), Ancestry::Newer);
        assert!(matches!(parse_ancestry("ancestry=128"), Ancestry::Unknown(_)));
        assert!(matches!(parse_ancestry(""), Ancestry::Unknown(_)));
    }
}
