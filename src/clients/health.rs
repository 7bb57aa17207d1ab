//! The optional health check after a deploy: an HTTP GET that must answer 2xx in time.

use std::time::{Duration, Instant};

/// Time between attempts while the app comes back up.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Polls `url` until it answers 2xx or `budget` runs out. The error says what it last saw.
pub async fn check(http: &reqwest::Client, url: &str, budget: Duration) -> Result<String, String> {
    let deadline = Instant::now() + budget;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last =
            match http.get(url).timeout(left.clamp(Duration::from_millis(100), Duration::from_secs(10))).send().await {
                Ok(response) if response.status().is_success() => {
                    return Ok(format!("GET {url} answered {}", response.status()));
                }
                Ok(response) => format!("GET {url} answered {}", response.status()),
                Err(error) if error.is_timeout() => format!("GET {url} did not answer in time"),
                Err(error) if error.is_connect() => format!("GET {url}: cannot connect"),
                Err(error) => format!("GET {url} failed: {error}"),
            };
        if Instant::now() + RETRY_EVERY >= deadline {
            return Err(format!("health check failed after {}s: {last}", budget.as_secs()));
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}
