//! `/help`, rendered from the specs.

use super::parse::EnvironmentNames;
use super::spec::{CommandBook, MinRole};

/// Width of the usage column in the command list: every short usage fits; longer ones wrap.
const USAGE_COLUMN: usize = 24;

/// The environments a command may name, each with its aliases:
/// `Environments: dev, staging, production (also prod)`.
pub fn environments_line(environments: &(impl EnvironmentNames + ?Sized)) -> String {
    let aliases = environments.aliases();
    let names: Vec<String> = environments
        .names()
        .into_iter()
        .map(|name| {
            let own: Vec<&str> = aliases.iter().filter(|(_, n)| *n == name).map(|(a, _)| a.as_str()).collect();
            if own.is_empty() { name } else { format!("{name} (also {})", own.join(", ")) }
        })
        .collect();
    format!("Environments: {}.", names.join(", "))
}

/// The command list, or one command explained.
pub fn render(book: &CommandBook, environments: &(impl EnvironmentNames + ?Sized), topic: Option<&str>) -> String {
    match topic.and_then(|t| book.get(t)) {
        None => {
            let mut out = String::from("Shipday commands:\n");
            for spec in book.specs() {
                // A usage too long for the column gets its own line, and its summary starts
                // under the column on the next, so the summaries stay aligned.
                if spec.usage.chars().count() <= USAGE_COLUMN {
                    out.push_str(&format!("  {:<USAGE_COLUMN$}  {}\n", spec.usage, spec.summary));
                } else {
                    out.push_str(&format!("  {}\n  {:<USAGE_COLUMN$}  {}\n", spec.usage, "", spec.summary));
                }
            }
            out.push_str(&environments_line(environments));
            out.push_str("\nType `/help COMMAND` for details.");
            out
        }
        Some(spec) => {
            let mut out = format!("{}\n{}\n", spec.usage, spec.summary);
            if !spec.details.is_empty() {
                out.push_str(&format!("{}\n", spec.details.trim()));
            }
            let width = spec.options.iter().map(|o| spec.option_label(o).chars().count()).max().unwrap_or(0);
            for option in &spec.options {
                let required = if option.required { "" } else { " (optional)" };
                let choices =
                    if option.choices.is_empty() { String::new() } else { format!(": {}", option.choices.join(", ")) };
                out.push_str(&format!(
                    "  {:<width$}  {}{choices}{required}\n",
                    spec.option_label(option),
                    option.description
                ));
            }
            out.push_str(match spec.who {
                MinRole::Anyone => "Anyone may use it.\n",
                MinRole::Developer => "Configured developers and leads may use it.\n",
                MinRole::Lead => "Leads only.\n",
            });
            let examples: Vec<&str> =
                spec.examples.iter().filter(|e| e.expect.is_some()).map(|e| e.input.as_str()).collect();
            if !examples.is_empty() {
                out.push_str(&format!("Examples: {}", examples.join(" · ")));
            }
            out.trim_end().to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_command_and_explains_one() {
        let book = CommandBook::builtin();
        let envs = ["dev".to_owned(), "staging".to_owned()];
        let list = render(&book, envs.as_slice(), None);
        assert!(list.contains("\nEnvironments: dev, staging.\n"), "{list}");
        for name in book.names() {
            assert!(list.contains(&format!("/{name}")), "{name} missing from help");
        }
        let deploy = render(&book, envs.as_slice(), Some("deploy"));
        assert!(deploy.contains("--dry-run") && deploy.contains("/deploy dev feature/login"));
        let ticket = render(&book, envs.as_slice(), Some("ticket"));
        assert!(ticket.contains("ACTION             What to do with the ticket: pass, fail, status\n"), "{ticket}");
    }

    #[test]
    fn the_environment_line_names_each_alias_with_its_environment() {
        let config = crate::config::Config::from_toml(
            "state_dir = \"s\"\n[[environments]]\nname = \"dev\"\nbranch = \"dev\"\n\
             transport = { kind = \"local\", dir = \"/d\" }\n[[environments]]\nname = \"production\"\n\
             branch = \"master\"\naliases = [\"prod\", \"live\"]\ntransport = { kind = \"local\", dir = \"/p\" }\n",
            std::path::Path::new("/"),
        )
        .unwrap();
        assert_eq!(environments_line(&config.environments), "Environments: dev, production (also prod, live).");
    }

    #[test]
    fn every_option_is_shown_as_its_usage_line_writes_it() {
        let book = CommandBook::builtin();
        for spec in book.specs() {
            for option in spec.options.iter().filter(|o| o.is_named()) {
                let label = spec.option_label(option);
                assert!(spec.usage.contains(&label), "{} shows `{label}`, its usage says `{}`", spec.name, spec.usage);
            }
        }
        let deploy = book.get("deploy").unwrap();
        let emergency = deploy.options.iter().find(|o| o.name == "emergency").unwrap();
        assert_eq!(deploy.option_label(emergency), "--emergency REASON");
    }
}
