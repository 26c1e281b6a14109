use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, Permission, Role, RolePermission};
use portcullis_store::{new_id, now_micros, record};
use serde_json::json;

use super::{attrs, finish, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "role_permission";

impl Guarded for RolePermission {
    const FAMILY: Family = Family::Roles;
}

pub fn present(link: &RolePermission) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &link.id,
        attrs(json!({"inserted_at": timestamp(link.inserted_at), "updated_at": timestamp(link.updated_at)})),
    )
    .to_one("role", "role", Some(&link.role_id))
    .to_one("permission", "permission", Some(&link.permission_id))
}

pub async fn create(core: &Core, ctx: &Ctx, role_id: &str, permission_id: &str) -> Result<RolePermission> {
    ctx.require(Family::Roles, Verb::Write)?;
    let env = ctx.environment_id();
    let mut tx = core.db.write().await?;
    let role: Role = record::find(tx.conn(), env, role_id)
        .await?
        .ok_or_else(|| ServiceError::invalid_relationship("role", "role does not exist"))?;
    let permission: Permission = record::find(tx.conn(), env, permission_id)
        .await?
        .ok_or_else(|| ServiceError::invalid_relationship("permission", "permission does not exist"))?;
    let now = now_micros();
    let link = RolePermission {
        id: new_id(),
        environment_id: env.to_owned(),
        role_id: role.id.clone(),
        permission_id: permission.id.clone(),
        inserted_at: now,
        updated_at: now,
    };
    record::insert(tx.conn(), &link).await.map_err(conflict_on(
        &["role_permissions"],
        Field::Relationship("permission"),
        "the role already has this permission",
    ))?;
    tx.invalidate(env);
    let event = Event {
        action: "role_permission.created",
        targets: vec![
            target("role", &role.id, Some(&role.name)),
            target("permission", &permission.id, Some(&permission.name)),
        ],
        changes: json!({}),
        data: serde_json::to_value(present(&link)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(link)
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Roles, Verb::Delete)?;
    super::delete::<RolePermission>(core, ctx, KIND, id, present, |_| None, true).await
}
