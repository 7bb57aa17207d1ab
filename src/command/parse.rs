//! The spec-driven parser: tokens are matched to a spec's options, each value is validated by
//! its kind, and the result is the typed [`Command`].

use super::spec::{CommandBook, CommandSpec, OptionKind, OptionSpec};
use super::{Command, TicketAction};
use crate::release::environment::Environment;
use crate::release::gitref::GitRef;
use crate::release::tickets::{TicketKey, TicketKeyError};
use std::collections::HashMap;

/// Why the text did not parse, worded for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Largest `/history` length.
pub const MAX_HISTORY: usize = 50;
/// Default `/history` length.
pub const DEFAULT_HISTORY: usize = 10;
/// Longest free-text value (lock reasons).
pub const MAX_TEXT: usize = 300;

/// The environments a command may name: canonical names in configured order, and aliases.
/// The configured environments (`&config.environments`) give both; a bare list of names
/// (`&["dev".to_owned()]`) has no aliases.
pub trait EnvironmentNames {
    /// Canonical names, in configured order.
    fn names(&self) -> Vec<String>;
    /// `(alias, canonical name)` pairs.
    fn aliases(&self) -> Vec<(String, String)>;
}

impl EnvironmentNames for [String] {
    fn names(&self) -> Vec<String> {
        self.to_vec()
    }
    fn aliases(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

impl EnvironmentNames for Vec<String> {
    fn names(&self) -> Vec<String> {
        self.clone()
    }
    fn aliases(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

impl EnvironmentNames for [Environment] {
    fn names(&self) -> Vec<String> {
        self.iter().map(|e| e.name.clone()).collect()
    }
    fn aliases(&self) -> Vec<(String, String)> {
        self.iter().flat_map(|e| e.aliases.iter().map(|a| (a.clone(), e.name.clone()))).collect()
    }
}

impl EnvironmentNames for Vec<Environment> {
    fn names(&self) -> Vec<String> {
        self.as_slice().names()
    }
    fn aliases(&self) -> Vec<(String, String)> {
        self.as_slice().aliases()
    }
}

/// Names and aliases, resolved once per parse.
struct Names {
    names: Vec<String>,
    aliases: Vec<(String, String)>,
}

impl Names {
    fn of(environments: &(impl EnvironmentNames + ?Sized)) -> Self {
        Self { names: environments.names(), aliases: environments.aliases() }
    }

    /// The canonical name `value` stands for: a name, or an alias of one.
    fn resolve(&self, value: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|n| *n == value)
            .map(String::as_str)
            .or_else(|| self.aliases.iter().find(|(alias, _)| alias == value).map(|(_, name)| name.as_str()))
    }

    /// Names, each followed by its aliases: `dev, staging, production (prod)`.
    fn listed(&self) -> String {
        self.names
            .iter()
            .map(|name| {
                let aliases: Vec<&str> =
                    self.aliases.iter().filter(|(_, n)| n == name).map(|(a, _)| a.as_str()).collect();
                if aliases.is_empty() { name.clone() } else { format!("{name} ({})", aliases.join(", ")) }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Parses a command line such as `/deploy dev feature/login` into a typed command.
/// `environments` are the configured environments, whose names or aliases the environment
/// options must match; the command carries the canonical name.
pub fn parse(
    book: &CommandBook,
    environments: &(impl EnvironmentNames + ?Sized),
    text: &str,
) -> Result<Command, ParseError> {
    let environments = &Names::of(environments);
    let tokens = tokenize(text)?;
    let Some((first, rest)) = tokens.split_first() else {
        return Err(ParseError("Type a command, for example `/status` or `/help`.".into()));
    };
    let name = first.trim_start_matches('/').to_lowercase();
    let Some(spec) = book.get(&name) else {
        let hint =
            suggest(&name, book.names().into_iter()).map(|s| format!(" Did you mean `/{s}`?")).unwrap_or_default();
        return Err(ParseError(format!("Unknown command `{}`.{hint} Type `/help` for the list.", shown(first))));
    };
    if spec.dispatches() {
        return dispatch(book, environments, spec, rest);
    }
    run(book, environments, spec, rest)
}

/// Parses the arguments of one (non-dispatching) command.
fn run(book: &CommandBook, environments: &Names, spec: &CommandSpec, tokens: &[String]) -> Result<Command, ParseError> {
    let context = Context { book, environments, spec };
    let values = context.match_options(tokens)?;
    context.build(values)
}

/// A dispatcher (`/shipday status dev`): its first argument names the command to run and the
/// rest are that command's arguments. With no argument it runs `help`.
fn dispatch(
    book: &CommandBook,
    environments: &Names,
    umbrella: &CommandSpec,
    tokens: &[String],
) -> Result<Command, ParseError> {
    let (name, rest) = match tokens.split_first() {
        Some((first, rest)) => (first.trim_start_matches('/').to_lowercase(), rest),
        None => ("help".to_owned(), tokens),
    };
    let outer = &umbrella.name;
    match book.get(&name) {
        Some(spec) if spec.dispatches() => Err(ParseError(format!(
            "Leave out the second `{name}`: `/{outer} COMMAND` runs the other commands, for example `/{outer} status`."
        ))),
        Some(spec) => run(book, environments, spec, rest),
        None => {
            let hint = suggest(&name, book.runnable().map(|s| s.name.as_str()))
                .map(|s| format!(" Did you mean `/{outer} {s}`?"))
                .unwrap_or_default();
            Err(ParseError(format!("Unknown command `{}`.{hint} Type `/{outer}` for the list.", shown(&name))))
        }
    }
}

/// Splits like a shell would, but only to group quoted text; nothing is ever expanded.
fn tokenize(text: &str) -> Result<Vec<String>, ParseError> {
    let normalized: String = text
        .chars()
        .map(|c| match c {
            '\u{201c}' | '\u{201d}' => '"',
            '\u{2018}' | '\u{2019}' => '\'',
            other => other,
        })
        .collect();
    shlex::split(&normalized).ok_or_else(|| ParseError("A quote is not closed. Close it, or leave quotes out.".into()))
}

struct Context<'a> {
    book: &'a CommandBook,
    environments: &'a Names,
    spec: &'a CommandSpec,
}

enum Value {
    Text(String),
    Flag,
    /// A flag with its reason (`--force "why"`).
    FlagWith(String),
}

impl Context<'_> {
    fn usage_error(&self, problem: String) -> ParseError {
        ParseError(format!("{problem} Usage: `{}`", self.spec.usage))
    }

    fn match_options(&self, tokens: &[String]) -> Result<HashMap<String, Value>, ParseError> {
        let positional: Vec<&OptionSpec> = self.spec.options.iter().filter(|o| !o.is_named()).collect();
        let mut values = HashMap::new();
        let mut next = 0;
        let mut i = 0;
        while let Some(token) = tokens.get(i) {
            i += 1;
            if let Some(flag) = token.strip_prefix("--") {
                let Some(option) = self.spec.options.iter().find(|o| o.is_named() && o.name == flag) else {
                    return Err(self.usage_error(format!("Unknown option `{}`.", shown(token))));
                };
                let positionals_done = positional.iter().skip(next).all(|o| !o.required);
                if option.kind == OptionKind::Flag
                    && option.reason
                    && positionals_done
                    && let Some(reason) = tokens.get(i).filter(|v| !v.starts_with("--"))
                {
                    i += 1;
                    if reason.trim().is_empty() || reason.chars().count() > MAX_TEXT {
                        return Err(self
                            .usage_error(format!("The reason after `--{flag}` must be 1 to {MAX_TEXT} characters.")));
                    }
                    values.insert(option.name.clone(), Value::FlagWith(reason.clone()));
                } else if option.kind == OptionKind::Flag {
                    values.insert(option.name.clone(), Value::Flag);
                } else {
                    let Some(value) = tokens.get(i).filter(|v| !v.starts_with("--")) else {
                        return Err(self.usage_error(format!("`--{flag}` needs a value.")));
                    };
                    i += 1;
                    let mut value = value.clone();
                    // A `rest` option (`--until tomorrow 09:00`) takes the words up to the next option.
                    while let Some(word) = tokens.get(i).filter(|t| option.rest && !t.starts_with("--")) {
                        value = format!("{value} {word}");
                        i += 1;
                    }
                    self.check(option, &value).map_err(|e| self.usage_error(e))?;
                    values.insert(option.name.clone(), Value::Text(self.canonical(option, &value)));
                }
                continue;
            }
            // Skip optional positionals the token cannot be, when a later one accepts it.
            while let Some(option) = positional.get(next)
                && !option.required
                && self.check(option, token).is_err()
                && positional.iter().skip(next + 1).any(|o| self.check(o, token).is_ok())
            {
                next += 1;
            }
            let Some(option) = positional.get(next) else {
                return Err(self.usage_error(format!("Too many arguments: `{}`.", shown(token))));
            };
            next += 1;
            if option.rest {
                let mut words = vec![token.clone()];
                while let Some(word) = tokens.get(i).filter(|t| !t.starts_with("--")) {
                    words.push(word.clone());
                    i += 1;
                }
                values.insert(option.name.clone(), Value::Text(words.join(" ")));
            } else {
                // Check as we go, so the first bad value is the one named.
                self.check(option, token).map_err(|e| self.usage_error(e))?;
                values.insert(option.name.clone(), Value::Text(self.canonical(option, token)));
            }
        }
        for option in &positional {
            if option.required && !values.contains_key(&option.name) {
                return Err(self.usage_error(format!("Missing {}.", option.placeholder())));
            }
        }
        for (name, value) in &values {
            if let (Value::Text(text), Some(option)) = (value, self.spec.options.iter().find(|o| &o.name == name)) {
                self.check(option, text).map_err(|e| self.usage_error(e))?;
            }
        }
        Ok(values)
    }

    /// A checked value as the command carries it: an environment's alias becomes its name.
    fn canonical(&self, option: &OptionSpec, value: &str) -> String {
        match option.kind {
            OptionKind::Environment | OptionKind::EnvironmentOrAll => {
                self.environments.resolve(value).unwrap_or(value).to_owned()
            }
            _ => value.to_owned(),
        }
    }

    /// Validates one value for one option.
    fn check(&self, option: &OptionSpec, value: &str) -> Result<(), String> {
        match option.kind {
            OptionKind::EnvironmentOrAll if value == crate::release::freeze::ALL => Ok(()),
            OptionKind::Environment | OptionKind::EnvironmentOrAll => {
                if self.environments.resolve(value).is_some() {
                    return Ok(());
                }
                let candidates = self.environments.names.iter().chain(self.environments.aliases.iter().map(|(a, _)| a));
                let hint = suggest(value, candidates.map(String::as_str))
                    .map(|s| format!(" Did you mean `{s}`?"))
                    .unwrap_or_default();
                Err(format!(
                    "Unknown environment `{}`.{hint} Environments: {}.",
                    shown(value),
                    self.environments.listed()
                ))
            }
            OptionKind::Ref => GitRef::parse(value).map(|_| ()).map_err(|e| format!("{e}.")),
            OptionKind::Number => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_HISTORY).contains(&n) => Ok(()),
                _ => Err(format!("{} must be a whole number from 1 to {MAX_HISTORY}.", option.placeholder())),
            },
            OptionKind::Command | OptionKind::Subcommand => {
                let name = value.trim_start_matches('/');
                if self.book.get(name).is_some() {
                    return Ok(());
                }
                let hint = suggest(name, self.book.names().into_iter())
                    .map(|s| format!(" Did you mean `{s}`?"))
                    .unwrap_or_default();
                Err(format!("Unknown command `{}`.{hint}", shown(value)))
            }
            OptionKind::Text if value.chars().count() > MAX_TEXT => {
                Err(format!("{} is longer than {MAX_TEXT} characters.", option.placeholder()))
            }
            OptionKind::Text | OptionKind::Flag => Ok(()),
        }
    }

    /// Turns validated values into the typed command. Exhaustive over spec names.
    fn build(&self, mut values: HashMap<String, Value>) -> Result<Command, ParseError> {
        let flag = |name: &str| matches!(values.get(name), Some(Value::Flag | Value::FlagWith(_)));
        let force_reason = match values.get("force") {
            Some(Value::FlagWith(reason)) => Some(reason.clone()),
            _ => None,
        };
        let (dry_run, live, force, cancel) = (flag("dry-run"), flag("live"), flag("force"), flag("cancel"));
        let (notify, when_free) = (flag("notify"), flag("when-free"));
        let mut text = |name: &str| match values.remove(name) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        };
        let required = |value: Option<String>, name: &str| {
            value.ok_or_else(|| ParseError(format!("spec `{}` lacks option `{name}`", self.spec.name)))
        };
        let command = match self.spec.name.as_str() {
            "deploy" => {
                let env = required(text("env"), "env")?;
                let git_ref = required(text("ref"), "ref")?;
                Command::Deploy {
                    env,
                    git_ref: GitRef::parse(&git_ref).map_err(|e| ParseError(e.to_string()))?,
                    dry_run,
                    emergency: text("emergency"),
                    force,
                    force_reason,
                    notify,
                    when_free,
                }
            }
            "promote" => Command::Promote {
                from: required(text("from"), "from")?,
                to: required(text("to"), "to")?,
                emergency: text("emergency"),
                cancel,
                force: text("force"),
            },
            "status" => Command::Status { env: text("env"), live },
            "release" => Command::Release { env: required(text("env"), "env")? },
            "lock" => Command::Lock { env: required(text("env"), "env")?, reason: required(text("reason"), "reason")? },
            "unlock" => Command::Unlock { env: required(text("env"), "env")? },
            "cancel" => Command::Cancel { env: required(text("env"), "env")? },
            "history" => Command::History {
                env: text("env"),
                limit: text("limit").and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_HISTORY),
            },
            "rollback" => Command::Rollback {
                env: required(text("env"), "env")?,
                target: text("target").unwrap_or_else(|| "previous".into()),
                emergency: text("emergency"),
            },
            "schedule" => Command::Schedule { days: text("days").and_then(|n| n.parse().ok()).unwrap_or(14) },
            "help" => Command::Help { topic: text("command").map(|c| c.trim_start_matches('/').to_owned()) },
            "freeze" => Command::Freeze {
                env: required(text("env"), "env")?,
                reason: required(text("reason"), "reason")?,
                until: text("until"),
            },
            "unfreeze" => Command::Unfreeze { env: required(text("env"), "env")? },
            "skip" => Command::Skip { env: required(text("env"), "env")? },
            "unskip" => Command::Unskip { env: required(text("env"), "env")? },
            "ticket" => {
                let key = required(text("key"), "key")?;
                let action = required(text("action"), "action")?;
                self.ticket(&key, &action, text("reason"), text("override"))?
            }
            other => {
                return Err(ParseError(format!("`{other}` has a spec but no command type")));
            }
        };
        Ok(command)
    }
}

impl Context<'_> {
    /// `/ticket`: a well-formed key (its project is checked against the config by the
    /// handler), one of the actions, a reason only for `fail` (where it is required), and
    /// `--override` only for `pass`.
    fn ticket(
        &self,
        key: &str,
        action: &str,
        reason: Option<String>,
        override_reason: Option<String>,
    ) -> Result<Command, ParseError> {
        let key: TicketKey =
            key.parse().map_err(|e: TicketKeyError| self.usage_error(format!("{e}: use a key like SHOP-12.")))?;
        let action = match action.to_lowercase().as_str() {
            "pass" => TicketAction::Pass,
            "fail" => TicketAction::Fail,
            "status" => TicketAction::Status,
            other => {
                return Err(self.usage_error(format!("`{}` is not an action: use pass, fail or status.", shown(other))));
            }
        };
        match (action, &reason, &override_reason) {
            (TicketAction::Fail, None, _) => {
                return Err(self.usage_error(format!(
                    "`/ticket {key} fail` needs a reason, for example `/ticket {key} fail the login button does nothing`."
                )));
            }
            (TicketAction::Pass | TicketAction::Status, Some(_), _) => {
                return Err(self.usage_error("Only `fail` takes a reason.".into()));
            }
            (TicketAction::Fail | TicketAction::Status, _, Some(_)) => {
                return Err(self.usage_error("--override only goes with pass.".into()));
            }
            _ => {}
        }
        Ok(Command::Ticket { key: key.to_string(), action, reason, override_reason })
    }
}

/// The closest candidate to `input`, if one is close enough to be a typo or a prefix.
pub fn suggest<'a>(input: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let input = input.to_lowercase();
    candidates
        .filter_map(|c| {
            let score =
                if !input.is_empty() && c.starts_with(&input) { 0 } else { strsim::damerau_levenshtein(&input, c) };
            (score <= 2).then_some((score, c))
        })
        .min_by_key(|(score, _)| *score)
        .map(|(_, c)| c)
}

/// User text made safe to quote back: escaped and cut.
fn shown(text: &str) -> String {
    let escaped: String = text.escape_debug().collect();
    if escaped.chars().count() > 40 { format!("{}...", escaped.chars().take(37).collect::<String>()) } else { escaped }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[bounded::test]
    fn a_reason_follows_force_only_once_the_positionals_are_given() {
        let book = CommandBook::builtin();
        let parsed = parse(&book, &envs(), "/deploy dev --force feature/login").unwrap();
        assert!(
            matches!(&parsed, Command::Deploy { git_ref, force: true, force_reason: None, .. } if git_ref.as_str() == "feature/login"),
            "{parsed:?}"
        );
        let parsed = parse(&book, &envs(), "/deploy dev main --force \"CI is down\" --dry-run").unwrap();
        assert!(
            matches!(&parsed, Command::Deploy { force: true, force_reason: Some(r), dry_run: true, .. } if r == "CI is down"),
            "{parsed:?}"
        );
        let parsed = parse(&book, &envs(), "/deploy dev main --force").unwrap();
        assert!(matches!(&parsed, Command::Deploy { force: true, force_reason: None, .. }), "{parsed:?}");
        let long = format!("/deploy dev main --force \"{}\"", "x".repeat(MAX_TEXT + 1));
        assert!(parse(&book, &envs(), &long).unwrap_err().0.contains("reason after `--force`"));
    }

    fn envs() -> Vec<String> {
        ["dev", "staging", "production"].map(String::from).to_vec()
    }

    fn book() -> CommandBook {
        CommandBook::builtin()
    }

    /// Every example in every spec parses as declared (or fails with the declared error).
    #[test]
    fn every_spec_example_parses_as_declared() {
        let book = book();
        let mut checked = 0;
        for spec in book.specs() {
            assert!(!spec.examples.is_empty(), "{} has no examples", spec.name);
            for example in &spec.examples {
                let result = parse(&book, &envs(), &example.input);
                match (&example.expect, &example.error) {
                    (Some(expect), None) => {
                        let expected: Command = expect
                            .clone()
                            .try_into()
                            .unwrap_or_else(|e| panic!("{}: bad expect for {:?}: {e}", spec.name, example.input));
                        assert_eq!(result, Ok(expected), "{:?}", example.input);
                    }
                    (None, Some(fragment)) => {
                        let err = result.expect_err(&example.input).0;
                        assert!(err.contains(fragment.as_str()), "{:?} gave {err:?}", example.input);
                    }
                    _ => panic!("{} example {:?} needs expect or error", spec.name, example.input),
                }
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} examples");
    }

    /// Specs, the spec file list, the `commands/` folder and the enum cannot drift apart.
    #[test]
    fn specs_and_command_enum_match() {
        let book = book();
        // The umbrella parses to the command it runs, so it has no variant of its own.
        let mut spec_names: Vec<&str> = book.runnable().map(|s| s.name.as_str()).collect();
        spec_names.sort();
        assert_eq!(
            book.specs().iter().filter(|s| s.dispatches()).map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["shipday"]
        );
        let mut enum_names = Command::NAMES.to_vec();
        enum_names.sort();
        assert_eq!(spec_names, enum_names);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("commands");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".toml").to_owned())
            .collect();
        files.sort();
        let mut spec_files: Vec<&str> = book.names();
        spec_files.sort();
        assert_eq!(files, spec_files, "commands/ and SPEC_FILES differ");
        for name in Command::NAMES {
            let spec = book.get(name).unwrap();
            // Each spec builds its command: the builder and the spec agree on option names.
            let example = spec.examples.iter().find(|e| e.expect.is_some()).unwrap();
            assert_eq!(parse(&book, &envs(), &example.input).unwrap().name(), name);
        }
    }

    #[test]
    fn unknown_commands_and_environments_get_suggestions() {
        let err = parse(&book(), &envs(), "/deplyo dev x").unwrap_err().0;
        assert!(err.contains("Did you mean `/deploy`"), "{err}");
        let err = parse(&book(), &envs(), "/deploy stagin x").unwrap_err().0;
        assert!(err.contains("Did you mean `staging`") && err.contains("Usage"), "{err}");
        let err = parse(&book(), &envs(), "/frobnicate").unwrap_err().0;
        assert!(err.contains("Unknown command") && err.contains("/help"), "{err}");
    }

    #[test]
    fn hostile_refs_are_refused_before_anything_runs() {
        let long = "a".repeat(300);
        for bad in ["a;b", "$(id)", "`id`", "-rf", "--upload-pack=x", long.as_str(), "a..b"] {
            let line = format!("/deploy dev '{bad}'");
            assert!(parse(&book(), &envs(), &line).is_err(), "{bad:?} parsed");
        }
        assert!(parse(&book(), &envs(), "/deploy dev \"a\nb\"").is_err());
        assert!(parse(&book(), &envs(), "/deploy dev a\nb").is_err());
    }

    #[test]
    fn quotes_group_text_and_smart_quotes_work() {
        let cmd = parse(&book(), &envs(), "/lock staging “QA run” today").unwrap();
        assert_eq!(cmd, Command::Lock { env: "staging".into(), reason: "QA run today".into() });
        assert!(parse(&book(), &envs(), "/lock staging \"open").is_err());
    }

    /// One registered command reaches every other: a workspace may register only `/shipday`.
    #[test]
    fn the_umbrella_runs_every_command_with_its_own_rules() {
        let book = book();
        for spec in book.runnable() {
            let example = spec.examples.iter().find(|e| e.expect.is_some()).unwrap();
            let direct = parse(&book, &envs(), &example.input).unwrap();
            let words = example.input.trim_start_matches('/');
            let through = parse(&book, &envs(), &format!("/shipday {words}")).unwrap();
            assert_eq!(through, direct, "{words}");
        }
        assert_eq!(parse(&book, &envs(), "/shipday").unwrap(), Command::Help { topic: None });
        assert_eq!(parse(&book, &envs(), "/SHIPDAY /Status").unwrap(), Command::Status { env: None, live: false });
        let err = parse(&book, &envs(), "/shipday deploy dev").unwrap_err().0;
        assert!(err.contains("Missing REF") && err.contains("Usage: `/deploy"), "{err}");
        let err = parse(&book, &envs(), "/shipday frobnicate").unwrap_err().0;
        assert!(err.contains("Unknown command `frobnicate`") && err.contains("`/shipday`"), "{err}");
        let err = parse(&book, &envs(), "/help shipday").map(|c| c.name()).unwrap();
        assert_eq!(err, "help", "the umbrella has its own help page");
    }

    /// A pick list offered on a platform holds only values the parser takes.
    #[test]
    fn every_declared_choice_is_a_value_the_parser_takes() {
        let book = book();
        let action = book.get("ticket").unwrap().options.iter().find(|o| o.name == "action").unwrap();
        assert_eq!(action.choices, ["pass", "fail", "status"]);
        for choice in &action.choices {
            let reason = if choice == "fail" { " the button does nothing" } else { "" };
            let line = format!("/ticket SHOP-12 {choice}{reason}");
            assert!(parse(&book, &envs(), &line).is_ok(), "{line}");
        }
    }

    fn environments() -> Vec<Environment> {
        let config = crate::config::Config::from_toml(
            r#"
state_dir = "s"
[[environments]]
name = "dev"
branch = "dev"
transport = { kind = "local", dir = "/d" }
[[environments]]
name = "production"
branch = "master"
aliases = ["prod", "live"]
transport = { kind = "local", dir = "/p" }
"#,
            std::path::Path::new("/"),
        )
        .unwrap();
        config.environments
    }

    /// Every command taking an environment takes its alias, and carries the canonical name.
    #[test]
    fn aliases_name_their_environment_in_every_command() {
        let envs = environments();
        let book = book();
        let cases = [
            ("/deploy prod master", "/deploy production master"),
            ("/promote dev live", "/promote dev production"),
            ("/promote dev prod --cancel", "/promote dev production --cancel"),
            ("/status prod --live", "/status production --live"),
            ("/history prod 5", "/history production 5"),
            ("/lock prod release day", "/lock production release day"),
            ("/unlock live", "/unlock production"),
            ("/release prod", "/release production"),
            ("/rollback prod previous", "/rollback production previous"),
            ("/shipday deploy prod master", "/deploy production master"),
            ("/cancel prod", "/cancel production"),
            ("/skip live", "/skip production"),
            ("/unskip prod", "/unskip production"),
            ("/freeze prod incident 42", "/freeze production incident 42"),
            ("/unfreeze live", "/unfreeze production"),
        ];
        for (alias, canonical) in cases {
            assert_eq!(parse(&book, &envs, alias), parse(&book, &envs, canonical), "{alias}");
            assert!(parse(&book, &envs, alias).is_ok(), "{alias}");
        }
        for spec in book.runnable() {
            for option in
                spec.options.iter().filter(|o| matches!(o.kind, OptionKind::Environment | OptionKind::EnvironmentOrAll))
            {
                assert!(
                    cases.iter().any(|(alias, _)| alias.starts_with(&format!("/{}", spec.name))),
                    "/{} takes {} but no alias case covers it",
                    spec.name,
                    option.name
                );
            }
        }
        let err = parse(&book, &envs, "/deploy prd master").unwrap_err().0;
        assert!(err.contains("Did you mean `prod`?"), "{err}");
        assert!(err.contains("Environments: dev, production (prod, live)."), "{err}");
        let err = parse(&book, &envs, "/deploy produciton master").unwrap_err().0;
        assert!(err.contains("Did you mean `production`?"), "{err}");
        let err = parse(&book, &envs, "/deploy qa master").unwrap_err().0;
        assert!(err.contains("Unknown environment `qa`.") && !err.contains("Did you mean"), "{err}");
    }

    #[test]
    fn history_bounds() {
        assert!(parse(&book(), &envs(), "/history dev 500").is_err());
        assert!(parse(&book(), &envs(), "/history dev 0").is_err());
    }
}
