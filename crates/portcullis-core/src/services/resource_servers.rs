use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, ResourceServer};
use portcullis_store::{new_id, now_micros, record};
use serde::Deserialize;
use serde_json::json;

use super::{Changes, Patch, attrs, fetch_in, finish, require_text, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "resource_server";

impl Guarded for ResourceServer {
    const FAMILY: Family = Family::ResourceServers;
}
pub const TTL_MIN: i64 = 60;
pub const TTL_MAX: i64 = 86_400;
pub const TTL_DEFAULT: i64 = 3_600;

/// Presents a resource server; the system API shows its live identifier.
pub fn present_with(server: &ResourceServer, management_api: &str) -> ResourceObject {
    let identifier = if server.system { management_api } else { &server.identifier };
    ResourceObject::new(
        KIND,
        &server.id,
        attrs(json!({
            "name": server.name,
            "identifier": identifier,
            "token_ttl": server.token_ttl,
            "allow_offline_access": server.allow_offline_access,
            "enforce_rbac": server.enforce_rbac,
            "system": server.system,
            "inserted_at": timestamp(server.inserted_at),
            "updated_at": timestamp(server.updated_at),
        })),
    )
}

pub fn present(server: &ResourceServer) -> ResourceObject {
    present_with(server, &server.identifier)
}

pub fn name(server: &ResourceServer) -> Option<&str> {
    Some(&server.name)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewResourceServer {
    pub name: String,
    pub identifier: String,
    #[serde(default)]
    pub token_ttl: Option<i64>,
    #[serde(default)]
    pub allow_offline_access: bool,
    #[serde(default)]
    pub enforce_rbac: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceServerChanges {
    #[serde(default)]
    pub name: Patch<String>,
    #[serde(default)]
    pub identifier: Patch<String>,
    #[serde(default)]
    pub token_ttl: Patch<i64>,
    #[serde(default)]
    pub allow_offline_access: Patch<bool>,
    #[serde(default)]
    pub enforce_rbac: Patch<bool>,
}

fn validate_ttl(ttl: i64) -> Result<i64> {
    if (TTL_MIN..=TTL_MAX).contains(&ttl) {
        Ok(ttl)
    } else {
        Err(ServiceError::invalid(
            "token_ttl",
            format!("token_ttl must be between {TTL_MIN} and {TTL_MAX} seconds"),
        ))
    }
}

/// RFC 8707: an absolute URI without a fragment.
fn validate_identifier(identifier: &str) -> Result<String> {
    match url::Url::parse(identifier) {
        Ok(u) if u.fragment().is_none() && identifier.len() <= 500 => Ok(identifier.to_owned()),
        _ => {
            Err(ServiceError::invalid("identifier", "identifier must be an absolute URI without a fragment"))
        }
    }
}

const IDENTIFIER_TAKEN: &str = "an API with this identifier already exists";
const TAKEN_MARKERS: &[&str] = &["resource_servers_identifier_key", "resource_servers.identifier"];

pub async fn create(core: &Core, ctx: &Ctx, input: NewResourceServer) -> Result<ResourceServer> {
    ctx.require(Family::ResourceServers, Verb::Write)?;
    let identifier = validate_identifier(&input.identifier)?;
    if identifier == ctx.env.management_api {
        return Err(ServiceError::conflict(Field::Attribute("identifier"), IDENTIFIER_TAKEN));
    }
    let now = now_micros();
    let server = ResourceServer {
        id: new_id(),
        environment_id: ctx.environment_id().to_owned(),
        name: require_text("name", &input.name, 200)?,
        identifier,
        token_ttl: validate_ttl(input.token_ttl.unwrap_or(TTL_DEFAULT))?,
        allow_offline_access: input.allow_offline_access,
        system: false,
        inserted_at: now,
        updated_at: now,
        enforce_rbac: input.enforce_rbac,
    };
    let mut tx = core.db.write().await?;
    record::insert(tx.conn(), &server).await.map_err(conflict_on(
        TAKEN_MARKERS,
        Field::Attribute("identifier"),
        IDENTIFIER_TAKEN,
    ))?;
    tx.invalidate(ctx.environment_id());
    let event = Event {
        action: "resource_server.created",
        targets: vec![target(KIND, &server.id, Some(&server.name))],
        changes: json!({
            "identifier": {"from": null, "to": server.identifier},
            "enforce_rbac": {"from": null, "to": server.enforce_rbac},
        }),
        data: serde_json::to_value(present(&server)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(server)
}

fn refuse_system(server: &ResourceServer) -> Result<()> {
    if server.system {
        Err(ServiceError::Forbidden("the system Management API cannot be changed or deleted".into()))
    } else {
        Ok(())
    }
}

pub async fn update(
    core: &Core,
    ctx: &Ctx,
    id: &str,
    input: ResourceServerChanges,
) -> Result<ResourceServer> {
    ctx.require(Family::ResourceServers, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let before: ResourceServer = fetch_in(&mut tx, ctx, KIND, id).await?;
    refuse_system(&before)?;
    let mut server = before.clone();
    if input.identifier.required("identifier")?.is_some_and(|i| i != server.identifier) {
        return Err(ServiceError::invalid("identifier", "identifier cannot be changed after creation"));
    }
    if let Some(name) = input.name.required("name")? {
        server.name = require_text("name", &name, 200)?;
    }
    if let Some(ttl) = input.token_ttl.required("token_ttl")? {
        server.token_ttl = validate_ttl(ttl)?;
    }
    if let Some(offline) = input.allow_offline_access.required("allow_offline_access")? {
        server.allow_offline_access = offline;
    }
    if let Some(enforce) = input.enforce_rbac.required("enforce_rbac")? {
        server.enforce_rbac = enforce;
    }
    server.updated_at = now_micros();
    record::update(tx.conn(), ctx.environment_id(), &server).await?;
    tx.invalidate(ctx.environment_id());
    let mut changes = Changes::default();
    changes.track("name", &before.name, &server.name);
    changes.track("token_ttl", &before.token_ttl, &server.token_ttl);
    changes.track("allow_offline_access", &before.allow_offline_access, &server.allow_offline_access);
    changes.track("enforce_rbac", &before.enforce_rbac, &server.enforce_rbac);
    let event = Event {
        action: "resource_server.updated",
        targets: vec![target(KIND, &server.id, Some(&server.name))],
        changes: changes.into_value(),
        data: serde_json::to_value(present(&server)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(server)
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::ResourceServers, Verb::Delete)?;
    let server: ResourceServer = super::find(core, ctx, KIND, id).await?;
    refuse_system(&server)?;
    if ctx.env.environment.default_audience.as_deref() == Some(server.identifier.as_str()) {
        return Err(ServiceError::conflict(
            Field::Attribute("identifier"),
            "this API is the environment's default_audience; change that setting first",
        ));
    }
    super::delete::<ResourceServer>(core, ctx, "resource_server.deleted", id, present, name, true).await
}
