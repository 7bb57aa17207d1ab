//! Platform set-up documents printed from the command specs: the Slack app manifest and the
//! Discord command registration JSON.

use crate::chat::slack::{COMMANDS_PATH, EVENTS_PATH};
use crate::command::spec::{CommandSpec, OptionKind, OptionSpec};
use crate::command::{CommandBook, CommandNames};
use anyhow::Result;
use serde_json::{Value, json};

/// Environment names used when no config is given.
pub const DEFAULT_ENVIRONMENTS: [&str; 3] = ["dev", "staging", "production"];

/// A Slack app manifest, with each command under its name in `names` (Slack's table, see
/// [`crate::chat::slack::names`]). With `request_url`, commands and events go to that HTTPS base
/// URL; without it, the app uses Socket Mode.
///
/// Refuses names Slack would refuse: one bad name makes Slack reject the whole command list, so
/// printing such a manifest would only move the error to Slack's side, without the config key.
/// Asks only for the scopes the code uses, and leaves interactivity off: nothing in Shipday's
/// messages is interactive.
pub fn slack(book: &CommandBook, names: &CommandNames, request_url: Option<&str>) -> Result<Value> {
    crate::chat::slack::names::check(names)?;
    let request_url = request_url.map(|url| url.trim_end_matches('/'));
    let commands: Vec<Value> = book
        .specs()
        .iter()
        .map(|spec| {
            let usage = spec.usage.strip_prefix(&format!("/{}", spec.name)).unwrap_or(&spec.usage).trim();
            let mut command = json!({
                "command": format!("/{}", names.name(&spec.name)),
                "description": truncate(&names.localize(&spec.summary), SLACK_DESCRIPTION_MAX),
                "should_escape": false,
            });
            if let Some(fields) = command.as_object_mut() {
                if !usage.is_empty() {
                    fields.insert("usage_hint".into(), json!(names.localize(usage)));
                }
                if let Some(url) = request_url {
                    fields.insert("url".into(), json!(format!("{url}{COMMANDS_PATH}")));
                }
            }
            command
        })
        .collect();
    let mut settings = json!({
        "event_subscriptions": { "bot_events": ["reaction_added", "reaction_removed"] },
        "interactivity": { "is_enabled": false },
        "org_deploy_enabled": false,
        "socket_mode_enabled": request_url.is_none(),
        "token_rotation_enabled": false,
    });
    if let Some(url) = request_url
        && let Some(events) = settings.get_mut("event_subscriptions").and_then(Value::as_object_mut)
    {
        events.insert("request_url".into(), json!(format!("{url}{EVENTS_PATH}")));
    }
    Ok(json!({
        "display_information": {
            "name": "Shipday",
            "description": "Deploys, release calendar and approvals for the team.",
            "background_color": "#1d3557",
        },
        "features": {
            "bot_user": { "display_name": "Shipday", "always_online": true },
            "slash_commands": commands,
        },
        "oauth_config": { "scopes": { "bot": SLACK_BOT_SCOPES } },
        "settings": settings,
    }))
}

/// The bot scopes the Slack adapter uses, and no more:
/// - `commands`: the slash commands;
/// - `chat:write`: `chat.postMessage`, `chat.update` and `chat.postEphemeral`;
/// - `chat:write.public`: posting a command's deploy in the public channel it came from without
///   being invited there first;
/// - `reactions:read`: the `reaction_added` / `reaction_removed` events leads approve with;
/// - `channels:read` and `groups:read`: `conversations.info`, which `check-config --online`
///   asks whether the bot is in the team channel (public, or private) — Slack sends reaction
///   events only from channels the bot is in.
///
/// (`auth.test` and `response_url` need no scope; Socket Mode's `connections:write` belongs to
/// the app-level token, which is not part of the manifest.)
pub const SLACK_BOT_SCOPES: [&str; 7] =
    ["commands", "chat:write", "chat:write.public", "im:write", "reactions:read", "channels:read", "groups:read"];

/// Slack's longest slash command description.
const SLACK_DESCRIPTION_MAX: usize = 2000;

/// Discord application commands (the body of `PUT /applications/{id}/commands`), each under its
/// name in `names`. The umbrella (`/shipday`) carries every other command as a subcommand, with
/// the same options, so `/shipday deploy env:dev ref:x` works like `/deploy`. Environment and
/// ref options are autocompleted (`chat::discord::autocomplete`), so the registration no longer
/// lists `_environments`: a renamed or added environment needs no new registration.
pub fn discord(book: &CommandBook, names: &CommandNames, _environments: &[String]) -> Value {
    Value::Array(
        book.specs()
            .iter()
            .map(|spec| {
                let options: Vec<Value> = if spec.dispatches() {
                    book.runnable()
                        .map(|inner| {
                            json!({
                                "type": 1,
                                "name": inner.name,
                                "description": truncate(&names.localize(&inner.summary), 100),
                                "options": discord_options(book, names, inner),
                            })
                        })
                        .collect()
                } else {
                    discord_options(book, names, spec)
                };
                json!({
                    "name": names.name(&spec.name),
                    "type": 1,
                    "description": truncate(&names.localize(&spec.summary), 100),
                    "options": options,
                    "contexts": [0],
                })
            })
            .collect(),
    )
}

fn discord_options(book: &CommandBook, names: &CommandNames, spec: &CommandSpec) -> Vec<Value> {
    let mut options: Vec<&OptionSpec> = spec.options.iter().collect();
    // Discord wants required options first.
    options.sort_by_key(|o| !o.required);
    options
        .into_iter()
        .flat_map(|option| {
            let choices =
                |names: Vec<String>| -> Value { names.into_iter().map(|n| json!({ "name": n, "value": n })).collect() };
            let mut value = json!({
                "name": option.name,
                "description": truncate(&names.localize(&option.description), 100),
                "required": option.required,
            });
            let kind = match option.kind {
                OptionKind::Flag => json!({ "type": 5 }),
                OptionKind::Number => {
                    json!({ "type": 4, "min_value": 1, "max_value": crate::command::parse::MAX_HISTORY })
                }
                // Suggested while typing (chat::discord::autocomplete), aliases included; Discord
                // allows no fixed choices on an autocomplete option (`/freeze` also suggests `all`).
                OptionKind::Environment | OptionKind::EnvironmentOrAll => json!({ "type": 3, "autocomplete": true }),
                OptionKind::Command | OptionKind::Subcommand => {
                    json!({ "type": 3, "choices": choices(book.runnable().map(|s| s.name.clone()).collect()) })
                }
                OptionKind::Text if !option.choices.is_empty() => {
                    json!({ "type": 3, "choices": choices(option.choices.clone()) })
                }
                OptionKind::Ref => json!({ "type": 3, "max_length": 200, "autocomplete": true }),
                OptionKind::Text => json!({ "type": 3, "max_length": 300 }),
            };
            if let (Some(fields), Value::Object(kind)) = (value.as_object_mut(), kind) {
                fields.extend(kind);
            }
            // A flag that may carry a reason (`--force "why"`) is a yes/no option on Discord, so
            // its reason is a text option of its own (`force_reason`), turned back into
            // `--force "why"` by `chat::discord::commands::command_line`.
            let reason = option.reason_option().map(|name| {
                let description =
                    option.reason_description.clone().unwrap_or_else(|| format!("A reason for --{}", option.name));
                json!({
                    "name": name,
                    "description": truncate(&names.localize(&description), 100),
                    "required": false,
                    "type": 3,
                    "max_length": 300,
                })
            });
            std::iter::once(value).chain(reason)
        })
        .collect()
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn slack_defaults(book: &CommandBook) -> CommandNames {
        crate::chat::slack::names::names(book, &BTreeMap::new()).unwrap()
    }

    /// Slack's rules for a manifest's slash commands, stated here on their own (not through the
    /// code under test): a leading slash, at most 32 characters with it, lowercase letters,
    /// digits, `-` and `_`, and none of Slack's built-ins (the list from issue 12, which is
    /// where Slack refused `/status`).
    #[test]
    fn the_default_slack_manifest_passes_slacks_naming_rules() {
        const RESERVED: [&str; 19] = [
            "/status",
            "/remind",
            "/who",
            "/me",
            "/msg",
            "/dnd",
            "/away",
            "/shrug",
            "/topic",
            "/leave",
            "/join",
            "/search",
            "/feed",
            "/collapse",
            "/expand",
            "/open",
            "/mute",
            "/pro",
            "/shortcuts",
        ];
        let book = CommandBook::builtin();
        let manifest = slack(&book, &slack_defaults(&book), None).unwrap();
        let commands = manifest["features"]["slash_commands"].as_array().unwrap();
        assert_eq!(commands.len(), book.specs().len(), "every spec, the umbrella included");
        let mut seen = std::collections::HashSet::new();
        for command in commands {
            let name = command["command"].as_str().unwrap();
            assert!(name.starts_with('/') && name.len() >= 2 && name.len() <= 32, "{name}");
            assert!(
                name[1..].chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'),
                "{name}"
            );
            assert!(!RESERVED.contains(&name), "{name} is a Slack built-in");
            assert!(seen.insert(name), "{name} twice");
            let description = command["description"].as_str().unwrap();
            assert!(!description.is_empty() && description.chars().count() <= 2000, "{name}");
            assert!(command["usage_hint"].as_str().is_none_or(|h| h.chars().count() <= 1000), "{name}");
        }
        let names: Vec<&str> = commands.iter().map(|c| c["command"].as_str().unwrap()).collect();
        for kept in ["/deploy", "/promote", "/ship-status", "/shipday"] {
            assert!(names.contains(&kept), "{kept} missing from {names:?}");
        }
        assert_eq!(
            commands[0]["usage_hint"],
            "ENV REF [--dry-run] [--force [REASON]] [--emergency REASON] [--notify | --when-free]"
        );
        let shipday = commands.iter().find(|c| c["command"] == "/shipday").unwrap();
        assert_eq!(shipday["usage_hint"], "COMMAND [ARGUMENTS]");
    }

    #[test]
    fn slack_manifest_transports_and_no_interactivity() {
        let book = CommandBook::builtin();
        let names = slack_defaults(&book);
        let manifest = slack(&book, &names, None).unwrap();
        assert_eq!(manifest["settings"]["socket_mode_enabled"], true);
        assert_eq!(manifest["settings"]["interactivity"], json!({ "is_enabled": false }));
        let http = slack(&book, &names, Some("https://bot.example/")).unwrap();
        assert_eq!(http["features"]["slash_commands"][0]["url"], "https://bot.example/slack/commands");
        assert_eq!(http["settings"]["event_subscriptions"]["request_url"], "https://bot.example/slack/events");
        assert_eq!(http["settings"]["interactivity"], json!({ "is_enabled": false }), "nothing handles it");
        assert_eq!(http["settings"]["socket_mode_enabled"], false);
    }

    /// The scopes are derived from the Web API calls the adapter makes (read from its source),
    /// plus what the manifest itself declares (slash commands, reaction events).
    #[test]
    fn slack_scopes_are_the_ones_the_code_uses() {
        let api = include_str!("slack/api.rs");
        let calls: std::collections::BTreeSet<&str> = api
            .match_indices("session.")
            .map(|(at, _)| {
                let rest = &api[at + "session.".len()..];
                &rest[..rest.find('(').unwrap()]
            })
            .chain(api.contains("respond_to_event").then_some("respond_to_event"))
            .collect();
        let mut needed: std::collections::BTreeSet<&str> = ["commands", "reactions:read"].into();
        for call in &calls {
            match *call {
                "auth_test" | "respond_to_event" => {}
                // Posting in the command's own channel, which the bot may not have joined.
                "chat_post_message" => needed.extend(["chat:write", "chat:write.public"]),
                "chat_update" | "chat_post_ephemeral" => {
                    needed.insert("chat:write");
                }
                // Whether the bot is in a public or a private channel.
                "conversations_info" => needed.extend(["channels:read", "groups:read"]),
                // Opening the direct message to a deploy's requester.
                "conversations_open" => {
                    needed.insert("im:write");
                }
                other => panic!("the adapter calls `{other}`: add its scope to SLACK_BOT_SCOPES and here"),
            }
        }
        let book = CommandBook::builtin();
        let manifest = slack(&book, &slack_defaults(&book), None).unwrap();
        let declared: std::collections::BTreeSet<&str> =
            manifest["oauth_config"]["scopes"]["bot"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(declared, needed, "calls: {calls:?}");
        assert!(!declared.contains("users:read"));
    }

    #[test]
    fn a_manifest_with_a_reserved_name_is_refused_with_the_key_to_change() {
        let book = CommandBook::builtin();
        let overrides: BTreeMap<String, String> =
            [("status".to_owned(), "status".to_owned()), ("lock".to_owned(), "Lock".to_owned())].into();
        let names = CommandNames::new(&book, &[], &overrides, "slack.commands").unwrap();
        let err = format!("{:#}", slack(&book, &names, None).unwrap_err());
        assert!(err.contains("`/status` is one of Slack's built-in commands"), "{err}");
        assert!(err.contains("slack.commands.status"), "{err}");
        assert!(err.contains("`/Lock` has capital letters") && err.contains("slack.commands.lock"), "{err}");
        assert!(err.contains("`/help` is reported as reserved") && err.contains("slack.commands.help"), "{err}");
    }

    /// The manifest the README shows, for the default names.
    #[test]
    fn the_default_slack_manifest() {
        let book = CommandBook::builtin();
        let manifest = slack(&book, &slack_defaults(&book), None).unwrap();
        insta::assert_snapshot!(serde_json::to_string_pretty(&manifest).unwrap());
    }

    #[test]
    fn slack_names_reach_the_manifest_and_its_hints() {
        let book = CommandBook::builtin();
        let overrides: BTreeMap<String, String> = [("release".to_owned(), "give-back".to_owned())].into();
        let names = crate::chat::slack::names::names(&book, &overrides).unwrap();
        let manifest = slack(&book, &names, None).unwrap();
        let commands = manifest["features"]["slash_commands"].as_array().unwrap();
        assert!(commands.iter().any(|c| c["command"] == "/give-back"));
        assert!(!commands.iter().any(|c| c["command"] == "/release"));
    }

    #[test]
    fn discord_commands_use_choices_and_types() {
        let book = CommandBook::builtin();
        let envs: Vec<String> = DEFAULT_ENVIRONMENTS.map(String::from).to_vec();
        let commands = discord(&book, &CommandNames::canonical(&book), &envs);
        let deploy = &commands[0];
        assert_eq!(deploy["name"], "deploy");
        assert_eq!(deploy["options"][0]["autocomplete"], true, "environments are suggested while typing");
        assert!(deploy["options"][0].get("choices").is_none(), "Discord allows no choices with autocomplete");
        assert_eq!(
            (deploy["options"][1]["name"].clone(), deploy["options"][1]["autocomplete"].clone()),
            (json!("ref"), json!(true))
        );
        assert_eq!(deploy["options"][2]["type"], 5);
        let deploy_options = deploy["options"].as_array().unwrap();
        let force = deploy_options.iter().position(|o| o["name"] == "force").unwrap();
        assert_eq!(deploy_options[force]["type"], 5, "plain --force (the migration guard) stays yes/no");
        let reason = &deploy_options[force + 1];
        assert_eq!(
            (reason["name"].clone(), reason["type"].clone(), reason["required"].clone()),
            (json!("force_reason"), json!(3), json!(false)),
            "--force's reason is a text option of its own"
        );
        assert!(reason["description"].as_str().unwrap().contains("CI gate"), "{reason}");
        let ticket = commands.as_array().unwrap().iter().find(|c| c["name"] == "ticket").unwrap();
        let action = ticket["options"].as_array().unwrap().iter().find(|o| o["name"] == "action").unwrap();
        assert_eq!(
            action["choices"],
            json!([
                { "name": "pass", "value": "pass" },
                { "name": "fail", "value": "fail" },
                { "name": "status", "value": "status" }
            ]),
            "/ticket's action is a pick list, not free text"
        );
        assert_eq!((action["type"].clone(), action.get("max_length")), (json!(3), None));
        for command in commands.as_array().unwrap() {
            let name = command["name"].as_str().unwrap();
            assert!(name.len() <= 32 && name.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
            assert!(command["description"].as_str().unwrap().chars().count() <= 100);
            // Discord's limit on a command's names, descriptions and choices together.
            fn text(value: &Value) -> usize {
                match value {
                    Value::Object(map) => map
                        .iter()
                        .map(|(k, v)| match (k.as_str(), v) {
                            ("name" | "description" | "value", Value::String(s)) => s.chars().count(),
                            _ => text(v),
                        })
                        .sum(),
                    Value::Array(items) => items.iter().map(text).sum(),
                    _ => 0,
                }
            }
            assert!(text(command) <= 4000, "{name}: {} characters", text(command));
        }
    }

    #[test]
    fn discord_registers_the_umbrella_with_every_command_as_a_subcommand() {
        let book = CommandBook::builtin();
        let envs: Vec<String> = DEFAULT_ENVIRONMENTS.map(String::from).to_vec();
        let overrides: BTreeMap<String, String> = [("status".to_owned(), "ship-status".to_owned())].into();
        let names = CommandNames::new(&book, &[], &overrides, "discord.commands").unwrap();
        let commands = discord(&book, &names, &envs);
        let commands = commands.as_array().unwrap();
        assert!(commands.iter().any(|c| c["name"] == "ship-status"));
        let shipday = commands.iter().find(|c| c["name"] == "shipday").unwrap();
        let subcommands = shipday["options"].as_array().unwrap();
        assert_eq!(subcommands.len(), book.runnable().count());
        assert!(subcommands.len() <= 25, "Discord allows 25 options");
        let deploy = subcommands.iter().find(|s| s["name"] == "deploy").unwrap();
        assert_eq!(deploy["type"], 1);
        assert_eq!(deploy["options"][0]["name"], "env");
        assert!(subcommands.iter().any(|s| s["name"] == "status"), "subcommands keep canonical names");
    }
}
