//! Secrets: where the config file says each one comes from ([`SecretRef`]: an environment
//! variable or a file, never the file itself), and the loaded value ([`Secret`]), which never
//! shows in `Debug`.
//!
//! A bottom module: the config, the clients, the chat adapters and the redactor all hold
//! secrets, and none of them has to know the others for it.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a secret comes from: an environment variable or a file. Never the config itself.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the environment variable that holds it.
    pub env: Option<String>,
    /// File that holds it (surrounding whitespace is trimmed).
    pub file: Option<PathBuf>,
}

/// A loaded secret. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (tests and the loader).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl SecretRef {
    /// Loads the secret, naming `key` (the config key) when it is missing.
    pub fn load(&self, key: &str, base: &Path) -> Result<Secret> {
        let value = match (&self.env, &self.file) {
            (Some(var), None) => std::env::var(var)
                .with_context(|| format!("{key}: environment variable {var} is not set (it holds the secret)"))?,
            (None, Some(file)) => {
                let path = base.join(file);
                std::fs::read_to_string(&path)
                    .with_context(|| format!("{key}: cannot read secret file {}", path.display()))?
            }
            _ => bail!("{key}: give exactly one of `env` or `file`"),
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            bail!("{key}: the secret is empty");
        }
        Ok(Secret(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn a_secret_comes_from_exactly_one_place_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "  s3cret\n").unwrap();
        let file = SecretRef { env: None, file: Some("token".into()) };
        assert_eq!(file.load("x.token", dir.path()).unwrap().expose(), "s3cret");
        let both = SecretRef { env: Some("SHIPDAY_TEST_SURELY_UNSET".into()), file: Some("token".into()) };
        assert!(format!("{:#}", both.load("x.token", dir.path()).unwrap_err()).contains("exactly one"));
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let empty = SecretRef { env: None, file: Some("empty".into()) };
        assert!(
            format!("{:#}", empty.load("x.token", dir.path()).unwrap_err()).contains("x.token: the secret is empty")
        );
    }
}
