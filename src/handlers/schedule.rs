//! `/schedule [DAYS]`: the deploy slots and windows ahead, with what is frozen and skipped.

use super::reply::ScheduleView;
use super::{Context, Decision, Reply, ReplyBody, Visibility, freeze_lines};
use crate::release::calendar::FiringKind;
use crate::release::freeze::active_freeze;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashSet};

pub(crate) fn schedule(ctx: &Context, days: usize, now: DateTime<Utc>) -> Decision {
    let calendar = &ctx.config.calendar;
    let tz = calendar.timezone();
    let until = now + chrono::Duration::days(days as i64);
    let entries: Vec<_> = calendar
        .events_between(now, until)
        .into_iter()
        .filter(|f| !matches!(f.kind, FiringKind::Reminder { .. }))
        .collect();
    let (manual, skips) = match (ctx.store.freezes(), read_skips(ctx)) {
        (Ok(manual), Ok(skips)) => (manual, skips),
        (Err(error), _) | (_, Err(error)) => return Decision::store_trouble("read the freezes and skips", &error),
    };
    let mut notices = freeze_lines(ctx, now);
    // Calendar freezes that start within the view.
    for range in calendar.freezes() {
        let (start, _) = range.span(tz);
        if start > now && start <= until {
            let envs = if range.envs.is_empty() { "every environment".to_owned() } else { range.envs.join(", ") };
            notices.push(format!("🧊 {envs} frozen from {} to {} (calendar): {}", range.from, range.to, range.reason));
        }
    }
    let mut marks = BTreeMap::new();
    let mut skip_shown = HashSet::new();
    for (i, firing) in entries.iter().enumerate() {
        let FiringKind::Slot { env } = &firing.kind else { continue };
        if let Some((_, skip)) = skips.iter().find(|(name, _)| name == env)
            && skip_shown.insert(env.clone())
        {
            marks.insert(i, format!("⏭️ {}", skip.describe(tz)));
        } else if let Some(freeze) = active_freeze(&manual, calendar.freezes(), tz, env, firing.at) {
            marks.insert(i, format!("🧊 frozen: {}, will not run", freeze.reason()));
        }
    }
    for (env, skip) in skips.iter().filter(|(env, _)| !skip_shown.contains(env)) {
        notices.push(format!("⏭️ {env}'s next automatic deploy is {}.", skip.describe(tz)));
    }
    let view = ScheduleView { now, timezone: tz, entries, notices, marks };
    Decision {
        reply: Reply { visibility: Visibility::Ephemeral, body: ReplyBody::Schedule(view) },
        decision: "answered".into(),
    }
}

fn read_skips(ctx: &Context) -> anyhow::Result<Vec<(String, crate::release::freeze::Skip)>> {
    let mut skips = Vec::new();
    for environment in &ctx.config.environments {
        if let Some(skip) = ctx.store.skip(&environment.name)? {
            skips.push((environment.name.clone(), skip));
        }
    }
    Ok(skips)
}
