use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, Grant, ResourceServer, Scope};
use portcullis_store::{WriteTx, new_id, now_micros, record, repo};
use serde::Deserialize;
use serde_json::json;

use super::{Changes, Patch, attrs, fetch_in, finish, optional_multiline, target, timestamp, unique};
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "scope";

impl Guarded for Scope {
    const FAMILY: Family = Family::Scopes;
}
const NAME_TAKEN: &str = "this API already has a scope with this name";

pub fn present(scope: &Scope) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &scope.id,
        attrs(json!({
            "name": scope.name,
            "description": scope.description,
            "inserted_at": timestamp(scope.inserted_at),
            "updated_at": timestamp(scope.updated_at),
        })),
    )
    .to_one("resource_server", "resource_server", Some(&scope.resource_server_id))
}

pub fn name(scope: &Scope) -> Option<&str> {
    Some(&scope.name)
}

/// Scope tokens per RFC 6749 §3.3: printable ASCII except space, `"` and `\`.
fn validate_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ServiceError::invalid("name", "name must be a non-empty scope token without spaces"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewScope {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeChanges {
    #[serde(default)]
    pub name: Patch<String>,
    #[serde(default)]
    pub description: Patch<String>,
}

const TAKEN: &[&str] = &["scopes_name_key", "scopes.name"];

pub async fn create(core: &Core, ctx: &Ctx, resource_server_id: &str, input: NewScope) -> Result<Scope> {
    ctx.require(Family::Scopes, Verb::Write)?;
    let env = ctx.environment_id();
    let mut tx = core.db.write().await?;
    let server: ResourceServer =
        record::find(tx.conn(), env, resource_server_id).await?.ok_or_else(|| {
            ServiceError::invalid_relationship("resource_server", "resource server does not exist")
        })?;
    if server.system {
        return Err(ServiceError::Forbidden("the Management API's scopes are fixed".into()));
    }
    let now = now_micros();
    let scope = Scope {
        id: new_id(),
        environment_id: env.to_owned(),
        resource_server_id: server.id.clone(),
        name: validate_name(&input.name)?,
        description: optional_multiline("description", input.description, 1000)?,
        inserted_at: now,
        updated_at: now,
    };
    record::insert(tx.conn(), &scope).await.map_err(conflict_on(
        TAKEN,
        Field::Attribute("name"),
        NAME_TAKEN,
    ))?;
    tx.invalidate(env);
    let event = Event {
        action: "scope.created",
        targets: vec![
            target(KIND, &scope.id, Some(&scope.name)),
            target("resource_server", &server.id, Some(&server.name)),
        ],
        changes: json!({"name": {"from": null, "to": scope.name}}),
        data: serde_json::to_value(present(&scope)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(scope)
}

pub async fn update(core: &Core, ctx: &Ctx, id: &str, input: ScopeChanges) -> Result<Scope> {
    ctx.require(Family::Scopes, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let before: Scope = fetch_in(&mut tx, ctx, KIND, id).await?;
    let mut scope = before.clone();
    if let Some(name) = input.name.required("name")? {
        scope.name = validate_name(&name)?;
    }
    input.description.apply_to(&mut scope.description);
    scope.description = optional_multiline("description", scope.description, 1000)?;
    scope.updated_at = now_micros();
    record::update(tx.conn(), ctx.environment_id(), &scope).await.map_err(conflict_on(
        TAKEN,
        Field::Attribute("name"),
        NAME_TAKEN,
    ))?;
    if scope.name != before.name {
        follow_in_grants(&mut tx, &before, Some(&scope.name)).await?;
    }
    tx.invalidate(ctx.environment_id());
    let mut changes = Changes::default();
    changes.track("name", &before.name, &scope.name);
    changes.track("description", &before.description, &scope.description);
    let event = Event {
        action: "scope.updated",
        targets: vec![target(KIND, &scope.id, Some(&scope.name))],
        changes: changes.into_value(),
        data: serde_json::to_value(present(&scope)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(scope)
}

/// Deletes a scope; grants that allowed it no longer do.
pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Scopes, Verb::Delete)?;
    let mut tx = core.db.write().await?;
    let scope: Scope = super::delete_in(&mut tx, ctx, "scope.deleted", id, present, name).await?;
    follow_in_grants(&mut tx, &scope, None).await?;
    tx.invalidate(ctx.environment_id());
    tx.commit().await?;
    Ok(())
}

/// Keeps grants' `allowed_scopes` (scope names) true to a scope that is
/// renamed to `renamed`, or deleted when `None`.
async fn follow_in_grants(tx: &mut WriteTx, scope: &Scope, renamed: Option<&str>) -> Result<()> {
    let grants: Vec<Grant> = repo::all(tx.conn(), &scope.environment_id).await?;
    for mut grant in grants.into_iter().filter(|g| g.resource_server_id == scope.resource_server_id) {
        let Some(allowed) = grant.allowed_scopes.0.as_mut() else { continue };
        if !allowed.contains(&scope.name) {
            continue;
        }
        *allowed = unique(allowed.drain(..).filter_map(|allowed_name| {
            if allowed_name == scope.name { renamed.map(str::to_owned) } else { Some(allowed_name) }
        }));
        grant.updated_at = now_micros();
        record::update(tx.conn(), &scope.environment_id, &grant).await?;
    }
    Ok(())
}
