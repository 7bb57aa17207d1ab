//! Unit tests of the handlers' decisions: a [`Context`] over a temporary store and a small
//! config, a handler called directly, and the [`Decision`] it returns (reply and audit line).

use super::*;
use crate::clock::ManualClock;
use crate::config::Config;
use crate::release::deploy::Trigger;
use crate::release::gitref::GitRef;
use crate::store::Store;
use chrono::{DateTime, TimeZone, Utc};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;

const CONFIG: &str = r#"
state_dir = "state"
[[people]]
id = "ada"
name = "Ada"
roles = ["lead"]
[[people]]
id = "bob"
name = "Bob"
roles = ["developer"]
[[environments]]
name = "dev"
branch = "dev"
personal_branches = true
transport = { kind = "local", dir = "/srv/dev" }
"#;

/// A Tuesday morning.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 3, 7, 0, 0).unwrap()
}

/// A context over a fresh store; jobs do not start (there is no loop to report to).
fn context(dir: &Path) -> Context {
    let config = Arc::new(Config::from_toml(CONFIG, dir).unwrap());
    let (store, _) = Store::open(&dir.join("state")).unwrap();
    let clock = Arc::new(ManualClock::new(now()));
    let jobs = Jobs::new(|| None);
    let (_, stopped) = tokio::sync::watch::channel(());
    Context::new(config, store, clock, HashMap::new(), jobs, None, None, stopped)
}

/// `who` typing `text` on the console.
fn command(ctx: &Context, who: &str, text: &str) -> WaitingCommand {
    let (reply, _) = oneshot::channel();
    WaitingCommand::new(Invocation::new("console", who, text), ctx.person("console", who, &[]), reply)
}

fn text(decision: &Decision) -> &str {
    match &decision.reply.body {
        ReplyBody::Text(text) | ReplyBody::Refused(text) => text,
        other => panic!("not a text reply: {other:?}"),
    }
}

#[test]
fn a_lead_locks_an_environment_in_public_and_the_audit_log_says_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let ada = command(&ctx, "ada", "/lock dev release freeze");
    let decision = lock(&ctx, "dev", "release freeze", &ada, now());
    assert_eq!(decision.reply.visibility, Visibility::Public);
    assert!(matches!(decision.reply.body, ReplyBody::Text(_)), "{decision:?}");
    assert!(
        text(&decision).starts_with("🔒 ") && text(&decision).ends_with("Others cannot deploy until `/unlock dev`.")
    );
    assert_eq!(decision.decision, format!("accepted: {}", text(&decision)));
    let hold = ctx.store.hold("dev").unwrap().expect("the lock is recorded");
    assert_eq!(hold.holder, "ada");
}

#[test]
fn a_developer_cannot_lock_a_free_environment_and_is_told_who_can() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let bob = command(&ctx, "bob", "/lock dev mine");
    let decision = lock(&ctx, "dev", "mine", &bob, now());
    assert!(matches!(decision.reply.body, ReplyBody::Refused(_)));
    assert_eq!(decision.reply.visibility, Visibility::Ephemeral);
    assert_eq!(
        text(&decision),
        "Only a lead, or the person who holds dev's claim, can lock it. Ask a lead to `/lock dev REASON`."
    );
    assert_eq!(decision.decision, format!("refused: {}", text(&decision)));
    assert!(ctx.store.hold("dev").unwrap().is_none(), "nothing was held");
}

#[test]
fn unlocking_names_who_held_it_and_frees_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let ada = command(&ctx, "ada", "/lock dev freeze");
    lock(&ctx, "dev", "freeze", &ada, now());
    let decision = unlock(&ctx, "dev", &command(&ctx, "ada", "/unlock dev"));
    assert_eq!(text(&decision), "🔓 Ada unlocked dev (was held by Ada). Anyone may deploy to it again.");
    assert_eq!(decision.decision, format!("accepted: {}", text(&decision)));
    assert!(ctx.store.hold("dev").unwrap().is_none());
}

#[test]
fn unlocking_what_nobody_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let decision = unlock(&ctx, "dev", &command(&ctx, "ada", "/unlock dev"));
    assert_eq!(text(&decision), "dev is neither locked nor claimed.");
    assert_eq!(decision.decision, "refused: dev is neither locked nor claimed.");
}

#[test]
fn a_deploy_to_an_environment_someone_else_locked_is_refused_before_any_job_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context(dir.path());
    lock(&ctx, "dev", "freeze", &command(&ctx, "ada", "/lock dev freeze"), now());
    let request = DeployRequest::new("dev", GitRef::parse("feature/login").unwrap(), Trigger::Command);
    let bob = command(&ctx, "bob", "/deploy dev feature/login");
    let (_, decision) = deploy(&mut ctx, request, bob, now()).expect("refused at once");
    assert!(matches!(decision.reply.body, ReplyBody::Refused(_)), "{decision:?}");
    assert!(text(&decision).contains("dev"), "{}", text(&decision));
    assert!(decision.decision.starts_with("refused: "));
    assert!(ctx.starting.is_empty(), "no ref is being resolved");
}

#[test]
fn history_and_status_of_a_fresh_install_are_private_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context(dir.path());
    let history = history(&ctx, Some("dev"), 10);
    assert!(matches!(&history.reply.body, ReplyBody::History(records) if records.is_empty()));
    assert_eq!((history.reply.visibility, history.decision.as_str()), (Visibility::Ephemeral, "answered"));
    let status = status(&mut ctx, None, now());
    let ReplyBody::Status(report) = &status.reply.body else { panic!("{status:?}") };
    assert_eq!(report.environments.len(), 1);
    let dev = report.environments.first().unwrap();
    assert_eq!((dev.name.as_str(), dev.live.is_none(), dev.hold.is_none()), ("dev", true, true));
    assert_eq!(status.decision, "answered");
}

#[test]
fn status_shows_a_lock_once_it_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context(dir.path());
    lock(&ctx, "dev", "freeze", &command(&ctx, "ada", "/lock dev freeze"), now());
    let status = status(&mut ctx, Some("dev"), now());
    let ReplyBody::Status(report) = &status.reply.body else { panic!("{status:?}") };
    let hold = report.environments.first().and_then(|e| e.hold.as_ref()).expect("the lock shows");
    assert_eq!(hold.holder_name, "Ada");
}

#[test]
fn help_and_schedule_answer_privately_and_record_answered() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let help = help(&ctx, None);
    assert!(text(&help).contains("/deploy"), "{}", text(&help));
    assert_eq!((help.reply.visibility, help.decision.as_str()), (Visibility::Ephemeral, "answered"));
    let schedule = schedule(&ctx, 7, now());
    let ReplyBody::Schedule(view) = &schedule.reply.body else { panic!("{schedule:?}") };
    assert_eq!(view.now, now());
    assert_eq!(schedule.decision, "answered");
}

#[test]
fn a_rollback_before_any_deploy_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context(dir.path());
    let ada = command(&ctx, "ada", "/rollback dev");
    let (_, decision) = rollback(&mut ctx, "dev", "previous", None, ada, now()).expect("refused at once");
    assert_eq!(text(&decision), "Shipday has not deployed dev yet: nothing to roll back to.");
    assert!(ctx.starting.is_empty());
}

#[test]
fn a_store_failure_is_one_short_line_and_a_user_error_reaches_the_user_word_for_word() {
    let error = anyhow::anyhow!("disk I/O error at /var/lib/shipday/state");
    let decision = Decision::store_trouble("read the history", &error);
    assert_eq!(text(&decision), STORE_TROUBLE);
    assert!(!text(&decision).contains("disk I/O"), "the error itself stays in the log");
    let sentence = "Promotions go one step at a time.";
    let decision = Decision::from(UserError::from(sentence));
    assert_eq!(text(&decision), sentence);
    assert_eq!(decision.decision, format!("refused: {sentence}"));
}
