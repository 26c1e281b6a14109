use portcullis_crypto::secret;
use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Client, Event, ResourceServer};
use portcullis_store::types::JsonText;
use portcullis_store::{new_id, now_micros, record};
use serde::Deserialize;
use serde_json::json;

use super::{Changes, Patch, attrs, fetch_in, finish, require_text, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "client";

impl Guarded for Client {
    const FAMILY: Family = Family::Clients;
}
pub const GRANT_TYPES: [&str; 3] = ["authorization_code", "client_credentials", "refresh_token"];
pub const MAX_REDIRECT_URIS: usize = 10;

pub fn present(client: &Client) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &client.id,
        attrs(json!({
            "name": client.name,
            "client_id": client.client_id,
            "client_type": client.client_type,
            "redirect_uris": client.redirect_uris.0,
            "post_logout_redirect_uris": client.post_logout_redirect_uris.0,
            "grant_types": client.grant_types.0,
            "token_format": client.token_format,
            "organization_usage": client.organization_usage,
            "first_party": client.first_party,
            "require_pkce": client.require_pkce,
            "serves_resource_server_id": client.serves_resource_server_id,
            "inserted_at": timestamp(client.inserted_at),
            "updated_at": timestamp(client.updated_at),
        })),
    )
}

pub fn name(client: &Client) -> Option<&str> {
    Some(&client.name)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub name: String,
    #[serde(default)]
    pub client_type: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub token_format: Option<String>,
    #[serde(default)]
    pub organization_usage: Option<String>,
    #[serde(default)]
    pub first_party: bool,
    #[serde(default)]
    pub require_pkce: Option<bool>,
    #[serde(default)]
    pub serves_resource_server_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientChanges {
    #[serde(default)]
    pub name: Patch<String>,
    #[serde(default)]
    pub redirect_uris: Patch<Vec<String>>,
    #[serde(default)]
    pub post_logout_redirect_uris: Patch<Vec<String>>,
    #[serde(default)]
    pub grant_types: Patch<Vec<String>>,
    #[serde(default)]
    pub token_format: Patch<String>,
    #[serde(default)]
    pub organization_usage: Patch<String>,
    #[serde(default)]
    pub first_party: Patch<bool>,
    #[serde(default)]
    pub client_type: Patch<String>,
    #[serde(default)]
    pub require_pkce: Patch<bool>,
    #[serde(default)]
    pub serves_resource_server_id: Patch<String>,
}

/// Checks redirect (or post-logout redirect) URIs at registration; the
/// authorization endpoint then matches them exactly, character for character.
///
/// Each must be an absolute URL without a fragment, userinfo or wildcard,
/// and typed exactly as the URL parser reads it back. `https` anywhere;
/// `http` only for loopback (`localhost`, `*.localhost`, 127.0.0.0/8, `[::1]`,
/// RFC 8252 §7.3); a private-use scheme in reverse-domain form
/// (`com.example.app:/callback`, RFC 8252 §7.1) only for public clients,
/// which native apps are.
fn validate_redirect_uris(field: &'static str, uris: Vec<String>, client_type: &str) -> Result<Vec<String>> {
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(ServiceError::invalid(
            field,
            format!("at most {MAX_REDIRECT_URIS} redirect URIs are allowed"),
        ));
    }
    for uri in &uris {
        if let Err(reason) = check_redirect_uri(uri, client_type) {
            return Err(ServiceError::invalid(field, format!("`{}` {reason}", uri.escape_debug())));
        }
    }
    Ok(uris)
}

fn check_redirect_uri(uri: &str, client_type: &str) -> std::result::Result<(), &'static str> {
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters");
    }
    if uri.contains('#') {
        return Err("has a fragment (RFC 6749 §3.1.2 forbids them)");
    }
    if uri.contains('*') {
        return Err("has a wildcard: redirect URIs are matched exactly");
    }
    let url = url::Url::parse(uri).map_err(|_| "is not an absolute URL")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("has userinfo (user:password@)");
    }
    match url.scheme() {
        "https" if url.host().is_some() => {}
        "http" if url.host().is_some() => {
            if !is_loopback(&url) {
                return Err("uses http for a host other than loopback: use https");
            }
        }
        "http" | "https" => return Err("has no host"),
        scheme if scheme.contains('.') && client_type == "public" => {}
        scheme if scheme.contains('.') => {
            return Err("uses a private-use scheme, which only public (native) clients may (RFC 8252 §7.1)");
        }
        _ => {
            return Err("must be https, http on loopback, or a reverse-domain private-use scheme (RFC 8252)");
        }
    }
    // The parser normalizes (case, default ports, dot segments, percent
    // encoding); what is stored must be what will be matched.
    if url.as_str() != uri && url.as_str() != format!("{uri}/") {
        return Err("is not in normal form (check case, port, dot segments and percent-encoding)");
    }
    Ok(())
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost" || domain.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn validate_grant_types(grants: Vec<String>, client_type: &str) -> Result<Vec<String>> {
    if grants.is_empty() {
        return Err(ServiceError::invalid("grant_types", "at least one grant type is required"));
    }
    if let Some(grant) = grants.iter().find(|g| !GRANT_TYPES.contains(&g.as_str())) {
        return Err(ServiceError::invalid(
            "grant_types",
            format!("`{grant}` is not one of {}", GRANT_TYPES.join(", ")),
        ));
    }
    let out = super::unique(grants);
    if client_type == "public" && out.iter().any(|g| g == "client_credentials") {
        return Err(ServiceError::invalid("grant_types", "public clients cannot use client_credentials"));
    }
    Ok(out)
}

/// OAuth 2.1 requires PKCE of every client; a confidential client that
/// cannot send it yet (a legacy server-side app) may be exempted.
fn validate_require_pkce(require_pkce: bool, client_type: &str) -> Result<bool> {
    if !require_pkce && client_type == "public" {
        return Err(ServiceError::invalid("require_pkce", "public clients must use PKCE"));
    }
    Ok(require_pkce)
}

/// The API a client serves must be one of this environment's own APIs: the
/// Management API's tokens are introspected by nobody but their client.
async fn check_served_api(
    conn: &mut sqlx::AnyConnection,
    environment_id: &str,
    id: Option<String>,
) -> Result<Option<String>> {
    let Some(id) = id else { return Ok(None) };
    let server: Option<ResourceServer> = record::find(conn, environment_id, &id).await?;
    match server {
        Some(server) if !server.system => Ok(Some(id)),
        Some(_) => {
            Err(ServiceError::invalid("serves_resource_server_id", "no client serves the Management API"))
        }
        None => Err(ServiceError::invalid(
            "serves_resource_server_id",
            "serves_resource_server_id is not an API in this environment",
        )),
    }
}

fn validate_organization_usage(usage: String) -> Result<String> {
    match usage.as_str() {
        "deny" | "allow" | "require" => Ok(usage),
        _ => Err(ServiceError::invalid(
            "organization_usage",
            "organization_usage must be deny, allow or require",
        )),
    }
}

fn validate_token_format(format: String) -> Result<String> {
    match format.as_str() {
        "jwt" | "opaque" => Ok(format),
        _ => Err(ServiceError::invalid("token_format", "token_format must be jwt or opaque")),
    }
}

/// A new client secret: 32 random bytes, base64url.
fn new_secret() -> String {
    secret::random_token::<32>()
}

/// Registers a client; returns it and, for confidential clients, its secret
/// (shown once, stored only as a hash).
pub async fn create(core: &Core, ctx: &Ctx, input: NewClient) -> Result<(Client, Option<String>)> {
    ctx.require(Family::Clients, Verb::Write)?;
    let client_type = input.client_type.unwrap_or_else(|| "confidential".into());
    if !matches!(client_type.as_str(), "confidential" | "public") {
        return Err(ServiceError::invalid("client_type", "client_type must be confidential or public"));
    }
    let grant_types = validate_grant_types(
        input.grant_types.unwrap_or_else(|| vec!["authorization_code".into()]),
        &client_type,
    )?;
    let plain_secret = (client_type == "confidential").then(new_secret);
    let now = now_micros();
    let client = Client {
        id: new_id(),
        environment_id: ctx.environment_id().to_owned(),
        client_id: secret::random_base62(32),
        name: require_text("name", &input.name, 200)?,
        secret_hash: plain_secret.as_deref().map(secret::hash_secret),
        redirect_uris: JsonText(validate_redirect_uris("redirect_uris", input.redirect_uris, &client_type)?),
        post_logout_redirect_uris: JsonText(validate_redirect_uris(
            "post_logout_redirect_uris",
            input.post_logout_redirect_uris,
            &client_type,
        )?),
        require_pkce: validate_require_pkce(input.require_pkce.unwrap_or(true), &client_type)?,
        serves_resource_server_id: None,
        grant_types: JsonText(grant_types),
        token_format: validate_token_format(input.token_format.unwrap_or_else(|| "jwt".into()))?,
        organization_usage: validate_organization_usage(
            input.organization_usage.unwrap_or_else(|| "deny".into()),
        )?,
        first_party: input.first_party,
        client_type,
        inserted_at: now,
        updated_at: now,
    };
    let mut tx = core.db.write().await?;
    let mut client = client;
    client.serves_resource_server_id =
        check_served_api(tx.conn(), ctx.environment_id(), input.serves_resource_server_id).await?;
    record::insert(tx.conn(), &client).await.map_err(conflict_on(
        &["clients_client_id_key", "clients.client_id"],
        Field::Attribute("client_id"),
        "client_id collision; retry",
    ))?;
    tx.invalidate(ctx.environment_id());
    let event = Event {
        action: "client.registered",
        targets: vec![target(KIND, &client.id, Some(&client.name))],
        changes: json!({
            "name": {"from": null, "to": client.name},
            "redirect_uris": {"from": null, "to": client.redirect_uris.0},
            "post_logout_redirect_uris": {"from": null, "to": client.post_logout_redirect_uris.0},
            "grant_types": {"from": null, "to": client.grant_types.0},
            "first_party": {"from": null, "to": client.first_party},
            "token_format": {"from": null, "to": client.token_format},
            "organization_usage": {"from": null, "to": client.organization_usage},
            "require_pkce": {"from": null, "to": client.require_pkce},
            "serves_resource_server_id": {"from": null, "to": client.serves_resource_server_id},
        }),
        data: serde_json::to_value(present(&client)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok((client, plain_secret))
}

pub async fn update(core: &Core, ctx: &Ctx, id: &str, input: ClientChanges) -> Result<Client> {
    ctx.require(Family::Clients, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let before: Client = fetch_in(&mut tx, ctx, KIND, id).await?;
    let mut client = before.clone();
    if let Some(name) = input.name.required("name")? {
        client.name = require_text("name", &name, 200)?;
    }
    // Immutable after creation; sending the current value back is fine.
    if input.client_type.required("client_type")?.is_some_and(|t| t != client.client_type) {
        return Err(ServiceError::invalid("client_type", "client_type cannot be changed after creation"));
    }
    if input.first_party.required("first_party")?.is_some_and(|f| f != client.first_party) {
        return Err(ServiceError::invalid("first_party", "first_party cannot be changed after creation"));
    }
    if let Some(uris) = input.redirect_uris.required("redirect_uris")? {
        client.redirect_uris = JsonText(validate_redirect_uris("redirect_uris", uris, &client.client_type)?);
    }
    if let Some(uris) = input.post_logout_redirect_uris.required("post_logout_redirect_uris")? {
        client.post_logout_redirect_uris =
            JsonText(validate_redirect_uris("post_logout_redirect_uris", uris, &client.client_type)?);
    }
    if let Some(grants) = input.grant_types.required("grant_types")? {
        client.grant_types = JsonText(validate_grant_types(grants, &client.client_type)?);
    }
    if let Some(usage) = input.organization_usage.required("organization_usage")? {
        client.organization_usage = validate_organization_usage(usage)?;
    }
    if let Some(format) = input.token_format.required("token_format")? {
        client.token_format = validate_token_format(format)?;
    }
    if let Some(require_pkce) = input.require_pkce.required("require_pkce")? {
        client.require_pkce = validate_require_pkce(require_pkce, &client.client_type)?;
    }
    input.serves_resource_server_id.apply_to(&mut client.serves_resource_server_id);
    if client.serves_resource_server_id != before.serves_resource_server_id {
        client.serves_resource_server_id =
            check_served_api(tx.conn(), ctx.environment_id(), client.serves_resource_server_id.take())
                .await?;
    }
    client.updated_at = now_micros();
    record::update(tx.conn(), ctx.environment_id(), &client).await?;
    if before.grant_types != client.grant_types {
        super::grants::keep_an_admin_client(&mut tx, ctx.environment_id()).await?;
    }
    tx.invalidate(ctx.environment_id());
    let mut changes = Changes::default();
    changes.track("name", &before.name, &client.name);
    changes.track("redirect_uris", &before.redirect_uris.0, &client.redirect_uris.0);
    changes.track(
        "post_logout_redirect_uris",
        &before.post_logout_redirect_uris.0,
        &client.post_logout_redirect_uris.0,
    );
    changes.track("grant_types", &before.grant_types.0, &client.grant_types.0);
    changes.track("token_format", &before.token_format, &client.token_format);
    changes.track("organization_usage", &before.organization_usage, &client.organization_usage);
    changes.track("require_pkce", &before.require_pkce, &client.require_pkce);
    changes.track(
        "serves_resource_server_id",
        &before.serves_resource_server_id,
        &client.serves_resource_server_id,
    );
    let event = Event {
        action: "client.updated",
        targets: vec![target(KIND, &client.id, Some(&client.name))],
        changes: changes.into_value(),
        data: serde_json::to_value(present(&client)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(client)
}

/// Replaces a confidential client's secret; the old one stops working at once.
pub async fn rotate_secret(core: &Core, ctx: &Ctx, id: &str) -> Result<(Client, String)> {
    ctx.require(Family::Clients, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let mut client: Client = fetch_in(&mut tx, ctx, KIND, id).await?;
    if client.client_type != "confidential" {
        return Err(ServiceError::invalid("client_type", "only confidential clients have a secret"));
    }
    super::grants::forbid_takeover(&mut tx, ctx, &client).await?;
    let plain = new_secret();
    client.secret_hash = Some(secret::hash_secret(&plain));
    client.updated_at = now_micros();
    record::update(tx.conn(), ctx.environment_id(), &client).await?;
    tx.invalidate(ctx.environment_id());
    let event = Event {
        action: "client.updated",
        targets: vec![target(KIND, &client.id, Some(&client.name))],
        changes: json!({"client_secret": {"from": "[redacted]", "to": "[redacted]"}}),
        data: serde_json::to_value(present(&client)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok((client, plain))
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Clients, Verb::Delete)?;
    let mut tx = core.db.write().await?;
    super::delete_in::<Client>(&mut tx, ctx, "client.deleted", id, present, name).await?;
    super::grants::keep_an_admin_client(&mut tx, ctx.environment_id()).await?;
    tx.invalidate(ctx.environment_id());
    tx.commit().await?;
    Ok(())
}
