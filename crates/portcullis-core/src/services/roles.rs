use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, Role};
use portcullis_store::{new_id, now_micros, record, repo};
use serde::Deserialize;
use serde_json::json;

use super::{Changes, Patch, attrs, fetch_in, finish, optional_multiline, require_text, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result};

pub const KIND: &str = "role";

impl super::links::Linkable for Role {
    const KIND: &'static str = KIND;

    fn label(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Guarded for Role {
    const FAMILY: Family = Family::Roles;
}
const NAME_TAKEN: &str = "a role with this name already exists";

pub fn present(role: &Role) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &role.id,
        attrs(json!({
            "name": role.name,
            "description": role.description,
            "inserted_at": timestamp(role.inserted_at),
            "updated_at": timestamp(role.updated_at),
        })),
    )
}

pub fn name(role: &Role) -> Option<&str> {
    Some(&role.name)
}

/// `user_count` and `permission_count`, shown on `GET /api/roles/:id`.
pub async fn counts(core: &Core, role_id: &str) -> Result<(i64, i64)> {
    let mut conn = core.db.read().await?;
    Ok(repo::rbac::role_counts(&mut conn, role_id).await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleChanges {
    #[serde(default)]
    pub name: Patch<String>,
    #[serde(default)]
    pub description: Patch<String>,
}

pub async fn create(core: &Core, ctx: &Ctx, input: NewRole) -> Result<Role> {
    ctx.require(Family::Roles, Verb::Write)?;
    let now = now_micros();
    let role = Role {
        id: new_id(),
        environment_id: ctx.environment_id().to_owned(),
        name: require_text("name", &input.name, 100)?,
        description: optional_multiline("description", input.description, 1000)?,
        inserted_at: now,
        updated_at: now,
    };
    let mut tx = core.db.write().await?;
    record::insert(tx.conn(), &role).await.map_err(conflict_on(
        &["roles_name_key", "roles.name"],
        Field::Attribute("name"),
        NAME_TAKEN,
    ))?;
    tx.invalidate(ctx.environment_id());
    let event = Event {
        action: "role.created",
        targets: vec![target(KIND, &role.id, Some(&role.name))],
        changes: json!({"name": {"from": null, "to": role.name}, "description": {"from": null, "to": role.description}}),
        data: serde_json::to_value(present(&role)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(role)
}

pub async fn update(core: &Core, ctx: &Ctx, id: &str, input: RoleChanges) -> Result<Role> {
    ctx.require(Family::Roles, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let before: Role = fetch_in(&mut tx, ctx, KIND, id).await?;
    let mut role = before.clone();
    if let Some(name) = input.name.required("name")? {
        role.name = require_text("name", &name, 100)?;
    }
    input.description.apply_to(&mut role.description);
    role.description = optional_multiline("description", role.description, 1000)?;
    role.updated_at = now_micros();
    record::update(tx.conn(), ctx.environment_id(), &role).await.map_err(conflict_on(
        &["roles_name_key", "roles.name"],
        Field::Attribute("name"),
        NAME_TAKEN,
    ))?;
    tx.invalidate(ctx.environment_id());
    let mut changes = Changes::default();
    changes.track("name", &before.name, &role.name);
    changes.track("description", &before.description, &role.description);
    let event = Event {
        action: "role.updated",
        targets: vec![target(KIND, &role.id, Some(&role.name))],
        changes: changes.into_value(),
        data: serde_json::to_value(present(&role)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(role)
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Roles, Verb::Delete)?;
    super::delete::<Role>(core, ctx, "role.deleted", id, present, name, true).await
}
