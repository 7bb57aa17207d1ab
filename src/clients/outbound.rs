//! Timeouts for every outbound call, and start-up's bounded retry.
//!
//! A platform that accepts a connection and never answers must not hang Shipday: every client
//! has a connect timeout and a total timeout per request, and a call made at start-up is
//! retried with backoff, saying so in the log, then fails with a clear error.

use anyhow::{Result, anyhow};
use std::future::Future;
use std::sync::Arc;
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
    /// How long a WebSocket session may take to come up before it is started over (see
    /// [`supervise_websocket`]; the backoff between its attempts starts at `first_backoff`).
    pub websocket_ready: Duration,
}

impl Default for StartupRetry {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_backoff: Duration::from_secs(2),
            timeout: REQUEST_TIMEOUT,
            websocket_ready: WEBSOCKET_READY_TIMEOUT,
        }
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

/// How long a WebSocket session may take to come up: connect, TLS, the WebSocket handshake and
/// the platform's greeting (Slack's `hello`, Discord's READY). The libraries that open them
/// (slack-morphism, serenity) set no timeout of their own.
pub const WEBSOCKET_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait between two attempts to bring a WebSocket session up.
pub const WEBSOCKET_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Signalled by a WebSocket client when its platform has greeted it (see [`supervise_websocket`]).
#[derive(Debug, Clone, Default)]
pub struct Greeted(Arc<tokio::sync::Notify>);

impl Greeted {
    /// The platform greeted the session: it is up.
    pub fn greeted(&self) {
        self.0.notify_one();
    }
}

/// A runtime of its own for a WebSocket library's tasks; shut down (never dropped, which an
/// async context forbids) when it goes.
struct Isolated(Option<tokio::runtime::Runtime>);

impl Drop for Isolated {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs a WebSocket client whose library opens its sockets itself (without a timeout), so that
/// its start is bounded: `client(greeted)` runs on a runtime of its own; if `greeted` is not
/// signalled within `bound`, that runtime is shut down (which ends the library's stuck connect
/// or handshake, its sockets and tasks), the failure is logged, and a fresh client starts after
/// `first_backoff` (doubling up to [`WEBSOCKET_MAX_BACKOFF`]). Once greeted, the client runs
/// until it ends by itself; its result is returned (also when it ends before the greeting).
pub async fn supervise_websocket<F, Fut>(what: &str, bound: Duration, first_backoff: Duration, client: F) -> Result<()>
where
    F: Fn(Greeted) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let mut backoff = first_backoff;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("shipday-websocket")
            .enable_all()
            .build()
            .map_err(|error| anyhow!("{what}: cannot start a runtime for the WebSocket: {error}"))?;
        let greeted = Greeted::default();
        let signal = greeted.0.clone();
        let mut running = runtime.spawn(client(greeted));
        let isolated = Isolated(Some(runtime));
        let ended = tokio::select! {
            ended = &mut running => Some(ended),
            up = tokio::time::timeout(bound, signal.notified()) => match up {
                Ok(()) => {
                    if attempt > 1 {
                        tracing::info!(what, attempt, "the WebSocket session is up");
                    }
                    Some(running.await)
                }
                Err(_) => None,
            },
        };
        if let Some(ended) = ended {
            drop(isolated);
            return ended.map_err(|error| anyhow!("{what}: the WebSocket task failed: {error}"))?;
        }
        drop(isolated);
        tracing::warn!(
            what,
            attempt,
            bound_ms = bound.as_millis() as u64,
            retry_in_ms = backoff.as_millis() as u64,
            "the WebSocket session did not come up in time (connect, TLS, handshake and greeting); starting over"
        );
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2).min(WEBSOCKET_MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_websocket_that_never_comes_up_is_cut_off_and_started_again_until_it_does() {
        // Accepts every connection and never answers: a connect that would hang forever.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let attempts = Arc::new(AtomicU32::new(0));
        let counted = attempts.clone();
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            supervise_websocket("test socket", Duration::from_millis(300), Duration::from_millis(10), move |greeted| {
                let attempt = counted.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if attempt < 3 {
                        let url = format!("ws://{addr}/");
                        let _ = tokio_tungstenite::connect_async(url).await;
                        return Err(anyhow!("the silent server answered"));
                    }
                    greeted.greeted();
                    Ok(())
                }
            }),
        )
        .await
        .expect("the supervisor must not hang on a silent server");
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() >= Duration::from_millis(600), "{:?}", started.elapsed());
        drop(silent);
    }

    #[tokio::test]
    async fn a_call_that_never_answers_is_cut_off_and_retried_a_bounded_number_of_times() {
        let retry = StartupRetry {
            attempts: 3,
            first_backoff: Duration::from_millis(1),
            timeout: Duration::from_millis(20),
            ..StartupRetry::default()
        };
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
        let retry = StartupRetry {
            attempts: 3,
            first_backoff: Duration::from_millis(1),
            timeout: Duration::from_secs(5),
            ..StartupRetry::default()
        };
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
