//! `/release ENV`: the holder gives the environment back.

use super::deploy::{DeployRequest, deploy};
use super::{Context, Decision, WaitingCommand};
use crate::release::deploy::Trigger;
use chrono::{DateTime, Utc};

/// `/release ENV`: the holder gives the environment back; its own branch is redeployed,
/// after the branch's migrations are undone. The claim ends when that succeeds.
pub(crate) fn release(
    ctx: &mut Context,
    env: &str,
    pending: WaitingCommand,
    now: DateTime<Utc>,
) -> Option<(WaitingCommand, Decision)> {
    let environment = ctx.config.environment(env).expect("parser checked the environment");
    let request = DeployRequest::new(env, environment.branch.clone(), Trigger::Release);
    deploy(ctx, request, pending, now)
}
