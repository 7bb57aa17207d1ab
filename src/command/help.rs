//! `/help`, rendered from the specs.

use super::spec::{CommandBook, MinRole};

/// Width of the usage column in the command list: every short usage fits; longer ones wrap.
const USAGE_COLUMN: usize = 24;

/// The command list, or one command explained.
pub fn render(book: &CommandBook, topic: Option<&str>) -> String {
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
            out.push_str("Type `/help COMMAND` for details.");
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
        let list = render(&book, None);
        for name in book.names() {
            assert!(list.contains(&format!("/{name}")), "{name} missing from help");
        }
        let deploy = render(&book, Some("deploy"));
        assert!(deploy.contains("--dry-run") && deploy.contains("/deploy dev feature/login"));
        let ticket = render(&book, Some("ticket"));
        assert!(ticket.contains("ACTION             What to do with the ticket: pass, fail, status\n"), "{ticket}");
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
