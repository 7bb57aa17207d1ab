//! Command names as one platform registers them.
//!
//! The engine, the specs and every reply speak in canonical names (`/status`, the spec's
//! `name`). A platform may register a command under another name: Slack reserves `/status` for
//! itself, so there Shipday's status command is `/ship-status` by default. Each adapter keeps
//! one [`CommandNames`] table and uses it at its edge only, in both directions:
//!
//! - incoming, [`CommandNames::canonical_line`] turns what the platform delivered
//!   (`/ship-status dev`) back into the canonical line the engine parses (`/status dev`);
//! - outgoing, [`CommandNames::localize`] rewrites every canonical command reference in a
//!   reply (`try /status`) into the name people can type there (`try /ship-status`).
//!
//! The console keeps canonical names: its table is [`CommandNames::canonical`].

use super::spec::{CommandBook, OptionKind};
use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// Canonical command name → the name registered on one platform (both without the slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandNames {
    names: BTreeMap<String, String>,
}

impl CommandNames {
    /// Every command under its own name (the console, and Discord unless configured).
    pub fn canonical(book: &CommandBook) -> Self {
        Self { names: book.names().into_iter().map(|n| (n.to_owned(), n.to_owned())).collect() }
    }

    /// A platform's table: its `defaults`, then the config's `overrides` on top. `key` is the
    /// config key the overrides come from (`slack.commands`), so errors name what to change.
    /// Checks only what every platform needs (known commands, one name each, no two commands
    /// under one name); each platform checks its own naming rules on the result.
    pub fn new(
        book: &CommandBook,
        defaults: &[(&str, &str)],
        overrides: &BTreeMap<String, String>,
        key: &str,
    ) -> Result<Self> {
        let mut table = Self::canonical(book);
        for (command, name) in defaults {
            table.names.insert((*command).to_owned(), (*name).to_owned());
        }
        for (command, name) in overrides {
            if book.get(command).is_none() {
                bail!(
                    "{key}.{command}: Shipday has no command called `{command}`; the commands are {}",
                    book.names().join(", ")
                );
            }
            let name = name.trim().trim_start_matches('/');
            if name.is_empty() || name.chars().any(char::is_whitespace) {
                bail!("{key}.{command}: give one word, the name without its slash, like \"ship-{command}\"");
            }
            table.names.insert(command.clone(), name.to_owned());
        }
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (command, name) in &table.names {
            if let Some(other) = seen.insert(name, command) {
                bail!("{key}: `{other}` and `{command}` are both named `/{name}`; give `{key}.{command}` another name");
            }
        }
        Ok(table)
    }

    /// The registered name of canonical command `command` (without the slash).
    pub fn name<'a>(&'a self, command: &'a str) -> &'a str {
        self.names.get(command).map(String::as_str).unwrap_or(command)
    }

    /// The canonical command registered as `registered` (with or without its slash).
    pub fn command(&self, registered: &str) -> Option<&str> {
        let registered = registered.trim_start_matches('/').to_lowercase();
        self.names.iter().find(|(_, name)| **name == registered).map(|(command, _)| command.as_str())
    }

    /// `(canonical, registered)` pairs, in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names.iter().map(|(c, n)| (c.as_str(), n.as_str()))
    }

    /// The canonical line for a line as the platform delivered it: the command's registered
    /// name becomes its canonical one, and so does a command named as the first argument of a
    /// command that takes one (`/ship-help ship-status`, `/shipday ship-status`). The rest of
    /// the line is kept byte for byte, so quoting means what the user typed.
    pub fn canonical_line(&self, book: &CommandBook, line: &str) -> String {
        let line = line.trim();
        let (first, rest) = split_word(line);
        let Some(command) = self.command(first) else {
            return line.to_owned();
        };
        let mut out = format!("/{command}");
        let takes_command = book
            .get(command)
            .and_then(|spec| spec.options.iter().find(|o| !o.is_named()))
            .is_some_and(|option| matches!(option.kind, OptionKind::Command | OptionKind::Subcommand));
        let (argument, tail) = split_word(rest);
        if takes_command && let Some(named) = self.command(argument) {
            let slash = if argument.starts_with('/') { "/" } else { "" };
            out.push_str(&format!(" {slash}{named}"));
            if !tail.is_empty() {
                out.push(' ');
                out.push_str(tail);
            }
        } else if !rest.is_empty() {
            out.push(' ');
            out.push_str(rest);
        }
        out
    }

    /// `text` with every canonical command reference (`/status`, at the start of a word and not
    /// part of a path or URL) replaced by the registered name. Everything else is unchanged.
    pub fn localize(&self, text: &str) -> String {
        if self.names.iter().all(|(command, name)| command == name) {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut copied = 0;
        for (slash, _) in text.match_indices('/') {
            if slash < copied {
                continue;
            }
            let (Some(before), Some(after)) = (text.get(..slash), text.get(slash + 1..)) else {
                continue;
            };
            let starts_word =
                before.chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || "/._-:~@".contains(c)));
            if !starts_word {
                continue;
            }
            let length = after.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'));
            let (word, rest) = after.split_at_checked(length.unwrap_or(after.len())).unwrap_or((after, ""));
            let ends_word = rest.chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '/'));
            if word.is_empty() || !ends_word {
                continue;
            }
            if let Some(name) = self.names.get(word)
                && let Some(kept) = text.get(copied..=slash)
            {
                out.push_str(kept);
                out.push_str(name);
                copied = slash + 1 + word.len();
            }
        }
        out.push_str(text.get(copied..).unwrap_or_default());
        out
    }
}

/// The first whitespace-separated word of `text`, and the rest with its leading space removed.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (text, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack_like() -> CommandNames {
        let book = CommandBook::builtin();
        CommandNames::new(
            &book,
            &[("status", "ship-status"), ("help", "ship-help")],
            &BTreeMap::new(),
            "slack.commands",
        )
        .unwrap()
    }

    #[test]
    fn replies_name_commands_as_registered_and_leave_everything_else_alone() {
        let names = slack_like();
        assert_eq!(
            names.localize("Check `/status dev --live`, then `/release dev`. Type `/help`."),
            "Check `/ship-status dev --live`, then `/release dev`. Type `/ship-help`."
        );
        for untouched in [
            "feature/status",
            "https://example.com/status",
            "/srv/status/app",
            "/statuses",
            "a/help",
            "./status",
            "/Status",
            "cd /srv/app && ./deploy.sh",
        ] {
            assert_eq!(names.localize(untouched), untouched);
        }
        assert_eq!(names.localize("(/status) and \"/help\""), "(/ship-status) and \"/ship-help\"");
        assert_eq!(names.localize("é/status ✋ /status"), "é/status ✋ /ship-status");
    }

    #[test]
    fn platform_lines_come_back_canonical_with_their_quoting_intact() {
        let book = CommandBook::builtin();
        let names = slack_like();
        assert_eq!(names.canonical_line(&book, "/ship-status dev --live"), "/status dev --live");
        assert_eq!(names.canonical_line(&book, "/lock staging \"QA  run\""), "/lock staging \"QA  run\"");
        assert_eq!(names.canonical_line(&book, "/ship-help ship-status"), "/help status");
        assert_eq!(names.canonical_line(&book, "/ship-help /ship-status"), "/help /status");
        assert_eq!(names.canonical_line(&book, "/shipday ship-status dev"), "/shipday status dev");
        assert_eq!(names.canonical_line(&book, "/shipday deploy dev x"), "/shipday deploy dev x");
        assert_eq!(names.canonical_line(&book, "/unknown thing"), "/unknown thing");
    }

    #[test]
    fn configured_names_are_checked_and_errors_name_the_key() {
        let book = CommandBook::builtin();
        let overrides = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let err = CommandNames::new(&book, &[], &overrides(&[("stauts", "x")]), "slack.commands").unwrap_err();
        assert!(err.to_string().contains("slack.commands.stauts"), "{err}");
        let err = CommandNames::new(&book, &[], &overrides(&[("status", "deploy")]), "slack.commands").unwrap_err();
        assert!(err.to_string().contains("`deploy` and `status` are both named `/deploy`"), "{err}");
        let err =
            CommandNames::new(&book, &[], &overrides(&[("status", "two words")]), "discord.commands").unwrap_err();
        assert!(err.to_string().contains("discord.commands.status"), "{err}");
        let names = CommandNames::new(&book, &[], &overrides(&[("status", "/st")]), "x").unwrap();
        assert_eq!((names.name("status"), names.command("/st")), ("st", Some("status")));
    }

    proptest::proptest! {
        /// Any text a platform delivers or a reply holds: no panic (UTF-8 boundaries), nothing
        /// changed by the canonical table, and the arguments after a renamed command kept as typed.
        #[test]
        fn mapping_any_text_is_safe_and_keeps_the_arguments(text in "\\PC{0,80}") {
            let book = CommandBook::builtin();
            let localized = slack_like().localize(&text);
            proptest::prop_assert_eq!(slack_like().localize(&localized), localized.clone(), "renaming twice changes nothing");
            proptest::prop_assert_eq!(CommandNames::canonical(&book).localize(&text), text.clone());
            let line = slack_like().canonical_line(&book, &format!("/ship-status {text}"));
            let expected = format!("/status {}", text.trim());
            proptest::prop_assert_eq!(line.trim_end(), expected.trim_end());
        }
    }
}
