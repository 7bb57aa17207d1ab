//! Timeouts for every outbound call, and start-up's bounded retry.
//!
//! A platform that accepts a connection and never answers must not hang Shipday: every client
//! has a connect timeout and a total timeout per request, and a call made at start-up is
//! retried with backoff, saying so in the log, then fails with a clear error.

use anyhow::{Result, anyhow};
use std::future::Future;
use std::time::Duration;

/// How long opening a TCP connection (and TLS) to a platform may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take from start to its whole answer, by default. Slack, Discord,
/// GitHub and Jira answer in well under a second when they are well.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A reqwest client with [`CONNECT_TIMEOUT`] and [`REQUEST_TIMEOUT`] (a request may ask for a
/// shorter total with `RequestBuilder::timeout`).
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("shipday/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|error| anyhow!("cannot build an HTTP client: {error}"))
}

/// How a call made at start-up is retried. [`StartupRetry::default`] is what `shipday serve`
/// uses: 4 attempts of at most 15 s, 2 s apart then 4 s, then 8 s: it gives up within about
/// 75 s, having logged every failure.
#[derive(Debug, Clone)]
pub struct StartupRetry {
    /// How many times the call is made in all.
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each.
    pub first_backoff: Duration,
    /// The most one attempt may take.
    pub timeout: Duration,
}

impl Default for StartupRetry {
    fn default() -> Self {
        Self { attempts: 4, first_backoff: Duration::from_secs(2), timeout: REQUEST_TIMEOUT }
    }
}

impl StartupRetry {
    /// Runs `call` until it succeeds or the attempts are spent; each attempt is cut off after
    /// [`StartupRetry::timeout`]. `what` names the call in the log and the error.
    pub async fn run<T, E, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let attempts = self.attempts.max(1);
        let mut backoff = self.first_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match tokio::time::timeout(self.timeout, call()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {}s", self.timeout.as_secs_f32()),
            };
            if attempt >= attempts {
                return Err(anyhow!("{what}: {failure} (gave up after {attempt} attempts)"));
            }
            tracing::warn!(
                what,
                attempt,
                of = attempts,
                retry_in_ms = backoff.as_millis() as u64,
                failure = %failure,
                "a start-up call failed; retrying"
            );
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_call_that_never_answers_is_cut_off_and_retried_a_bounded_number_of_times() {
        let retry =
            StartupRetry { attempts: 3, first_backoff: Duration::from_millis(1), timeout: Duration::from_millis(20) };
        let calls = AtomicU32::new(0);
        let started = std::time::Instant::now();
        let result: Result<()> = retry
            .run("auth.test", || {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<Result<(), String>>()
            })
            .await;
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("auth.test: no answer within 0.02s (gave up after 3 attempts)"), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_call_that_fails_once_then_answers_succeeds() {
        let retry =
            StartupRetry { attempts: 3, first_backoff: Duration::from_millis(1), timeout: Duration::from_secs(5) };
        let calls = AtomicU32::new(0);
        let value = retry
            .run("auth.test", || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move { if n == 0 { Err("connection refused") } else { Ok(n) } }
            })
            .await
            .unwrap();
        assert_eq!(value, 1);
    }
}
