//! When and where: deploy slots, the ticket-drag window, promotion order. Who may run a command
//! at all is decided by [`crate::command::authorize`].

use super::Refusal;
use super::calendar::{Calendar, WindowState};
use crate::release::environment::Environment;
use crate::release::people::{Person, Role};
use chrono::{DateTime, Utc};

/// Environments that need approval deploy only in their calendar slot; outside it a lead may
/// deploy with an emergency reason (recorded and announced). Environments without a slot, and
/// those that need no approval, deploy any time.
pub fn check_deploy_slot(
    calendar: &Calendar,
    env: &Environment,
    person: &Person,
    emergency: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if !env.requires_approval || !calendar.has_slot(&env.name) || calendar.current_slot(&env.name, now).is_some() {
        return Ok(());
    }
    match emergency {
        Some(_) if person.has(Role::Lead) => Ok(()),
        Some(_) => Err(Refusal::new(format!("Only a lead can deploy to {} with --emergency.", env.name))),
        None => {
            let next = calendar
                .next_slot(&env.name, now)
                .map(|at| format!(" The next one is {}.", when(calendar, at, now)))
                .unwrap_or_default();
            Err(Refusal::new(format!(
                "{} deploys only in its slot.{next} A lead can deploy now with `--emergency \"reason\"`; \
                 the reason is recorded and announced.",
                env.name
            )))
        }
    }
}

/// Tickets move from Dev Testing to Staging only while the drag window is open.
pub fn check_drag_window(calendar: &Calendar, now: DateTime<Utc>) -> Result<(), Refusal> {
    match calendar.window(now) {
        WindowState::Open { .. } => Ok(()),
        WindowState::Closed { opens_at, closes_at } => Err(Refusal::new(format!(
            "Tickets move to Staging only in the ticket-drag window. It opens {} and closes {}.",
            when(calendar, opens_at, now),
            calendar_time(calendar, closes_at)
        ))),
    }
}

/// `Wed 09 Dec 07:30 EAT (in 13d 2h)`.
pub fn when(calendar: &Calendar, at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} (in {})", calendar_time(calendar, at), super::age(at, now))
}

/// `Wed 09 Dec 07:30 EAT`, in the calendar's zone.
pub fn calendar_time(calendar: &Calendar, at: DateTime<Utc>) -> String {
    at.with_timezone(&calendar.timezone()).format("%a %d %b %H:%M %Z").to_string()
}

/// The environment before `env` in promotion order (`environments` are in that order).
pub fn previous_environment<'a>(environments: &'a [Environment], env: &str) -> Option<&'a str> {
    let index = environments.iter().position(|e| e.name == env)?;
    index.checked_sub(1).and_then(|i| environments.get(i)).map(|e| e.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::authorize::{Actor, authorize};
    use crate::command::{CommandBook, parse};
    use crate::config::Config;
    use std::path::Path;

    const CONFIG: &str = r#"
state_dir = "state"
[[people]]
id = "ada"
name = "Ada"
roles = ["lead"]
[[people]]
id = "grace"
name = "Grace"
roles = ["developer"]
[[people]]
id = "guest"
name = "Guest"
[[environments]]
name = "dev"
branch = "dev"
personal_branches = true
transport = { kind = "local", dir = "/srv/dev" }
[[environments]]
name = "staging"
branch = "staging"
transport = { kind = "local", dir = "/srv/staging" }
[[environments]]
name = "production"
branch = "master"
requires_approval = true
transport = { kind = "local", dir = "/srv/production" }
"#;

    fn check(user: &str, line: &str) -> Result<(), Refusal> {
        let config = Config::from_toml(CONFIG, Path::new("/")).unwrap();
        let book = CommandBook::builtin();
        let command = parse(&book, &config.environment_names(), line).unwrap();
        let spec = book.get(command.name()).unwrap();
        let actor = Actor { person: config.person(user), platform: "console", user_id: user };
        authorize(&config.environments, spec, actor, &command)
    }

    #[test]
    fn unknown_users_only_read() {
        assert!(check("mallory", "/status").is_ok());
        assert!(check("mallory", "/history dev").is_ok());
        assert!(check("mallory", "/help").is_ok());
        let err = check("mallory", "/deploy dev feature/x").unwrap_err();
        assert!(err.0.contains("`mallory`") && err.0.contains("people list"), "{}", err.0);
    }

    #[test]
    fn a_person_without_roles_only_reads() {
        assert!(check("guest", "/deploy dev feature/x").is_err());
        assert!(check("guest", "/status").is_ok());
    }

    #[test]
    fn production_needs_a_lead() {
        let err = check("grace", "/deploy production master").unwrap_err();
        assert!(err.0.contains("needs a lead") && err.0.contains("/promote staging production"), "{}", err.0);
        assert!(check("ada", "/deploy production master").is_ok());
    }

    fn eat(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        chrono_tz::Africa::Nairobi.with_ymd_and_hms(2026, 11, day, hour, minute, 0).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn production_deploys_in_its_slot_or_with_a_leads_emergency() {
        let config = Config::from_toml(CONFIG, Path::new("/")).unwrap();
        let production = config.environment("production").unwrap();
        let (ada, grace) = (config.person("ada").unwrap(), config.person("grace").unwrap());
        let calendar = &config.calendar;
        // Wednesday 18 Nov 07:45 EAT is in the slot (an on-week); 25 Nov is an off-week.
        assert!(check_deploy_slot(calendar, production, ada, None, eat(18, 7, 45)).is_ok());
        let err = check_deploy_slot(calendar, production, ada, None, eat(25, 7, 45)).unwrap_err();
        assert!(err.0.contains("Wed 02 Dec 07:30 EAT") && err.0.contains("--emergency"), "{}", err.0);
        assert!(check_deploy_slot(calendar, production, ada, Some("outage"), eat(25, 7, 45)).is_ok());
        assert!(check_deploy_slot(calendar, production, grace, Some("outage"), eat(25, 7, 45)).is_err());
        // Environments that need no approval deploy any time.
        let dev = config.environment("dev").unwrap();
        assert!(check_deploy_slot(calendar, dev, grace, None, eat(25, 12, 0)).is_ok());
    }

    #[test]
    fn tickets_move_to_staging_only_in_the_drag_window() {
        let config = Config::from_toml(CONFIG, Path::new("/")).unwrap();
        assert!(check_drag_window(&config.calendar, eat(22, 20, 0)).is_ok());
        assert!(check_drag_window(&config.calendar, eat(23, 8, 29)).is_ok());
        let err = check_drag_window(&config.calendar, eat(23, 8, 30)).unwrap_err();
        assert!(
            err.0.contains("opens Sun 29 Nov 20:00 EAT") && err.0.contains("closes Mon 30 Nov 08:30 EAT"),
            "{}",
            err.0
        );
    }

    #[test]
    fn personal_branches_only_where_allowed() {
        assert!(check("grace", "/deploy dev feature/x").is_ok());
        let err = check("grace", "/deploy staging feature/x").unwrap_err();
        assert!(err.0.contains("/promote dev staging"), "{}", err.0);
        assert!(check("grace", "/deploy staging staging").is_ok());
    }
}
