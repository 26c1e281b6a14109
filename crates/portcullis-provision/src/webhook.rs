//! Inbound app webhooks: Stripe's `customer.*` events keep the identity
//! graph current between reconciliations.
//!
//! The hub checks the `Stripe-Signature`, drops redeliveries by event id, and
//! then reads the customer as it is *now* instead of trusting the event's
//! copy. Stripe delivers at least once and in no particular order, so
//! applying payloads would let a late `customer.updated` overwrite a newer
//! state (or undo a deletion); reading the current object makes every
//! delivery order converge on the same graph. A failed read answers 503 and
//! records nothing, so Stripe redelivers the event later.
//!
//! The graph is refreshed, not acted on: an out-of-band change is drift that
//! reconciliation turns into a plan for a person to approve.

use std::time::Duration;

use portcullis_core::ServiceError;
use portcullis_core::services::apps::{self, AppKind};
use portcullis_store::model::{App, AppAccount, Event, Target, User};
use portcullis_store::types::JsonText;
use portcullis_store::{StoreError, WriteTx, new_id, now_micros, record, repo};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::connector::stripe::verify_signature;
use crate::connector::{Connector, ConnectorError, RemoteAccount};
use crate::plan;
use crate::worker::Worker;

/// How far a signature's timestamp may be from now (Stripe's SDKs use 300 s).
pub const TOLERANCE_SECS: i64 = 300;
/// Stripe retries a delivery for up to three days; ids are kept for longer.
const REMEMBER: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Signature(&'static str),
    #[error("{0}")]
    Payload(&'static str),
    #[error("the app could not be read, so the event was not applied; deliver it again: {0}")]
    AppUnavailable(ConnectorError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for WebhookError {
    fn from(error: StoreError) -> Self {
        WebhookError::Service(error.into())
    }
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The graph now holds the account as the app has it.
    Applied,
    /// The event was processed before.
    Duplicate,
    /// Not an event about an account.
    Ignored,
}

#[derive(Debug, Serialize)]
pub struct Receipt {
    pub event_id: String,
    pub outcome: Outcome,
}

/// Verifies and applies one delivery to app `app_id` of the environment.
pub async fn receive(
    worker: &Worker,
    environment_id: &str,
    app_id: &str,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Receipt, WebhookError> {
    let core = &worker.core;
    let app: App = {
        let mut conn = core.db.read().await?;
        record::find(&mut conn, environment_id, app_id).await?
    }
    .ok_or(WebhookError::NotFound("no such app"))?;
    if AppKind::parse(&app.kind).ok() != Some(AppKind::Stripe) {
        return Err(WebhookError::NotFound("this app takes no webhooks"));
    }
    let secret = apps::credentials(core, &app)?.webhook_secret.ok_or(WebhookError::NotFound(
        "this app has no webhook secret; set credentials.webhook_secret to the endpoint's whsec_… secret",
    ))?;
    let signature = signature.ok_or(WebhookError::Signature("the Stripe-Signature header is missing"))?;
    verify_signature(&secret, signature, body, now_micros() / 1_000_000, TOLERANCE_SECS)
        .map_err(WebhookError::Signature)?;

    let event: Value =
        serde_json::from_slice(body).map_err(|_| WebhookError::Payload("the body is not a JSON event"))?;
    let event_id = event
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or(WebhookError::Payload("the event has no id"))?
        .to_owned();
    let event_type =
        event.get("type").and_then(Value::as_str).ok_or(WebhookError::Payload("the event has no type"))?;
    let object = event.pointer("/data/object").unwrap_or(&Value::Null);
    // `customer.subscription.*` and the like are about other objects.
    if !event_type.starts_with("customer.")
        || object.get("object").and_then(Value::as_str) != Some("customer")
    {
        return Ok(Receipt { event_id, outcome: Outcome::Ignored });
    }
    let customer_id = object
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or(WebhookError::Payload("the event's customer has no id"))?;
    {
        let mut conn = core.db.read().await?;
        if repo::provisioning::webhook_seen(&mut conn, environment_id, app_id, &event_id).await? {
            return Ok(Receipt { event_id, outcome: Outcome::Duplicate });
        }
    }
    let Connector::Stripe(stripe) = worker.connector(&app).map_err(WebhookError::AppUnavailable)? else {
        return Err(WebhookError::NotFound("this app takes no webhooks"));
    };
    let current = stripe.account(customer_id).await.map_err(WebhookError::AppUnavailable)?;

    let now = now_micros();
    let mut tx = core.db.write_state().await?;
    if !repo::provisioning::record_webhook(tx.conn(), environment_id, app_id, &event_id, event_type, now)
        .await?
    {
        // A concurrent redelivery got here first; dropping `tx` rolls back.
        return Ok(Receipt { event_id, outcome: Outcome::Duplicate });
    }
    observe(&mut tx, &app, customer_id, current, &event_id, now).await?;
    let forget_before = now - REMEMBER.as_micros() as i64;
    repo::provisioning::prune_webhooks(tx.conn(), environment_id, app_id, forget_before).await?;
    tx.commit().await?;
    Ok(Receipt { event_id, outcome: Outcome::Applied })
}

/// Writes what the app reports about one account into the graph. A change
/// to an account the graph knew is audited as `app_account.updated`.
async fn observe(
    tx: &mut WriteTx,
    app: &App,
    external_id: &str,
    current: Option<RemoteAccount>,
    event_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let env = app.environment_id.as_str();
    let known: Option<AppAccount> =
        record::find_in::<AppAccount>(tx.conn(), env, "external_id", &[external_id.to_owned()])
            .await?
            .into_iter()
            .find(|a| a.app_id == app.id);
    let Some(mut account) = known else {
        // An account the graph does not know is linked at once only when it
        // names a user of this environment (the hub's own create, heard
        // before the worker recorded it). Anything else waits for
        // reconciliation, which correlates with the whole roster in view.
        let Some(remote) = current else { return Ok(()) };
        let Some(user_id) = remote.claimed_user_id.clone() else { return Ok(()) };
        if record::find::<User>(tx.conn(), env, &user_id).await?.is_none() {
            return Ok(());
        }
        let account = AppAccount {
            id: new_id(),
            environment_id: env.to_owned(),
            app_id: app.id.clone(),
            user_id: Some(user_id),
            external_id: remote.external_id,
            login: remote.login,
            status: remote.status.as_str().to_owned(),
            attributes: JsonText(Value::Object(remote.attributes)),
            last_seen_at: Some(now),
            inserted_at: now,
            updated_at: now,
        };
        return record::insert(tx.conn(), &account).await;
    };
    let before = account.clone();
    match current {
        Some(remote) => {
            if account.user_id.is_none()
                && let Some(user_id) = &remote.claimed_user_id
                && record::find::<User>(tx.conn(), env, user_id).await?.is_some()
            {
                account.user_id = Some(user_id.clone());
            }
            account.login = remote.login;
            account.status = remote.status.as_str().to_owned();
            account.attributes = JsonText(Value::Object(remote.attributes));
            account.last_seen_at = Some(now);
        }
        None => account.status = "deleted".to_owned(),
    }
    let mut changes = Map::new();
    if before.status != account.status {
        changes.insert("status".into(), json!({"from": before.status, "to": account.status}));
    }
    if before.login != account.login {
        changes.insert("login".into(), json!({"from": before.login, "to": account.login}));
    }
    if before.attributes.0 != account.attributes.0 {
        changes.insert("attributes".into(), json!({"from": before.attributes.0, "to": account.attributes.0}));
    }
    if before.user_id != account.user_id {
        changes.insert("user_id".into(), json!({"from": before.user_id, "to": account.user_id}));
    }
    account.updated_at = now;
    record::update(tx.conn(), env, &account).await?;
    if changes.is_empty() {
        return Ok(());
    }
    let mut targets =
        vec![Target { kind: "app_account".into(), id: account.id.clone(), name: account.login.clone() }];
    targets.push(Target { kind: "app".into(), id: app.id.clone(), name: Some(app.name.clone()) });
    if let Some(user) = &account.user_id {
        targets.push(Target { kind: "user".into(), id: user.clone(), name: None });
    }
    let mut data =
        serde_json::to_value(portcullis_core::services::app_accounts::present(&account)).unwrap_or_default();
    if let Value::Object(map) = &mut data {
        map.insert("source".into(), json!({"webhook_event_id": event_id}));
    }
    let event = Event { action: "app_account.updated", targets, changes: Value::Object(changes), data };
    tx.record(&plan::origin(env), &event).await
}
