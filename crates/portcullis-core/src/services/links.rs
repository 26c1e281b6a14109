//! Join resources, one implementation for all: a row that links two
//! resources (a user and a role, a role and a permission, a membership and
//! a role), at most once per pair, created and deleted but never changed.
//! A join family implements [`Link`] for its row type; `create`, `delete`
//! and `present` here do the rest (checks, conflicts, audit, caches).

use portcullis_jsonapi::ResourceObject;
use portcullis_store::{Record, new_id, now_micros, record};
use serde_json::json;

use super::{attrs, finish, target, timestamp};
use crate::authz::{Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result, ServiceError};

/// A resource a link can point at.
pub trait Linkable: Record {
    /// Its JSON:API type.
    const KIND: &'static str;

    /// What the audit trail names it by.
    fn label(&self) -> Option<&str>;
}

/// A join row between a [`Link::From`] and a [`Link::To`].
pub trait Link: Record + Guarded + Sized {
    /// Its JSON:API type, e.g. `user_role`.
    const KIND: &'static str;
    /// The relationship names of its two ends, e.g. `user` and `role`.
    const FROM: &'static str;
    const TO: &'static str;
    /// The unique index on the pair, as each backend reports it.
    const UNIQUE: &'static [&'static str];
    /// The conflict's message, e.g. "the user already has this role".
    const TAKEN: &'static str;
    const CREATED: &'static str;
    /// `{KIND}.deleted`.
    const DELETED: &'static str;
    /// Whether the per-environment caches hold what the link changes.
    const INVALIDATES: bool;
    type From: Linkable;
    type To: Linkable;

    fn new(id: String, environment_id: String, from: &str, to: &str, now: i64) -> Self;
    fn ends(&self) -> (&str, &str);
    fn inserted_at(&self) -> i64;
    fn updated_at(&self) -> i64;
}

pub fn present<L: Link>(link: &L) -> ResourceObject {
    let (from, to) = link.ends();
    ResourceObject::new(
        L::KIND,
        link.id(),
        attrs(
            json!({"inserted_at": timestamp(link.inserted_at()), "updated_at": timestamp(link.updated_at())}),
        ),
    )
    .to_one(L::FROM, <L::From as Linkable>::KIND, Some(from))
    .to_one(L::TO, <L::To as Linkable>::KIND, Some(to))
}

/// Links `from_id` to `to_id`: both must exist in this environment (422 on
/// the relationship otherwise), and the pair must be new (409).
pub async fn create<L: Link>(core: &Core, ctx: &Ctx, from_id: &str, to_id: &str) -> Result<L> {
    ctx.require(L::FAMILY, Verb::Write)?;
    let env = ctx.environment_id();
    let mut tx = core.db.write().await?;
    let missing = |end: &'static str, kind: &str| {
        ServiceError::invalid_relationship(end, format!("{kind} does not exist"))
    };
    let from: L::From = record::find(tx.conn(), env, from_id)
        .await?
        .ok_or_else(|| missing(L::FROM, <L::From as Linkable>::KIND))?;
    let to: L::To = record::find(tx.conn(), env, to_id)
        .await?
        .ok_or_else(|| missing(L::TO, <L::To as Linkable>::KIND))?;
    let link = L::new(new_id(), env.to_owned(), from.id(), to.id(), now_micros());
    record::insert(tx.conn(), &link).await.map_err(conflict_on(
        L::UNIQUE,
        Field::Relationship(L::TO),
        L::TAKEN,
    ))?;
    if L::INVALIDATES {
        tx.invalidate(env);
    }
    let event = portcullis_store::model::Event {
        action: L::CREATED,
        targets: vec![
            target(<L::From as Linkable>::KIND, from.id(), from.label()),
            target(<L::To as Linkable>::KIND, to.id(), to.label()),
        ],
        changes: json!({}),
        data: serde_json::to_value(present(&link)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(link)
}

pub async fn delete<L: Link>(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(L::FAMILY, Verb::Delete)?;
    super::delete::<L>(core, ctx, L::DELETED, id, present::<L>, |_| None, L::INVALIDATES).await
}
