//! Property tests over every parser of outside data: whatever arrives (command text, refs, chat
//! payloads, GitHub deliveries, host output), parsing answers or refuses, and never panics.
//! 10,000 cases each; each case is cheap, so the whole file runs in seconds.

use crate::command::{CommandBook, parse};
use crate::release::gitref::{GitRef, Sha};
use crate::release::migrations::{Migration, applied_from_plan, irreversible_operations, valid_migration_name};
use crate::release::plan::parse_resolution;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(10_000) }
}

/// Text with the characters that break naive parsers: multibyte letters, quotes, dashes,
/// slashes, control characters.
fn hostile() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            any::<char>(),
            prop::sample::select(vec![
                'ä', 'é', '€', '😀', '"', '\'', '-', '/', '.', ' ', '\n', '_', '[', 'X', ']', '0', '@'
            ]),
        ],
        0..32,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// Built once: building the book per case would be most of the cost.
fn book() -> &'static CommandBook {
    static BOOK: std::sync::OnceLock<CommandBook> = std::sync::OnceLock::new();
    BOOK.get_or_init(CommandBook::builtin)
}

fn envs() -> Vec<String> {
    vec!["dev".into(), "staging".into(), "production".into()]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn command_text_never_panics(text in hostile()) {
        let book = book();
        let _ = parse(book, &envs(), &text);
    }

    #[test]
    fn commands_with_hostile_arguments_never_panic(
        name in prop::sample::select(vec!["/deploy", "/status", "/promote", "/rollback", "/ticket", "/lock", "/history", "/help", "/schedule", "/release"]),
        args in hostile(),
    ) {
        let book = book();
        let _ = parse(book, &envs(), &format!("{name} dev {args}"));
        let _ = parse(book, &envs(), &format!("{name} {args}"));
    }

    #[test]
    fn refs_and_shas_never_panic(text in hostile()) {
        if let Ok(git_ref) = GitRef::parse(&text) {
            let _ = git_ref.as_sha();
        }
        if let Ok(sha) = Sha::parse(&text) {
            prop_assert_eq!(sha.as_str().len(), 40);
            let _ = sha.short();
        }
    }

    #[test]
    fn git_output_never_panics(output in hostile(), text in hostile()) {
        let dev = GitRef::parse("dev").expect("a plain branch");
        let _ = parse_resolution(&dev, &output);
        let sha = GitRef::parse("c4295bd74fb0f4fda03689c3df3f2803b658fd85").expect("a SHA");
        let _ = parse_resolution(&sha, &format!("{output}\nc4295bd74fb0f4fda03689c3df3f2803b658fd85 {text}"));
        let _ = crate::handlers::merge_stream::parse_ancestry(&output);
    }

    #[test]
    fn migration_names_and_paths_never_panic(name in hostile(), app in hostile()) {
        let _ = valid_migration_name(&name);
        let _ = Migration::from_path(&format!("{app}/migrations/{name}.py"));
        let _ = Migration::from_path(&name);
    }

    #[test]
    fn showmigrations_output_never_panics(app in hostile(), name in hostile(), noise in hostile()) {
        let plan = format!("[X]  {app}.{name}\n[ ]  {name}.{app}\n{noise}\n[X] {noise}");
        for (app, name) in applied_from_plan(&plan) {
            prop_assert!(valid_migration_name(&name), "{}", name);
            prop_assert!(crate::release::migrations::valid_app(&app));
        }
        let _ = irreversible_operations(&format!("migrations.RunPython({noise})\nmigrations.RunSQL({name}"));
    }

    #[test]
    fn github_payloads_never_panic(
        event in prop::sample::select(vec!["pull_request", "push", "ping", "issues", ""]),
        body in prop::collection::vec(any::<u8>(), 0..200),
        sha in hostile(),
        branch in hostile(),
    ) {
        let repository = "Codertocat/Hello-World";
        let _ = crate::webhook::github::event::parse(event, &body, repository);
        let pull = serde_json::json!({
            "action": "closed",
            "repository": { "full_name": repository },
            "pull_request": {
                "number": 1, "merged": true, "merge_commit_sha": sha, "title": branch, "body": null,
                "user": { "login": branch }, "base": { "ref": branch }, "head": { "ref": sha },
            },
        });
        let _ = crate::webhook::github::event::parse("pull_request", pull.to_string().as_bytes(), repository);
        let push = serde_json::json!({
            "ref": format!("refs/heads/{branch}"), "before": sha, "after": sha, "forced": true,
            "deleted": false, "created": false, "repository": { "full_name": repository },
        });
        let _ = crate::webhook::github::event::parse("push", push.to_string().as_bytes(), repository);
    }

    #[test]
    fn slack_forms_and_events_never_panic(body in prop::collection::vec(any::<u8>(), 0..200), text in hostile()) {
        let _ = serde_urlencoded::from_bytes::<slack_morphism::prelude::SlackCommandEvent>(&body);
        let form = serde_urlencoded::to_string([
            ("command", "/deploy"), ("text", text.as_str()), ("team_id", "T1"), ("channel_id", "C1"),
            ("user_id", "U1"), ("response_url", text.as_str()), ("trigger_id", "1.2"),
        ]).unwrap_or_default();
        let _ = serde_urlencoded::from_bytes::<slack_morphism::prelude::SlackCommandEvent>(form.as_bytes());
        let _ = serde_json::from_slice::<slack_morphism::prelude::SlackPushEvent>(&body);
        let event = serde_json::json!({
            "type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event_id": text,
            "event_time": 1, "event": { "type": "reaction_added", "user": text, "reaction": text,
            "item": { "type": "message", "channel": "C1", "ts": text }, "event_ts": text },
        });
        let _ = serde_json::from_str::<slack_morphism::prelude::SlackPushEvent>(&event.to_string());
    }

    #[test]
    fn discord_interactions_never_panic(body in prop::collection::vec(any::<u8>(), 0..200), name in hostile(), text in hostile()) {
        let _ = serde_json::from_slice::<serenity::all::Interaction>(&body);
        let book = book();
        let options = [
            ("env", crate::chat::discord::commands::OptionValue::Text(text.as_str())),
            ("ref", crate::chat::discord::commands::OptionValue::Text(name.as_str())),
        ];
        let _ = crate::chat::discord::commands::command_line(book, &name, &options);
        let _ = crate::chat::discord::commands::command_line(book, "deploy", &options);
        let _ = crate::chat::discord::commands::ack_plan(&name, &options);
    }

    #[test]
    fn github_checks_never_panic_and_a_failure_is_never_a_pass(
        body in prop::collection::vec(any::<u8>(), 0..200),
        names in prop::collection::vec(prop_oneof![hostile(), prop::sample::select(vec!["ci/test".to_owned(), "lint".to_owned()])], 0..6),
        states in prop::collection::vec(prop::sample::select(vec!["success", "failure", "error", "pending", "weird"]), 0..6),
        runs in prop::collection::vec(
            (prop::sample::select(vec!["queued", "in_progress", "completed", "waiting"]),
             prop::option::of(prop::sample::select(vec!["success", "failure", "neutral", "skipped", "timed_out", "cancelled", "stale"])),
             0u64..1000),
            0..6),
    ) {
        use crate::release::ci_gate::{CheckState, RequiredChecks, Verdict, decide, parse_check_runs, parse_combined_status};
        let text = String::from_utf8_lossy(&body);
        let _ = parse_combined_status(&text);
        let _ = parse_check_runs(&text);
        let statuses: Vec<serde_json::Value> = names.iter().zip(&states)
            .map(|(name, state)| serde_json::json!({ "context": name, "state": state, "target_url": null }))
            .collect();
        let mut checks = parse_combined_status(&serde_json::json!({ "statuses": statuses }).to_string()).unwrap();
        let runs: Vec<serde_json::Value> = names.iter().zip(&runs)
            .map(|(name, (status, conclusion, id))| serde_json::json!({
                "id": id, "name": name, "status": status, "conclusion": conclusion, "html_url": "https://x", "details_url": null }))
            .collect();
        let (total, found) =
            parse_check_runs(&serde_json::json!({ "total_count": 0, "check_runs": runs }).to_string()).unwrap();
        prop_assert!(total as usize >= found.len());
        checks.extend(found);
        for required in [RequiredChecks::All, RequiredChecks::Named(names.clone())] {
            let verdict = decide(&required, &checks);
            let any_failed = checks.iter().any(|c| c.state == CheckState::Failed
                && match &required { RequiredChecks::All => true, RequiredChecks::Named(n) => n.contains(&c.name) });
            // A failed required check is never a pass, and a pass means nothing required waits.
            if any_failed {
                prop_assert!(matches!(verdict, Verdict::Failed { .. }), "{verdict:?}");
            }
            if verdict == Verdict::Pass {
                prop_assert!(!checks.is_empty() || matches!(&required, RequiredChecks::Named(n) if n.is_empty()));
                prop_assert!(checks.iter().all(|c| c.state == CheckState::Passed
                    || matches!(&required, RequiredChecks::Named(n) if !n.contains(&c.name))));
            }
        }
    }
}
