//! The delivery worker. Every process runs one; they share the work through
//! leases in the database (`FOR UPDATE SKIP LOCKED` on PostgreSQL):
//!
//! - A claim takes due deliveries, at most `per_webhook` of one webhook and
//!   none of a webhook that already has that many in flight here, so a slow
//!   or dead endpoint holds only its own slots. It moves each delivery's
//!   `next_attempt_at` to the end of the lease: if this process dies, the
//!   delivery is due again then, and another process sends it (with the
//!   same `webhook-id`: delivery is at-least-once, and receivers dedupe).
//! - Each attempt is a POST with the Standard Webhooks headers, signed with
//!   the webhook's secret (and for a day after a rotation, the previous
//!   one too), answered within `timeout`.
//! - Outcomes are written in batches by one task, each only while this
//!   process still holds the lease. 2xx is delivered; 410 Gone disables the
//!   webhook; anything else is retried after `retry_base × 4ⁿ` (±20%),
//!   never sooner than `Retry-After`, up to five retries. A webhook whose
//!   deliveries have failed for good for `disable_after`, with none
//!   succeeding, is disabled.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use portcullis_store::model::WebhookDelivery;
use portcullis_store::repo::webhooks::{self as repo, Claim, Settlement};
use portcullis_store::sql::Sql;
use portcullis_store::{Backend, micros, new_id, now_micros, record};
use rand::Rng;
use tokio::sync::{Notify, Semaphore, mpsc};

use super::WebhookSettings;
use crate::services::webhooks::{Webhook, disable, open_secret};
use crate::{Core, ServiceError};

/// Deliveries one claim takes at most.
const CLAIM_BATCH: usize = 200;
/// How long a worker held back by full slots waits after an attempt ends
/// before it claims again.
const COALESCE: Duration = Duration::from_millis(2);
/// Webhooks with pending deliveries looked at per claim at most.
const WEBHOOKS_PER_PASS: i64 = 64;
/// Outcomes written per transaction at most.
const SETTLE_BATCH: usize = 500;
/// The response body kept for the delivery log.
const EXCERPT_BYTES: usize = 512;
const USER_AGENT: &str = concat!("Portcullis-Webhooks/", env!("CARGO_PKG_VERSION"));

/// What this process has in flight.
struct InFlight {
    slots: Arc<Semaphore>,
    per_webhook: Mutex<HashMap<String, usize>>,
    /// Woken when an attempt ends, for a claim that was held back.
    ended: Notify,
}

impl InFlight {
    /// How many deliveries to claim of each webhook: what its slots here
    /// allow; and whether a webhook was full.
    fn wants(&self, webhooks: &[String], per_webhook: usize) -> (Vec<(String, i64)>, bool) {
        let counts = self.per_webhook.lock().expect("in-flight lock");
        let mut wants = Vec::new();
        let mut full = false;
        for webhook in webhooks {
            match per_webhook.saturating_sub(counts.get(webhook).copied().unwrap_or(0)) {
                0 => full = true,
                room => wants.push((webhook.clone(), room as i64)),
            }
        }
        (wants, full)
    }

    fn add(&self, webhook_id: &str) {
        *self.per_webhook.lock().expect("in-flight lock").entry(webhook_id.to_owned()).or_default() += 1;
    }

    fn remove(&self, webhook_id: &str) {
        let mut counts = self.per_webhook.lock().expect("in-flight lock");
        if let Some(n) = counts.get_mut(webhook_id) {
            *n -= 1;
            if *n == 0 {
                counts.remove(webhook_id);
            }
        }
    }
}

/// An attempt's result, before it is written.
struct Outcome {
    delivery: WebhookDelivery,
    settlement: Settlement,
    /// The endpoint answered 410 Gone.
    gone: bool,
}

/// Runs until the core is dropped.
pub async fn run_worker(core: Weak<Core>) {
    let (settings, allow_private, queued, skip_locked) = {
        let Some(core) = core.upgrade() else { return };
        let postgres = core.db.backend() == Backend::Postgres;
        (core.config.webhooks.clone(), core.config.allow_private_targets, core.db.webhooks_queued(), postgres)
    };
    if !settings.enabled {
        return;
    }
    let owner = new_id();
    let client = crate::outbound::client(allow_private, settings.timeout, USER_AGENT);
    let in_flight = Arc::new(InFlight {
        slots: Arc::new(Semaphore::new(settings.concurrency)),
        per_webhook: Mutex::default(),
        ended: Notify::new(),
    });
    let (outcomes, received) = mpsc::channel::<Outcome>(settings.concurrency.max(SETTLE_BATCH) * 2);
    tokio::spawn(settle_outcomes(core.clone(), owner.clone(), settings.clone(), received));
    tokio::spawn(prune_periodically(core.clone(), settings.retention));
    // Where the next pass starts among webhooks with pending deliveries,
    // so that beyond `WEBHOOKS_PER_PASS` of them each gets its turn.
    let mut cursor = String::new();
    loop {
        let Some(strong) = core.upgrade() else { return };
        let free = in_flight.slots.available_permits().min(CLAIM_BATCH);
        let claimed = if free == 0 {
            Ok((Vec::new(), true))
        } else {
            claim(&strong, &settings, &owner, &in_flight, free, &mut cursor, skip_locked).await
        };
        let (count, held_back) = match claimed {
            Ok((batch, held_back)) => {
                let count = batch.len();
                start_attempts(&strong, &client, &in_flight, &outcomes, batch).await;
                (count, held_back)
            }
            Err(error) => {
                tracing::warn!(%error, "claiming webhook deliveries failed; retrying");
                (0, false)
            }
        };
        drop(strong);
        if count > 0 {
            // More may be due beyond what this claim could take.
            continue;
        }
        // Nothing is due that this process may take now: wait for a
        // commit of ours, an attempt ending (when full slots held
        // deliveries back), or the next poll.
        tokio::select! {
            () = queued.notified() => {}
            () = in_flight.ended.notified(), if held_back => {
                // Let a few more attempts end, so the next claim takes a
                // handful instead of one (a claim is a write transaction).
                tokio::time::sleep(COALESCE).await;
            }
            () = tokio::time::sleep(settings.poll_interval) => {}
        }
    }
}

/// Claims up to `free` due deliveries, from the webhooks with pending ones
/// that have slots left here; returns them, and whether a full webhook was
/// passed over (its deliveries wait for an attempt to end).
async fn claim(
    core: &Core,
    settings: &WebhookSettings,
    owner: &str,
    in_flight: &InFlight,
    free: usize,
    cursor: &mut String,
    skip_locked: bool,
) -> Result<(Vec<WebhookDelivery>, bool), ServiceError> {
    let now = now_micros();
    let mut tx = core.db.write_state().await?;
    let mut webhooks = repo::pending_webhooks(tx.conn(), cursor, WEBHOOKS_PER_PASS).await?;
    if (webhooks.len() as i64) < WEBHOOKS_PER_PASS && !cursor.is_empty() {
        // Wrap around to the start.
        let rest = repo::pending_webhooks(tx.conn(), "", WEBHOOKS_PER_PASS - webhooks.len() as i64).await?;
        webhooks.extend(rest.into_iter().filter(|id| id.as_str() <= cursor.as_str()));
    }
    *cursor = webhooks.last().cloned().unwrap_or_default();
    let (wants, full) = in_flight.wants(&webhooks, settings.per_webhook);
    let lease_until = now + micros(settings.lease);
    let claim = Claim { owner, now, lease_until, wants: &wants, limit: free as i64, skip_locked };
    let claimed = repo::claim(tx.conn(), &claim).await?;
    tx.commit().await?;
    let held_back = full || claimed.len() == free;
    Ok((claimed, held_back))
}

/// The webhook of each delivery, read once per claim.
async fn webhooks_of(
    core: &Core,
    batch: &[WebhookDelivery],
) -> Result<HashMap<String, Arc<Target>>, ServiceError> {
    let mut by_environment: HashMap<&str, Vec<String>> = HashMap::new();
    for delivery in batch {
        let ids = by_environment.entry(&delivery.environment_id).or_default();
        if !ids.contains(&delivery.webhook_id) {
            ids.push(delivery.webhook_id.clone());
        }
    }
    let mut targets = HashMap::new();
    let mut conn = core.db.read().await?;
    let now = now_micros();
    for (environment_id, ids) in by_environment {
        for webhook in record::find_in::<Webhook>(&mut conn, environment_id, "id", &ids).await? {
            targets.insert(webhook.id.clone(), Arc::new(Target::open(core, &webhook, now)?));
        }
    }
    Ok(targets)
}

/// What an attempt needs of its webhook.
struct Target {
    url: String,
    active: bool,
    secrets: Vec<String>,
}

impl Target {
    fn open(core: &Core, webhook: &Webhook, now: i64) -> Result<Target, ServiceError> {
        let mut secrets = vec![open_secret(core, &webhook.id, &webhook.signing_secret, false)?];
        if let (Some(previous), Some(until)) = (&webhook.previous_secret, webhook.previous_secret_expires_at)
            && until > now
        {
            secrets.push(open_secret(core, &webhook.id, previous, true)?);
        }
        Ok(Target { url: webhook.url.clone(), active: webhook.active, secrets })
    }
}

async fn start_attempts(
    core: &Core,
    client: &reqwest::Client,
    in_flight: &Arc<InFlight>,
    outcomes: &mpsc::Sender<Outcome>,
    batch: Vec<WebhookDelivery>,
) {
    if batch.is_empty() {
        return;
    }
    let targets = match webhooks_of(core, &batch).await {
        Ok(targets) => targets,
        Err(error) => {
            // The leases run out and the deliveries are claimed again.
            tracing::warn!(%error, "reading webhooks failed; their deliveries wait for their lease");
            return;
        }
    };
    let settings = core.config.webhooks.clone();
    let allow_private = core.config.allow_private_targets;
    for delivery in batch {
        let Ok(slot) = in_flight.slots.clone().acquire_owned().await else { return };
        let target = targets.get(&delivery.webhook_id).cloned();
        let client = client.clone();
        let in_flight = in_flight.clone();
        let outcomes = outcomes.clone();
        let settings = settings.clone();
        in_flight.add(&delivery.webhook_id);
        tokio::spawn(async move {
            let webhook_id = delivery.webhook_id.clone();
            let outcome = match target {
                Some(target) if target.active => {
                    attempt(&client, &settings, allow_private, &target, delivery).await
                }
                _ => not_sent(delivery, "the webhook was deactivated or deleted"),
            };
            in_flight.remove(&webhook_id);
            drop(slot);
            in_flight.ended.notify_one();
            let _ = outcomes.send(outcome).await;
        });
    }
}

fn not_sent(delivery: WebhookDelivery, why: &str) -> Outcome {
    let at = now_micros();
    let settlement = Settlement {
        id: delivery.id.clone(),
        status: "failed",
        next_attempt_at: at,
        response_status: None,
        response_excerpt: None,
        latency_ms: 0,
        error: Some(why.to_owned()),
        at,
    };
    Outcome { delivery, settlement, gone: false }
}

/// The `webhook-signature` header: one `v1,…` per secret, space-separated.
fn signature_header(secrets: &[String], message_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let signatures: Result<Vec<String>, _> = secrets
        .iter()
        .map(|secret| portcullis_crypto::webhook::sign(secret, message_id, timestamp, body))
        .collect();
    signatures.ok().map(|s| s.join(" "))
}

async fn attempt(
    client: &reqwest::Client,
    settings: &WebhookSettings,
    allow_private: bool,
    target: &Target,
    delivery: WebhookDelivery,
) -> Outcome {
    let timestamp = now_micros() / 1_000_000;
    let body = delivery.payload.clone().into_bytes();
    let Some(signature) = signature_header(&target.secrets, &delivery.message_id, timestamp, &body) else {
        return not_sent(delivery, "the webhook's secret cannot be read");
    };
    let url = match reqwest::Url::parse(&target.url) {
        Ok(url) => url,
        Err(_) => return not_sent(delivery, "the webhook's url is not a URL"),
    };
    if let Err(why) = crate::outbound::check_host(&url, allow_private) {
        return not_sent(delivery, &format!("the url {why}"));
    }
    let started = Instant::now();
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &delivery.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let (status, retry_after, excerpt, error) = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let excerpt = read_excerpt(response).await;
            (Some(status), retry_after, excerpt, None)
        }
        // Without the URL: a customer's URL may carry a token in its query.
        Err(error) => (None, None, None, Some(describe(&error.without_url()))),
    };
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let at = now_micros();
    let delivered = status.is_some_and(|s| (200..300).contains(&s));
    let gone = status == Some(410);
    let retry = !delivered && !gone && delivery.attempts_left > 0;
    let next_attempt_at =
        if retry { at + micros(backoff(settings, delivery.attempts, retry_after)) } else { at };
    let error = error.or_else(|| match status {
        Some(s) if !delivered => Some(format!("the endpoint answered {s}")),
        _ => None,
    });
    let settlement = Settlement {
        id: delivery.id.clone(),
        status: if delivered {
            "delivered"
        } else if retry {
            "pending"
        } else {
            "failed"
        },
        next_attempt_at,
        response_status: status.map(i64::from),
        response_excerpt: excerpt,
        latency_ms,
        error,
        at,
    };
    Outcome { delivery, settlement, gone }
}

/// The error and its causes, which say what went wrong (refused, timed
/// out, a name that resolves only to private addresses).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() { "timed out".to_owned() } else { error.to_string() };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(500).collect()
}

/// The start of a response body, for the delivery log (never more is read).
async fn read_excerpt(mut response: reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while body.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(EXCERPT_BYTES - body.len())]),
            _ => break,
        }
    }
    (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned())
}

/// `Retry-After` in seconds or as an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value.trim()).ok()?;
    Some(date.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

/// The delay before the next attempt, after `attempts` made.
fn backoff(settings: &WebhookSettings, attempts: i64, retry_after: Option<Duration>) -> Duration {
    let exponent = u32::try_from((attempts - 1).clamp(0, 8)).unwrap_or(8);
    let base = settings.retry_base.saturating_mul(4u32.pow(exponent));
    let jitter = rand::rng().random_range(0.8..1.2);
    let delay = base.mul_f64(jitter);
    delay.max(retry_after.unwrap_or_default()).min(Duration::from_secs(24 * 3600))
}

/// Writes outcomes in batches, then what they mean for their webhooks.
async fn settle_outcomes(
    core: Weak<Core>,
    owner: String,
    settings: WebhookSettings,
    mut received: mpsc::Receiver<Outcome>,
) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH);
    while received.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        let Some(core) = core.upgrade() else { return };
        for attempt in 0..5 {
            match settle(&core, &owner, &settings, &batch).await {
                Ok(()) => break,
                Err(error) if attempt < 4 => {
                    tracing::warn!(%error, "recording webhook outcomes failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                // Their leases run out and they are sent again.
                Err(error) => tracing::error!(%error, count = batch.len(), "webhook outcomes not recorded"),
            }
        }
        batch.clear();
    }
}

async fn settle(
    core: &Core,
    owner: &str,
    settings: &WebhookSettings,
    batch: &[Outcome],
) -> Result<(), ServiceError> {
    let now = now_micros();
    let mut succeeded: HashSet<(&str, &str)> = HashSet::new();
    let mut exhausted: HashSet<(&str, &str)> = HashSet::new();
    let mut gone: Vec<(&str, &str)> = Vec::new();
    let mut tx = core.db.write_state().await?;
    for outcome in batch {
        if !repo::settle(tx.conn(), owner, &outcome.settlement).await? {
            continue; // The lease was lost: the delivery is someone else's now.
        }
        let key = (outcome.delivery.environment_id.as_str(), outcome.delivery.webhook_id.as_str());
        match outcome.settlement.status {
            "delivered" => {
                succeeded.insert(key);
            }
            "failed" if outcome.gone => gone.push(key),
            "failed" => {
                exhausted.insert(key);
            }
            _ => {}
        }
    }
    // A success ends a failure streak; a failure for good starts one.
    for (_, webhook_id) in exhausted.difference(&succeeded) {
        let mut sql = Sql::new("UPDATE webhooks SET failing_since = ");
        sql.bind(now).push(" WHERE id = ").bind((*webhook_id).to_owned()).push(" AND failing_since IS NULL");
        sql.execute(tx.conn()).await?;
    }
    for (_, webhook_id) in &succeeded {
        let mut sql = Sql::new("UPDATE webhooks SET failing_since = NULL WHERE id = ");
        sql.bind((*webhook_id).to_owned()).push(" AND failing_since IS NOT NULL");
        sql.execute(tx.conn()).await?;
    }
    tx.commit().await?;
    for (environment_id, webhook_id) in gone {
        disable(core, environment_id, webhook_id, "the endpoint answered 410 Gone").await?;
    }
    let cutoff = now - micros(settings.disable_after);
    for (environment_id, webhook_id) in exhausted.difference(&succeeded) {
        let webhook: Option<Webhook> =
            record::find(&mut *core.db.read().await?, environment_id, webhook_id).await?;
        if let Some(webhook) = webhook
            && webhook.active
            && webhook.failing_since.is_some_and(|since| since <= cutoff)
        {
            let days = settings.disable_after.as_secs_f64() / 86_400.0;
            let reason = format!("every delivery failed for {days:.1} days");
            disable(core, environment_id, webhook_id, &reason).await?;
        }
    }
    Ok(())
}

/// Deletes settled deliveries and outbox rows older than `before`, in
/// chunks (a long `DELETE` would hold the SQLite writer).
pub async fn prune(core: &Core, before: i64) -> Result<u64, ServiceError> {
    const CHUNK: i64 = 5_000;
    let mut removed = 0;
    loop {
        let mut tx = core.db.write_state().await?;
        let deliveries = repo::prune_deliveries(tx.conn(), before, CHUNK).await?;
        let events = repo::prune_outbox(tx.conn(), before, CHUNK).await?;
        tx.commit().await?;
        removed += deliveries + events;
        if deliveries < CHUNK as u64 && events < CHUNK as u64 {
            return Ok(removed);
        }
    }
}

async fn prune_periodically(core: Weak<Core>, retention: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else { return };
        match prune(&core, now_micros() - micros(retention)).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "pruned old webhook deliveries and outbox events"),
            Err(error) => tracing::warn!(%error, "pruning webhook deliveries failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_fourfold_with_jitter_and_honours_retry_after() {
        let settings = WebhookSettings { retry_base: Duration::from_secs(30), ..WebhookSettings::default() };
        for (attempts, expected) in [(1, 30.0), (2, 120.0), (3, 480.0), (4, 1920.0), (5, 7680.0)] {
            let delay = backoff(&settings, attempts, None).as_secs_f64();
            assert!(delay >= expected * 0.8 && delay <= expected * 1.2, "after {attempts}: {delay}");
        }
        let delay = backoff(&settings, 1, Some(Duration::from_secs(600)));
        assert!(delay >= Duration::from_secs(600));
        let capped = backoff(&settings, 1, Some(Duration::from_secs(10 * 24 * 3600)));
        assert_eq!(capped, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        let later = std::time::SystemTime::now() + Duration::from_secs(300);
        let parsed = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(parsed > Duration::from_secs(290) && parsed <= Duration::from_secs(300));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn one_signature_per_secret() {
        let secrets = vec![
            portcullis_crypto::webhook::generate_secret(),
            portcullis_crypto::webhook::generate_secret(),
        ];
        let header = signature_header(&secrets, "msg_1", 1_700_000_000, b"{}").unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }
}
