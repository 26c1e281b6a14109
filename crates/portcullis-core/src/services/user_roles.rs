use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, Role, User, UserRole};
use portcullis_store::{new_id, now_micros, record};
use serde_json::json;

use super::{attrs, finish, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "user_role";

impl Guarded for UserRole {
    const FAMILY: Family = Family::Users;
}

pub fn present(link: &UserRole) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &link.id,
        attrs(json!({"inserted_at": timestamp(link.inserted_at), "updated_at": timestamp(link.updated_at)})),
    )
    .to_one("user", "user", Some(&link.user_id))
    .to_one("role", "role", Some(&link.role_id))
}

pub async fn create(core: &Core, ctx: &Ctx, user_id: &str, role_id: &str) -> Result<UserRole> {
    ctx.require(Family::Users, Verb::Write)?;
    let env = ctx.environment_id();
    let mut tx = core.db.write().await?;
    let user: User = record::find(tx.conn(), env, user_id)
        .await?
        .ok_or_else(|| ServiceError::invalid_relationship("user", "user does not exist"))?;
    let role: Role = record::find(tx.conn(), env, role_id)
        .await?
        .ok_or_else(|| ServiceError::invalid_relationship("role", "role does not exist"))?;
    let now = now_micros();
    let link = UserRole {
        id: new_id(),
        environment_id: env.to_owned(),
        user_id: user.id.clone(),
        role_id: role.id.clone(),
        inserted_at: now,
        updated_at: now,
    };
    record::insert(tx.conn(), &link).await.map_err(conflict_on(
        &["user_roles"],
        Field::Relationship("role"),
        "the user already has this role",
    ))?;
    tx.invalidate(env);
    let event = Event {
        action: "user_role.created",
        targets: vec![
            target("user", &user.id, Some(&user.email)),
            target("role", &role.id, Some(&role.name)),
        ],
        changes: json!({}),
        data: serde_json::to_value(present(&link)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(link)
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Users, Verb::Delete)?;
    super::delete::<UserRole>(core, ctx, KIND, id, present, |_| None, true).await
}
