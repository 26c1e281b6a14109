//! The OAuth 2.1 token engine: client authentication, the client_credentials
//! grant, access-token verification, introspection (RFC 7662) and revocation
//! (RFC 7009). The hot path (authenticate, pick key, sign) reads only the
//! environment's in-memory caches; the one write, `token.issued`, goes to the
//! asynchronous event sink. User sign-in lives in [`authorize`] (the
//! authorization endpoint) and [`grants`] (code and refresh grants, ID
//! tokens, UserInfo).

pub mod authorize;
pub mod grants;
pub mod rotation;

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_crypto::{jws, secret};
use portcullis_store::model::{AccessToken, Actor, Client, Event, Origin, RefreshToken};
use portcullis_store::{new_id, now_micros, record, repo};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::services::{find_by_secret, target};
use crate::{Core, EnvState, ServiceError};

/// An RFC 6749 §5.2 error.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
    /// 400, or 401 for failed client authentication.
    pub status: u16,
}

impl OAuthError {
    pub fn new(code: &'static str, description: impl Into<String>) -> Self {
        OAuthError { code, description: description.into(), status: 400 }
    }

    pub fn invalid_client(description: impl Into<String>) -> Self {
        OAuthError { code: "invalid_client", description: description.into(), status: 401 }
    }

    pub fn server_error() -> Self {
        OAuthError {
            code: "server_error",
            description: "the server could not complete the request".into(),
            status: 500,
        }
    }
}

impl From<ServiceError> for OAuthError {
    fn from(error: ServiceError) -> Self {
        tracing::error!(%error, "oauth request failed");
        OAuthError::server_error()
    }
}

impl From<portcullis_store::StoreError> for OAuthError {
    fn from(error: portcullis_store::StoreError) -> Self {
        ServiceError::from(error).into()
    }
}

/// OAuth request parameters from a query string or form body. Empty values
/// count as absent (RFC 6749 §3.1); `resource` may repeat (RFC 8707); any
/// other repeat is noted for the endpoint to refuse.
#[derive(Debug, Default)]
pub struct Params {
    single: HashMap<String, String>,
    pub resources: Vec<String>,
    pub repeated: Vec<String>,
}

impl Params {
    pub fn parse(encoded: &[u8]) -> Params {
        let mut params = Params::default();
        for (key, value) in form_urlencoded::parse(encoded) {
            if value.is_empty() {
                continue;
            }
            if key == "resource" {
                // The same resource named twice is still one resource.
                if !params.resources.iter().any(|r| *r == value) {
                    params.resources.push(value.into_owned());
                }
            } else if params.single.insert(key.to_string(), value.into_owned()).is_some()
                && !params.repeated.iter().any(|r| *r == key)
            {
                params.repeated.push(key.into_owned());
            }
        }
        params
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.single.get(key).map(String::as_str)
    }

    pub fn require(&self, key: &str) -> Result<&str, OAuthError> {
        self.get(key)
            .ok_or_else(|| OAuthError::new("invalid_request", format!("parameter `{key}` is required")))
    }
}

/// Client credentials as presented (Basic header or form body).
#[derive(Debug, Clone)]
pub struct PresentedClient {
    pub client_id: String,
    pub client_secret: Option<String>,
}

/// Authenticates a client: confidential clients by secret (constant-time
/// against its SHA-256 hash), public clients by id alone.
pub async fn authenticate(env: &EnvState, presented: &PresentedClient) -> Result<Arc<Client>, OAuthError> {
    let failed = || OAuthError::invalid_client("client authentication failed");
    let client = env.client(&presented.client_id).await?.ok_or_else(failed)?;
    match (&client.secret_hash, &presented.client_secret) {
        (Some(hash), Some(secret)) if secret::verify_secret(secret, hash) => Ok(client),
        (None, None) => Ok(client),
        _ => Err(failed()),
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// RFC 9068 access-token claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// When the user authenticated (user tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The user's role names (user tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// `resource:action` names granted by those roles (user tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// The organization the user signed in to (`/oauth/authorize?organization=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
}

impl AccessClaims {
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }

    /// Whether a user (not a client acting for itself) is the subject.
    pub fn is_user_token(&self) -> bool {
        self.sub != self.client_id
    }
}

fn unauthorized_client(grant_type: &str) -> OAuthError {
    OAuthError::new("unauthorized_client", format!("this client may not use the {grant_type} grant"))
}

/// `unauthorized_client` unless the client is registered for `grant_type`.
pub(crate) fn require_grant(client: &Client, grant_type: &str) -> Result<(), OAuthError> {
    if client.allows_grant(grant_type) { Ok(()) } else { Err(unauthorized_client(grant_type)) }
}

/// Where a request came from, for `token.issued`.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

/// The `client_credentials` grant.
pub async fn client_credentials(
    core: &Core,
    env: &EnvState,
    client: &Client,
    scope: Option<&str>,
    resources: &[String],
    info: RequestInfo,
) -> Result<TokenResponse, OAuthError> {
    if client.client_type != "confidential" {
        return Err(unauthorized_client("client_credentials"));
    }
    require_grant(client, "client_credentials")?;
    let resource = match resources {
        [] => env.environment.default_audience.clone().ok_or_else(|| {
            OAuthError::new("invalid_target", "the resource parameter is required for client_credentials")
        })?,
        [one] => one.clone(),
        _ => return Err(OAuthError::new("invalid_target", "request one resource per token")),
    };
    let apis = env.apis().await?;
    let api = apis
        .by_identifier
        .get(&resource)
        .ok_or_else(|| OAuthError::new("invalid_target", "the requested resource is unknown"))?;
    let allowed = apis.allowed(&client.id, api).ok_or_else(|| {
        OAuthError::new("invalid_target", "this client has no grant for the requested resource")
    })?;
    let granted: Vec<&str> = match scope {
        None => allowed.iter().map(String::as_str).collect(),
        Some(requested) => {
            let mut granted = Vec::new();
            for s in requested.split_ascii_whitespace() {
                if !allowed.iter().any(|a| a == s) {
                    return Err(OAuthError::new(
                        "invalid_scope",
                        format!("scope `{s}` is not allowed for this client and resource"),
                    ));
                }
                if !granted.contains(&s) {
                    granted.push(s);
                }
            }
            granted
        }
    };
    let scope = granted.join(" ");
    let now = now_micros() / 1_000_000;
    let claims = AccessClaims {
        iss: env.issuer.clone(),
        sub: client.client_id.clone(),
        aud: api.identifier.clone(),
        exp: now + api.server.token_ttl,
        iat: now,
        jti: secret::random_token::<16>(),
        client_id: client.client_id.clone(),
        scope,
        auth_time: None,
        roles: None,
        permissions: None,
        org_id: None,
    };
    let access_token = if client.token_format == "opaque" {
        store_opaque(core, env, &claims).await?
    } else {
        sign(env, "at+jwt", &claims).await?
    };
    let summary = json!({"aud": claims.aud, "scope": claims.scope, "jti": claims.jti, "exp": claims.exp});
    record_issued(core, env, client, "client_credentials", &summary, info).await;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: api.server.token_ttl,
        scope: (!claims.scope.is_empty()).then_some(claims.scope),
        id_token: None,
        refresh_token: None,
    })
}

/// Signs claims with the environment's primary key.
pub(crate) async fn sign(env: &EnvState, typ: &str, claims: &impl Serialize) -> Result<String, OAuthError> {
    let keys = env.keys().await?;
    let key = keys.primary.as_ref().ok_or_else(|| {
        tracing::error!(environment = %env.environment.handle, "no primary signing key");
        OAuthError::server_error()
    })?;
    jws::sign(key, typ, claims).map_err(|_| OAuthError::server_error())
}

/// A client acting at the OAuth endpoints, for audit records.
fn client_origin(env: &EnvState, client: &Client, info: &RequestInfo) -> Origin {
    Origin {
        environment_id: env.id().to_owned(),
        actor: Actor { kind: "client", id: Some(client.client_id.clone()), name: Some(client.name.clone()) },
        ip_address: info.ip_address.clone(),
        user_agent: info.user_agent.clone(),
    }
}

/// Queues `token.issued` (written off the request path, stamped now).
pub(crate) async fn record_issued(
    core: &Core,
    env: &EnvState,
    client: &Client,
    grant_type: &str,
    summary: &Value,
    info: RequestInfo,
) {
    let mut data = json!({"grant_type": grant_type, "client_id": client.client_id});
    if let (Some(data), Some(summary)) = (data.as_object_mut(), summary.as_object()) {
        data.extend(summary.clone());
    }
    core.events
        .record(
            client_origin(env, client, &info),
            Event {
                action: "token.issued",
                targets: vec![target("client", &client.id, Some(&client.name))],
                changes: json!({}),
                data,
            },
        )
        .await;
}

pub(crate) async fn store_opaque(
    core: &Core,
    env: &EnvState,
    claims: &AccessClaims,
) -> Result<String, OAuthError> {
    let token = secret::random_token::<32>();
    let row = AccessToken {
        id: new_id(),
        environment_id: env.id().to_owned(),
        token_hash: secret::hash_secret(&token),
        jti: claims.jti.clone(),
        client_id: claims.client_id.clone(),
        subject: claims.sub.clone(),
        scope: claims.scope.clone(),
        audience: claims.aud.clone(),
        expires_at: claims.exp * 1_000_000,
        revoked_at: None,
        inserted_at: now_micros(),
        organization_id: claims.org_id.clone(),
    };
    let mut conn = core.db.read().await?;
    record::insert(&mut conn, &row).await?;
    Ok(token)
}

/// Why a presented access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    Malformed,
    BadSignature,
    Expired,
    Revoked,
    WrongIssuer,
    /// The client it was issued to no longer exists.
    UnknownClient,
    /// Its user has been blocked.
    UserBlocked,
}

impl TokenRejection {
    pub fn describe(self) -> &'static str {
        match self {
            TokenRejection::Malformed => "the access token is malformed",
            TokenRejection::BadSignature => "the access token signature is invalid or its key is not active",
            TokenRejection::Expired => "the access token has expired",
            TokenRejection::Revoked => "the access token has been revoked",
            TokenRejection::WrongIssuer => "the access token was not issued by this environment",
            TokenRejection::UnknownClient => "the client the access token was issued to no longer exists",
            TokenRejection::UserBlocked => "the user of the access token is blocked",
        }
    }
}

fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Verifies an access token (JWT or opaque) issued by this environment.
pub async fn verify_access_token(
    core: &Core,
    env: &EnvState,
    token: &str,
) -> Result<AccessClaims, VerifyError> {
    let now = now_micros() / 1_000_000;
    let claims = if looks_like_jwt(token) {
        let keys = env.keys().await?;
        let verified = jws::verify(token, |kid| keys.verifiers.get(kid)).map_err(|e| match e {
            portcullis_crypto::CryptoError::Malformed => TokenRejection::Malformed,
            _ => TokenRejection::BadSignature,
        })?;
        if verified.header.get("typ").and_then(Value::as_str) != Some("at+jwt") {
            return Err(TokenRejection::Malformed.into());
        }
        let claims: AccessClaims =
            serde_json::from_value(verified.claims).map_err(|_| TokenRejection::Malformed)?;
        if !env.issues(&claims.iss) {
            return Err(TokenRejection::WrongIssuer.into());
        }
        if claims.exp <= now {
            return Err(TokenRejection::Expired.into());
        }
        if env.revoked().await?.contains(&claims.jti) {
            return Err(TokenRejection::Revoked.into());
        }
        claims
    } else {
        let row: AccessToken = find_by_secret(&mut *core.db.read().await?, env.id(), "token_hash", token)
            .await?
            .ok_or(TokenRejection::Malformed)?;
        // Session and refresh-family revocations list the jti.
        if row.revoked_at.is_some() || env.revoked().await?.contains(&row.jti) {
            return Err(TokenRejection::Revoked.into());
        }
        if row.expires_at <= now_micros() {
            return Err(TokenRejection::Expired.into());
        }
        AccessClaims {
            iss: env.issuer.clone(),
            sub: row.subject,
            aud: row.audience,
            exp: row.expires_at / 1_000_000,
            iat: row.inserted_at / 1_000_000,
            jti: row.jti,
            client_id: row.client_id,
            scope: row.scope,
            auth_time: None,
            roles: None,
            permissions: None,
            org_id: row.organization_id,
        }
    };
    if env.client(&claims.client_id).await?.is_none() {
        return Err(TokenRejection::UnknownClient.into());
    }
    if claims.is_user_token() && env.blocked_users().await?.contains(&claims.sub) {
        return Err(TokenRejection::UserBlocked.into());
    }
    Ok(claims)
}

#[derive(Debug)]
pub enum VerifyError {
    Rejected(TokenRejection),
    Service(ServiceError),
}

impl From<TokenRejection> for VerifyError {
    fn from(r: TokenRejection) -> Self {
        VerifyError::Rejected(r)
    }
}

impl From<ServiceError> for VerifyError {
    fn from(e: ServiceError) -> Self {
        VerifyError::Service(e)
    }
}

impl From<portcullis_store::StoreError> for VerifyError {
    fn from(e: portcullis_store::StoreError) -> Self {
        VerifyError::Service(e.into())
    }
}

/// RFC 7662 introspection: claims for an active token, `{"active": false}`
/// for anything else (expired, revoked, foreign, garbage).
/// RFC 7662 introspection, for the client the token was issued to and for
/// a client serving the token's API; to any other client every token is
/// inactive, so it learns nothing about tokens that are not its business.
pub async fn introspect(
    core: &Core,
    env: &EnvState,
    client: &Client,
    token: &str,
) -> Result<Value, OAuthError> {
    match verify_access_token(core, env, token).await {
        Ok(c) if may_introspect(env, client, &c).await? => {
            let mut out = json!({
                "active": true, "token_type": "Bearer", "client_id": c.client_id, "sub": c.sub,
                "aud": c.aud, "iss": c.iss, "exp": c.exp, "iat": c.iat, "jti": c.jti,
            });
            if !c.scope.is_empty() {
                out["scope"] = Value::String(c.scope);
            }
            if let Some(org_id) = c.org_id {
                out["org_id"] = Value::String(org_id);
            }
            Ok(out)
        }
        Ok(_) | Err(VerifyError::Rejected(_)) => Ok(json!({"active": false})),
        Err(VerifyError::Service(e)) => Err(e.into()),
    }
}

async fn may_introspect(env: &EnvState, client: &Client, claims: &AccessClaims) -> Result<bool, OAuthError> {
    if claims.client_id == client.client_id {
        return Ok(true);
    }
    let Some(served) = &client.serves_resource_server_id else { return Ok(false) };
    let apis = env.apis().await?;
    Ok(apis.by_identifier.get(&claims.aud).is_some_and(|api| api.server.id == *served && !api.server.system))
}

/// RFC 7009 revocation. Unknown tokens, and tokens issued to another client,
/// are ignored (the response is the same, so nothing leaks).
pub async fn revoke(
    core: &Core,
    env: &EnvState,
    client: &Client,
    token: &str,
    info: RequestInfo,
) -> Result<(), OAuthError> {
    if !looks_like_jwt(token) && revoke_refresh_token(core, env, client, token, &info).await? {
        return Ok(());
    }
    let (jti, expires_at, opaque_hash) = if looks_like_jwt(token) {
        let keys = env.keys().await?;
        let Ok(verified) = jws::verify(token, |kid| keys.verifiers.get(kid)) else { return Ok(()) };
        let Ok(claims) = serde_json::from_value::<AccessClaims>(verified.claims) else { return Ok(()) };
        // Revoking twice is a no-op, not a second `token.revoked` record.
        if claims.client_id != client.client_id
            || !env.issues(&claims.iss)
            || env.revoked().await?.contains(&claims.jti)
        {
            return Ok(());
        }
        (claims.jti, claims.exp * 1_000_000, None)
    } else {
        match find_by_secret::<AccessToken>(&mut *core.db.read().await?, env.id(), "token_hash", token)
            .await?
        {
            Some(row) if row.client_id == client.client_id && row.revoked_at.is_none() => {
                (row.jti, row.expires_at, Some(row.token_hash))
            }
            _ => return Ok(()),
        }
    };
    let mut tx = core.db.write().await?;
    match &opaque_hash {
        Some(hash) => {
            repo::tokens::revoke_opaque(tx.conn(), env.id(), hash).await?;
        }
        None => {
            repo::tokens::revoke_jti(tx.conn(), env.id(), &jti, expires_at).await?;
            tx.invalidate(env.id());
        }
    }
    tx.record(
        &client_origin(env, client, &info),
        &Event {
            action: "token.revoked",
            targets: vec![target("client", &client.id, Some(&client.name))],
            changes: json!({}),
            data: json!({"jti": jti, "client_id": client.client_id}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Revokes a refresh token and its whole family (with the access tokens it
/// issued); `false` if `token` is not a refresh token of this environment.
async fn revoke_refresh_token(
    core: &Core,
    env: &EnvState,
    client: &Client,
    token: &str,
    info: &RequestInfo,
) -> Result<bool, OAuthError> {
    let Some(row) =
        find_by_secret::<RefreshToken>(&mut *core.db.read().await?, env.id(), "token_hash", token).await?
    else {
        return Ok(false);
    };
    if row.client_id != client.id || row.revoked_at.is_some() {
        return Ok(true);
    }
    let mut tx = core.db.write().await?;
    crate::services::sessions::end_tokens(&mut tx, env.id(), "family_id", &row.family_id, now_micros())
        .await?;
    let event = Event {
        action: "token.revoked",
        targets: vec![target("client", &client.id, Some(&client.name)), target("user", &row.user_id, None)],
        changes: json!({}),
        data: json!({"token_type": "refresh_token", "family_id": row.family_id, "client_id": client.client_id}),
    };
    tx.record(&client_origin(env, client, info), &event).await?;
    tx.commit().await?;
    Ok(true)
}
