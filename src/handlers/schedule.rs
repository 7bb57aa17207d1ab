//! `/schedule [DAYS]`: the deploy slots and windows ahead.

use super::reply::ScheduleView;
use super::{Context, Decision, Reply, ReplyBody, Visibility};
use crate::release::calendar::FiringKind;
use chrono::{DateTime, Utc};

pub(crate) fn schedule(ctx: &Context, days: usize, now: DateTime<Utc>) -> Decision {
    let calendar = &ctx.config.calendar;
    let until = now + chrono::Duration::days(days as i64);
    let entries = calendar
        .events_between(now, until)
        .into_iter()
        .filter(|f| !matches!(f.kind, FiringKind::Reminder { .. }))
        .collect();
    let view = ScheduleView { now, timezone: calendar.timezone(), entries };
    Decision {
        reply: Reply { visibility: Visibility::Ephemeral, body: ReplyBody::Schedule(view) },
        decision: "answered".into(),
    }
}
