//! `/rollback ENV [previous|SHA]`: redeploy a commit the environment ran before, through the
//! same deploy path and rules.

use super::*;
use crate::release::deploy::{Outcome, Trigger};
use crate::release::gitref::{GitRef, Sha};
use chrono::{DateTime, Utc};

/// How far back `/rollback` looks for commits the environment ran.
const LOOK_BACK: usize = 200;

pub(crate) fn rollback(
    ctx: &mut Context,
    env: &str,
    target: &str,
    emergency: Option<String>,
    pending: WaitingCommand,
    now: DateTime<Utc>,
) -> Option<(WaitingCommand, Decision)> {
    let history = match ctx.store.history(Some(env), LOOK_BACK) {
        Ok(history) => history,
        Err(error) => return Some((pending, Decision::store_trouble("read the history", &error))),
    };
    let succeeded: Vec<_> = history.iter().filter(|d| d.outcome == Outcome::Succeeded).collect();
    let sha = if target == "previous" {
        let Some(live) = succeeded.first() else {
            return Some((
                pending,
                Decision::refused(format!("Shipday has not deployed {env} yet: nothing to roll back to.")),
            ));
        };
        match succeeded.iter().find(|d| d.sha != live.sha) {
            Some(before) => before.sha.clone(),
            None => {
                return Some((
                    pending,
                    Decision::refused(format!(
                        "{env} has only run {} under Shipday: there is no previous commit. `/history {env}` lists what it ran.",
                        live.sha.short()
                    )),
                ));
            }
        }
    } else {
        match Sha::parse(target) {
            Ok(sha) if succeeded.iter().any(|d| d.sha == sha) => sha,
            _ => {
                return Some((
                    pending,
                    Decision::refused(format!(
                        "`{target}` is not a commit {env} ran under Shipday. Give `previous` or a full SHA from `/history {env}`."
                    )),
                ));
            }
        }
    };
    let git_ref = GitRef::parse(sha.as_str()).expect("a SHA is a valid ref");
    let request = DeployRequest { emergency, ..DeployRequest::new(env, git_ref, Trigger::Rollback) };
    deploy(ctx, request, pending, now)
}
