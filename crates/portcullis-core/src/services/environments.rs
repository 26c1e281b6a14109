use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Actor, Client, Environment, Event, Grant, Origin, ResourceServer};
use portcullis_store::types::JsonText;
use portcullis_store::{new_id, now_micros, record, repo};
use serde::Deserialize;
use serde_json::json;

use super::signing_keys::{self, NewSigningKey};
use super::{Changes, Patch, attrs, finish, require_text, target, timestamp};
use crate::authz::{Family, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, EnvState, Result, ServiceError};

pub const KIND: &str = "environment";
pub const SESSION_TTL_DEFAULT: i64 = 30 * 24 * 3600;
/// Deprovisioning steps one provisioning pass may take without approval.
pub const MASS_CHANGE_THRESHOLD_DEFAULT: i64 = 10;
pub const INVITATION_TTL_DEFAULT: i64 = 7 * 24 * 3600;
pub const INVITATION_TTL_MIN: i64 = 3600;
pub const INVITATION_TTL_MAX: i64 = 90 * 24 * 3600;

pub fn present(env: &EnvState) -> ResourceObject {
    let e = &env.environment;
    ResourceObject::new(
        KIND,
        &e.id,
        attrs(json!({
            "handle": e.handle,
            "name": e.name,
            "issuer": env.issuer,
            "management_api": env.management_api,
            "session_ttl": e.session_ttl,
            "registration_enabled": e.registration_enabled,
            "default_audience": e.default_audience,
            "mass_change_threshold": e.mass_change_threshold,
            "require_email_verification": e.require_email_verification,
            "invitation_ttl": e.invitation_ttl,
            "inserted_at": timestamp(e.inserted_at),
            "updated_at": timestamp(e.updated_at),
        })),
    )
}

/// Handles are DNS labels: they become `{handle}.{base_domain}`.
fn validate_handle(handle: &str) -> Result<String> {
    let ok = (1..=63).contains(&handle.len())
        && handle.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !handle.starts_with('-')
        && !handle.ends_with('-');
    if ok {
        Ok(handle.to_owned())
    } else {
        Err(ServiceError::invalid(
            "handle",
            "handle must be 1-63 lowercase letters, digits or hyphens (a DNS label)",
        ))
    }
}

/// What `portcullis env create` prints once.
#[derive(Debug)]
pub struct CreatedEnvironment {
    pub environment: Environment,
    pub issuer: String,
    pub management_api: String,
    pub client_id: String,
    pub client_secret: String,
    pub signing_key_kid: String,
}

/// Creates an environment with its system Management API, a primary signing
/// key and an admin client holding every management scope.
pub async fn create(
    core: &Core,
    handle: &str,
    name: Option<&str>,
    key: NewSigningKey,
) -> Result<CreatedEnvironment> {
    let handle = validate_handle(handle)?;
    let issuer = core.issuer_for(&handle);
    let management_api = format!("{issuer}/api");
    let now = now_micros();
    let environment = Environment {
        id: new_id(),
        name: require_text("name", name.unwrap_or(&handle), 200)?,
        handle,
        session_ttl: SESSION_TTL_DEFAULT,
        registration_enabled: true,
        default_audience: None,
        inserted_at: now,
        updated_at: now,
        mass_change_threshold: MASS_CHANGE_THRESHOLD_DEFAULT,
        require_email_verification: false,
        invitation_ttl: INVITATION_TTL_DEFAULT,
    };
    let env_id = environment.id.clone();
    let pair = signing_keys::generate(key).await?;
    let mut tx = core.db.write().await?;
    repo::environments::insert(tx.conn(), &environment).await.map_err(conflict_on(
        &["environments_handle_key", "environments.handle"],
        Field::Attribute("handle"),
        "an environment with this handle already exists",
    ))?;
    let api = ResourceServer {
        id: new_id(),
        environment_id: env_id.clone(),
        name: "Management API".into(),
        identifier: management_api.clone(),
        token_ttl: super::resource_servers::TTL_DEFAULT,
        allow_offline_access: false,
        system: true,
        inserted_at: now,
        updated_at: now,
        enforce_rbac: false,
    };
    record::insert(tx.conn(), &api).await?;
    let key = signing_keys::insert_primary(core, &mut tx, &env_id, pair).await?;
    let (client, secret) =
        insert_admin_client(&mut tx, &env_id, &api.id, "Admin (created with the environment)").await?;
    let origin =
        Origin { environment_id: env_id.clone(), actor: Actor::system(), ip_address: None, user_agent: None };
    tx.record(&origin, &Event {
        action: "environment.created",
        targets: vec![target(KIND, &env_id, Some(&environment.handle))],
        changes: json!({}),
        data: json!({"type": KIND, "id": env_id, "attributes": {"handle": environment.handle, "issuer": issuer}}),
    })
    .await?;
    tx.record(
        &origin,
        &Event {
            action: "signing_key.generated",
            targets: vec![target("signing_key", &key.id, Some(&key.kid))],
            changes: json!({}),
            data: serde_json::to_value(signing_keys::present(&key)).unwrap_or_default(),
        },
    )
    .await?;
    tx.record(
        &origin,
        &Event {
            action: "client.registered",
            targets: vec![target("client", &client.id, Some(&client.name))],
            changes: json!({}),
            data: serde_json::to_value(super::clients::present(&client)).unwrap_or_default(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedEnvironment {
        environment,
        issuer,
        management_api,
        client_id: client.client_id,
        client_secret: secret,
        signing_key_kid: key.kid,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentChanges {
    #[serde(default)]
    pub name: Patch<String>,
    #[serde(default)]
    pub session_ttl: Patch<i64>,
    #[serde(default)]
    pub registration_enabled: Patch<bool>,
    #[serde(default)]
    pub default_audience: Patch<String>,
    #[serde(default)]
    pub mass_change_threshold: Patch<i64>,
    #[serde(default)]
    pub require_email_verification: Patch<bool>,
    #[serde(default)]
    pub invitation_ttl: Patch<i64>,
}

pub const SESSION_TTL_MIN: i64 = 300;
pub const SESSION_TTL_MAX: i64 = 365 * 24 * 3600;

/// The environment's settings, as the Management API shows them.
pub fn settings(ctx: &Ctx) -> Result<ResourceObject> {
    ctx.require(Family::Environment, Verb::Read)?;
    Ok(present(&ctx.env))
}

pub async fn update(core: &Core, ctx: &Ctx, input: EnvironmentChanges) -> Result<Environment> {
    ctx.require(Family::Environment, Verb::Write)?;
    let apis = ctx.env.apis().await?;
    let mut tx = core.db.write().await?;
    // Start from the stored row, under its lock, so concurrent updates of
    // different settings do not undo each other.
    repo::environments::lock(tx.conn(), ctx.environment_id()).await?;
    let before = repo::environments::by_handle(tx.conn(), &ctx.env.environment.handle)
        .await?
        .ok_or(ServiceError::NotFound(KIND))?;
    let mut env = before.clone();
    if let Some(name) = input.name.required("name")? {
        env.name = require_text("name", &name, 200)?;
    }
    if let Some(ttl) = input.session_ttl.required("session_ttl")? {
        if !(SESSION_TTL_MIN..=SESSION_TTL_MAX).contains(&ttl) {
            return Err(ServiceError::invalid(
                "session_ttl",
                format!("session_ttl must be between {SESSION_TTL_MIN} and {SESSION_TTL_MAX} seconds"),
            ));
        }
        env.session_ttl = ttl;
    }
    if let Some(ttl) = input.invitation_ttl.required("invitation_ttl")? {
        if !(INVITATION_TTL_MIN..=INVITATION_TTL_MAX).contains(&ttl) {
            return Err(ServiceError::invalid(
                "invitation_ttl",
                format!(
                    "invitation_ttl must be between {INVITATION_TTL_MIN} and {INVITATION_TTL_MAX} seconds"
                ),
            ));
        }
        env.invitation_ttl = ttl;
    }
    if let Some(enabled) = input.registration_enabled.required("registration_enabled")? {
        env.registration_enabled = enabled;
    }
    if let Some(required) = input.require_email_verification.required("require_email_verification")? {
        env.require_email_verification = required;
    }
    if let Some(threshold) = input.mass_change_threshold.required("mass_change_threshold")? {
        if !(0..=1_000_000).contains(&threshold) {
            return Err(ServiceError::invalid(
                "mass_change_threshold",
                "mass_change_threshold must be between 0 and 1000000",
            ));
        }
        env.mass_change_threshold = threshold;
    }
    input.default_audience.apply_to(&mut env.default_audience);
    if let Some(audience) = &env.default_audience
        && !apis.by_identifier.contains_key(audience)
    {
        return Err(ServiceError::invalid(
            "default_audience",
            "default_audience must be the identifier of an API in this environment",
        ));
    }
    env.updated_at = now_micros();
    repo::environments::update(tx.conn(), &env).await?;
    tx.invalidate(&env.id);
    let mut changes = Changes::default();
    changes.track("name", &before.name, &env.name);
    changes.track("session_ttl", &before.session_ttl, &env.session_ttl);
    changes.track("invitation_ttl", &before.invitation_ttl, &env.invitation_ttl);
    changes.track("registration_enabled", &before.registration_enabled, &env.registration_enabled);
    changes.track("default_audience", &before.default_audience, &env.default_audience);
    changes.track("mass_change_threshold", &before.mass_change_threshold, &env.mass_change_threshold);
    changes.track(
        "require_email_verification",
        &before.require_email_verification,
        &env.require_email_verification,
    );
    let event = Event {
        action: "environment.updated",
        targets: vec![target(KIND, &env.id, Some(&env.handle))],
        changes: changes.into_value(),
        data: json!({"type": KIND, "id": env.id}),
    };
    finish(tx, ctx, event).await?;
    Ok(env)
}

/// Inserts a confidential client with a grant of every Management API scope;
/// returns it and its secret (stored only as a hash).
async fn insert_admin_client(
    tx: &mut portcullis_store::WriteTx,
    environment_id: &str,
    management_api_id: &str,
    name: &str,
) -> Result<(Client, String)> {
    let now = now_micros();
    let secret = portcullis_crypto::secret::random_token::<32>();
    let client = Client {
        id: new_id(),
        environment_id: environment_id.to_owned(),
        client_id: portcullis_crypto::secret::random_base62(32),
        name: name.to_owned(),
        client_type: "confidential".into(),
        secret_hash: Some(portcullis_crypto::secret::hash_secret(&secret)),
        redirect_uris: JsonText(vec![]),
        grant_types: JsonText(vec!["client_credentials".into()]),
        token_format: "jwt".into(),
        first_party: true,
        inserted_at: now,
        updated_at: now,
        post_logout_redirect_uris: JsonText(vec![]),
        require_pkce: true,
        serves_resource_server_id: None,
        organization_usage: "deny".into(),
    };
    record::insert(tx.conn(), &client).await?;
    let grant = Grant {
        id: new_id(),
        environment_id: environment_id.to_owned(),
        client_id: client.id.clone(),
        resource_server_id: management_api_id.to_owned(),
        allowed_scopes: JsonText(None),
        inserted_at: now,
        updated_at: now,
    };
    record::insert(tx.conn(), &grant).await?;
    Ok((client, secret))
}

/// An admin client minted by `portcullis env admin-client`.
#[derive(Debug)]
pub struct MintedAdminClient {
    pub client_id: String,
    pub client_secret: String,
    pub management_api: String,
}

/// Recovery for an operator locked out of the Management API: mints a new
/// client holding every Management API scope, audited as the operator's.
/// Only the server's console reaches this (it needs database access).
pub async fn mint_admin_client(core: &Core, ctx: &Ctx) -> Result<MintedAdminClient> {
    if !matches!(ctx.authority, crate::Authority::Operator) {
        return Err(ServiceError::Forbidden(
            "only an operator at the console can mint an admin client".into(),
        ));
    }
    let mut tx = core.db.write().await?;
    let servers: Vec<ResourceServer> = repo::all(tx.conn(), ctx.environment_id()).await?;
    let api = servers
        .into_iter()
        .find(|s| s.system)
        .ok_or_else(|| ServiceError::Internal("the environment has no Management API".into()))?;
    let (client, secret) =
        insert_admin_client(&mut tx, ctx.environment_id(), &api.id, "Admin (minted at the console)").await?;
    tx.invalidate(ctx.environment_id());
    let event = Event {
        action: "client.registered",
        targets: vec![target("client", &client.id, Some(&client.name))],
        changes: json!({"client_resource_server_grant": {"from": null, "to": {"resource_server": api.id, "allowed_scopes": null}}}),
        data: serde_json::to_value(super::clients::present(&client)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(MintedAdminClient {
        client_id: client.client_id,
        client_secret: secret,
        management_api: ctx.env.management_api.clone(),
    })
}

/// Every environment, for the CLI.
pub async fn all(core: &Core) -> Result<Vec<Environment>> {
    let mut conn = core.db.read().await?;
    Ok(repo::environments::all(&mut conn).await?)
}
