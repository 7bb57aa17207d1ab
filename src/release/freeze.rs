//! Deploy freezes and skipped automatic deploys. Pure: the stored freezes, the calendar's
//! configured ones and `now` come in; whether a deploy may go ahead, and the words for people,
//! go out.
//!
//! A freeze is a lead's `/freeze ENV|all REASON [--until TIME]` (kept in the store until
//! `/unfreeze` or its end) or a `[[calendar.freezes]]` range in the config. Either blocks every
//! deploy Shipday would start on the environment (commands, slots, merge auto-deploys,
//! promotions, rollbacks); a lead overrides it with `--emergency "reason"`.
//!
//! A skip is a lead's `/skip ENV`: the next automatic deploy of ENV (its slot, or a merge's
//! auto-deploy) does not run.

use super::Refusal;
use super::people::{Person, Role};
use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The word that names every environment in `/freeze all` and `/unfreeze all`.
pub const ALL: &str = "all";

/// The longest `--until` a freeze takes: longer ones belong in the config's calendar.
pub const MAX_FREEZE_DAYS: i64 = 90;

/// A lead's freeze, as stored (key: the environment's name or [`ALL`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// The environment's name, or [`ALL`].
    pub scope: String,
    /// Why, shown to anyone whose deploy it refuses.
    pub reason: String,
    /// Person id of the lead who froze it.
    pub by: String,
    /// Their display name.
    pub by_name: String,
    /// Since when.
    pub since: DateTime<Utc>,
    /// When it ends by itself; `None`: at `/unfreeze`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl Freeze {
    /// Whether it still stands at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.since <= now && self.until.is_none_or(|until| now < until)
    }

    /// Whether it covers `env`.
    pub fn covers(&self, env: &str) -> bool {
        self.scope == ALL || self.scope == env
    }
}

/// A range of days configured as frozen (`[[calendar.freezes]]`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarFreeze {
    /// First frozen day, in the calendar's zone.
    pub from: NaiveDate,
    /// Last frozen day (inclusive), in the calendar's zone.
    pub to: NaiveDate,
    /// Why.
    pub reason: String,
    /// The environments it covers; empty: all of them.
    pub envs: Vec<String>,
}

impl CalendarFreeze {
    /// From 00:00 on `from` to 00:00 the day after `to`, in `tz`, as UTC instants.
    pub fn span(&self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = start_of_day(tz, self.from);
        let end = self.to.checked_add_days(Days::new(1)).map_or(DateTime::<Utc>::MAX_UTC, |d| start_of_day(tz, d));
        (start, end)
    }

    /// Whether it covers `env` at `now`.
    pub fn covers(&self, env: &str, tz: Tz, now: DateTime<Utc>) -> bool {
        let (start, end) = self.span(tz);
        (self.envs.is_empty() || self.envs.iter().any(|e| e == env)) && start <= now && now < end
    }
}

/// The first instant of `day` in `tz` (midnight, or the first valid time after a gap).
fn start_of_day(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let mut time = day.and_time(NaiveTime::MIN);
    for _ in 0..4 {
        if let Some(at) = tz.from_local_datetime(&time).earliest() {
            return at.with_timezone(&Utc);
        }
        time += TimeDelta::minutes(30);
    }
    Utc.from_utc_datetime(&day.and_time(NaiveTime::MIN))
}

/// The freeze that stops deploys to an environment now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActiveFreeze {
    /// A lead's `/freeze`.
    Manual(Freeze),
    /// A configured range.
    Calendar(CalendarFreeze),
}

impl ActiveFreeze {
    /// Why it was frozen.
    pub fn reason(&self) -> &str {
        match self {
            ActiveFreeze::Manual(f) => &f.reason,
            ActiveFreeze::Calendar(f) => &f.reason,
        }
    }

    /// When it ends by itself, if it does.
    pub fn until(&self, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            ActiveFreeze::Manual(f) => f.until,
            ActiveFreeze::Calendar(f) => Some(f.span(tz).1),
        }
    }

    /// One line for people: who froze `env`, why, since and until when.
    /// `production is frozen by Ada since Wed 02 Dec 16:00 EAT: incident 42, until Thu 03 Dec 09:00 EAT (in 17h 0m)`.
    pub fn describe(&self, env: &str, tz: Tz, now: DateTime<Utc>) -> String {
        let until = match self.until(tz) {
            Some(until) => format!("until {} (in {})", local(tz, until), super::age(until, now)),
            None => "until a lead runs `/unfreeze`".to_owned(),
        };
        match self {
            ActiveFreeze::Manual(f) => {
                let scope = if f.scope == ALL { " (all environments)" } else { "" };
                format!("{env} is frozen{scope} by {} since {}: {}, {until}", f.by_name, local(tz, f.since), f.reason)
            }
            ActiveFreeze::Calendar(f) => {
                format!("{env} is frozen by the calendar ({} to {}): {}, {until}", f.from, f.to, f.reason)
            }
        }
    }
}

/// `Wed 02 Dec 16:00 EAT`.
pub fn local(tz: Tz, at: DateTime<Utc>) -> String {
    at.with_timezone(&tz).format("%a %d %b %H:%M %Z").to_string()
}

/// The freeze that covers `env` at `now`: a lead's freeze of `env`, then one of all
/// environments, then a configured range. Expired ones are ignored.
pub fn active_freeze(
    manual: &[Freeze],
    calendar: &[CalendarFreeze],
    tz: Tz,
    env: &str,
    now: DateTime<Utc>,
) -> Option<ActiveFreeze> {
    let live = |scope: &str| manual.iter().find(|f| f.scope == scope && f.covers(env) && f.is_active(now));
    live(env)
        .or_else(|| live(ALL))
        .cloned()
        .map(ActiveFreeze::Manual)
        .or_else(|| calendar.iter().find(|f| f.covers(env, tz, now)).cloned().map(ActiveFreeze::Calendar))
}

/// What the freeze check decided for a deploy that may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreezeCheck {
    /// Nothing is frozen.
    Clear,
    /// Frozen, and a lead overrides it with this reason (to audit and announce).
    Overridden {
        /// The freeze it overrides.
        freeze: ActiveFreeze,
        /// The lead's reason.
        reason: String,
    },
}

/// Whether `who` may deploy to `env` with the freezes as they are at `now`. `automatic`: a
/// deploy Shipday starts by itself (a slot, a merge), which never overrides a freeze.
#[allow(clippy::too_many_arguments)]
pub fn check_freeze(
    manual: &[Freeze],
    calendar: &[CalendarFreeze],
    tz: Tz,
    env: &str,
    who: &Person,
    emergency: Option<&str>,
    automatic: bool,
    now: DateTime<Utc>,
) -> Result<FreezeCheck, Refusal> {
    let Some(freeze) = active_freeze(manual, calendar, tz, env, now) else {
        return Ok(FreezeCheck::Clear);
    };
    let described = freeze.describe(env, tz, now);
    match emergency {
        Some(reason) if !automatic && who.has(Role::Lead) => {
            Ok(FreezeCheck::Overridden { freeze, reason: reason.to_owned() })
        }
        Some(_) if !automatic => Err(Refusal::new(format!(
            "🧊 {described}. Only a lead can deploy through a freeze with --emergency; ask a lead."
        ))),
        _ if automatic => Err(Refusal::new(format!("🧊 {described}."))),
        _ => {
            let lift = match &freeze {
                ActiveFreeze::Manual(f) => format!(" or lifts it with `/unfreeze {}`", f.scope),
                ActiveFreeze::Calendar(_) => String::new(),
            };
            Err(Refusal::new(format!(
                "🧊 {described}. Nothing was deployed. A lead can deploy anyway with `--emergency \"reason\"` \
                 (recorded and announced){lift}."
            )))
        }
    }
}

/// A lead's `/skip ENV`, as stored (key: the environment): the next automatic deploy of ENV
/// (its slot, or a merge's auto-deploy) does not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    /// Person id of the lead.
    pub by: String,
    /// Their display name.
    pub by_name: String,
    /// When they asked.
    pub at: DateTime<Utc>,
}

impl Skip {
    /// `skipped by Ada (Wed 02 Dec 16:00 EAT)`.
    pub fn describe(&self, tz: Tz) -> String {
        format!("skipped by {} ({})", self.by_name, local(tz, self.at))
    }
}

/// Reads a freeze's end, as a lead types it after `--until`, in the team's zone `tz`:
///
/// - `2026-12-24 18:00` (or `2026-12-24T18:00`): that day and time;
/// - `today 18:00`, `tomorrow 09:00`: that time today or tomorrow;
/// - `18:00`: the next time the clock shows it (today, or tomorrow if it has passed);
/// - `2h`, `90m`, `1d`, `1h30m`: that long from now.
///
/// The end must be after `now` and at most [`MAX_FREEZE_DAYS`] days ahead. Errors are
/// sentences for the lead.
pub fn parse_until(text: &str, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    let shown: String = text.chars().take(40).collect::<String>().escape_debug().to_string();
    let hint = format!(
        "`{shown}` is not a time Shipday reads. Write `--until 2026-12-24 18:00`, `--until tomorrow 09:00`, \
         `--until 18:00` or `--until 4h` (times in {tz})."
    );
    let today = now.with_timezone(&tz).date_naive();
    let at = match words.as_slice() {
        [date, time] if date == "today" || date == "tomorrow" => {
            let day = if date == "today" { Some(today) } else { today.checked_add_days(Days::new(1)) };
            let time = parse_clock(time).ok_or_else(|| hint.clone())?;
            local_instant(tz, day.ok_or_else(|| hint.clone())?.and_time(time)).ok_or_else(|| hint.clone())?
        }
        [date, time] => {
            let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| hint.clone())?;
            let time = parse_clock(time).ok_or_else(|| hint.clone())?;
            local_instant(tz, day.and_time(time)).ok_or_else(|| hint.clone())?
        }
        [one] if one.contains('t') && one.contains('-') => {
            let when = NaiveDateTime::parse_from_str(one, "%Y-%m-%dt%H:%M").map_err(|_| hint.clone())?;
            local_instant(tz, when).ok_or_else(|| hint.clone())?
        }
        [one] if one.contains(':') => {
            let time = parse_clock(one).ok_or_else(|| hint.clone())?;
            let first = local_instant(tz, today.and_time(time)).ok_or_else(|| hint.clone())?;
            if first > now {
                first
            } else {
                let tomorrow = today.checked_add_days(Days::new(1)).ok_or_else(|| hint.clone())?;
                local_instant(tz, tomorrow.and_time(time)).ok_or_else(|| hint.clone())?
            }
        }
        [one] if NaiveDate::parse_from_str(one, "%Y-%m-%d").is_ok() => {
            return Err(format!("Give a time of day too, for example `--until {one} 18:00` (in {tz})."));
        }
        [one] => {
            let span = super::parse_duration(one).map_err(|_| hint.clone())?;
            let span = TimeDelta::from_std(span).map_err(|_| hint.clone())?;
            now.checked_add_signed(span).ok_or_else(|| hint.clone())?
        }
        _ => return Err(hint),
    };
    if at <= now {
        return Err(format!("{} has already passed: give a time in the future.", local(tz, at)));
    }
    if at - now > TimeDelta::days(MAX_FREEZE_DAYS) {
        return Err(format!(
            "A freeze lasts at most {MAX_FREEZE_DAYS} days; for longer ones, add a `[[calendar.freezes]]` range to the config."
        ));
    }
    Ok(at)
}

/// `18:00` or `9:05`, on a 24-hour clock.
fn parse_clock(text: &str) -> Option<NaiveTime> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.is_empty() || hours.len() > 2 || minutes.len() != 2 {
        return None;
    }
    if !hours.chars().chain(minutes.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    NaiveTime::from_hms_opt(hours.parse().ok()?, minutes.parse().ok()?, 0)
}

/// The instant a wall-clock time names in `tz`; the earlier one when the clock repeats, none
/// when it skips that time.
fn local_instant(tz: Tz, when: NaiveDateTime) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&when).earliest().map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Africa::Nairobi;
    use proptest::prelude::*;

    fn eat(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Nairobi.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap().with_timezone(&Utc)
    }

    fn person(id: &str, role: Role) -> Person {
        Person::for_tests(id, &[role])
    }

    fn freeze(scope: &str, until: Option<DateTime<Utc>>) -> Freeze {
        Freeze {
            scope: scope.into(),
            reason: "incident 42".into(),
            by: "ada".into(),
            by_name: "Ada".into(),
            since: eat(2026, 12, 2, 16, 0),
            until,
        }
    }

    fn holidays() -> CalendarFreeze {
        CalendarFreeze {
            from: NaiveDate::from_ymd_opt(2026, 12, 24).unwrap(),
            to: NaiveDate::from_ymd_opt(2027, 1, 2).unwrap(),
            reason: "holidays".into(),
            envs: vec!["production".into()],
        }
    }

    #[test]
    fn until_reads_the_documented_forms_in_the_team_zone() {
        let now = eat(2026, 12, 2, 16, 0);
        assert_eq!(parse_until("2026-12-24 18:00", Nairobi, now), Ok(eat(2026, 12, 24, 18, 0)));
        assert_eq!(parse_until("2026-12-24T18:00", Nairobi, now), Ok(eat(2026, 12, 24, 18, 0)));
        assert_eq!(parse_until("tomorrow 09:00", Nairobi, now), Ok(eat(2026, 12, 3, 9, 0)));
        assert_eq!(parse_until("Today 18:30", Nairobi, now), Ok(eat(2026, 12, 2, 18, 30)));
        assert_eq!(parse_until("18:00", Nairobi, now), Ok(eat(2026, 12, 2, 18, 0)));
        assert_eq!(parse_until("9:00", Nairobi, now), Ok(eat(2026, 12, 3, 9, 0)), "passed today: tomorrow");
        assert_eq!(parse_until("4h", Nairobi, now), Ok(eat(2026, 12, 2, 20, 0)));
        assert_eq!(parse_until("1h30m", Nairobi, now), Ok(eat(2026, 12, 2, 17, 30)));
    }

    #[test]
    fn until_refuses_the_past_the_far_future_and_nonsense_with_a_hint() {
        let now = eat(2026, 12, 2, 16, 0);
        assert!(parse_until("today 09:00", Nairobi, now).unwrap_err().contains("already passed"));
        assert!(parse_until("2027-12-24 18:00", Nairobi, now).unwrap_err().contains("at most 90 days"));
        assert!(parse_until("2026-12-24", Nairobi, now).unwrap_err().contains("`--until 2026-12-24 18:00`"));
        for bad in ["", "soon", "25:00", "tomorrow", "tomorrow 9", "2026-13-01 10:00", "next week", "-3h", "0m"] {
            let err = parse_until(bad, Nairobi, now).unwrap_err();
            assert!(err.contains("tomorrow 09:00") || err.contains("already passed"), "{bad:?}: {err}");
        }
    }

    proptest! {
        /// Any text: an instant in `(now, now + 90 days]`, or a sentence; never a panic.
        #[test]
        fn until_never_panics_and_only_gives_future_instants(text in "\\PC{0,40}", minutes in 0i64..5_000_000) {
            let now = eat(2026, 1, 1, 0, 0) + TimeDelta::minutes(minutes);
            match parse_until(&text, Nairobi, now) {
                Ok(at) => prop_assert!(at > now && at - now <= TimeDelta::days(MAX_FREEZE_DAYS)),
                Err(sentence) => prop_assert!(!sentence.is_empty()),
            }
        }

        /// A written date and time reads back as that wall-clock time in the team's zone.
        #[test]
        fn a_written_date_and_time_reads_back_exactly(days in 1u64..89, hour in 0u32..24, minute in 0u32..60) {
            let now = eat(2026, 12, 2, 16, 0);
            let day = now.with_timezone(&Nairobi).date_naive().checked_add_days(Days::new(days)).unwrap();
            let text = format!("{} {hour:02}:{minute:02}", day.format("%Y-%m-%d"));
            let at = parse_until(&text, Nairobi, now).unwrap();
            prop_assert_eq!(at.with_timezone(&Nairobi).naive_local(), day.and_hms_opt(hour, minute, 0).unwrap());
        }

        /// `tomorrow HH:MM` and `HH:MM` land within two days, at that time of day.
        #[test]
        fn relative_days_land_on_the_next_two_days(hour in 0u32..24, minute in 0u32..60, offset in 0i64..100_000) {
            let now = eat(2026, 6, 1, 0, 0) + TimeDelta::minutes(offset);
            for text in [format!("tomorrow {hour:02}:{minute:02}"), format!("{hour}:{minute:02}")] {
                let at = parse_until(&text, Nairobi, now).unwrap();
                prop_assert!(at > now && at - now <= TimeDelta::days(2), "{}", text);
                let wall = at.with_timezone(&Nairobi).time();
                prop_assert_eq!(wall, NaiveTime::from_hms_opt(hour, minute, 0).unwrap());
            }
        }
    }

    #[test]
    fn a_freeze_covers_its_environment_or_all_until_it_ends() {
        let until = eat(2026, 12, 3, 9, 0);
        let manual = [freeze("production", Some(until))];
        let at = eat(2026, 12, 2, 17, 0);
        assert!(matches!(active_freeze(&manual, &[], Nairobi, "production", at), Some(ActiveFreeze::Manual(_))));
        assert_eq!(active_freeze(&manual, &[], Nairobi, "dev", at), None);
        assert_eq!(active_freeze(&manual, &[], Nairobi, "production", until), None, "it ends at --until");
        let all = [freeze(ALL, None)];
        assert!(active_freeze(&all, &[], Nairobi, "dev", eat(2027, 5, 1, 0, 0)).is_some(), "no end: until /unfreeze");
    }

    #[test]
    fn a_calendar_range_covers_whole_days_in_the_team_zone() {
        let ranges = [holidays()];
        let covered = |at| active_freeze(&[], &ranges, Nairobi, "production", at).is_some();
        assert!(!covered(eat(2026, 12, 23, 23, 59)));
        assert!(covered(eat(2026, 12, 24, 0, 0)));
        assert!(covered(eat(2027, 1, 2, 23, 59)));
        assert!(!covered(eat(2027, 1, 3, 0, 0)));
        assert!(active_freeze(&[], &ranges, Nairobi, "dev", eat(2026, 12, 25, 12, 0)).is_none());
        let everything = [CalendarFreeze { envs: vec![], ..holidays() }];
        assert!(active_freeze(&[], &everything, Nairobi, "dev", eat(2026, 12, 25, 12, 0)).is_some());
    }

    #[test]
    fn the_refusal_says_who_why_until_when_and_how_to_override() {
        let manual = [freeze("production", Some(eat(2026, 12, 3, 9, 0)))];
        let now = eat(2026, 12, 2, 17, 0);
        let grace = person("grace", Role::Developer);
        let err = check_freeze(&manual, &[], Nairobi, "production", &grace, None, false, now).unwrap_err().0;
        assert_eq!(
            err,
            "🧊 production is frozen by Ada since Wed 02 Dec 16:00 EAT: incident 42, until Thu 03 Dec 09:00 EAT \
             (in 16h 0m). Nothing was deployed. A lead can deploy anyway with `--emergency \"reason\"` (recorded and \
             announced) or lifts it with `/unfreeze production`."
        );
        let err = check_freeze(&manual, &[], Nairobi, "production", &grace, Some("fire"), false, now).unwrap_err().0;
        assert!(err.contains("Only a lead"), "{err}");
        let ada = person("ada", Role::Lead);
        assert!(matches!(
            check_freeze(&manual, &[], Nairobi, "production", &ada, Some("fire"), false, now),
            Ok(FreezeCheck::Overridden { reason, .. }) if reason == "fire"
        ));
        // Shipday's own deploys (slots, merges) never override.
        assert!(check_freeze(&manual, &[], Nairobi, "production", &ada, Some("x"), true, now).is_err());
        assert_eq!(check_freeze(&manual, &[], Nairobi, "dev", &grace, None, false, now), Ok(FreezeCheck::Clear));
    }
}
