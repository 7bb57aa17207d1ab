//! A Discord application command back into the command line the engine parses.
//!
//! Discord hands over the command name and named, typed options. The engine's parser (which
//! splits like a shell but never expands) stays the only authority on what a command means, so
//! this module only rebuilds the line: positionals in the spec's order, booleans as `--flags`,
//! and values quoted so each one stays one token.

use crate::command::CommandNames;
use crate::command::spec::{CommandBook, OptionKind};
use crate::engine::Visibility;
use serenity::all::{CommandDataOption, CommandDataOptionValue};

/// An option value as Discord sent it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptionValue<'a> {
    /// A string option (also environment choices).
    Text(&'a str),
    /// A boolean option: a `--flag`.
    Flag(bool),
    /// An integer option.
    Integer(i64),
    /// Anything Shipday never registers (users, channels, subcommands…).
    Unsupported,
}

/// The refusal when Discord's view of the commands differs from the specs.
const OUT_OF_DATE: &str =
    "Discord's copy of Shipday's commands is out of date. An operator can run `shipday register discord`.";

/// The canonical command a Discord interaction asks for, and its options: the registered name
/// maps back through `names`, and the umbrella (`/shipday deploy …`) hands over its subcommand
/// as the command, with the subcommand's options.
pub fn invoked<'a>(
    book: &CommandBook,
    names: &CommandNames,
    registered: &str,
    options: &'a [CommandDataOption],
) -> (String, &'a [CommandDataOption]) {
    let name = names.command(registered).unwrap_or(registered).to_owned();
    if book.get(&name).is_some_and(|spec| spec.dispatches())
        && let [only] = options
        && let CommandDataOptionValue::SubCommand(inner) = &only.value
    {
        return (only.name.clone(), inner);
    }
    (name, options)
}

/// Rebuilds `/name option…` from a command's name and options; the error is for the user.
pub fn command_line(book: &CommandBook, name: &str, options: &[(&str, OptionValue)]) -> Result<String, String> {
    let spec = book.get(name).ok_or(OUT_OF_DATE)?;
    let known = |given: &str| {
        spec.options.iter().any(|o| o.name == given || o.reason_option().is_some_and(|reason| reason == given))
    };
    if options.iter().any(|(given, _)| !known(given)) {
        return Err(OUT_OF_DATE.into());
    }
    let value = |name: &str| options.iter().find(|(given, _)| *given == name).map(|(_, v)| *v);
    let mut words = vec![format!("/{}", spec.name)];
    for option in spec.options.iter().filter(|o| o.kind != OptionKind::Flag) {
        match value(&option.name) {
            None => {}
            Some(OptionValue::Text(text)) => {
                // A named option (`--emergency`, `--until`) is written with its name.
                if option.long {
                    words.push(format!("--{}", option.name));
                }
                words.push(quote(text)?);
            }
            Some(OptionValue::Integer(n)) => words.push(n.to_string()),
            Some(OptionValue::Flag(_) | OptionValue::Unsupported) => return Err(OUT_OF_DATE.into()),
        }
    }
    for option in spec.options.iter().filter(|o| o.kind == OptionKind::Flag) {
        // A flag's reason (`force_reason`) is written right after the flag, `--force "why"`,
        // which is where the engine's parser reads it; giving the reason implies the flag.
        let reason = match option.reason_option().and_then(|name| value(&name)) {
            None => None,
            Some(OptionValue::Text(text)) if text.trim().is_empty() => None,
            Some(OptionValue::Text(text)) if text.trim_start().starts_with("--") => {
                return Err(format!("The reason for `--{}` cannot start with `--`. Write it in words.", option.name));
            }
            Some(OptionValue::Text(text)) => Some(quote(text)?),
            Some(_) => return Err(OUT_OF_DATE.into()),
        };
        match (value(&option.name), reason) {
            (_, Some(reason)) => words.extend([format!("--{}", option.name), reason]),
            (None | Some(OptionValue::Flag(false)), None) => {}
            (Some(OptionValue::Flag(true)), None) => words.push(format!("--{}", option.name)),
            (Some(_), None) => return Err(OUT_OF_DATE.into()),
        }
    }
    Ok(words.join(" "))
}

/// Quotes a value so the engine's shell-like splitter reads it back as exactly one token.
fn quote(text: &str) -> Result<String, String> {
    // The engine reads curly quotes as straight ones; make that change here, where the
    // quoting below can still account for it.
    let text: String = text
        .chars()
        .map(|c| match c {
            '\u{201c}' | '\u{201d}' => '"',
            '\u{2018}' | '\u{2019}' => '\'',
            other => other,
        })
        .collect();
    shlex::try_quote(&text)
        .map(|quoted| quoted.into_owned())
        .map_err(|_| "A value holds a character Shipday cannot take (a NUL byte). Type it again.".to_owned())
}

/// How to acknowledge a command before the engine has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckPlan {
    /// The command waits on hosts or other services (a deploy, a merge on GitHub, reading HEAD,
    /// Jira): it is deferred at once (`type 5`, "thinking…") and its answer edits `@original`,
    /// however quickly the engine happens to answer.
    pub long_running: bool,
    /// Who most likely sees the answer, which is who sees the deferred "thinking" message.
    pub likely: Visibility,
}

/// The acknowledgement plan for a command and its options.
pub fn ack_plan(name: &str, options: &[(&str, OptionValue)]) -> AckPlan {
    let flag = |flag: &str| options.iter().any(|(n, v)| *n == flag && *v == OptionValue::Flag(true));
    let (long_running, public) = match name {
        "deploy" | "release" | "rollback" => (true, !flag("dry-run")),
        "promote" => (true, true),
        "status" => (flag("live"), false),
        "ticket" => (true, false),
        "lock" | "unlock" | "freeze" | "unfreeze" | "skip" | "unskip" => (false, true),
        _ => (false, false),
    };
    AckPlan { long_running, likely: if public { Visibility::Public } else { Visibility::Ephemeral } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;
    use OptionValue::{Flag, Integer, Text};

    fn line(name: &str, options: &[(&str, OptionValue)]) -> Result<String, String> {
        command_line(&CommandBook::builtin(), name, options)
    }

    #[test]
    fn options_come_back_in_the_specs_order_with_flags_last() {
        let options = [("dry-run", Flag(true)), ("ref", Text("feature/x")), ("env", Text("dev"))];
        assert_eq!(line("deploy", &options).unwrap(), "/deploy dev feature/x --dry-run");
        assert_eq!(
            line("deploy", &[("env", Text("dev")), ("ref", Text("x")), ("dry-run", Flag(false))]).unwrap(),
            "/deploy dev x"
        );
        assert_eq!(line("history", &[("limit", Integer(5))]).unwrap(), "/history 5");
        assert_eq!(line("status", &[]).unwrap(), "/status");
    }

    /// A named option is written with its name, so the engine's parser reads it as that option.
    #[test]
    fn named_options_keep_their_names() {
        let book = CommandBook::builtin();
        let envs = vec!["production".to_owned()];
        let options = [("env", Text("production")), ("reason", Text("incident")), ("until", Text("tomorrow 09:00"))];
        let text = line("freeze", &options).unwrap();
        assert_eq!(text, "/freeze production incident --until 'tomorrow 09:00'");
        let parsed = parse(&book, &envs, &text).unwrap();
        assert_eq!(
            parsed,
            crate::command::Command::Freeze {
                env: "production".into(),
                reason: "incident".into(),
                until: Some("tomorrow 09:00".into())
            }
        );
        let options = [("env", Text("production")), ("ref", Text("master")), ("emergency", Text("down"))];
        assert_eq!(line("deploy", &options).unwrap(), "/deploy production master --emergency down");
    }

    #[test]
    fn values_with_spaces_and_quotes_stay_one_token_for_the_engines_parser() {
        let book = CommandBook::builtin();
        let envs = vec!["staging".to_owned()];
        for reason in ["QA run for release 42", "it's “fine”", "a \"b\" $(id) `x` \\ ;", "  two  spaces  "] {
            let text = line("lock", &[("env", Text("staging")), ("reason", Text(reason))]).unwrap();
            let parsed = parse(&book, &envs, &text).unwrap();
            let expected = reason.replace(['“', '”'], "\"").replace('’', "'");
            let crate::command::Command::Lock { reason: got, .. } = parsed else { panic!("{parsed:?}") };
            // The engine's rest-of-line option joins words; one token means nothing was split.
            assert_eq!(got, expected, "{text}");
        }
    }

    /// Discord carries `--force`'s reason in `force_reason`; it comes back as `--force "why"`,
    /// quoted, so the engine's parser reads it as the CI-gate override's reason.
    #[test]
    fn a_flags_reason_option_is_written_right_after_the_flag() {
        let book = CommandBook::builtin();
        let envs = vec!["dev".to_owned()];
        let deploy = |extra: &[(&str, OptionValue)]| {
            let mut options = vec![("env", Text("dev")), ("ref", Text("feature/x"))];
            options.extend_from_slice(extra);
            line("deploy", &options)
        };
        let reason = "CI is down; tested by hand, it's \"fine\" $(id)";
        for extra in [vec![("force", Flag(true)), ("force_reason", Text(reason))], vec![("force_reason", Text(reason))]]
        {
            let text = deploy(&extra).unwrap();
            assert!(text.starts_with("/deploy dev feature/x --force "), "{text}");
            let parsed = parse(&book, &envs, &text).unwrap();
            assert!(
                matches!(&parsed, crate::command::Command::Deploy { force: true, force_reason: Some(r), .. } if r == reason),
                "{text}: {parsed:?}"
            );
        }
        // Plain --force (the migration guard's) stays a bare flag; an empty reason is none.
        for extra in [vec![("force", Flag(true))], vec![("force", Flag(true)), ("force_reason", Text("  "))]] {
            let text = deploy(&extra).unwrap();
            assert_eq!(text, "/deploy dev feature/x --force");
            let parsed = parse(&book, &envs, &text).unwrap();
            assert!(matches!(parsed, crate::command::Command::Deploy { force: true, force_reason: None, .. }));
        }
        let text = deploy(&[("dry-run", Flag(true)), ("force_reason", Text("flaky"))]).unwrap();
        assert_eq!(text, "/deploy dev feature/x --dry-run --force flaky");
        assert!(deploy(&[("force_reason", Text("--emergency x"))]).unwrap_err().contains("cannot start with `--`"));
        assert!(deploy(&[("force_reason", Flag(true))]).unwrap_err().contains("out of date"));
        assert!(line("lock", &[("force_reason", Text("x"))]).unwrap_err().contains("out of date"));
    }

    #[test]
    fn unknown_options_and_types_ask_for_registration() {
        assert!(line("deploy", &[("colour", Text("red"))]).unwrap_err().contains("shipday register discord"));
        assert!(line("deploy", &[("env", Flag(true))]).unwrap_err().contains("out of date"));
        assert!(line("frobnicate", &[]).unwrap_err().contains("out of date"));
        assert!(line("lock", &[("env", Text("dev")), ("reason", Text("a\0b"))]).unwrap_err().contains("NUL"));
    }

    #[test]
    fn long_running_commands_are_deferred_at_once_and_public_when_they_succeed_in_public() {
        for (name, options, public) in [
            ("deploy", vec![("env", Text("dev"))], true),
            ("release", vec![("env", Text("dev"))], true),
            ("rollback", vec![("env", Text("dev"))], true),
            ("promote", vec![("from", Text("staging")), ("to", Text("production"))], true),
            ("status", vec![("live", Flag(true))], false),
            ("ticket", vec![("key", Text("SHOP-1")), ("action", Text("status"))], false),
        ] {
            let likely = if public { Visibility::Public } else { Visibility::Ephemeral };
            assert_eq!(ack_plan(name, &options), AckPlan { long_running: true, likely }, "{name}");
        }
        assert_eq!(ack_plan("deploy", &[("dry-run", Flag(true))]).likely, Visibility::Ephemeral);
        assert_eq!(ack_plan("status", &[]), AckPlan { long_running: false, likely: Visibility::Ephemeral });
        assert_eq!(ack_plan("lock", &[]), AckPlan { long_running: false, likely: Visibility::Public });
        assert!(!ack_plan("help", &[]).long_running);
    }
}
