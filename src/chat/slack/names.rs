//! Slack's rules for slash command names, and the names Shipday registers there by default.
//!
//! Slack refuses a whole manifest when one of its `slash_commands` has an invalid name ("the
//! slash command has an invalid name" voids every command in the list), and a built-in such as
//! `/status` is invalid for an app. So the names are checked before a manifest is printed and
//! when the config is loaded, and each refusal names the config key that changes the name.

use crate::command::{CommandBook, CommandNames};
use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// The config key of the per-command names.
pub const KEY: &str = "slack.commands";

/// Where Slack's defaults differ from the canonical names. `/status` is a Slack built-in;
/// `/help` has been reported as reserved too (openclaw/openclaw#29032), so neither is used.
/// `/deploy`, `/promote` and the rest keep their names.
pub const DEFAULT_NAMES: &[(&str, &str)] = &[("status", "ship-status"), ("help", "ship-help")];

/// Slack's longest command, counting its slash (the manifest's `command` field).
pub const MAX_LENGTH: usize = 32;

/// Slack's built-in commands, which an app cannot declare. The first nineteen are the ones
/// other projects hit in manifests (NousResearch/hermes-agent#18456, openclaw/openclaw#29032);
/// the rest are further built-ins Slack's help centre has listed (not re-checked against the
/// live page, which the build cannot reach: refusing one more name costs nothing).
pub const BUILT_IN: &[&str] = &[
    "status",
    "remind",
    "who",
    "me",
    "msg",
    "dnd",
    "away",
    "shrug",
    "topic",
    "leave",
    "join",
    "search",
    "feed",
    "collapse",
    "expand",
    "open",
    "mute",
    "pro",
    "shortcuts",
    "active",
    "apps",
    "archive",
    "call",
    "close",
    "dm",
    "invite",
    "invite_people",
    "kick",
    "part",
    "remove",
    "rename",
    "star",
];

/// Names reported as refused by Slack in some workspaces (openclaw/openclaw#29032), refused
/// here too: one refused name voids the whole manifest, which is not worth the risk.
pub const REPORTED_RESERVED: &[&str] = &["help", "send", "kill", "debug", "commands"];

/// Shipday's names on Slack: [`DEFAULT_NAMES`], then the `[slack] commands` table, each name
/// checked against Slack's rules.
pub fn names(book: &CommandBook, overrides: &BTreeMap<String, String>) -> Result<CommandNames> {
    let names = CommandNames::new(book, DEFAULT_NAMES, overrides, KEY)?;
    check(&names)?;
    Ok(names)
}

/// Why Slack would refuse `/name` (given without its slash), if it would.
pub fn problem(name: &str) -> Option<String> {
    let length = name.chars().count() + 1;
    if name.is_empty() {
        return Some("is empty".into());
    }
    if length > MAX_LENGTH {
        return Some(format!("is {length} characters with its slash; Slack allows {MAX_LENGTH}"));
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return Some("has capital letters; Slack command names are lowercase".into());
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Some(format!("has `{bad}`; use lowercase letters, digits, `-` and `_` only"));
    }
    if BUILT_IN.contains(&name) {
        return Some(
            "is one of Slack's built-in commands, and Slack rejects a manifest that declares it (with every other \
             command in it)"
                .into(),
        );
    }
    if REPORTED_RESERVED.contains(&name) {
        return Some(
            "is reported as reserved by Slack, and one refused name voids the manifest's whole command list".into(),
        );
    }
    None
}

/// Checks every name in `names`; the error lists each bad one with the key that renames it.
pub fn check(names: &CommandNames) -> Result<()> {
    let problems: Vec<String> = names
        .iter()
        .filter_map(|(command, name)| {
            problem(name).map(|why| {
                format!("`/{name}` {why}. Set another name with {KEY}.{command}, e.g. `{command} = \"ship-{command}\"`")
            })
        })
        .collect();
    if !problems.is_empty() {
        bail!("Slack would refuse these command names:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slacks_naming_rules() {
        assert_eq!(problem("deploy"), None);
        assert_eq!(problem("ship-status"), None);
        assert_eq!(problem("release_2"), None);
        assert!(problem("status").unwrap().contains("built-in"));
        assert!(problem("help").unwrap().contains("reserved"));
        assert!(problem("Deploy").unwrap().contains("lowercase"));
        assert!(problem("ship.status").unwrap().contains("`.`"));
        assert!(problem("déploy").is_some());
        assert!(problem(&"a".repeat(31)).is_none());
        assert!(problem(&"a".repeat(32)).unwrap().contains("33 characters"));
        assert!(problem("").is_some());
    }

    #[test]
    fn a_reserved_name_is_refused_and_the_key_to_change_is_named() {
        let book = CommandBook::builtin();
        let overrides: BTreeMap<String, String> = [("status".to_owned(), "status".to_owned())].into();
        let err = format!("{:#}", names(&book, &overrides).unwrap_err());
        assert!(err.contains("`/status` is one of Slack's built-in commands"), "{err}");
        assert!(err.contains("slack.commands.status"), "{err}");
        let defaults = names(&book, &BTreeMap::new()).unwrap();
        assert_eq!((defaults.name("status"), defaults.name("deploy")), ("ship-status", "deploy"));
        assert_eq!((defaults.name("promote"), defaults.name("shipday")), ("promote", "shipday"));
    }
}
