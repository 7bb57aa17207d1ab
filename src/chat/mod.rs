//! Chat adapters at the edge. They turn platform input into [`Invocation`]s and render
//! [`Reply`]s and progress; they decide nothing.
//!
//! [`Invocation`]: crate::engine::Invocation
//! [`Reply`]: crate::engine::Reply

pub mod console;
pub mod discord;
pub mod manifest;
pub mod slack;
pub mod text;

use crate::config::Config;

/// Writes the `@{id}` mention markers of an announcement in a platform's own syntax:
/// `mention(person)` gives the platform's mention, or `None` when the person has no identity
/// there (then their display name is written instead).
pub fn mentions(text: &str, config: &Config, mention: impl Fn(&crate::config::Person) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((before, after)) = rest.split_once("@{") {
        out.push_str(before);
        let Some((id, next)) = after.split_once('}') else {
            out.push_str("@{");
            out.push_str(after);
            return out;
        };
        match config.person(id) {
            Some(person) => out.push_str(&mention(person).unwrap_or_else(|| person.name.clone())),
            None => out.push_str(id),
        }
        rest = next;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn mentions_use_each_platforms_syntax_and_fall_back_to_names() {
        let config = Config::from_toml(
            r#"
state_dir = "s"
[[people]]
id = "grace"
name = "Grace"
slack = "U123"
[[people]]
id = "linus"
name = "Linus"
[[environments]]
name = "dev"
branch = "dev"
transport = { kind = "local", dir = "/x" }
"#,
            Path::new("/"),
        )
        .unwrap();
        let text = "@{grace} and @{linus}: window closes in 60m. @{ghost}";
        let slack = mentions(text, &config, |p| p.slack.as_ref().map(|id| format!("<@{id}>")));
        assert_eq!(slack, "<@U123> and Linus: window closes in 60m. ghost");
    }
}
