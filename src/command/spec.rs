//! Command specs: one TOML file per slash command in `commands/`, compiled into the binary.
//!
//! The same specs drive the parser, `/help`, the Slack manifest and Discord registration,
//! so none of those can drift from the others.

use serde::Deserialize;

/// Every spec file, embedded at build time. A test checks this list against `commands/`.
pub const SPEC_FILES: &[(&str, &str)] = &[
    ("deploy", include_str!("../../commands/deploy.toml")),
    ("promote", include_str!("../../commands/promote.toml")),
    ("status", include_str!("../../commands/status.toml")),
    ("release", include_str!("../../commands/release.toml")),
    ("lock", include_str!("../../commands/lock.toml")),
    ("unlock", include_str!("../../commands/unlock.toml")),
    ("cancel", include_str!("../../commands/cancel.toml")),
    ("history", include_str!("../../commands/history.toml")),
    ("help", include_str!("../../commands/help.toml")),
    ("schedule", include_str!("../../commands/schedule.toml")),
    ("rollback", include_str!("../../commands/rollback.toml")),
    ("ticket", include_str!("../../commands/ticket.toml")),
    ("freeze", include_str!("../../commands/freeze.toml")),
    ("unfreeze", include_str!("../../commands/unfreeze.toml")),
    ("skip", include_str!("../../commands/skip.toml")),
    ("unskip", include_str!("../../commands/unskip.toml")),
    ("shipday", include_str!("../../commands/shipday.toml")),
];

/// One slash command, as declared.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// Name without the slash.
    pub name: String,
    /// One line for lists and registration.
    pub summary: String,
    /// Usage line shown with errors.
    pub usage: String,
    /// Longer explanation for `/help COMMAND`.
    #[serde(default)]
    pub details: String,
    /// The least role that may run it.
    pub who: MinRole,
    /// Positional options in order, then flags.
    #[serde(default)]
    pub options: Vec<OptionSpec>,
    /// Input → expected parse (or expected error), checked by tests.
    #[serde(default)]
    pub examples: Vec<Example>,
}

/// Who may run a command.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MinRole {
    /// Anyone, including people not in the config (read-only commands).
    Anyone,
    /// Configured developers and leads.
    Developer,
    /// Leads only.
    Lead,
}

/// One option of a command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSpec {
    /// Name; flags are written `--name`.
    pub name: String,
    /// What values it takes.
    pub kind: OptionKind,
    /// Whether it must be given.
    #[serde(default)]
    pub required: bool,
    /// A text option that takes the rest of the line (a named one: up to the next `--option`).
    #[serde(default)]
    pub rest: bool,
    /// A named option written `--name VALUE` rather than by position.
    #[serde(default)]
    pub long: bool,
    /// A flag that may carry a reason right after it (`--force "why"`): the next word is taken
    /// as the reason only once every required positional option has its value.
    #[serde(default)]
    pub reason: bool,
    /// For a flag with `reason`: what the reason is for, on platforms that take it as an option
    /// of its own (Discord registers `{name}_reason`, a text option; see [`Self::reason_option`]).
    #[serde(default)]
    pub reason_description: Option<String>,
    /// Shown in help and registration.
    pub description: String,
    /// The only values a text option takes, for platforms that offer a pick list (Discord
    /// registers them as choices; help lists them). The parser stays the authority: it refuses
    /// anything else with its own words.
    #[serde(default)]
    pub choices: Vec<String>,
}

impl CommandSpec {
    /// An option as a person types it, for help: `ENV`, `--dry-run`, `--emergency REASON`. A
    /// named option's value is called what the usage line calls it, so the two never differ.
    pub fn option_label(&self, option: &OptionSpec) -> String {
        match (option.kind, option.long) {
            (OptionKind::Flag, _) => format!("--{}", option.name),
            (_, true) => {
                let flag = format!("--{}", option.name);
                let value = self
                    .usage
                    .split_whitespace()
                    .skip_while(|word| word.trim_start_matches('[') != flag)
                    .nth(1)
                    .map(|word| word.trim_end_matches(']').to_owned())
                    .filter(|word| !word.is_empty() && !word.starts_with("--"))
                    .unwrap_or_else(|| option.placeholder());
                format!("{flag} {value}")
            }
            (_, false) => option.placeholder(),
        }
    }
}

impl OptionSpec {
    /// The name of the text option that carries a reason flag's reason where options are typed
    /// one by one (Discord: `force_reason`), or `None` for an option without `reason`.
    pub fn reason_option(&self) -> Option<String> {
        (self.kind == OptionKind::Flag && self.reason).then(|| format!("{}_reason", self.name.replace('-', "_")))
    }

    /// Whether the option is written by name (`--dry-run`, `--emergency "why"`).
    pub fn is_named(&self) -> bool {
        self.long || self.kind == OptionKind::Flag
    }

    /// The option as written in usage lines (`ENV`, `REF`).
    pub fn placeholder(&self) -> String {
        match self.name.as_str() {
            "git_ref" | "ref" => "REF".into(),
            other => other.to_uppercase(),
        }
    }
}

/// Kinds of option values.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OptionKind {
    /// One of the configured environment names.
    Environment,
    /// One of the configured environment names, or `all` (`/freeze all`).
    #[serde(rename = "environment_or_all")]
    EnvironmentOrAll,
    /// A git ref that passes the allowlist.
    Ref,
    /// Free text (only ever stored and shown, never run).
    Text,
    /// A whole number.
    Number,
    /// A boolean `--flag`.
    Flag,
    /// The name of another command.
    Command,
    /// Another command's name followed by that command's own arguments: the spec runs the
    /// other command (the umbrella `/shipday`). Always the spec's only positional option.
    Subcommand,
}

/// A spec example.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// What a user types.
    pub input: String,
    /// The typed command it must parse to.
    pub expect: Option<toml::Value>,
    /// Or a fragment of the error it must give.
    pub error: Option<String>,
}

/// All command specs, in the order `/help` lists them.
#[derive(Debug, Clone)]
pub struct CommandBook {
    specs: Vec<CommandSpec>,
}

impl CommandBook {
    /// Loads the embedded specs. They are part of the binary, so a broken one is a build bug.
    pub fn builtin() -> Self {
        let specs = SPEC_FILES
            .iter()
            .map(|(file, text)| {
                let spec: CommandSpec =
                    toml::from_str(text).unwrap_or_else(|e| panic!("commands/{file}.toml is invalid: {e}"));
                assert_eq!(spec.name, *file, "commands/{file}.toml names another command");
                for option in spec.options.iter().filter(|o| !o.choices.is_empty()) {
                    assert!(
                        option.kind == OptionKind::Text && !option.rest && !option.long,
                        "commands/{file}.toml: `{}` has choices, which only a positional text option takes",
                        option.name
                    );
                }
                spec
            })
            .collect();
        Self { specs }
    }

    /// All specs.
    pub fn specs(&self) -> &[CommandSpec] {
        &self.specs
    }

    /// The spec called `name`.
    pub fn get(&self, name: &str) -> Option<&CommandSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// Names of all commands.
    pub fn names(&self) -> Vec<&str> {
        self.specs.iter().map(|s| s.name.as_str()).collect()
    }

    /// The commands a dispatcher can run: every spec that is not itself a dispatcher.
    pub fn runnable(&self) -> impl Iterator<Item = &CommandSpec> {
        self.specs.iter().filter(|s| !s.dispatches())
    }
}

impl CommandSpec {
    /// Whether this spec runs another command (it has a `subcommand` option) instead of being
    /// a command of its own.
    pub fn dispatches(&self) -> bool {
        self.options.iter().any(|o| o.kind == OptionKind::Subcommand)
    }
}
