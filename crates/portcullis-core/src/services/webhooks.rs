//! Webhooks: endpoints of the customer's that hear of committed changes.
//! A webhook subscribes to event types of the catalogue
//! (`crate::webhooks::catalogue`), family wildcards (`user.*`) or `*`. The
//! store writes a delivery per subscribed webhook in the transaction of
//! each change; the delivery worker (`crate::webhooks::delivery`) sends
//! them, signed per Standard Webhooks with the webhook's secret, which is
//! shown once and kept sealed with the master key. After a rotation the
//! previous secret signs too for a day, so receivers can roll over.

use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Actor, Event, Origin, WebhookDelivery};
use portcullis_store::repo::webhooks as deliveries;
use portcullis_store::sql::Sql;
use portcullis_store::types::JsonText;
use portcullis_store::{WriteTx, micros, new_id, now_micros, record};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Changes, Patch, attrs, fetch_in, finish, optional_multiline, require_text, target, timestamp, unique,
};
use crate::authz::{Family, Guarded, Verb};
use crate::webhooks::catalogue;
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "webhook";
pub const DELIVERY_KIND: &str = "webhook_delivery";
const NAME_MAX: usize = 100;
const URL_MAX: usize = 2048;
const DESCRIPTION_MAX: usize = 1000;
const EVENTS_MAX: usize = 100;
/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_OVERLAP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

portcullis_store::record! {
    /// A customer's endpoint for events (`/api/webhooks`).
    pub struct Webhook in "webhooks" {
        pub id: String,
        pub environment_id: String,
        pub name: String,
        pub url: String,
        pub description: Option<String>,
        /// Event types, `family.*` wildcards or `*`.
        #[sqlx(try_from = "String")]
        pub events: JsonText<Vec<String>>,
        #[sqlx(try_from = "portcullis_store::DbBool")]
        pub active: bool,
        /// Sealed under the master key (associated data: [`secret_aad`]).
        pub signing_secret: String,
        pub previous_secret: Option<String>,
        pub previous_secret_expires_at: Option<i64>,
        /// Why delivery disabled it (410 Gone, failing for days).
        pub disabled_reason: Option<String>,
        /// When its deliveries started failing for good, until one succeeds.
        pub failing_since: Option<i64>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

impl Guarded for Webhook {
    const FAMILY: Family = Family::Webhooks;
}

impl Guarded for WebhookDelivery {
    const FAMILY: Family = Family::Webhooks;
}

/// The associated data a webhook's secret is sealed with: a sealed secret
/// copied to another row (or slot) does not open.
pub fn secret_aad(webhook_id: &str, previous: bool) -> String {
    if previous { format!("webhook:{webhook_id}:previous") } else { format!("webhook:{webhook_id}") }
}

pub fn present(webhook: &Webhook) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &webhook.id,
        attrs(json!({
            "name": webhook.name,
            "url": webhook.url,
            "events": webhook.events.0,
            "active": webhook.active,
            "description": webhook.description,
            "disabled_reason": webhook.disabled_reason,
            "failing_since": webhook.failing_since.map(timestamp),
            "previous_secret_expires_at": webhook.previous_secret_expires_at.map(timestamp),
            "inserted_at": timestamp(webhook.inserted_at),
            "updated_at": timestamp(webhook.updated_at),
        })),
    )
}

/// A delivery; its `payload` only for a caller who may read what it holds
/// (the read scope of the event's family), or `webhooks:read` would read
/// every family.
pub fn present_delivery(ctx: &Ctx, delivery: &WebhookDelivery) -> ResourceObject {
    let readable =
        catalogue::family(&delivery.event_type).is_some_and(|f| ctx.require(f, Verb::Read).is_ok());
    let payload = if readable { serde_json::from_str::<Value>(&delivery.payload).ok() } else { None };
    ResourceObject::new(
        DELIVERY_KIND,
        &delivery.id,
        attrs(json!({
            "message_id": delivery.message_id,
            "event_type": delivery.event_type,
            "status": delivery.status,
            "attempts": delivery.attempts,
            "next_attempt_at": (delivery.status == "pending").then(|| timestamp(delivery.next_attempt_at)),
            "response_status": delivery.response_status,
            "response_excerpt": delivery.response_excerpt,
            "latency_ms": delivery.latency_ms,
            "last_error": delivery.last_error,
            "last_attempt_at": delivery.last_attempt_at.map(timestamp),
            "delivered_at": delivery.delivered_at.map(timestamp),
            "payload": payload,
            "inserted_at": timestamp(delivery.inserted_at),
            "updated_at": timestamp(delivery.updated_at),
        })),
    )
    .to_one("webhook", KIND, Some(&delivery.webhook_id))
}

fn name(webhook: &Webhook) -> Option<&str> {
    Some(&webhook.name)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChanges {
    #[serde(default)]
    pub name: Patch<String>,
    #[serde(default)]
    pub url: Patch<String>,
    #[serde(default)]
    pub events: Patch<Vec<String>>,
    #[serde(default)]
    pub active: Patch<bool>,
    #[serde(default)]
    pub description: Patch<String>,
}

fn check_url(core: &Core, url: &str) -> Result<String> {
    if url.len() > URL_MAX {
        return Err(ServiceError::invalid("url", format!("url must be at most {URL_MAX} characters")));
    }
    let allow_private = core.config.allow_private_targets;
    crate::outbound::check_url(url, allow_private)
        .map(|url| url.to_string())
        .map_err(|why| ServiceError::invalid("url", format!("url {why}")))
}

/// Checks `events` against the catalogue, and that the caller may read
/// what they deliver: subscribing to `user.*` reads users, `*` everything.
fn check_events(ctx: &Ctx, events: Vec<String>) -> Result<Vec<String>> {
    let events = unique(events.into_iter().map(|e| e.trim().to_owned()));
    if events.is_empty() {
        return Err(ServiceError::invalid("events", "events must name at least one event type"));
    }
    if events.len() > EVENTS_MAX {
        return Err(ServiceError::invalid("events", format!("events may name at most {EVENTS_MAX} types")));
    }
    for event in &events {
        catalogue::check_pattern(event).map_err(|why| ServiceError::invalid("events", why))?;
    }
    for event in &events {
        for family in catalogue::families_of(event) {
            ctx.require(family, Verb::Read)?;
        }
    }
    Ok(events)
}

/// A sealed secret of the webhook (the current one, or the `previous`).
pub fn open_secret(core: &Core, webhook_id: &str, sealed: &str, previous: bool) -> Result<String> {
    let bytes = core
        .master_key
        .open(sealed, &secret_aad(webhook_id, previous))
        .map_err(|e| ServiceError::Internal(format!("opening a webhook secret: {e}")))?;
    String::from_utf8(bytes).map_err(|_| ServiceError::Internal("a webhook secret is not text".into()))
}

fn seal(core: &Core, webhook_id: &str, secret: &str, previous: bool) -> Result<String> {
    core.master_key
        .seal(secret.as_bytes(), &secret_aad(webhook_id, previous))
        .map_err(|e| ServiceError::Internal(format!("sealing a webhook secret: {e}")))
}

/// Creates a webhook; returns it with its signing secret (shown once).
pub async fn create(core: &Core, ctx: &Ctx, input: NewWebhook) -> Result<(Webhook, String)> {
    ctx.require(Family::Webhooks, Verb::Write)?;
    let now = now_micros();
    let id = new_id();
    let secret = portcullis_crypto::webhook::generate_secret();
    let webhook = Webhook {
        environment_id: ctx.environment_id().to_owned(),
        name: require_text("name", &input.name, NAME_MAX)?,
        url: check_url(core, &input.url)?,
        description: optional_multiline("description", input.description, DESCRIPTION_MAX)?,
        events: JsonText(check_events(ctx, input.events)?),
        active: input.active.unwrap_or(true),
        signing_secret: seal(core, &id, &secret, false)?,
        previous_secret: None,
        previous_secret_expires_at: None,
        disabled_reason: None,
        failing_since: None,
        inserted_at: now,
        updated_at: now,
        id,
    };
    let mut tx = core.db.write().await?;
    record::insert(tx.conn(), &webhook).await?;
    let event = event("webhook.created", &webhook, json!({"url": {"from": null, "to": webhook.url}}));
    finish(tx, ctx, event).await?;
    Ok((webhook, secret))
}

fn event(action: &'static str, webhook: &Webhook, changes: Value) -> Event {
    Event {
        action,
        targets: vec![target(KIND, &webhook.id, Some(&webhook.name))],
        changes,
        data: serde_json::to_value(present(webhook)).unwrap_or_default(),
    }
}

pub async fn update(core: &Core, ctx: &Ctx, id: &str, input: WebhookChanges) -> Result<Webhook> {
    ctx.require(Family::Webhooks, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let before: Webhook = fetch_in(&mut tx, ctx, KIND, id).await?;
    let mut webhook = before.clone();
    if let Some(name) = input.name.required("name")? {
        webhook.name = require_text("name", &name, NAME_MAX)?;
    }
    if let Some(url) = input.url.required("url")? {
        webhook.url = check_url(core, &url)?;
    }
    if let Some(events) = input.events.required("events")? {
        webhook.events = JsonText(check_events(ctx, events)?);
    }
    match input.description {
        Patch::Absent => {}
        Patch::Null => webhook.description = None,
        Patch::Value(text) => {
            webhook.description = optional_multiline("description", Some(text), DESCRIPTION_MAX)?;
        }
    }
    if let Some(active) = input.active.required("active")? {
        webhook.active = active;
    }
    let now = now_micros();
    if webhook.active && !before.active {
        // Enabled again: the reason it was off and its failure streak end.
        webhook.disabled_reason = None;
        webhook.failing_since = None;
    }
    webhook.updated_at = now;
    record::update(tx.conn(), ctx.environment_id(), &webhook).await?;
    if before.active && !webhook.active {
        deliveries::fail_pending(tx.conn(), &webhook.id, "the webhook was deactivated", now).await?;
    }
    let mut changes = Changes::default();
    changes.track("name", &before.name, &webhook.name);
    changes.track("url", &before.url, &webhook.url);
    changes.track("events", &before.events.0, &webhook.events.0);
    changes.track("active", &before.active, &webhook.active);
    changes.track("description", &before.description, &webhook.description);
    finish(tx, ctx, event("webhook.updated", &webhook, changes.into_value())).await?;
    Ok(webhook)
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Webhooks, Verb::Delete)?;
    // Its deliveries go with it (foreign-key cascade).
    super::delete::<Webhook>(core, ctx, "webhook.deleted", id, present, name, false).await
}

/// A new signing secret; the previous one keeps signing for
/// [`ROTATION_OVERLAP`]. Returns the webhook and the new secret (shown once).
pub async fn rotate_secret(core: &Core, ctx: &Ctx, id: &str) -> Result<(Webhook, String)> {
    ctx.require(Family::Webhooks, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let mut webhook: Webhook = fetch_in(&mut tx, ctx, KIND, id).await?;
    let current = open_secret(core, &webhook.id, &webhook.signing_secret, false)?;
    let secret = portcullis_crypto::webhook::generate_secret();
    let now = now_micros();
    webhook.previous_secret = Some(seal(core, &webhook.id, &current, true)?);
    webhook.previous_secret_expires_at = Some(now + micros(ROTATION_OVERLAP));
    webhook.signing_secret = seal(core, &webhook.id, &secret, false)?;
    webhook.updated_at = now;
    record::update(tx.conn(), ctx.environment_id(), &webhook).await?;
    let changes = json!({"previous_secret_expires_at": {"from": null, "to": timestamp(now + micros(ROTATION_OVERLAP))}});
    finish(tx, ctx, event("webhook.secret_rotated", &webhook, changes)).await?;
    Ok((webhook, secret))
}

/// Queues a `webhook.test` message to this webhook alone, due now.
pub async fn send_test(core: &Core, ctx: &Ctx, id: &str) -> Result<WebhookDelivery> {
    ctx.require(Family::Webhooks, Verb::Write)?;
    // Sending changes no configuration: bookkeeping, like a delivery.
    let mut tx = core.db.write_state().await?;
    let webhook: Webhook = fetch_in(&mut tx, ctx, KIND, id).await?;
    if !webhook.active {
        return Err(ServiceError::conflict(
            crate::Field::Attribute("active"),
            "the webhook is not active: enable it first",
        ));
    }
    let now = now_micros();
    let message_id = new_id();
    let actor = ctx.origin().actor;
    let payload = json!({
        "type": catalogue::TEST_EVENT.name,
        "timestamp": portcullis_store::listing_time(now),
        "data": present(&webhook),
        "actor": {"type": actor.kind, "id": actor.id, "name": actor.name},
    });
    let delivery = deliveries::pending(
        ctx.environment_id(),
        &webhook.id,
        &message_id,
        catalogue::TEST_EVENT.name,
        now,
        payload.to_string(),
    );
    tx.queue_delivery(&delivery).await?;
    tx.commit().await?;
    Ok(delivery)
}

/// Sends a delivered or failed message once more, now, with the same
/// `webhook-id` (receivers deduplicate on it).
pub async fn retry(core: &Core, ctx: &Ctx, webhook_id: &str, id: &str) -> Result<WebhookDelivery> {
    ctx.require(Family::Webhooks, Verb::Write)?;
    let mut tx = core.db.write_state().await?;
    let webhook: Webhook = fetch_in(&mut tx, ctx, KIND, webhook_id).await?;
    let delivery: WebhookDelivery = fetch_in(&mut tx, ctx, DELIVERY_KIND, id).await?;
    if delivery.webhook_id != webhook.id {
        return Err(ServiceError::NotFound(DELIVERY_KIND));
    }
    if !webhook.active {
        return Err(ServiceError::conflict(
            crate::Field::Attribute("status"),
            "the webhook is not active: enable it first",
        ));
    }
    if !deliveries::retry(tx.conn(), ctx.environment_id(), id, now_micros()).await? {
        return Err(ServiceError::conflict(
            crate::Field::Attribute("status"),
            "the delivery is still pending: it will be attempted",
        ));
    }
    let delivery: WebhookDelivery = fetch_in(&mut tx, ctx, DELIVERY_KIND, id).await?;
    tx.wake_deliveries();
    tx.commit().await?;
    Ok(delivery)
}

/// Disables a webhook on delivery's behalf (410 Gone, failing for days):
/// an audited change by the platform, which also ends its pending
/// deliveries. `false` if it was not active any more.
pub async fn disable(core: &Core, environment_id: &str, webhook_id: &str, reason: &str) -> Result<bool> {
    let mut tx: WriteTx = core.db.write().await?;
    let now = now_micros();
    let mut sql = Sql::new("UPDATE webhooks SET active = ");
    sql.bind(false).push(", disabled_reason = ").bind(reason.to_owned());
    sql.push(", updated_at = ").bind(now).push(" WHERE id = ").bind(webhook_id.to_owned());
    sql.push(" AND environment_id = ").bind(environment_id.to_owned()).push(" AND active");
    if sql.execute(tx.conn()).await? != 1 {
        return Ok(false);
    }
    deliveries::fail_pending(tx.conn(), webhook_id, &format!("the webhook was disabled: {reason}"), now)
        .await?;
    let Some(webhook) = record::find::<Webhook>(tx.conn(), environment_id, webhook_id).await? else {
        return Ok(false);
    };
    let origin = Origin {
        environment_id: environment_id.to_owned(),
        actor: Actor::system(),
        ip_address: None,
        user_agent: None,
    };
    let changes =
        json!({"active": {"from": true, "to": false}, "disabled_reason": {"from": null, "to": reason}});
    tx.record(&origin, &event("webhook.disabled", &webhook, changes)).await?;
    tx.commit().await?;
    tracing::warn!(webhook_id, environment_id, reason, "webhook disabled");
    Ok(true)
}
