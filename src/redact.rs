//! Redaction of secrets from step output before it is stored, logged or shown.

use crate::config::Secret;
use regex::Regex;
use std::sync::LazyLock;

/// Text shown in place of a secret.
pub const REDACTED: &str = "[redacted]";

static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // Credentials in URLs: https://user:token@host
        (r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s:@]+:[^/\s@]+@", "${1}[redacted]@"),
        // password=…, token: …, api_key=…
        (
            r#"(?i)\b([a-z0-9_\-]*(?:password|passwd|pwd|token|secret|api[_\-]?key|access[_\-]?key)[a-z0-9_\-]*)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&;,]+)"#,
            "${1}${2}[redacted]",
        ),
        // Authorization headers.
        (r"(?i)\b(authorization:\s*(?:bearer|basic|token)\s+)\S+", "${1}[redacted]"),
        // Well-known token shapes: Slack, GitHub.
        (r"\b(?:xox[abpsr]|xapp)-[A-Za-z0-9\-]{8,}", "[redacted]"),
        (r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})", "[redacted]"),
    ]
    .into_iter()
    .map(|(pattern, replacement)| (Regex::new(pattern).expect("redaction pattern"), replacement))
    .collect()
});

/// Removes secrets from text: known shapes, plus the configured secret values.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    /// A redactor that also removes these exact values.
    pub fn new(secrets: Vec<Secret>) -> Self {
        Self { secrets }
    }

    /// The text with every secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if secret.expose().len() >= 4 {
                out = out.replace(secret.expose(), REDACTED);
            }
        }
        for (pattern, replacement) in PATTERNS.iter() {
            out = pattern.replace_all(&out, *replacement).into_owned();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_known_shapes_and_configured_values() {
        let redactor = Redactor::new(vec![Secret::new("s3cr3t-db-pass")]);
        let text = "clone https://bot:ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/x.git\n\
                    DATABASE_PASSWORD=hunter2 other=ok\n\
                    token: \"abc def\"\n\
                    connecting with s3cr3t-db-pass\n\
                    Authorization: Bearer eyJhbGciOi\n\
                    slack xoxb-1234-5678-abcdefgh";
        let out = redactor.redact(text);
        for secret in ["ghp_abc", "hunter2", "abc def", "s3cr3t-db-pass", "eyJhbGciOi", "xoxb-1234"] {
            assert!(!out.contains(secret), "{secret} survived in {out}");
        }
        assert!(out.contains("other=ok"));
        assert!(out.contains("github.com/x.git"));
    }
}
