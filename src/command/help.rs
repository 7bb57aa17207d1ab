//! `/help`, rendered from the specs.

use super::spec::{CommandBook, MinRole, OptionKind};

/// The command list, or one command explained.
pub fn render(book: &CommandBook, topic: Option<&str>) -> String {
    match topic.and_then(|t| book.get(t)) {
        None => {
            let mut out = String::from("Shipday commands:\n");
            for spec in book.specs() {
                out.push_str(&format!("  {:<34} {}\n", spec.usage, spec.summary));
            }
            out.push_str("Type `/help COMMAND` for details.");
            out
        }
        Some(spec) => {
            let mut out = format!("{}\n{}\n", spec.usage, spec.summary);
            if !spec.details.is_empty() {
                out.push_str(&format!("{}\n", spec.details.trim()));
            }
            for option in &spec.options {
                let name =
                    if option.kind == OptionKind::Flag { format!("--{}", option.name) } else { option.placeholder() };
                let required = if option.required { "" } else { " (optional)" };
                let choices =
                    if option.choices.is_empty() { String::new() } else { format!(": {}", option.choices.join(", ")) };
                out.push_str(&format!("  {name:<12} {}{choices}{required}\n", option.description));
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
        assert!(ticket.contains("ACTION       What to do with the ticket: pass, fail, status\n"), "{ticket}");
    }
}
