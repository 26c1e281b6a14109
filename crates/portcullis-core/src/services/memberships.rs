//! Memberships: a user in an organization, at most once, with the
//! customer's own `metadata`. A membership goes with its user or its
//! organization (the database cascades it in the deleting statement).

use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, User};
use portcullis_store::types::JsonText;
use portcullis_store::{CondOp, Condition, SqlValue, listing, new_id, now_micros, record};
use serde::Deserialize;
use serde_json::{Value, json};

use super::organizations::Organization;
use super::{Patch, attrs, fetch_in, finish, metadata_object, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "membership";

portcullis_store::record! {
    /// A user in an organization (`/api/memberships`), at most once.
    pub struct Membership in "memberships" {
        pub id: String,
        pub environment_id: String,
        pub user_id: String,
        pub organization_id: String,
        #[sqlx(try_from = "String")]
        pub metadata: JsonText<Value>,
        pub inserted_at: i64,
        pub updated_at: i64,
    }
}

impl super::links::Linkable for Membership {
    const KIND: &'static str = KIND;

    fn label(&self) -> Option<&str> {
        None
    }
}

impl Guarded for Membership {
    const FAMILY: Family = Family::Memberships;
}

pub fn present(membership: &Membership) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &membership.id,
        attrs(json!({
            "metadata": membership.metadata.0,
            "inserted_at": timestamp(membership.inserted_at),
            "updated_at": timestamp(membership.updated_at),
        })),
    )
    .to_one("user", "user", Some(&membership.user_id))
    .to_one("organization", "organization", Some(&membership.organization_id))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMembership {
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipChanges {
    #[serde(default)]
    pub metadata: Patch<Value>,
}

/// How many members `organization_id` has (shown on its single GET).
pub async fn count_in(core: &Core, ctx: &Ctx, organization_id: &str) -> Result<i64> {
    let mut conn = core.db.read().await?;
    let of = Condition {
        expr: "organization_id",
        op: CondOp::Eq,
        value: SqlValue::Text(Some(organization_id.to_owned())),
    };
    Ok(listing::count::<Membership>(&mut conn, ctx.environment_id(), &[of]).await?)
}

pub async fn create(
    core: &Core,
    ctx: &Ctx,
    user_id: &str,
    organization_id: &str,
    input: NewMembership,
) -> Result<Membership> {
    ctx.require(Family::Memberships, Verb::Write)?;
    let metadata = metadata_object(input.metadata.unwrap_or_else(|| json!({})))?;
    let env = ctx.environment_id();
    let mut tx = core.db.write().await?;
    let user: User = record::find(tx.conn(), env, user_id)
        .await?
        .ok_or_else(|| ServiceError::invalid_relationship("user", "user does not exist"))?;
    let organization: Organization = record::find(tx.conn(), env, organization_id)
        .await?
        .ok_or_else(|| ServiceError::invalid_relationship("organization", "organization does not exist"))?;
    let now = now_micros();
    let membership = Membership {
        id: new_id(),
        environment_id: env.to_owned(),
        user_id: user.id.clone(),
        organization_id: organization.id.clone(),
        metadata: JsonText(metadata),
        inserted_at: now,
        updated_at: now,
    };
    record::insert(tx.conn(), &membership).await.map_err(conflict_on(
        &["memberships_pair_key", "memberships.organization_id"],
        Field::Relationship("user"),
        "the user is already a member of this organization",
    ))?;
    let event = Event {
        action: "membership.created",
        targets: vec![
            target(KIND, &membership.id, None),
            target("user", &user.id, Some(&user.email)),
            target("organization", &organization.id, Some(&organization.name)),
        ],
        changes: json!({}),
        data: serde_json::to_value(present(&membership)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(membership)
}

pub async fn update(core: &Core, ctx: &Ctx, id: &str, input: MembershipChanges) -> Result<Membership> {
    ctx.require(Family::Memberships, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let before: Membership = fetch_in(&mut tx, ctx, KIND, id).await?;
    let mut membership = before.clone();
    if let Some(metadata) = input.metadata.required("metadata")? {
        membership.metadata = JsonText(metadata_object(metadata)?);
    }
    membership.updated_at = now_micros();
    record::update(tx.conn(), ctx.environment_id(), &membership).await?;
    let mut changes = super::Changes::default();
    changes.track("metadata", &before.metadata.0, &membership.metadata.0);
    let event = Event {
        action: "membership.updated",
        targets: vec![
            target(KIND, &membership.id, None),
            target("user", &membership.user_id, None),
            target("organization", &membership.organization_id, None),
        ],
        changes: changes.into_value(),
        data: serde_json::to_value(present(&membership)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(membership)
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Memberships, Verb::Delete)?;
    super::delete::<Membership>(core, ctx, "membership.deleted", id, present, |_| None, false).await
}
