//! Platform set-up documents printed from the command specs: the Slack app manifest and the
//! Discord command registration JSON.

use crate::chat::slack::{COMMANDS_PATH, EVENTS_PATH, INTERACTIVITY_PATH};
use crate::command::CommandBook;
use crate::command::spec::{CommandSpec, OptionKind};
use serde_json::{Value, json};

/// Environment names used when no config is given.
pub const DEFAULT_ENVIRONMENTS: [&str; 3] = ["dev", "staging", "production"];

/// A Slack app manifest. With `request_url`, commands, events and interactivity go to that
/// HTTPS base URL; without it, the app uses Socket Mode.
pub fn slack(book: &CommandBook, request_url: Option<&str>) -> Value {
    let request_url = request_url.map(|url| url.trim_end_matches('/'));
    let commands: Vec<Value> = book
        .specs()
        .iter()
        .map(|spec| {
            let mut command = json!({
                "command": format!("/{}", spec.name),
                "description": spec.summary,
                "usage_hint": spec.usage.trim_start_matches(&format!("/{}", spec.name)).trim(),
                "should_escape": false,
            });
            if let Some(url) = request_url {
                command["url"] = json!(format!("{url}{COMMANDS_PATH}"));
            }
            command
        })
        .collect();
    let mut settings = json!({
        "event_subscriptions": { "bot_events": ["reaction_added", "reaction_removed"] },
        "interactivity": { "is_enabled": true },
        "org_deploy_enabled": false,
        "socket_mode_enabled": request_url.is_none(),
        "token_rotation_enabled": false,
    });
    if let Some(url) = request_url {
        settings["event_subscriptions"]["request_url"] = json!(format!("{url}{EVENTS_PATH}"));
        settings["interactivity"]["request_url"] = json!(format!("{url}{INTERACTIVITY_PATH}"));
    }
    json!({
        "display_information": {
            "name": "Shipday",
            "description": "Deploys, release calendar and approvals for the team.",
            "background_color": "#1d3557",
        },
        "features": {
            "bot_user": { "display_name": "Shipday", "always_online": true },
            "slash_commands": commands,
        },
        "oauth_config": {
            // chat:write.public lets the bot post deploys in any public channel a command comes
            // from without being invited first.
            "scopes": { "bot": ["commands", "chat:write", "chat:write.public", "reactions:read", "users:read"] },
        },
        "settings": settings,
    })
}

/// Discord application commands (the body of `PUT /applications/{id}/commands`).
pub fn discord(book: &CommandBook, environments: &[String]) -> Value {
    Value::Array(book.specs().iter().map(|spec| discord_command(book, spec, environments)).collect())
}

fn discord_command(book: &CommandBook, spec: &CommandSpec, environments: &[String]) -> Value {
    let mut options: Vec<&crate::command::spec::OptionSpec> = spec.options.iter().collect();
    // Discord wants required options first.
    options.sort_by_key(|o| !o.required);
    let options: Vec<Value> = options
        .into_iter()
        .map(|option| {
            let choices =
                |names: Vec<String>| -> Value { names.into_iter().map(|n| json!({ "name": n, "value": n })).collect() };
            let mut value = json!({
                "name": option.name,
                "description": truncate(&option.description, 100),
                "required": option.required,
            });
            match option.kind {
                OptionKind::Flag => value["type"] = json!(5),
                OptionKind::Number => {
                    value["type"] = json!(4);
                    value["min_value"] = json!(1);
                    value["max_value"] = json!(crate::command::parse::MAX_HISTORY);
                }
                OptionKind::Environment => {
                    value["type"] = json!(3);
                    value["choices"] = choices(environments.to_vec());
                }
                OptionKind::Command => {
                    value["type"] = json!(3);
                    value["choices"] = choices(book.names().into_iter().map(String::from).collect());
                }
                OptionKind::Text if !option.choices.is_empty() => {
                    value["type"] = json!(3);
                    value["choices"] = choices(option.choices.clone());
                }
                OptionKind::Ref | OptionKind::Text => {
                    value["type"] = json!(3);
                    value["max_length"] = json!(if option.kind == OptionKind::Ref { 200 } else { 300 });
                }
            }
            value
        })
        .collect();
    json!({
        "name": spec.name,
        "type": 1,
        "description": truncate(&spec.summary, 100),
        "options": options,
        "contexts": [0],
    })
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

    #[test]
    fn slack_manifest_lists_every_command() {
        let book = CommandBook::builtin();
        let manifest = slack(&book, None);
        let commands = manifest["features"]["slash_commands"].as_array().unwrap();
        assert_eq!(commands.len(), book.specs().len());
        assert_eq!(commands[0]["command"], "/deploy");
        assert_eq!(commands[0]["usage_hint"], "ENV REF [--dry-run] [--force] [--emergency REASON]");
        assert_eq!(manifest["settings"]["socket_mode_enabled"], true);
        let http = slack(&book, Some("https://bot.example/"));
        assert_eq!(http["features"]["slash_commands"][0]["url"], "https://bot.example/slack/commands");
        assert_eq!(http["settings"]["event_subscriptions"]["request_url"], "https://bot.example/slack/events");
        assert_eq!(http["settings"]["interactivity"]["request_url"], "https://bot.example/slack/interactivity");
        assert_eq!(http["settings"]["socket_mode_enabled"], false);
        let scopes = manifest["oauth_config"]["scopes"]["bot"].as_array().unwrap();
        for scope in ["commands", "chat:write", "chat:write.public", "reactions:read"] {
            assert!(scopes.contains(&json!(scope)), "{scope}");
        }
    }

    #[test]
    fn discord_commands_use_choices_and_types() {
        let book = CommandBook::builtin();
        let envs: Vec<String> = DEFAULT_ENVIRONMENTS.map(String::from).to_vec();
        let commands = discord(&book, &envs);
        let deploy = &commands[0];
        assert_eq!(deploy["name"], "deploy");
        assert_eq!(deploy["options"][0]["choices"][2]["value"], "production");
        assert_eq!(deploy["options"][2]["type"], 5);
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
            assert!(command["description"].as_str().unwrap().len() <= 100);
        }
    }
}
