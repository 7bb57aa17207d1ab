//! The team's release calendar: deploy slots, the ticket-drag window and the reminders around
//! them. Pure: the configured time zone and `now` come in as arguments, instants go out in UTC.
//!
//! Cron expressions are evaluated with croner in the calendar's [`Tz`], never in the host's
//! zone, so the bot schedules the same UTC instants wherever it runs.

use crate::release::freeze::CalendarFreeze;
use crate::release::parse_duration;
use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, Datelike, Days, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// The `[calendar]` table. Every key has the team's default, so an empty table (or none) is
/// the team's calendar, in the configured time zone:
///
/// ```toml
/// [calendar]
/// slots = [
///   { env = "dev", cron = "0 20 * * SUN" },
///   { env = "staging", cron = "30 8 * * MON" },
///   { env = "production", cron = "30 7 * * WED", every_weeks = 2, anchor = 2026-11-04 },
/// ]
/// drag_window = { opens = "0 20 * * SUN", closes = "30 8 * * MON" }
/// reminders = [
///   { event = "window_opens", offset = "0m" },
///   { event = "window_closes", offset = "-60m" },
///   { event = "window_closes", offset = "0m" },
///   { event = { slot = "dev" }, offset = "-30m" },
///   { event = { slot = "staging" }, offset = "-30m" },
///   { event = { slot = "production" }, offset = "-30m" },
/// ]
/// ```
///
/// Each key replaces its default as a whole: whoever changes `slots` lists `reminders` too,
/// since a reminder naming a slot that is no longer configured is refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalendarConfig {
    /// Deploy slots, at most one per environment.
    pub slots: Vec<SlotConfig>,
    /// The ticket-drag window.
    pub drag_window: WindowConfig,
    /// Reminders at offsets from calendar events.
    pub reminders: Vec<ReminderConfig>,
    /// Ranges of days when deploys are frozen (none by default).
    pub freezes: Vec<FreezeConfig>,
}

/// A range of frozen days (`[[calendar.freezes]]`): no deploy, slot, auto-deploy or promotion
/// runs on its environments from 00:00 on `from` to the end of `to`, in the calendar's zone,
/// unless a lead deploys with `--emergency`.
///
/// ```toml
/// [[calendar.freezes]]
/// from = 2026-12-24
/// to = 2027-01-02
/// reason = "holidays"
/// envs = ["production"]   # leave out for every environment
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeConfig {
    /// First frozen day.
    #[serde(deserialize_with = "deserialize_date")]
    pub from: Option<NaiveDate>,
    /// Last frozen day (inclusive).
    #[serde(deserialize_with = "deserialize_date")]
    pub to: Option<NaiveDate>,
    /// Why, shown to anyone whose deploy it refuses.
    pub reason: String,
    /// The environments it covers; empty or left out: all of them.
    #[serde(default)]
    pub envs: Vec<String>,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        let production = SlotConfig {
            every_weeks: Some(2),
            anchor: NaiveDate::from_ymd_opt(2026, 11, 4),
            ..SlotConfig::weekly("production", "30 7 * * WED")
        };
        let slot_reminder = |env: &str| ReminderConfig::at(ReminderEvent::Slot { env: env.into() }, "-30m");
        Self {
            slots: vec![
                SlotConfig::weekly("dev", "0 20 * * SUN"),
                SlotConfig::weekly("staging", "30 8 * * MON"),
                production,
            ],
            drag_window: WindowConfig::default(),
            reminders: vec![
                ReminderConfig::at(ReminderEvent::WindowOpens, "0m"),
                ReminderConfig::at(ReminderEvent::WindowCloses, "-60m"),
                ReminderConfig::at(ReminderEvent::WindowCloses, "0m"),
                slot_reminder("dev"),
                slot_reminder("staging"),
                slot_reminder("production"),
            ],
            freezes: Vec::new(),
        }
    }
}

/// One environment's deploy slot (`[[calendar.slots]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotConfig {
    /// The environment the slot is for (`dev`).
    pub env: String,
    /// When the slot starts: 5 fields, minute hour day-of-month month day-of-week, in the
    /// calendar's time zone. Day-of-week is 0-7 or SUN-SAT, 0 and 7 both Sunday.
    pub cron: String,
    /// Only every Nth week (Monday-based, in the calendar's zone); needs `anchor`.
    pub every_weeks: Option<u32>,
    /// A date in an on-week, as a TOML date (`2026-11-04`) or a string (`"2026-11-04"`).
    #[serde(default, deserialize_with = "deserialize_date")]
    pub anchor: Option<NaiveDate>,
    /// How long after the slot starts deploys are "in slot" (`2h`).
    #[serde(default = "default_slot_length")]
    pub length: String,
    /// How late the scheduler may still fire a missed slot (`15m`).
    #[serde(default = "default_grace")]
    pub grace: String,
}

impl SlotConfig {
    /// A weekly slot with the default length and grace.
    pub fn weekly(env: &str, cron: &str) -> Self {
        Self {
            env: env.into(),
            cron: cron.into(),
            every_weeks: None,
            anchor: None,
            length: default_slot_length(),
            grace: default_grace(),
        }
    }
}

fn default_slot_length() -> String {
    "2h".into()
}

fn default_grace() -> String {
    "15m".into()
}

/// The ticket-drag window (`[calendar.drag_window]`). When given, both keys are required, so
/// a changed opening is never silently paired with the default closing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// 5-field cron of the openings. It must fire every week (see [`Calendar::new`]).
    pub opens: String,
    /// 5-field cron of the closings. It must fire every week.
    pub closes: String,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self { opens: "0 20 * * SUN".into(), closes: "30 8 * * MON".into() }
    }
}

/// A reminder (`[[calendar.reminders]]`): it fires `offset` after each firing of `event`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReminderConfig {
    /// The event it is about.
    pub event: ReminderEvent,
    /// Signed offset in whole minutes: `-60m` before, `0m` at, `+5m` after (default `0m`).
    #[serde(default = "default_offset")]
    pub offset: String,
    /// How late the scheduler may still fire a missed reminder (`15m`).
    #[serde(default = "default_grace")]
    pub grace: String,
}

impl ReminderConfig {
    /// A reminder at `offset` from `event` with the default grace.
    pub fn at(event: ReminderEvent, offset: &str) -> Self {
        Self { event, offset: offset.into(), grace: default_grace() }
    }
}

fn default_offset() -> String {
    "0m".into()
}

/// What a reminder is about. In TOML: `event = "window_opens"`, `event = "window_closes"`, or
/// `event = { slot = "production" }` (the slot of that environment, on-weeks only).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "RawReminderEvent")]
pub enum ReminderEvent {
    /// The drag window opens.
    WindowOpens,
    /// The drag window closes.
    WindowCloses,
    /// An environment's deploy slot starts.
    Slot {
        /// The environment.
        env: String,
    },
}

impl ReminderEvent {
    /// The event's part of a job name: `window_opens`, `window_closes`, `slot:production`.
    fn key(&self) -> String {
        match self {
            Self::WindowOpens => "window_opens".into(),
            Self::WindowCloses => "window_closes".into(),
            Self::Slot { env } => format!("slot:{env}"),
        }
    }
}

// The TOML shape: bare strings for the window, a one-key table for a slot.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawReminderEvent {
    WindowOpens,
    WindowCloses,
    Slot(String),
}

impl From<RawReminderEvent> for ReminderEvent {
    fn from(raw: RawReminderEvent) -> Self {
        match raw {
            RawReminderEvent::WindowOpens => Self::WindowOpens,
            RawReminderEvent::WindowCloses => Self::WindowCloses,
            RawReminderEvent::Slot(env) => Self::Slot { env },
        }
    }
}

/// Accepts a TOML date literal as well as a `YYYY-MM-DD` string: serde's chrono support only
/// reads strings, and TOML hands its dates over as a special map.
fn deserialize_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    struct DateVisitor;

    impl<'de> Visitor<'de> for DateVisitor {
        type Value = NaiveDate;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a date like 2026-11-04")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<NaiveDate, E> {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| E::custom(format!("`{text}` is not a date like 2026-11-04")))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NaiveDate, A::Error> {
            let toml_date = toml::value::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
            self.visit_str(&toml_date.to_string())
        }
    }

    d.deserialize_any(DateVisitor).map(Some)
}

/// Grace of the window's own firings, which have no `grace` key.
const WINDOW_GRACE: Duration = Duration::from_secs(15 * 60);

/// Cap on croner searches in one question, so a schedule that rarely lands on an on-week (or a
/// slot firing every minute with a long length) cannot loop for long. Weekly slots need one.
const MAX_SEARCHES: usize = 1000;

/// Stands for "never" in a [`WindowState`]; unreachable for validated window crons, which fire
/// every week, except at the ends of croner's range (years 1 to 4999).
const NEVER: DateTime<Utc> = DateTime::<Utc>::MAX_UTC;

/// The validated calendar: crons parsed, durations and offsets checked, in one time zone.
#[derive(Debug, Clone)]
pub struct Calendar {
    tz: Tz,
    slots: Vec<Slot>,
    opens: Cron,
    closes: Cron,
    reminders: Vec<Reminder>,
    freezes: Vec<CalendarFreeze>,
}

#[derive(Debug, Clone)]
struct Slot {
    env: String,
    cron: Cron,
    cadence: Option<Cadence>,
    length: TimeDelta,
    grace: Duration,
}

/// Every `every` weeks, counted from the Monday of the anchor's week.
#[derive(Debug, Clone, Copy)]
struct Cadence {
    every: u32,
    anchor_monday: NaiveDate,
}

#[derive(Debug, Clone)]
struct Reminder {
    job: String,
    event: ReminderEvent,
    offset: TimeDelta,
    grace: Duration,
}

/// Whether the ticket-drag window is open, and when it next changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// Open since `opened_at`, until `closes_at`.
    Open {
        /// The opening it is open since.
        opened_at: DateTime<Utc>,
        /// The next closing.
        closes_at: DateTime<Utc>,
    },
    /// Closed; it next opens at `opens_at` and then closes at `closes_at`.
    Closed {
        /// The next opening.
        opens_at: DateTime<Utc>,
        /// The closing after that opening.
        closes_at: DateTime<Utc>,
    },
}

impl WindowState {
    /// Whether the window is open.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open { .. })
    }
}

/// One scheduled firing of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// Stable unique name of the configured job (`slot:dev`, `window:opens`,
    /// `reminder:window_closes:-60m`), for remembering what has fired.
    pub job: String,
    /// When it fires.
    pub at: DateTime<Utc>,
    /// What it is.
    pub kind: FiringKind,
    /// How late a missed firing may still run.
    pub grace: Duration,
}

/// What fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FiringKind {
    /// An environment's deploy slot starts.
    Slot {
        /// The environment.
        env: String,
    },
    /// The drag window opens.
    WindowOpens,
    /// The drag window closes.
    WindowCloses,
    /// A reminder `offset_minutes` from `event` (negative: before it).
    Reminder {
        /// The event it is about.
        event: ReminderEvent,
        /// Minutes from the event.
        offset_minutes: i64,
    },
}

impl Calendar {
    /// Validates `config` for time zone `tz`. Errors name the key (`calendar.slots[2].cron:
    /// ...`). Refused: bad crons, `every_weeks` without `anchor` (or the reverse), two slots
    /// for one environment, reminders about an unconfigured slot or configured twice, and
    /// window crons that do not fire every week.
    pub fn new(config: &CalendarConfig, tz: Tz) -> Result<Self> {
        let mut slots: Vec<Slot> = Vec::new();
        for (i, raw) in config.slots.iter().enumerate() {
            let slot = Slot::new(raw, &format!("calendar.slots[{i}]"))?;
            if slots.iter().any(|s| s.env == slot.env) {
                bail!("calendar.slots[{i}].env: `{}` already has a slot; give each environment one", slot.env);
            }
            slots.push(slot);
        }
        let window = &config.drag_window;
        let opens = weekly_cron(&window.opens, "calendar.drag_window.opens")?;
        let closes = weekly_cron(&window.closes, "calendar.drag_window.closes")?;
        if opens == closes {
            bail!("calendar.drag_window: `opens` and `closes` are the same schedule");
        }
        let mut reminders: Vec<Reminder> = Vec::new();
        for (i, raw) in config.reminders.iter().enumerate() {
            let key = format!("calendar.reminders[{i}]");
            let reminder = Reminder::new(raw, &key)?;
            if let ReminderEvent::Slot { env } = &reminder.event
                && !slots.iter().any(|s| s.env == *env)
            {
                let known: Vec<&str> = slots.iter().map(|s| s.env.as_str()).collect();
                bail!("{key}.event: no slot is configured for `{env}` (slots: {})", known.join(", "));
            }
            if reminders.iter().any(|r| r.job == reminder.job) {
                bail!("{key}: `{}` is configured twice", reminder.job);
            }
            reminders.push(reminder);
        }
        let mut freezes = Vec::new();
        for (i, raw) in config.freezes.iter().enumerate() {
            let key = format!("calendar.freezes[{i}]");
            let (Some(from), Some(to)) = (raw.from, raw.to) else {
                bail!("{key}: give both `from` and `to`, as dates like 2026-12-24");
            };
            if to < from {
                bail!("{key}: `to` ({to}) is before `from` ({from})");
            }
            if raw.reason.trim().is_empty() {
                bail!("{key}.reason: say why deploys are frozen; it is shown to whoever is refused");
            }
            freezes.push(CalendarFreeze { from, to, reason: raw.reason.trim().to_owned(), envs: raw.envs.clone() });
        }
        Ok(Self { tz, slots, opens, closes, reminders, freezes })
    }

    /// The configured freeze ranges.
    pub fn freezes(&self) -> &[CalendarFreeze] {
        &self.freezes
    }

    /// The zone the crons are evaluated in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// Whether `env` has a slot.
    pub fn has_slot(&self, env: &str) -> bool {
        self.slot(env).is_some()
    }

    /// Every configured job's name, in the order their firings sort when simultaneous.
    pub fn job_names(&self) -> Vec<String> {
        let slots = self.slots.iter().map(|s| s.job());
        let window = ["window:opens".to_owned(), "window:closes".to_owned()];
        let reminders = self.reminders.iter().map(|r| r.job.clone());
        slots.chain(window).chain(reminders).collect()
    }

    /// The next on-week start of `env`'s slot strictly after `now`; `None` without a slot.
    pub fn next_slot(&self, env: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.slot(env)?.next_after(self.tz, now)
    }

    /// The start of the on-week slot of `env` that `now` is in, i.e. `now` is in
    /// `[start, start + length)`.
    pub fn current_slot(&self, env: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.slot(env)?.current(self.tz, now)
    }

    /// Whether the week (Monday-based, in the calendar's zone) holding `now` is one of
    /// `env`'s on-weeks: always for weekly slots, never for an environment without a slot.
    pub fn is_slot_week(&self, env: &str, now: DateTime<Utc>) -> bool {
        self.slot(env).is_some_and(|slot| slot.is_on_week(self.tz, now))
    }

    /// The drag window at `now`. It is open iff its latest opening at or before `now` is
    /// later than its latest closing at or before `now`, which holds across midnight and days.
    /// croner searches backwards for those; `new` made sure both crons fire every week.
    pub fn window(&self, now: DateTime<Utc>) -> WindowState {
        let opened = latest_at_or_before(&self.opens, self.tz, now);
        let closed = latest_at_or_before(&self.closes, self.tz, now);
        match opened {
            Some(opened_at) if closed.is_none_or(|closed| opened_at > closed) => {
                WindowState::Open { opened_at, closes_at: next_after(&self.closes, self.tz, now).unwrap_or(NEVER) }
            }
            _ => {
                let opens_at = next_after(&self.opens, self.tz, now).unwrap_or(NEVER);
                let closes_at = next_after(&self.closes, self.tz, opens_at).unwrap_or(NEVER);
                WindowState::Closed { opens_at, closes_at }
            }
        }
    }

    /// Every firing in `(after, until]`, sorted by instant: slot starts (on-weeks only),
    /// window openings and closings, and reminders at their offsets. Simultaneous firings
    /// keep the order of [`Calendar::job_names`]: slots, window, then reminders.
    pub fn events_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Firing> {
        let mut firings = Vec::new();
        for slot in &self.slots {
            let event = ReminderEvent::Slot { env: slot.env.clone() };
            let kind = FiringKind::Slot { env: slot.env.clone() };
            for at in self.event_times(&event, after, until) {
                firings.push(firing(slot.job(), at, kind.clone(), slot.grace));
            }
        }
        let window = [
            ("window:opens", ReminderEvent::WindowOpens, FiringKind::WindowOpens),
            ("window:closes", ReminderEvent::WindowCloses, FiringKind::WindowCloses),
        ];
        for (job, event, kind) in window {
            for at in self.event_times(&event, after, until) {
                firings.push(firing(job.into(), at, kind.clone(), WINDOW_GRACE));
            }
        }
        for reminder in &self.reminders {
            firings.extend(self.reminder_firings(reminder, after, until));
        }
        // A stable sort keeps the job order for simultaneous firings.
        firings.sort_by_key(|f| f.at);
        firings
    }

    fn slot(&self, env: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.env == env)
    }

    /// The reminder's firings in `(after, until]`: its event's firings shifted by the offset.
    fn reminder_firings(&self, reminder: &Reminder, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Firing> {
        let (Some(from), Some(to)) =
            (after.checked_sub_signed(reminder.offset), until.checked_sub_signed(reminder.offset))
        else {
            return Vec::new();
        };
        let kind =
            FiringKind::Reminder { event: reminder.event.clone(), offset_minutes: reminder.offset.num_minutes() };
        self.event_times(&reminder.event, from, to)
            .into_iter()
            .filter_map(|at| at.checked_add_signed(reminder.offset))
            .map(|at| firing(reminder.job.clone(), at, kind.clone(), reminder.grace))
            .collect()
    }

    /// Firings of `event` in `(after, until]` (slots on on-weeks only).
    fn event_times(&self, event: &ReminderEvent, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let next = |t: DateTime<Utc>| match event {
            ReminderEvent::WindowOpens => next_after(&self.opens, self.tz, t),
            ReminderEvent::WindowCloses => next_after(&self.closes, self.tz, t),
            ReminderEvent::Slot { env } => self.next_slot(env, t),
        };
        let mut times = Vec::new();
        let mut cursor = after;
        while let Some(at) = next(cursor).filter(|at| *at <= until) {
            times.push(at);
            cursor = at;
        }
        times
    }
}

fn firing(job: String, at: DateTime<Utc>, kind: FiringKind, grace: Duration) -> Firing {
    Firing { job, at, kind, grace }
}

impl Slot {
    fn new(raw: &SlotConfig, key: &str) -> Result<Self> {
        if raw.env.trim().is_empty() {
            bail!("{key}.env: name the environment the slot is for");
        }
        let cadence = match (raw.every_weeks, raw.anchor) {
            (None, None) => None,
            (Some(0), _) => bail!("{key}.every_weeks: must be at least 1"),
            (Some(_), None) => {
                bail!("{key}.anchor: `every_weeks` needs an `anchor`, a date in an on-week such as 2026-11-04")
            }
            (None, Some(_)) => {
                bail!("{key}.anchor: an anchor only means something with `every_weeks`")
            }
            (Some(every), Some(anchor)) => Some(Cadence { every, anchor_monday: week_monday(anchor) }),
        };
        Ok(Self {
            env: raw.env.clone(),
            cron: parse_cron(&raw.cron, &format!("{key}.cron"))?,
            cadence,
            length: to_delta(parse_duration(&raw.length), &format!("{key}.length"))?,
            grace: parse_duration(&raw.grace).map_err(|e| anyhow!("{key}.grace: {e}"))?,
        })
    }

    fn job(&self) -> String {
        format!("slot:{}", self.env)
    }

    fn is_on_week(&self, tz: Tz, at: DateTime<Utc>) -> bool {
        let monday = week_monday(at.with_timezone(&tz).date_naive());
        self.cadence.is_none_or(|c| c.is_on(monday))
    }

    /// The first on-week start strictly after `after`. An off-week start makes the search
    /// jump to the start of the next on-week instead of stepping through the off-weeks.
    fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut from = after.with_timezone(&tz);
        let mut inclusive = false;
        for _ in 0..MAX_SEARCHES {
            let start = self.cron.find_next_occurrence(&from, inclusive).ok()?;
            let monday = week_monday(start.date_naive());
            match self.cadence {
                Some(cadence) if !cadence.is_on(monday) => {
                    from = start_of_day(tz, cadence.next_on_week(monday))?;
                    // The on-week's own midnight may be a start.
                    inclusive = true;
                }
                _ => return Some(start.with_timezone(&Utc)),
            }
        }
        None
    }

    /// The latest on-week start whose `[start, start + length)` holds `now`.
    fn current(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut from = now.with_timezone(&tz);
        let mut inclusive = true;
        for _ in 0..MAX_SEARCHES {
            let start = self.cron.find_previous_occurrence(&from, inclusive).ok()?;
            let start_utc = start.with_timezone(&Utc);
            if start_utc.checked_add_signed(self.length)? <= now {
                return None;
            }
            if self.is_on_week(tz, start_utc) {
                return Some(start_utc);
            }
            from = start;
            inclusive = false;
        }
        None
    }
}

impl Cadence {
    /// Whole weeks from the anchor's week to the week starting `monday`, negative before it.
    fn weeks_from_anchor(&self, monday: NaiveDate) -> i64 {
        (monday - self.anchor_monday).num_days().div_euclid(7)
    }

    fn is_on(&self, monday: NaiveDate) -> bool {
        self.weeks_from_anchor(monday).rem_euclid(i64::from(self.every)) == 0
    }

    /// The Monday of the first on-week after the week starting `monday`.
    fn next_on_week(&self, monday: NaiveDate) -> NaiveDate {
        let every = i64::from(self.every);
        let ahead = every - self.weeks_from_anchor(monday).rem_euclid(every);
        monday + Days::new(7 * ahead as u64)
    }
}

impl Reminder {
    fn new(raw: &ReminderConfig, key: &str) -> Result<Self> {
        let offset = parse_offset(&raw.offset).map_err(|e| anyhow!("{key}.offset: {e}"))?;
        if offset.num_seconds() % 60 != 0 || offset.subsec_nanos() != 0 {
            bail!("{key}.offset: `{}` is not a whole number of minutes; crons fire on minutes", raw.offset);
        }
        let minutes = offset.num_minutes();
        let label = if minutes > 0 { format!("+{minutes}m") } else { format!("{minutes}m") };
        Ok(Self {
            job: format!("reminder:{}:{label}", raw.event.key()),
            event: raw.event.clone(),
            offset,
            grace: parse_duration(&raw.grace).map_err(|e| anyhow!("{key}.grace: {e}"))?,
        })
    }
}

/// Parses a 5-field cron (minute hour day-of-month month day-of-week). croner also takes
/// seconds and years by default; the team's crons are minutes, so those are refused.
fn parse_cron(text: &str, key: &str) -> Result<Cron> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| anyhow!("{key}: `{text}` is not a 5-field cron (minute hour day-of-month month day-of-week): {e}"))
}

/// Parses a window cron and checks that it fires every week: every month, and a day that
/// does not depend on the month (`*` day-of-month, or weekdays without `L`/`#` combined by OR).
/// That keeps the window's "latest firing at or before" always within 8 days.
fn weekly_cron(text: &str, key: &str) -> Result<Cron> {
    let cron = parse_cron(text, key)?;
    let p = &cron.pattern;
    let every_month = p.months.values().len() == 12;
    let weekday_based =
        p.is_dom_wildcard() || (!p.is_dow_wildcard() && !p.matches_dom_and_dow() && !p.days.has_modifiers());
    if !every_month || !weekday_based || p.days_of_week.has_modifiers() {
        bail!("{key}: `{text}` does not fire every week; the window needs a weekly schedule such as `0 20 * * SUN`");
    }
    Ok(cron)
}

/// Parses a signed offset: `-60m`, `+5m`, `1h30m`, and `0m` or `0` for "at the event".
pub fn parse_offset(text: &str) -> Result<TimeDelta> {
    let text = text.trim();
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(magnitude) => (true, magnitude),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let is_zero = magnitude.starts_with('0') && magnitude.chars().all(|c| c == '0' || "smhd".contains(c));
    if is_zero {
        return Ok(TimeDelta::zero());
    }
    let delta = to_delta(parse_duration(magnitude), "offset")
        .map_err(|_| anyhow!("`{text}` is not an offset like -60m, 0m or +5m"))?;
    Ok(if negative { -delta } else { delta })
}

fn to_delta(parsed: Result<Duration>, key: &str) -> Result<TimeDelta> {
    let duration = parsed.map_err(|e| anyhow!("{key}: {e}"))?;
    TimeDelta::from_std(duration).map_err(|_| anyhow!("{key}: too long"))
}

/// The Monday starting the week that holds `date`.
fn week_monday(date: NaiveDate) -> NaiveDate {
    date - Days::new(u64::from(date.weekday().num_days_from_monday()))
}

/// The first instant of `date` in `tz`; in a zone whose clocks skip midnight, the first whole
/// hour that exists.
fn start_of_day(tz: Tz, date: NaiveDate) -> Option<DateTime<Tz>> {
    (0..24).find_map(|hour| {
        let local = date.and_hms_opt(hour, 0, 0)?;
        tz.from_local_datetime(&local).earliest()
    })
}

/// The latest firing of `cron` at or before `t`; croner searches backwards for it.
fn latest_at_or_before(cron: &Cron, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = t.with_timezone(&tz);
    let found = cron.find_previous_occurrence(&local, true).ok()?;
    Some(found.with_timezone(&Utc))
}

/// The first firing of `cron` strictly after `t`.
fn next_after(cron: &Cron, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // "Never" has no firing after it (and is past croner's range).
    if t == NEVER {
        return None;
    }
    let local = t.with_timezone(&tz);
    let found = cron.find_next_occurrence(&local, false).ok()?;
    Some(found.with_timezone(&Utc))
}

/// Words for one calendar firing (slots and window edges).
pub fn firing_words(firing: &Firing) -> String {
    match &firing.kind {
        FiringKind::Slot { env } => format!("{env} deploy slot"),
        FiringKind::WindowOpens => "ticket-drag window opens".into(),
        FiringKind::WindowCloses => "ticket-drag window closes".into(),
        FiringKind::Reminder { event, offset_minutes } => reminder_words(event, *offset_minutes),
    }
}

/// A reminder in people's words ("reminder 30m before the production deploy slot"), never
/// its internal job id.
fn reminder_words(event: &ReminderEvent, offset_minutes: i64) -> String {
    let what = match event {
        ReminderEvent::WindowOpens => "the ticket-drag window opens".to_owned(),
        ReminderEvent::WindowCloses => "the ticket-drag window closes".to_owned(),
        ReminderEvent::Slot { env } => format!("the {env} deploy slot starts"),
    };
    let minutes = offset_minutes.unsigned_abs();
    let span = match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} minute{}", if m == 1 { "" } else { "s" }),
        (1, 0) => "1 hour".to_owned(),
        (h, 0) => format!("{h} hours"),
        (h, m) => format!("{h}h {m}m"),
    };
    match offset_minutes {
        0 => format!("reminder as {what}"),
        m if m < 0 => format!("reminder {span} before {what}"),
        _ => format!("reminder {span} after {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Africa::Nairobi;
    use std::collections::HashSet;

    /// An instant given as East Africa Time, the team's wall clock.
    fn eat(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Nairobi.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap().with_timezone(&Utc)
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn team() -> Calendar {
        Calendar::new(&CalendarConfig::default(), Nairobi).unwrap()
    }

    /// Parses the `[calendar]` table out of a config file's text.
    fn parse(text: &str) -> Result<CalendarConfig> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            calendar: CalendarConfig,
        }
        let file: File = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
        Ok(file.calendar)
    }

    fn new_err(config: &CalendarConfig) -> String {
        format!("{:#}", Calendar::new(config, Nairobi).unwrap_err())
    }

    #[test]
    fn the_instants_of_the_stories_are_the_days_we_think() {
        use chrono::Weekday;
        assert_eq!(eat(2026, 11, 22, 20, 0), utc(2026, 11, 22, 17, 0));
        assert_eq!(NaiveDate::from_ymd_opt(2026, 11, 4).unwrap().weekday(), Weekday::Wed);
        assert_eq!(NaiveDate::from_ymd_opt(2026, 11, 22).unwrap().weekday(), Weekday::Sun);
        assert_eq!(NaiveDate::from_ymd_opt(2026, 11, 23).unwrap().weekday(), Weekday::Mon);
    }

    #[test]
    fn an_empty_calendar_table_is_the_teams_calendar() {
        assert_eq!(parse("[calendar]").unwrap(), CalendarConfig::default());
        assert_eq!(parse("").unwrap(), CalendarConfig::default());
        let calendar = team();
        assert_eq!(calendar.timezone(), Nairobi);
        for env in ["dev", "staging", "production"] {
            assert!(calendar.has_slot(env), "{env}");
        }
        assert!(!calendar.has_slot("qa"));
    }

    #[test]
    fn the_documented_toml_is_the_default() {
        let text = r#"
[calendar]
slots = [
  { env = "dev", cron = "0 20 * * SUN" },
  { env = "staging", cron = "30 8 * * MON" },
  { env = "production", cron = "30 7 * * WED", every_weeks = 2, anchor = 2026-11-04 },
]
drag_window = { opens = "0 20 * * SUN", closes = "30 8 * * MON" }
reminders = [
  { event = "window_opens", offset = "0m" },
  { event = "window_closes", offset = "-60m" },
  { event = "window_closes", offset = "0m" },
  { event = { slot = "dev" }, offset = "-30m" },
  { event = { slot = "staging" }, offset = "-30m" },
  { event = { slot = "production" }, offset = "-30m" },
]
"#;
        assert_eq!(parse(text).unwrap(), CalendarConfig::default());
        // The anchor may also be a string.
        let quoted = text.replace("anchor = 2026-11-04", "anchor = \"2026-11-04\"");
        assert_eq!(parse(&quoted).unwrap(), CalendarConfig::default());
    }

    #[test]
    fn on_saturday_the_next_dev_slot_is_sunday_evening() {
        let calendar = team();
        let saturday = eat(2026, 11, 21, 12, 0);
        assert_eq!(calendar.next_slot("dev", saturday), Some(utc(2026, 11, 22, 17, 0)));
        assert_eq!(calendar.next_slot("staging", saturday), Some(eat(2026, 11, 23, 8, 30)));
        assert_eq!(calendar.next_slot("qa", saturday), None);
    }

    #[test]
    fn once_the_dev_slot_has_started_the_next_one_is_a_week_later() {
        let calendar = team();
        // Strictly after: at 20:00 exactly the slot is not "next" any more.
        for now in [eat(2026, 11, 22, 20, 0), eat(2026, 11, 22, 21, 0)] {
            assert_eq!(calendar.next_slot("dev", now), Some(eat(2026, 11, 29, 20, 0)));
        }
        // Sunday night, after midnight UTC is still Sunday: staging is on Monday morning.
        assert_eq!(calendar.next_slot("staging", eat(2026, 11, 22, 21, 0)), Some(utc(2026, 11, 23, 5, 30)));
    }

    #[test]
    fn production_goes_out_every_second_wednesday() {
        let calendar = team();
        // On the anchor Wednesday, after the slot: two weeks later, not one.
        assert_eq!(calendar.next_slot("production", eat(2026, 11, 4, 8, 0)), Some(eat(2026, 11, 18, 7, 30)));
        // Before the slot on the anchor Wednesday: that morning.
        assert_eq!(calendar.next_slot("production", eat(2026, 11, 4, 7, 0)), Some(utc(2026, 11, 4, 4, 30)));
        // From the Monday of an off-week: the Wednesday of the following week.
        assert_eq!(calendar.next_slot("production", eat(2026, 11, 9, 9, 0)), Some(eat(2026, 11, 18, 7, 30)));
        // Weeks before the anchor follow the same parity.
        assert_eq!(calendar.next_slot("production", eat(2026, 10, 19, 9, 0)), Some(eat(2026, 10, 21, 7, 30)));
        assert_eq!(calendar.next_slot("production", eat(2026, 10, 26, 9, 0)), Some(eat(2026, 11, 4, 7, 30)));
    }

    #[test]
    fn slot_weeks_count_from_the_anchor_week_in_either_direction() {
        let calendar = team();
        let on = |d: u32, m: u32| calendar.is_slot_week("production", eat(2026, m, d, 12, 0));
        assert!(on(4, 11), "the anchor week");
        assert!(on(2, 11), "its Monday");
        assert!(on(8, 11), "its Sunday");
        assert!(!on(9, 11), "the next Monday starts an off-week");
        assert!(!on(11, 11));
        assert!(on(18, 11));
        assert!(!on(28, 10), "the week before the anchor");
        assert!(on(21, 10), "two weeks before the anchor");
        assert!(!on(14, 10), "three weeks before the anchor");
        assert!(calendar.is_slot_week("dev", eat(2026, 11, 11, 12, 0)));
        assert!(!calendar.is_slot_week("qa", eat(2026, 11, 4, 12, 0)));
    }

    #[test]
    fn the_week_is_the_teams_week_not_utcs() {
        let calendar = team();
        // Monday 01:00 in Nairobi is still Sunday in UTC, in the off-week before.
        let monday_night = eat(2026, 11, 16, 1, 0);
        assert_eq!(monday_night, utc(2026, 11, 15, 22, 0));
        assert!(calendar.is_slot_week("production", monday_night));
        assert!(!calendar.is_slot_week("production", eat(2026, 11, 15, 23, 59)));
    }

    #[test]
    fn the_drag_window_opens_on_sunday_evening() {
        let calendar = team();
        let open = WindowState::Open { opened_at: utc(2026, 11, 22, 17, 0), closes_at: utc(2026, 11, 23, 5, 30) };
        assert_eq!(calendar.window(eat(2026, 11, 22, 20, 0)), open);
        // After midnight it is still open.
        assert_eq!(calendar.window(eat(2026, 11, 23, 0, 30)), open);
        assert_eq!(calendar.window(eat(2026, 11, 23, 8, 29)), open);
        // croner works in whole seconds; a clock reading just past the opening still counts.
        let just_after = eat(2026, 11, 22, 20, 0) + TimeDelta::milliseconds(500);
        assert_eq!(calendar.window(just_after), open);
        assert_eq!(calendar.current_slot("dev", just_after), Some(eat(2026, 11, 22, 20, 0)));
        assert_eq!(calendar.next_slot("dev", just_after), Some(eat(2026, 11, 29, 20, 0)));
        assert!(open.is_open());
    }

    #[test]
    fn the_drag_window_is_closed_from_monday_0830_to_sunday_2000() {
        let calendar = team();
        let next_week = WindowState::Closed { opens_at: eat(2026, 11, 29, 20, 0), closes_at: eat(2026, 11, 30, 8, 30) };
        assert_eq!(calendar.window(eat(2026, 11, 23, 8, 30)), next_week);
        assert_eq!(calendar.window(eat(2026, 11, 25, 12, 0)), next_week);
        assert!(!next_week.is_open());
        assert_eq!(
            calendar.window(eat(2026, 11, 22, 19, 59)),
            WindowState::Closed { opens_at: utc(2026, 11, 22, 17, 0), closes_at: utc(2026, 11, 23, 5, 30) }
        );
    }

    #[test]
    fn deploys_are_in_slot_for_the_slots_length() {
        let calendar = team();
        let sunday = eat(2026, 11, 22, 20, 0);
        assert_eq!(calendar.current_slot("dev", sunday), Some(sunday));
        assert_eq!(calendar.current_slot("dev", eat(2026, 11, 22, 21, 59)), Some(sunday));
        assert_eq!(calendar.current_slot("dev", eat(2026, 11, 22, 22, 0)), None);
        assert_eq!(calendar.current_slot("dev", eat(2026, 11, 22, 19, 59)), None);
        assert_eq!(calendar.current_slot("staging", sunday), None);
        assert_eq!(calendar.current_slot("qa", sunday), None);
    }

    #[test]
    fn production_is_not_in_slot_on_an_off_week() {
        let calendar = team();
        assert_eq!(calendar.current_slot("production", eat(2026, 11, 18, 8, 0)), Some(eat(2026, 11, 18, 7, 30)));
        assert_eq!(calendar.current_slot("production", eat(2026, 11, 11, 8, 0)), None);
    }

    #[test]
    fn a_slot_longer_than_its_period_finds_the_on_week_start() {
        let mut config = CalendarConfig::default();
        config.slots[2].length = "8d".into();
        let calendar = Calendar::new(&config, Nairobi).unwrap();
        // The off-week Wednesday is skipped back to the anchor Wednesday, still within 8 days.
        assert_eq!(calendar.current_slot("production", eat(2026, 11, 11, 8, 0)), Some(eat(2026, 11, 4, 7, 30)));
    }

    #[test]
    fn two_weeks_of_the_team_calendar_in_order() {
        let calendar = team();
        // From the Sunday of an on-week through an off-week and the next on-week.
        let firings = calendar.events_between(eat(2026, 11, 8, 0, 0), eat(2026, 11, 22, 0, 0));
        let seen: Vec<(String, String)> = firings
            .iter()
            .map(|f| {
                let local = f.at.with_timezone(&Nairobi).format("%a %d %H:%M");
                (local.to_string(), f.job.clone())
            })
            .collect();
        let expected = [
            ("Sun 08 19:30", "reminder:slot:dev:-30m"),
            ("Sun 08 20:00", "slot:dev"),
            ("Sun 08 20:00", "window:opens"),
            ("Sun 08 20:00", "reminder:window_opens:0m"),
            ("Mon 09 07:30", "reminder:window_closes:-60m"),
            ("Mon 09 08:00", "reminder:slot:staging:-30m"),
            ("Mon 09 08:30", "slot:staging"),
            ("Mon 09 08:30", "window:closes"),
            ("Mon 09 08:30", "reminder:window_closes:0m"),
            // Wednesday 11 is an off-week: no production slot, no reminder.
            ("Sun 15 19:30", "reminder:slot:dev:-30m"),
            ("Sun 15 20:00", "slot:dev"),
            ("Sun 15 20:00", "window:opens"),
            ("Sun 15 20:00", "reminder:window_opens:0m"),
            ("Mon 16 07:30", "reminder:window_closes:-60m"),
            ("Mon 16 08:00", "reminder:slot:staging:-30m"),
            ("Mon 16 08:30", "slot:staging"),
            ("Mon 16 08:30", "window:closes"),
            ("Mon 16 08:30", "reminder:window_closes:0m"),
            ("Wed 18 07:00", "reminder:slot:production:-30m"),
            ("Wed 18 07:30", "slot:production"),
        ]
        .map(|(at, job)| (at.to_owned(), job.to_owned()));
        assert_eq!(seen, expected);
        assert_eq!(firings.len(), 20);

        let before_close = &firings[4];
        assert_eq!(before_close.at, utc(2026, 11, 9, 4, 30));
        assert_eq!(before_close.kind, FiringKind::Reminder { event: ReminderEvent::WindowCloses, offset_minutes: -60 });
        assert_eq!(before_close.grace, Duration::from_secs(15 * 60));
        assert_eq!(firings[19].kind, FiringKind::Slot { env: "production".into() });
    }

    #[test]
    fn events_between_is_open_at_the_start_and_closed_at_the_end() {
        let calendar = team();
        let slot = eat(2026, 11, 22, 20, 0);
        let jobs = |after, until| -> Vec<String> {
            calendar.events_between(after, until).into_iter().map(|f| f.job).collect()
        };
        assert_eq!(jobs(eat(2026, 11, 22, 19, 30), slot), ["slot:dev", "window:opens", "reminder:window_opens:0m"]);
        assert!(jobs(slot, eat(2026, 11, 22, 21, 0)).is_empty());
        assert!(calendar.events_between(slot, slot).is_empty());
        assert!(calendar.events_between(slot, eat(2026, 11, 20, 0, 0)).is_empty());
    }

    #[test]
    fn every_job_of_the_team_calendar_has_its_own_name() {
        let calendar = team();
        let names = calendar.job_names();
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names.len(), 11);
        // Four weeks fire every job, and only those.
        let fired: HashSet<String> = calendar
            .events_between(eat(2026, 11, 1, 0, 0), eat(2026, 11, 29, 0, 0))
            .into_iter()
            .map(|f| f.job)
            .collect();
        assert_eq!(fired, names.into_iter().collect());
    }

    #[test]
    fn a_bad_cron_names_its_key() {
        let mut config = CalendarConfig::default();
        config.slots[2].cron = "30 7 * * WEDS".into();
        let err = new_err(&config);
        assert!(err.starts_with("calendar.slots[2].cron:") && err.contains("WEDS"), "{err}");
        config.slots[2].cron = "0 30 7 * * WED".into();
        assert!(new_err(&config).starts_with("calendar.slots[2].cron:"));
        config.slots[2].cron = "61 7 * * WED".into();
        assert!(new_err(&config).starts_with("calendar.slots[2].cron:"));
    }

    #[test]
    fn every_weeks_needs_an_anchor() {
        let mut config = CalendarConfig::default();
        config.slots[2].anchor = None;
        let err = new_err(&config);
        assert!(err.starts_with("calendar.slots[2].anchor:") && err.contains("every_weeks"), "{err}");
        let text = r#"
[calendar]
slots = [{ env = "production", cron = "30 7 * * WED", every_weeks = 2 }]
reminders = []
"#;
        assert!(Calendar::new(&parse(text).unwrap(), Nairobi).is_err());
        let mut config = CalendarConfig::default();
        config.slots[2].every_weeks = Some(0);
        assert!(new_err(&config).contains("calendar.slots[2].every_weeks"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        for text in [
            "[calendar]\ncolour = \"blue\"",
            "[calendar]\nslots = [{ env = \"dev\", cron = \"0 20 * * SUN\", every_week = 2 }]",
            "[calendar]\ndrag_window = { opens = \"0 20 * * SUN\", closes = \"30 8 * * MON\", at = 1 }",
            "[calendar]\nreminders = [{ event = \"window_opens\", ofset = \"0m\" }]",
            "[calendar]\nreminders = [{ event = \"window_opened\" }]",
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains("unknown"), "{text}: {err}");
        }
        // A half-given window is refused rather than mixed with the default.
        assert!(parse("[calendar]\ndrag_window = { opens = \"0 20 * * SUN\" }").is_err());
    }

    #[test]
    fn reminders_must_be_about_configured_slots_and_whole_minutes() {
        let mut config = CalendarConfig::default();
        config.slots.pop();
        let err = new_err(&config);
        assert!(err.starts_with("calendar.reminders[5].event:") && err.contains("production"), "{err}");
        let mut config = CalendarConfig::default();
        config.reminders[1].offset = "-90s".into();
        assert!(new_err(&config).starts_with("calendar.reminders[1].offset:"));
        config.reminders[1].offset = "soon".into();
        assert!(new_err(&config).starts_with("calendar.reminders[1].offset:"));
        let mut config = CalendarConfig::default();
        config.reminders.push(config.reminders[0].clone());
        assert!(new_err(&config).contains("configured twice"));
    }

    #[test]
    fn the_window_must_fire_every_week() {
        let mut config = CalendarConfig::default();
        config.drag_window.opens = "0 20 1 * *".into();
        let err = new_err(&config);
        assert!(err.starts_with("calendar.drag_window.opens:"), "{err}");
        config.drag_window.opens = "0 20 * 1-6 SUN".into();
        assert!(new_err(&config).starts_with("calendar.drag_window.opens:"));
        config.drag_window.opens = "0 20 * * 0#1".into();
        assert!(new_err(&config).starts_with("calendar.drag_window.opens:"));
        // Weekday lists, ranges and dailies are weekly enough.
        config.drag_window.opens = "0 20 * * MON-FRI".into();
        assert!(Calendar::new(&config, Nairobi).is_ok());
        config.drag_window.opens = "0 20 * * *".into();
        assert!(Calendar::new(&config, Nairobi).is_ok());
        // Day-of-month OR day-of-week still fires every Sunday.
        config.drag_window.opens = "0 20 1 * SUN".into();
        assert!(Calendar::new(&config, Nairobi).is_ok());
        config.drag_window.opens = "30 8 * * MON".into();
        assert!(new_err(&config).contains("same schedule"));
    }

    #[test]
    fn offsets_are_signed() {
        assert_eq!(parse_offset("-60m").unwrap(), TimeDelta::minutes(-60));
        assert_eq!(parse_offset("+5m").unwrap(), TimeDelta::minutes(5));
        assert_eq!(parse_offset("1h30m").unwrap(), TimeDelta::minutes(90));
        for zero in ["0", "0m", "-0m", "+0s"] {
            assert_eq!(parse_offset(zero).unwrap(), TimeDelta::zero(), "{zero}");
        }
        for bad in ["", "-", "m", "5", "--5m", "later"] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_configured_zone_decides_not_the_host() {
        // The same config in UTC fires three hours later in absolute time.
        let in_utc = Calendar::new(&CalendarConfig::default(), Tz::UTC).unwrap();
        let saturday = utc(2026, 11, 21, 12, 0);
        assert_eq!(in_utc.next_slot("dev", saturday), Some(utc(2026, 11, 22, 20, 0)));
        assert_eq!(team().next_slot("dev", saturday), Some(utc(2026, 11, 22, 17, 0)));
        // A zone with daylight saving time moves the UTC instant with the season.
        let berlin = Calendar::new(&CalendarConfig::default(), chrono_tz::Europe::Berlin).unwrap();
        assert_eq!(berlin.next_slot("dev", utc(2026, 7, 1, 0, 0)), Some(utc(2026, 7, 5, 18, 0)));
        assert_eq!(berlin.next_slot("dev", saturday), Some(utc(2026, 11, 22, 19, 0)));
        // The host's zone type is never named here, so it cannot be read by accident. The
        // name is assembled so that this test does not find itself.
        let host_zone = ["Lo", "cal"].concat();
        let source = include_str!("calendar.rs");
        let named = source.match_indices(&host_zone).any(|(i, _)| {
            let next = source[i + host_zone.len()..].chars().next();
            !next.is_some_and(|c| c.is_alphanumeric())
        });
        assert!(!named, "the calendar must not use the host's time zone");
    }
}
