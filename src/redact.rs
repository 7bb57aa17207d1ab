//! Redaction of secrets from step output before it is stored, logged or shown.
//!
//! The log has its own choke point: [`LogWriter`] wraps the tracing subscriber's writer, so
//! every formatted event (message and fields) passes the redactor, with the known shapes from
//! the start and the configured secrets once [`redact_logs_too`] has been told them.

use crate::secret::Secret;
use regex::Regex;
use std::io::Write;
use std::sync::{LazyLock, PoisonError, RwLock};
use tracing_subscriber::fmt::MakeWriter;

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

/// The redactor every log line passes: the known shapes, plus the configured secrets of
/// every engine this process started.
static LOG_REDACTOR: LazyLock<RwLock<Redactor>> = LazyLock::new(|| RwLock::new(Redactor::default()));

/// Adds `secrets` to what the log writer removes (the engine calls it with the configured
/// secrets when it starts; values already known are kept once).
pub fn redact_logs_too(secrets: &[Secret]) {
    let mut redactor = LOG_REDACTOR.write().unwrap_or_else(PoisonError::into_inner);
    for secret in secrets {
        if !redactor.secrets.contains(secret) {
            redactor.secrets.push(secret.clone());
        }
    }
}

/// Makes the tracing subscriber's writers redacting: `fmt().with_writer(LogWriter::new(stderr))`.
#[derive(Debug, Clone)]
pub struct LogWriter<M> {
    inner: M,
}

impl<M> LogWriter<M> {
    /// Wraps a [`MakeWriter`] (such as `std::io::stderr`).
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for LogWriter<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter { inner: self.inner.make_writer(), line: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter { inner: self.inner.make_writer_for(meta), line: Vec::new() }
    }
}

/// One event's writer: it keeps what the formatter writes and passes it, redacted, to the
/// real writer when the event is done (a secret split across two writes is still found).
pub struct RedactingWriter<W: Write> {
    inner: W,
    line: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    fn pass_on(&mut self) -> std::io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let redacted = LOG_REDACTOR.read().unwrap_or_else(PoisonError::into_inner).redact(&text);
        self.inner.write_all(redacted.as_bytes())?;
        self.inner.flush()
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.pass_on()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write; the event is lost, never shown unredacted.
        let _ = self.pass_on();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_log_writer_redacts_messages_and_fields() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(LogWriter::new(move || sink.clone()))
            .finish();
        redact_logs_too(&[Secret::new("log-only-Qx7-secret")]);
        tracing::subscriber::with_default(subscriber, || {
            let output = "fatal: could not read from postgres://shop:pw-in-url-93@db/shop";
            tracing::warn!(output, host = "dev", "ls-remote failed with log-only-Qx7-secret");
            tracing::info!(env = "dev", "DATABASE_PASSWORD=hunter2-field and an ordinary line");
        });
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        for secret in ["log-only-Qx7-secret", "pw-in-url-93", "hunter2-field"] {
            assert!(!logged.contains(secret), "{secret} reached the log: {logged}");
        }
        assert!(logged.contains("ls-remote failed with [redacted]"), "{logged}");
        assert!(logged.contains("host=\"dev\"") && logged.contains("an ordinary line"), "{logged}");
        assert_eq!(logged.lines().count(), 2, "{logged}");
    }

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
