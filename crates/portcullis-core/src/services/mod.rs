//! One module per resource: validation, domain rules, the event each write
//! records, and how the resource is presented (JSON:API attributes, which the
//! event payloads reuse).

pub mod app_accounts;
pub mod apps;
pub mod audit_events;
pub mod clients;
pub mod custom_domains;
pub mod environments;
pub mod grants;
pub mod invitations;
pub mod links;
pub mod manual_tasks;
pub mod membership_roles;
pub mod memberships;
pub mod organizations;
pub mod permissions;
pub mod provisioning_plans;
pub mod resource_servers;
pub mod role_permissions;
pub mod roles;
pub mod scopes;
pub mod sessions;
pub mod signing_keys;
pub mod user_roles;
pub mod users;
pub mod webhooks;

use portcullis_jsonapi::ResourceObject;
use portcullis_store::listing::{self, Slice};
use portcullis_store::model::{Event, Target};
use portcullis_store::{Listing, Record, WriteTx, record};
use serde_json::{Map, Value, json};

use crate::authz::{Guarded, Verb};
use crate::{Core, Ctx, Result, ServiceError};

/// A stored timestamp as the API shows it.
pub fn timestamp(micros: i64) -> Value {
    Value::String(portcullis_store::listing_time(micros))
}

pub(crate) fn attrs(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Records `{"field": {"from", "to"}}` when a tracked field changes.
#[derive(Default)]
pub(crate) struct Changes(Map<String, Value>);

impl Changes {
    pub fn track<T: serde::Serialize + PartialEq>(&mut self, field: &str, from: &T, to: &T) {
        if from != to {
            self.0.insert(field.to_owned(), json!({"from": from, "to": to}));
        }
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

pub(crate) fn target(kind: &str, id: &str, name: Option<&str>) -> Target {
    Target { kind: kind.to_owned(), id: id.to_owned(), name: name.map(str::to_owned) }
}

/// Records the event, then commits.
pub(crate) async fn finish(mut tx: WriteTx, ctx: &Ctx, event: Event) -> Result<()> {
    tx.record(&ctx.origin(), &event).await?;
    tx.commit().await?;
    Ok(())
}

/// The row of `R` whose `column` holds the SHA-256 of `secret`: codes,
/// refresh and opaque access tokens, session cookies and emailed links are
/// all stored hashed and looked up this way.
pub(crate) async fn find_by_secret<R: Record>(
    conn: &mut sqlx::AnyConnection,
    environment_id: &str,
    column: &str,
    secret: &str,
) -> std::result::Result<Option<R>, portcullis_store::StoreError> {
    record::find_by(conn, environment_id, column, &portcullis_crypto::secret::hash_secret(secret)).await
}

/// One row of this environment, or `NotFound(kind)`; needs its family's read.
pub async fn fetch<R: Record + Guarded>(core: &Core, ctx: &Ctx, kind: &'static str, id: &str) -> Result<R> {
    ctx.require(R::FAMILY, Verb::Read)?;
    find(core, ctx, kind, id).await
}

/// One row of this environment, or `NotFound(kind)`, for an operation that
/// checked what it needs itself.
pub(crate) async fn find<R: Record>(core: &Core, ctx: &Ctx, kind: &'static str, id: &str) -> Result<R> {
    let mut conn = core.db.read().await?;
    record::find::<R>(&mut conn, ctx.environment_id(), id).await?.ok_or(ServiceError::NotFound(kind))
}

pub(crate) async fn fetch_in<R: Record>(
    tx: &mut WriteTx,
    ctx: &Ctx,
    kind: &'static str,
    id: &str,
) -> Result<R> {
    record::find::<R>(tx.conn(), ctx.environment_id(), id).await?.ok_or(ServiceError::NotFound(kind))
}

/// A page of this environment's rows.
pub async fn list<R: Record + Guarded>(core: &Core, ctx: &Ctx, query: &Listing) -> Result<Slice<R>> {
    ctx.require(R::FAMILY, Verb::Read)?;
    let mut conn = core.db.read().await?;
    Ok(listing::list::<R>(&mut conn, ctx.environment_id(), query).await?)
}

pub async fn count<R: Record + Guarded>(core: &Core, ctx: &Ctx, query: &Listing) -> Result<i64> {
    ctx.require(R::FAMILY, Verb::Read)?;
    let mut conn = core.db.read().await?;
    Ok(listing::count::<R>(&mut conn, ctx.environment_id(), &query.conditions).await?)
}

/// Rows of this environment by id, for `include`: included resources are
/// read like their own routes, or `users:read` alone would read roles.
pub async fn fetch_many<R: Record + Guarded>(core: &Core, ctx: &Ctx, ids: &[String]) -> Result<Vec<R>> {
    ctx.require(R::FAMILY, Verb::Read)?;
    let mut conn = core.db.read().await?;
    Ok(record::find_in::<R>(&mut conn, ctx.environment_id(), "id", ids).await?)
}

/// Deletes a row and records `action` (`{kind}.deleted`; a missing row is
/// `NotFound(kind)`) with its last state.
pub(crate) async fn delete<R: Record>(
    core: &Core,
    ctx: &Ctx,
    action: &'static str,
    id: &str,
    present: fn(&R) -> ResourceObject,
    name: fn(&R) -> Option<&str>,
    invalidates_cache: bool,
) -> Result<()> {
    let mut tx = core.db.write().await?;
    delete_in(&mut tx, ctx, action, id, present, name).await?;
    if invalidates_cache {
        tx.invalidate(ctx.environment_id());
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes a row inside `tx` and records `{kind}.deleted`; returns the row,
/// for deletes that have more to do before they commit.
pub(crate) async fn delete_in<R: Record>(
    tx: &mut WriteTx,
    ctx: &Ctx,
    action: &'static str,
    id: &str,
    present: fn(&R) -> ResourceObject,
    name: fn(&R) -> Option<&str>,
) -> Result<R> {
    let kind = action.strip_suffix(".deleted").expect("a deletion's event is named `{kind}.deleted`");
    let row: R = fetch_in(tx, ctx, kind, id).await?;
    record::delete::<R>(tx.conn(), ctx.environment_id(), id).await?;
    let event = Event {
        action,
        targets: vec![target(kind, id, name(&row))],
        changes: Value::Object(Map::new()),
        data: serde_json::to_value(present(&row)).unwrap_or(Value::Null),
    };
    tx.record(&ctx.origin(), &event).await?;
    Ok(row)
}

/// `items` without repeats, in first-seen order.
pub fn unique<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// A `metadata` attribute: a JSON object of the customer's own.
pub(crate) fn metadata_object(metadata: Value) -> Result<Value> {
    if metadata.is_object() {
        Ok(metadata)
    } else {
        Err(ServiceError::invalid("metadata", "metadata must be an object"))
    }
}

/// Validates a required, trimmed, bounded name.
/// A required single-line text: trimmed, not blank, at most `max`
/// characters, and free of control characters (a CR/LF in a name would
/// reach mail headers and logs; a NUL breaks other systems' parsers).
pub(crate) fn require_text(field: &'static str, value: &str, max: usize) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ServiceError::invalid(field, format!("{field} must not be blank")));
    }
    check_text(field, trimmed, max, false)?;
    Ok(trimmed.to_owned())
}

/// An optional single-line text: at most `max` characters, no control characters.
pub(crate) fn optional_text(
    field: &'static str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>> {
    if let Some(v) = &value {
        check_text(field, v, max, false)?;
    }
    Ok(value)
}

/// An optional free text (a description): line breaks and tabs allowed,
/// other control characters not.
pub(crate) fn optional_multiline(
    field: &'static str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>> {
    if let Some(v) = &value {
        check_text(field, v, max, true)?;
    }
    Ok(value)
}

fn check_text(field: &'static str, value: &str, max: usize, multiline: bool) -> Result<()> {
    if value.chars().count() > max {
        return Err(ServiceError::invalid(field, format!("{field} must be at most {max} characters")));
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        let what = if multiline {
            "control characters other than line breaks and tabs"
        } else {
            "control characters or line breaks"
        };
        return Err(ServiceError::invalid(field, format!("{field} must not contain {what}")));
    }
    Ok(())
}

/// For `#[serde(default, deserialize_with = "not_null")]` on an optional
/// attribute: absent gives `None`, a value `Some`, and `null` is an error.
pub fn not_null<'de, D, T>(deserializer: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A JSON:API PATCH member: absent, explicitly `null`, or a value.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Patch<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            Some(v) => Patch::Value(v),
            None => Patch::Null,
        })
    }
}

impl<T> Patch<T> {
    /// Applies to an optional field.
    pub fn apply_to(self, current: &mut Option<T>) {
        match self {
            Patch::Absent => {}
            Patch::Null => *current = None,
            Patch::Value(v) => *current = Some(v),
        }
    }

    /// For a non-nullable field: `null` is an error.
    pub fn required(self, field: &'static str) -> Result<Option<T>> {
        match self {
            Patch::Absent => Ok(None),
            Patch::Null => Err(ServiceError::invalid(field, format!("{field} cannot be null"))),
            Patch::Value(v) => Ok(Some(v)),
        }
    }
}

/// (owner id, related id) pairs through a join table, e.g. role ids per user.
pub async fn linked_ids(
    core: &Core,
    table: &'static str,
    owner: &'static str,
    related: &'static str,
    owner_ids: &[String],
) -> Result<Vec<(String, String)>> {
    let mut conn = core.db.read().await?;
    Ok(portcullis_store::repo::rbac::linked_ids(&mut conn, table, owner, related, owner_ids).await?)
}
