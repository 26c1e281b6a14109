use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Client, Event, Grant, ResourceServer, Scope};
use portcullis_store::types::JsonText;
use portcullis_store::{new_id, now_micros, record, repo};
use serde::Deserialize;
use serde_json::json;

use super::{Changes, Patch, attrs, fetch_in, finish, target, timestamp, unique};
use crate::authz::management_scopes;
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "client_resource_server_grant";

impl Guarded for Grant {
    const FAMILY: Family = Family::ClientGrants;
}

pub fn present(grant: &Grant) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &grant.id,
        attrs(json!({
            "allowed_scopes": grant.allowed_scopes.0,
            "inserted_at": timestamp(grant.inserted_at),
            "updated_at": timestamp(grant.updated_at),
        })),
    )
    .to_one("client", "client", Some(&grant.client_id))
    .to_one("resource_server", "resource_server", Some(&grant.resource_server_id))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantAttributes {
    /// `null` or absent: every scope of the resource server.
    #[serde(default)]
    pub allowed_scopes: Patch<Vec<String>>,
}

/// Checks that every allowed scope exists on the server.
async fn validate_scopes(
    tx: &mut portcullis_store::WriteTx,
    server: &ResourceServer,
    scopes: Option<Vec<String>>,
) -> Result<Option<Vec<String>>> {
    let Some(scopes) = scopes else { return Ok(None) };
    let known: Vec<String> = if server.system {
        management_scopes()
    } else {
        repo::all::<Scope>(tx.conn(), &server.environment_id)
            .await?
            .into_iter()
            .filter(|s| s.resource_server_id == server.id)
            .map(|s| s.name)
            .collect()
    };
    if let Some(unknown) = scopes.iter().find(|s| !known.contains(s)) {
        return Err(ServiceError::invalid(
            "allowed_scopes",
            format!("`{unknown}` is not a scope of this API"),
        ));
    }
    Ok(Some(unique(scopes)))
}

/// Refuses a grant on the Management API that would give its client a scope
/// the actor does not hold: widening `before` (`None`: no grant yet) to
/// `after` (`Some(None)`: every scope) may add only scopes the actor holds.
fn forbid_escalation(
    ctx: &Ctx,
    server: &ResourceServer,
    before: Option<&Option<Vec<String>>>,
    after: &Option<Vec<String>>,
) -> Result<()> {
    if !server.system {
        return Ok(());
    }
    let all = management_scopes();
    let after = after.as_ref().unwrap_or(&all);
    let before: &[String] = match before {
        None => &[],
        Some(before) => before.as_deref().unwrap_or(&all),
    };
    ctx.authority.require_all(
        after.iter().filter(|s| !before.contains(s)).map(String::as_str),
        "granting these Management API scopes",
    )
}

/// Whether a grant on the Management API lets its client administer everything.
fn is_full(allowed: &Option<Vec<String>>) -> bool {
    allowed.as_ref().is_none_or(|scopes| management_scopes().iter().all(|s| scopes.contains(s)))
}

/// Refuses (409) a change after which no client of the environment could
/// get a token for every Management API scope: the operator would be
/// locked out with no way back through the API.
pub(crate) async fn keep_an_admin_client(
    tx: &mut portcullis_store::WriteTx,
    environment_id: &str,
) -> Result<()> {
    let servers: Vec<ResourceServer> = repo::all(tx.conn(), environment_id).await?;
    let Some(system) = servers.into_iter().find(|s| s.system) else { return Ok(()) };
    let grants: Vec<Grant> = repo::all(tx.conn(), environment_id).await?;
    let admins: Vec<String> = grants
        .into_iter()
        .filter(|g| g.resource_server_id == system.id && is_full(&g.allowed_scopes.0))
        .map(|g| g.client_id)
        .collect();
    let clients: Vec<Client> = record::find_in(tx.conn(), environment_id, "id", &admins).await?;
    if clients.iter().any(|c| c.client_type == "confidential" && c.allows_grant("client_credentials")) {
        return Ok(());
    }
    Err(ServiceError::conflict(
        Field::Resource,
        "this is the environment's last client with full Management API access; create another first \
         (or run `portcullis env admin-client` on the server)",
    ))
}

/// Refuses to hand out the secret of a client whose Management API grant
/// holds scopes the actor does not: rotating it would give the actor them.
pub(crate) async fn forbid_takeover(
    tx: &mut portcullis_store::WriteTx,
    ctx: &Ctx,
    client: &Client,
) -> Result<()> {
    let servers: Vec<ResourceServer> = repo::all(tx.conn(), ctx.environment_id()).await?;
    let Some(system) = servers.into_iter().find(|s| s.system) else { return Ok(()) };
    let grants: Vec<Grant> = repo::all(tx.conn(), ctx.environment_id()).await?;
    let Some(grant) = grants.iter().find(|g| g.client_id == client.id && g.resource_server_id == system.id)
    else {
        return Ok(());
    };
    let all = management_scopes();
    let scopes = grant.allowed_scopes.0.as_ref().unwrap_or(&all);
    ctx.authority
        .require_all(scopes.iter().map(String::as_str), "taking over this client's Management API grant")
}

const TAKEN: &[&str] = &["grants_pair_key", "client_resource_server_grants.client_id"];

pub async fn create(
    core: &Core,
    ctx: &Ctx,
    client_id: &str,
    resource_server_id: &str,
    input: GrantAttributes,
) -> Result<Grant> {
    ctx.require(Family::ClientGrants, Verb::Write)?;
    let env = ctx.environment_id();
    let mut tx = core.db.write().await?;
    let client: Client = record::find(tx.conn(), env, client_id)
        .await?
        .ok_or_else(|| ServiceError::invalid_relationship("client", "client does not exist"))?;
    let server: ResourceServer =
        record::find(tx.conn(), env, resource_server_id).await?.ok_or_else(|| {
            ServiceError::invalid_relationship("resource_server", "resource server does not exist")
        })?;
    let allowed = match input.allowed_scopes {
        Patch::Value(scopes) => Some(scopes),
        Patch::Absent | Patch::Null => None,
    };
    let allowed = validate_scopes(&mut tx, &server, allowed).await?;
    forbid_escalation(ctx, &server, None, &allowed)?;
    let now = now_micros();
    let grant = Grant {
        id: new_id(),
        environment_id: env.to_owned(),
        client_id: client.id.clone(),
        resource_server_id: server.id.clone(),
        allowed_scopes: JsonText(allowed),
        inserted_at: now,
        updated_at: now,
    };
    record::insert(tx.conn(), &grant).await.map_err(conflict_on(
        TAKEN,
        Field::Relationship("resource_server"),
        "the client already has a grant for this API",
    ))?;
    tx.invalidate(env);
    let event = Event {
        action: "client_resource_server_grant.created",
        targets: vec![
            target("client", &client.id, Some(&client.name)),
            target("resource_server", &server.id, Some(&server.name)),
        ],
        changes: json!({"allowed_scopes": {"from": null, "to": grant.allowed_scopes.0}}),
        data: serde_json::to_value(present(&grant)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(grant)
}

pub async fn update(core: &Core, ctx: &Ctx, id: &str, input: GrantAttributes) -> Result<Grant> {
    ctx.require(Family::ClientGrants, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let before: Grant = fetch_in(&mut tx, ctx, KIND, id).await?;
    let mut grant = before.clone();
    let server: ResourceServer = fetch_in(&mut tx, ctx, "resource_server", &grant.resource_server_id).await?;
    match input.allowed_scopes {
        Patch::Absent => {}
        Patch::Null => grant.allowed_scopes = JsonText(None),
        Patch::Value(scopes) => {
            grant.allowed_scopes = JsonText(validate_scopes(&mut tx, &server, Some(scopes)).await?)
        }
    }
    forbid_escalation(ctx, &server, Some(&before.allowed_scopes.0), &grant.allowed_scopes.0)?;
    grant.updated_at = now_micros();
    record::update(tx.conn(), ctx.environment_id(), &grant).await?;
    keep_an_admin_client(&mut tx, ctx.environment_id()).await?;
    tx.invalidate(ctx.environment_id());
    let mut changes = Changes::default();
    changes.track("allowed_scopes", &before.allowed_scopes.0, &grant.allowed_scopes.0);
    let event = Event {
        action: "client_resource_server_grant.updated",
        targets: vec![target(KIND, &grant.id, None)],
        changes: changes.into_value(),
        data: serde_json::to_value(present(&grant)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(grant)
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::ClientGrants, Verb::Delete)?;
    let mut tx = core.db.write().await?;
    super::delete_in::<Grant>(&mut tx, ctx, "client_resource_server_grant.deleted", id, present, |_| None)
        .await?;
    keep_an_admin_client(&mut tx, ctx.environment_id()).await?;
    tx.invalidate(ctx.environment_id());
    tx.commit().await?;
    Ok(())
}
