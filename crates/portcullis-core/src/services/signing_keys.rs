use portcullis_crypto::{Algorithm, keys};
use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, SigningKey};
use portcullis_store::types::JsonText;
use portcullis_store::{WriteTx, new_id, now_micros, record, repo};
use serde::Deserialize;
use serde_json::json;

use super::{attrs, fetch_in, finish, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::error::Field;
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "signing_key";

impl Guarded for SigningKey {
    const FAMILY: Family = Family::SigningKeys;
}
pub const DEFAULT_RSA_BITS: u32 = 4096;

pub fn present(key: &SigningKey) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &key.id,
        attrs(json!({
            "kid": key.kid,
            "algorithm": key.algorithm,
            "key_size": key.key_size,
            "status": key.status,
            "primary": key.is_primary,
            "public_key": key.public_jwk.0,
            "deactivated_at": key.deactivated_at.map(timestamp),
            "inserted_at": timestamp(key.inserted_at),
            "updated_at": timestamp(key.updated_at),
        })),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSigningKey {
    /// Absent means the default; `null` is refused (the attribute is never null).
    #[serde(default, deserialize_with = "super::not_null")]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub key_size: Option<u32>,
}

/// A validated, generated key pair, not yet stored.
pub struct NewKeyPair(keys::GeneratedKey, Option<i64>);

/// Validates the request and generates the key pair (slow for RSA, so on the
/// blocking pool, and before any write transaction opens).
pub async fn generate(input: NewSigningKey) -> Result<NewKeyPair> {
    let name = input.algorithm.unwrap_or_else(|| "rs256".into());
    let algorithm = Algorithm::from_api_name(&name)
        .ok_or_else(|| ServiceError::invalid("algorithm", "algorithm must be rs256, es256 or eddsa"))?;
    let bits = match (algorithm, input.key_size) {
        (Algorithm::Rs256, None) => DEFAULT_RSA_BITS,
        (Algorithm::Rs256, Some(bits)) if keys::RSA_KEY_SIZES.contains(&bits) => bits,
        (Algorithm::Rs256, Some(_)) => {
            return Err(ServiceError::invalid("key_size", "key_size must be 2048, 3072 or 4096"));
        }
        (_, Some(_)) => return Err(ServiceError::invalid("key_size", "key_size applies to rs256 keys only")),
        (_, None) => 0,
    };
    let generated = tokio::task::spawn_blocking(move || keys::generate(algorithm, bits))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
    Ok(NewKeyPair(generated, (algorithm == Algorithm::Rs256).then_some(i64::from(bits))))
}

/// Inserts a generated key as the new primary, inside `tx`.
pub(crate) async fn insert_primary(
    core: &Core,
    tx: &mut WriteTx,
    environment_id: &str,
    pair: NewKeyPair,
) -> Result<SigningKey> {
    let NewKeyPair(generated, key_size) = pair;
    let now = now_micros();
    let id = new_id();
    let key = SigningKey {
        private_key: core.master_key.seal(&generated.pkcs8, &id)?,
        id,
        environment_id: environment_id.to_owned(),
        kid: generated.kid,
        algorithm: generated.algorithm.api_name().to_owned(),
        key_size,
        status: "active".into(),
        is_primary: true,
        public_jwk: JsonText(generated.public_jwk),
        deactivated_at: None,
        inserted_at: now,
        updated_at: now,
    };
    repo::environments::lock(tx.conn(), environment_id).await?;
    repo::signing_keys::clear_primary(tx.conn(), environment_id, now).await?;
    record::insert(tx.conn(), &key).await?;
    tx.invalidate(environment_id);
    Ok(key)
}

pub async fn create(core: &Core, ctx: &Ctx, input: NewSigningKey) -> Result<SigningKey> {
    ctx.require(Family::SigningKeys, Verb::Write)?;
    let pair = generate(input).await?;
    let mut tx = core.db.write().await?;
    let key = insert_primary(core, &mut tx, ctx.environment_id(), pair).await?;
    let event = Event {
        action: "signing_key.generated",
        targets: vec![target(KIND, &key.id, Some(&key.kid))],
        changes: json!({}),
        data: serde_json::to_value(present(&key)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(key)
}

/// Deactivates a key: it leaves the JWKS and its tokens stop verifying. If it
/// was primary, the most recently created other active key takes over.
pub async fn deactivate(core: &Core, ctx: &Ctx, id: &str) -> Result<SigningKey> {
    ctx.require(Family::SigningKeys, Verb::Write)?;
    let env = ctx.environment_id();
    let mut tx = core.db.write().await?;
    repo::environments::lock(tx.conn(), env).await?;
    let mut key: SigningKey = fetch_in(&mut tx, ctx, KIND, id).await?;
    if key.status != "active" {
        return Err(ServiceError::conflict(Field::Resource, "the key is already inactive"));
    }
    let successor = repo::signing_keys::active(tx.conn(), env).await?.into_iter().find(|k| k.id != key.id);
    let Some(mut successor) = successor else {
        return Err(ServiceError::conflict(
            Field::Resource,
            "cannot deactivate the last active signing key; generate another first",
        ));
    };
    let now = now_micros();
    let was_primary = key.is_primary;
    key.status = "inactive".into();
    key.is_primary = false;
    key.deactivated_at = Some(now);
    key.updated_at = now;
    record::update(tx.conn(), env, &key).await?;
    if was_primary {
        successor.is_primary = true;
        successor.updated_at = now;
        record::update(tx.conn(), env, &successor).await?;
    }
    tx.invalidate(env);
    let event = Event {
        action: "signing_key.deactivated",
        targets: vec![target(KIND, &key.id, Some(&key.kid))],
        changes: json!({"status": {"from": "active", "to": "inactive"}}),
        data: serde_json::to_value(present(&key)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(key)
}

pub async fn set_primary(core: &Core, ctx: &Ctx, id: &str) -> Result<SigningKey> {
    ctx.require(Family::SigningKeys, Verb::Write)?;
    let env = ctx.environment_id();
    let mut tx = core.db.write().await?;
    repo::environments::lock(tx.conn(), env).await?;
    let mut key: SigningKey = fetch_in(&mut tx, ctx, KIND, id).await?;
    if key.status != "active" {
        return Err(ServiceError::conflict(Field::Resource, "only an active key can be primary"));
    }
    let now = now_micros();
    repo::signing_keys::clear_primary(tx.conn(), env, now).await?;
    key.is_primary = true;
    key.updated_at = now;
    record::update(tx.conn(), env, &key).await?;
    tx.invalidate(env);
    let event = Event {
        action: "signing_key.primary_changed",
        targets: vec![target(KIND, &key.id, Some(&key.kid))],
        changes: json!({"primary": {"from": false, "to": true}}),
        data: serde_json::to_value(present(&key)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(key)
}

/// Deletes an inactive key for good (409 while it is active: deactivate it
/// first, so that tokens it signed stop verifying before the key is gone).
pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::SigningKeys, Verb::Delete)?;
    let env = ctx.environment_id();
    let mut tx = core.db.write().await?;
    repo::environments::lock(tx.conn(), env).await?;
    let key: SigningKey = fetch_in(&mut tx, ctx, KIND, id).await?;
    if key.status == "active" {
        return Err(ServiceError::conflict(
            Field::Resource,
            "only an inactive key can be deleted; deactivate it first",
        ));
    }
    super::delete_in(&mut tx, ctx, "signing_key.deleted", id, present, |key: &SigningKey| {
        Some(key.kid.as_str())
    })
    .await?;
    tx.invalidate(env);
    tx.commit().await?;
    Ok(())
}
