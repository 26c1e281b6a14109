//! What every connector shares: the HTTP client, client-side throttling
//! below each app's published limits, and how an answer is classified as
//! retryable (with the server's `Retry-After`) or final.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Why a call to an app did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    pub retry: Retry,
    pub message: String,
    /// The app says the account does not exist (a 404 on an id we hold).
    pub not_found: bool,
    /// The app answered with a 5xx (which Stripe stores under the
    /// idempotency key: a retry needs a new key).
    pub answered_server_error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A definitive refusal (validation, authentication, uniqueness): retrying
    /// cannot help.
    Never,
    /// Transient (network, 429, 5xx, lock timeouts); the app may say when.
    After(Option<Duration>),
}

impl ConnectorError {
    pub fn permanent(message: impl Into<String>) -> Self {
        ConnectorError {
            retry: Retry::Never,
            message: message.into(),
            not_found: false,
            answered_server_error: false,
        }
    }

    pub fn transient(message: impl Into<String>, after: Option<Duration>) -> Self {
        ConnectorError {
            retry: Retry::After(after),
            message: message.into(),
            not_found: false,
            answered_server_error: false,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ConnectorError {
            retry: Retry::Never,
            message: message.into(),
            not_found: true,
            answered_server_error: false,
        }
    }

    /// A failed request: timeouts and connection errors are transient. The
    /// message never includes the URL's query or any header.
    pub fn from_reqwest(error: reqwest::Error) -> Self {
        let what = if error.is_timeout() {
            "the app did not answer in time"
        } else if error.is_connect() {
            "could not connect to the app"
        } else {
            "the request to the app failed"
        };
        ConnectorError::transient(what, None)
    }
}

/// How many times a roster read tries each call.
pub const READ_ATTEMPTS: u32 = 3;
/// The longest a roster read waits between attempts, whatever the app asks.
const READ_WAIT_CAP: Duration = Duration::from_secs(30);

/// Runs a read again after a transient failure, waiting as long as the app
/// asked (else 1 s, then 2 s): one 429 on page 87 of a roster must not throw
/// away the 86 pages before it. A refusal, or the last failure, is returned.
pub async fn read_with_retries<T, Fut>(mut call: impl FnMut() -> Fut) -> Result<T, ConnectorError>
where
    Fut: std::future::Future<Output = Result<T, ConnectorError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(error) if attempt < READ_ATTEMPTS && error.retry != Retry::Never => {
                let Retry::After(after) = error.retry else { return Err(error) };
                let wait = after.unwrap_or(Duration::from_secs(1 << (attempt - 1))).min(READ_WAIT_CAP);
                tracing::debug!(%error, ?wait, attempt, "roster read failed; trying again");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// The one HTTP client of the hub: the client for customer-given URLs
/// (`portcullis_core::outbound`: only public addresses unless the
/// installation allows private ones, no proxies from the environment), a
/// per-call timeout, and no redirects (an API that redirects is
/// misconfigured, and a redirect could carry credentials elsewhere).
pub fn client(timeout: Duration, allow_private: bool) -> reqwest::Client {
    portcullis_core::outbound::client(
        allow_private,
        timeout,
        concat!("Portcullis/", env!("CARGO_PKG_VERSION"), " (lifecycle hub)"),
    )
}

/// Sliding-window limits per key: at most `limit` calls in any `window`.
/// Keys are e.g. a credential, or a credential and an endpoint, so one
/// process never exceeds an app's published limits however many steps and
/// reconciliations share it.
#[derive(Default)]
pub struct Throttle {
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    /// Waits until a call is allowed under every `(key, window, limit)`, then
    /// counts it.
    pub async fn acquire(&self, rules: &[(String, Duration, usize)]) {
        loop {
            let wait = self.try_acquire(rules);
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn try_acquire(&self, rules: &[(String, Duration, usize)]) -> Duration {
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap();
        let mut wait = Duration::ZERO;
        for (key, window, limit) in rules {
            let queue = hits.entry(key.clone()).or_default();
            while queue.front().is_some_and(|t| now.duration_since(*t) >= *window) {
                queue.pop_front();
            }
            if queue.len() >= *limit {
                let oldest = queue[queue.len() - limit];
                wait = wait.max(*window - now.duration_since(oldest));
            }
        }
        if wait.is_zero() {
            for (key, _, _) in rules {
                hits.entry(key.clone()).or_default().push_back(now);
            }
        }
        wait
    }
}

/// The throttle every connector of this process shares: limits are per
/// credential, whoever calls.
pub fn shared_throttle() -> Arc<Throttle> {
    static SHARED: std::sync::LazyLock<Arc<Throttle>> = std::sync::LazyLock::new(Arc::default);
    SHARED.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn throttle_waits_for_the_window() {
        let throttle = Throttle::default();
        let rules = vec![("k".to_owned(), Duration::from_millis(200), 2)];
        let start = Instant::now();
        for _ in 0..3 {
            throttle.acquire(&rules).await;
        }
        assert!(start.elapsed() >= Duration::from_millis(190), "the third call waited for the window");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(30);
        headers.insert(RETRY_AFTER, httpdate::fmt_http_date(later).parse().unwrap());
        let parsed = retry_after(&headers).unwrap();
        assert!(parsed > Duration::from_secs(25) && parsed <= Duration::from_secs(30));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
