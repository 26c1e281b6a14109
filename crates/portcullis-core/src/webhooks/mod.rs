//! Webhooks: the event catalogue and the delivery worker. The resource
//! itself is `services::webhooks`; deliveries are written by the store in
//! the transaction of each change (`portcullis_store::repo::webhooks`).

pub mod catalogue;
pub mod delivery;

use std::time::Duration;

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Run the delivery worker in this process.
    pub enabled: bool,
    /// One attempt, end to end.
    pub timeout: Duration,
    /// The first retry's delay; each further one is four times longer
    /// (±20% jitter), never sooner than the endpoint's `Retry-After`.
    pub retry_base: Duration,
    /// How often the worker looks for due deliveries beyond the ones this
    /// process's commits announce (other processes', retries).
    pub poll_interval: Duration,
    /// How long a claimed delivery is this process's before another may
    /// take it over (after a crash).
    pub lease: Duration,
    /// Attempts in flight in this process, and per webhook.
    pub concurrency: usize,
    pub per_webhook: usize,
    /// A webhook whose deliveries have failed for good for this long,
    /// with none succeeding, is disabled.
    pub disable_after: Duration,
    /// Settled deliveries and old outbox rows are deleted after this.
    pub retention: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            enabled: true,
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            concurrency: 256,
            per_webhook: 16,
            disable_after: Duration::from_secs(5 * 24 * 3600),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}
