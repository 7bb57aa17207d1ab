//! Values that may reach a shell: validated git ref names and resolved commit SHAs.
//!
//! Chat text never reaches a shell. Only a [`GitRef`] (checked against an allowlist) and a
//! [`Sha`] (exactly 40 hex digits) do, and even those are shell-quoted where they are used.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A branch or tag name that passed the allowlist: letters, digits and `._/-`, no leading `-`,
/// no `..`, at most [`GitRef::MAX_LEN`] characters, and git's own ref-name rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GitRef(String);

/// Why a ref was refused, worded for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{shown}` is not a valid branch name: {why}")]
pub struct RefError {
    shown: String,
    why: &'static str,
}

impl GitRef {
    /// Longest ref name accepted.
    pub const MAX_LEN: usize = 200;

    /// Checks `input` against the allowlist.
    pub fn parse(input: &str) -> Result<Self, RefError> {
        let refuse = |why| RefError { shown: shown(input), why };
        if input.is_empty() {
            return Err(refuse("it is empty"));
        }
        if input.chars().count() > Self::MAX_LEN {
            return Err(refuse("it is longer than 200 characters"));
        }
        if let Some(bad) = input.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))) {
            return Err(refuse(if bad.is_whitespace() || bad.is_control() {
                "it contains whitespace or control characters"
            } else {
                "only letters, digits and . _ / - are allowed"
            }));
        }
        if input.starts_with('-') {
            return Err(refuse("it must not start with `-`"));
        }
        if input.contains("..") {
            return Err(refuse("it must not contain `..`"));
        }
        if input.starts_with('/') || input.ends_with('/') || input.contains("//") {
            return Err(refuse("slashes must separate non-empty parts"));
        }
        if input.split('/').any(|part| part.starts_with('.')) {
            return Err(refuse("no part may start with `.`"));
        }
        if input.ends_with('.') || input.ends_with(".lock") {
            return Err(refuse("it must not end with `.` or `.lock`"));
        }
        Ok(Self(input.to_owned()))
    }

    /// The validated name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ref as a full commit SHA, when it is one (rollbacks name commits, not branches).
    pub fn as_sha(&self) -> Option<Sha> {
        Sha::parse(&self.0).ok()
    }
}

/// Shows user input safely inside a reply: control characters escaped, long input cut.
fn shown(input: &str) -> String {
    let escaped: String = input.escape_debug().collect();
    if escaped.chars().count() > 60 {
        let cut: String = escaped.chars().take(57).collect();
        format!("{cut}...")
    } else {
        escaped
    }
}

impl TryFrom<String> for GitRef {
    type Error = RefError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<GitRef> for String {
    fn from(value: GitRef) -> Self {
        value.0
    }
}

impl fmt::Display for GitRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A full commit id: exactly 40 lowercase hex digits, as git prints it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha(String);

/// The text was not a full commit SHA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a 40-hex commit SHA")]
pub struct ShaError;

impl Sha {
    /// Accepts exactly 40 hex digits (either case; stored lowercase).
    pub fn parse(input: &str) -> Result<Self, ShaError> {
        if input.len() == 40 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(input.to_ascii_lowercase()))
        } else {
            Err(ShaError)
        }
    }

    /// The full SHA.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 digits, for people.
    pub fn short(&self) -> &str {
        self.0.get(..8).unwrap_or(&self.0)
    }
}

impl TryFrom<String> for Sha {
    type Error = ShaError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Sha> for String {
    fn from(value: Sha) -> Self {
        value.0
    }
}

impl fmt::Display for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_branch_names() {
        for ok in ["dev", "feature/login", "release-1.2", "user/ada/fix_42", "v1.0.0"] {
            assert_eq!(GitRef::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_hostile_and_malformed_refs() {
        let long = "a".repeat(300);
        for bad in [
            "a;b",
            "$(id)",
            "`id`",
            "a\nb",
            "-rf",
            "--upload-pack=x",
            "a..b",
            "a@{1}",
            long.as_str(),
            "",
            "a b",
            "/x",
            "x/",
            "a//b",
            ".hidden",
            "x.lock",
            "a|b",
            "a&b",
            "a>b",
            "'",
            "\"",
            "\\",
        ] {
            assert!(GitRef::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn refusal_names_the_input_safely() {
        let err = GitRef::parse("a\nb").unwrap_err().to_string();
        assert!(err.contains("a\\nb"), "{err}");
        let err = GitRef::parse(&"x".repeat(300)).unwrap_err().to_string();
        assert!(err.len() < 150, "{err}");
    }

    #[test]
    fn sha_is_exactly_forty_hex() {
        let sha = Sha::parse("0123456789ABCDEF0123456789abcdef01234567").unwrap();
        assert_eq!(sha.as_str(), "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(sha.short(), "01234567");
        assert!(Sha::parse("0123").is_err());
        assert!(Sha::parse("g123456789abcdef0123456789abcdef01234567").is_err());
    }
}
