use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, Permission};
use portcullis_store::{new_id, now_micros, record};
use serde::Deserialize;
use serde_json::json;

use super::{Changes, Patch, attrs, fetch_in, finish, optional_multiline, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "permission";

impl super::links::Linkable for Permission {
    const KIND: &'static str = KIND;

    fn label(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Guarded for Permission {
    const FAMILY: Family = Family::Permissions;
}
const NAME_TAKEN: &str = "a permission with this name already exists";

pub fn present(permission: &Permission) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &permission.id,
        attrs(json!({
            "name": permission.name,
            "description": permission.description,
            "inserted_at": timestamp(permission.inserted_at),
            "updated_at": timestamp(permission.updated_at),
        })),
    )
}

pub fn name(permission: &Permission) -> Option<&str> {
    Some(&permission.name)
}

/// `resource:action`, e.g. `posts:read` or `invoices:*`.
fn validate_name(name: &str) -> Result<String> {
    let part_ok = |part: &str, allow_star: bool| {
        !part.is_empty()
            && part.len() <= 100
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b) || (allow_star && b == b'*'))
    };
    match name.split_once(':') {
        Some((resource, action)) if part_ok(resource, false) && part_ok(action, true) => Ok(name.to_owned()),
        _ => Err(ServiceError::invalid(
            "name",
            "name must have the form resource:action (letters, digits, _ - . and * in the action)",
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPermission {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionChanges {
    #[serde(default)]
    pub name: Patch<String>,
    #[serde(default)]
    pub description: Patch<String>,
}

pub async fn create(core: &Core, ctx: &Ctx, input: NewPermission) -> Result<Permission> {
    ctx.require(Family::Permissions, Verb::Write)?;
    let now = now_micros();
    let permission = Permission {
        id: new_id(),
        environment_id: ctx.environment_id().to_owned(),
        name: validate_name(&input.name)?,
        description: optional_multiline("description", input.description, 1000)?,
        inserted_at: now,
        updated_at: now,
    };
    let mut tx = core.db.write().await?;
    record::insert(tx.conn(), &permission).await.map_err(conflict_on(
        &["permissions_name_key", "permissions.name"],
        Field::Attribute("name"),
        NAME_TAKEN,
    ))?;
    let event = Event {
        action: "permission.created",
        targets: vec![target(KIND, &permission.id, Some(&permission.name))],
        changes: json!({"description": {"from": null, "to": permission.description}}),
        data: serde_json::to_value(present(&permission)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(permission)
}

pub async fn update(core: &Core, ctx: &Ctx, id: &str, input: PermissionChanges) -> Result<Permission> {
    ctx.require(Family::Permissions, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let before: Permission = fetch_in(&mut tx, ctx, KIND, id).await?;
    let mut permission = before.clone();
    match input.name {
        Patch::Value(name) if name == before.name => {}
        Patch::Absent => {}
        _ => return Err(ServiceError::invalid("name", "name cannot be changed after creation")),
    }
    input.description.apply_to(&mut permission.description);
    permission.description = optional_multiline("description", permission.description, 1000)?;
    permission.updated_at = now_micros();
    record::update(tx.conn(), ctx.environment_id(), &permission).await?;
    let mut changes = Changes::default();
    changes.track("description", &before.description, &permission.description);
    let event = Event {
        action: "permission.updated",
        targets: vec![target(KIND, &permission.id, Some(&permission.name))],
        changes: changes.into_value(),
        data: serde_json::to_value(present(&permission)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(permission)
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Permissions, Verb::Delete)?;
    super::delete::<Permission>(core, ctx, "permission.deleted", id, present, name, true).await
}
