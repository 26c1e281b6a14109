//! Tokens for users: the `authorization_code` and `refresh_token` grants,
//! ID tokens, and the UserInfo claims.
//!
//! A code is redeemed once: the redemption claims the row atomically, so of
//! two concurrent redemptions one wins, and a replay revokes what the first
//! one issued. Refresh tokens rotate on every use within a family (the code's
//! id); presenting a rotated one revokes the family and its access tokens.

use portcullis_crypto::secret;
use portcullis_store::model::{AuthorizationCode, Client, RefreshToken, Session, User};
use portcullis_store::repo::signin::OrganizationGrant;
use portcullis_store::{new_id, now_micros, record, repo};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::AnyConnection;

use super::{AccessClaims, OAuthError, Params, RequestInfo, TokenResponse};
use crate::services::find_by_secret;
use crate::{Core, EnvState, ServiceError, services};

/// Lifetime of an ID token.
pub const ID_TOKEN_TTL_SECONDS: i64 = 3600;
/// Lifetime of an access token that names no API (it is for UserInfo).
pub const DEFAULT_ACCESS_TTL_SECONDS: i64 = 3600;

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new("invalid_grant", description)
}

/// What a code or refresh token authorizes, and for whom.
struct Authorization<'a> {
    user: &'a User,
    client: &'a Client,
    scope: &'a str,
    audience: Option<&'a str>,
    auth_time: i64,
    session_id: Option<&'a str>,
    /// The organization the user signed in to, if any.
    organization_id: Option<&'a str>,
}

/// An access token about to be issued, with what revocation needs.
struct Issued {
    token: String,
    jti: String,
    expires_at: i64,
    expires_in: i64,
}

/// `POST /oauth/token` with `grant_type=authorization_code`.
pub async fn authorization_code(
    core: &Core,
    env: &EnvState,
    client: &Client,
    params: &Params,
    info: RequestInfo,
) -> Result<TokenResponse, OAuthError> {
    super::require_grant(client, "authorization_code")?;
    let code = params.require("code")?;
    let redirect_uri = params.require("redirect_uri")?;
    let verifier = params.get("code_verifier");
    if let Some(v) = &verifier
        && (!(43..=128).contains(&v.len())
            || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)))
    {
        return Err(OAuthError::new(
            "invalid_request",
            "code_verifier must be 43 to 128 unreserved characters",
        ));
    }
    // Every read of the grant shares one pooled connection: on SQLite each
    // checkout and each query is a round trip to the connection's thread.
    let mut conn = core.db.read().await?;
    let row: Option<AuthorizationCode> = find_by_secret(&mut conn, env.id(), "code_hash", code).await?;
    let Some(row) = row.filter(|r| r.client_id == client.id) else {
        return Err(invalid_grant("the authorization code is invalid"));
    };
    // A code's id is the id of the refresh-token family it starts.
    if row.used_at.is_some() {
        revoke_family(core, env, &row.id, "authorization code replayed").await?;
        return Err(invalid_grant("the authorization code has already been used"));
    }
    if row.expires_at <= now_micros() {
        return Err(invalid_grant("the authorization code has expired"));
    }
    if row.redirect_uri != redirect_uri {
        return Err(invalid_grant("redirect_uri does not match the authorization request"));
    }
    match (&row.code_challenge, &verifier) {
        (Some(challenge), Some(verifier)) => {
            if !secret::constant_time_eq(&secret::sha256_b64url(verifier.as_bytes()), challenge) {
                return Err(invalid_grant("code_verifier does not match the code_challenge"));
            }
        }
        (Some(_), None) => return Err(invalid_grant("code_verifier is required")),
        (None, Some(_)) => return Err(invalid_grant("no code_challenge was sent for this code")),
        (None, None) => {}
    }
    check_resource(&params.resources, row.audience.as_deref())?;
    let subject = live_subject(&mut conn, env, &row.user_id, row.organization_id.as_deref()).await?;
    if let Some(session_id) = &row.session_id
        && !session_live(&mut conn, env, session_id).await?
    {
        return Err(invalid_grant("the sign-in session has ended"));
    }
    drop(conn);
    let grant = Authorization {
        user: &subject.user,
        client,
        scope: &row.scope,
        audience: row.audience.as_deref(),
        auth_time: row.auth_time,
        session_id: row.session_id.as_deref(),
        organization_id: row.organization_id.as_deref(),
    };
    let scope = user_scope(env, &grant, &subject, &row.scope).await?;
    let access = access_token(core, env, &grant, &subject, &scope).await?;
    let id_token = id_token(env, &grant, &subject, row.nonce.as_deref()).await?;
    let refresh = refreshable(env, &grant).await?.then(secret::random_token::<32>);

    let now = now_micros();
    let mut tx = core.db.write_state().await?;
    if !repo::signin::claim(tx.conn(), "authorization_codes", env.id(), &row.id, now).await? {
        drop(tx);
        revoke_family(core, env, &row.id, "authorization code replayed").await?;
        return Err(invalid_grant("the authorization code has already been used"));
    }
    let mut redeemed = row.clone();
    redeemed.used_at = Some(now);
    redeemed.access_jti = Some(access.jti.clone());
    redeemed.access_expires_at = Some(access.expires_at);
    record::update(tx.conn(), env.id(), &redeemed).await?;
    if let Some(token) = &refresh {
        let new_row = refresh_row(env, &grant, token, &row.id, &access, now);
        record::insert(tx.conn(), &new_row).await?;
    }
    tx.commit().await?;
    super::record_issued(
        core,
        env,
        client,
        "authorization_code",
        &access_claims_summary(&grant, &access),
        info,
    )
    .await;
    Ok(response(access, &scope, id_token, refresh))
}

/// `POST /oauth/token` with `grant_type=refresh_token`.
pub async fn refresh_token(
    core: &Core,
    env: &EnvState,
    client: &Client,
    params: &Params,
    info: RequestInfo,
) -> Result<TokenResponse, OAuthError> {
    super::require_grant(client, "refresh_token")?;
    let presented = params.require("refresh_token")?;
    let mut conn = core.db.read().await?;
    let row: Option<RefreshToken> = find_by_secret(&mut conn, env.id(), "token_hash", presented).await?;
    let Some(row) = row.filter(|r| r.client_id == client.id) else {
        return Err(invalid_grant("the refresh token is invalid"));
    };
    if row.revoked_at.is_some() {
        return Err(invalid_grant("the refresh token has been revoked"));
    }
    if row.used_at.is_some() {
        revoke_family(core, env, &row.family_id, "refresh token reused").await?;
        return Err(invalid_grant("the refresh token was already used; its family is revoked"));
    }
    let now = now_micros();
    if row.expires_at <= now {
        return Err(invalid_grant("the refresh token has expired"));
    }
    check_resource(&params.resources, row.audience.as_deref())?;
    // A narrower scope may be asked for this access token; the rotated
    // refresh token keeps the original scope (RFC 6749 §6).
    let scope = match params.get("scope") {
        None => row.scope.clone(),
        Some(requested) => {
            let original: Vec<&str> = row.scope.split_ascii_whitespace().collect();
            let mut narrowed = Vec::new();
            for s in requested.split_ascii_whitespace() {
                if !original.contains(&s) {
                    return Err(OAuthError::new("invalid_scope", format!("scope `{s}` was not granted")));
                }
                if !narrowed.contains(&s) {
                    narrowed.push(s);
                }
            }
            narrowed.join(" ")
        }
    };
    // Removing the membership ends the organization's refreshes.
    let subject = live_subject(&mut conn, env, &row.user_id, row.organization_id.as_deref()).await?;
    drop(conn);
    let grant = Authorization {
        user: &subject.user,
        client,
        scope: &row.scope,
        audience: row.audience.as_deref(),
        auth_time: row.auth_time,
        session_id: row.session_id.as_deref(),
        organization_id: row.organization_id.as_deref(),
    };
    let scope = user_scope(env, &grant, &subject, &scope).await?;
    let access = access_token(core, env, &grant, &subject, &scope).await?;
    // A refreshed ID token carries no nonce (OIDC Core §12.2).
    let id_token = id_token(env, &Authorization { scope: &scope, ..grant }, &subject, None).await?;
    let next = secret::random_token::<32>();
    let new_row = refresh_row(env, &grant, &next, &row.family_id, &access, now);
    if !core.rotations.rotate(row.id.clone(), new_row, now).await? {
        revoke_family(core, env, &row.family_id, "refresh token reused").await?;
        return Err(invalid_grant("the refresh token was already used; its family is revoked"));
    }
    super::record_issued(core, env, client, "refresh_token", &access_claims_summary(&grant, &access), info)
        .await;
    Ok(response(access, &scope, id_token, Some(next)))
}

fn response(access: Issued, scope: &str, id_token: Option<String>, refresh: Option<String>) -> TokenResponse {
    TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        scope: (!scope.is_empty()).then(|| scope.to_owned()),
        id_token,
        refresh_token: refresh,
    }
}

fn access_claims_summary(grant: &Authorization<'_>, access: &Issued) -> Value {
    json!({"sub": grant.user.id, "aud": grant.audience, "jti": access.jti, "exp": access.expires_at / 1_000_000})
}

/// RFC 8707: at the token endpoint a resource may only repeat what was authorized.
fn check_resource(resources: &[String], audience: Option<&str>) -> Result<(), OAuthError> {
    match resources {
        [] => Ok(()),
        [one] if Some(one.as_str()) == audience => Ok(()),
        _ => Err(OAuthError::new("invalid_target", "the resource was not part of the authorization")),
    }
}

/// The user a grant is for, with the roles and permissions their access
/// token carries: their own and, signed in to an organization, their
/// membership's.
struct Subject {
    user: User,
    roles: Vec<String>,
    permissions: Vec<String>,
    organization: Option<OrganizationGrant>,
}

/// The grant's user, unless deleted or blocked, and their membership of
/// `organization_id`, unless it has ended.
async fn live_subject(
    conn: &mut AnyConnection,
    env: &EnvState,
    user_id: &str,
    organization_id: Option<&str>,
) -> Result<Subject, OAuthError> {
    let user: Option<User> = record::find(conn, env.id(), user_id).await?;
    let user = user.filter(|u| !u.blocked).ok_or_else(|| invalid_grant("the user cannot sign in"))?;
    let (mut roles, mut permissions) = repo::signin::roles_and_permissions(conn, env.id(), &user.id).await?;
    let organization = match organization_id {
        None => None,
        Some(organization_id) => {
            let grant = repo::signin::organization_grant(conn, env.id(), &user.id, organization_id)
                .await?
                .ok_or_else(|| invalid_grant("the user is no longer a member of the organization"))?;
            for (all, more) in [(&mut roles, &grant.roles), (&mut permissions, &grant.permissions)] {
                all.extend(more.iter().cloned());
                all.sort();
                all.dedup();
            }
            Some(grant)
        }
    };
    Ok(Subject { user, roles, permissions, organization })
}

async fn session_live(
    conn: &mut AnyConnection,
    env: &EnvState,
    session_id: &str,
) -> Result<bool, OAuthError> {
    let session: Option<Session> = record::find(conn, env.id(), session_id).await?;
    Ok(session.is_some_and(|s| services::sessions::status(&s, now_micros()) == "active"))
}

/// Whether to issue a refresh token: the client has the grant, the user
/// granted `offline_access`, and the API (if any) allows offline access.
async fn refreshable(env: &EnvState, grant: &Authorization<'_>) -> Result<bool, OAuthError> {
    if !grant.client.allows_grant("refresh_token")
        || !grant.scope.split_ascii_whitespace().any(|s| s == "offline_access")
    {
        return Ok(false);
    }
    Ok(match grant.audience {
        None => true,
        Some(audience) => {
            env.apis().await?.by_identifier.get(audience).is_some_and(|a| a.server.allow_offline_access)
        }
    })
}

fn refresh_row(
    env: &EnvState,
    grant: &Authorization<'_>,
    token: &str,
    family_id: &str,
    access: &Issued,
    now: i64,
) -> RefreshToken {
    RefreshToken {
        id: new_id(),
        environment_id: env.id().to_owned(),
        token_hash: secret::hash_secret(token),
        family_id: family_id.to_owned(),
        client_id: grant.client.id.clone(),
        user_id: grant.user.id.clone(),
        session_id: grant.session_id.map(str::to_owned),
        scope: grant.scope.to_owned(),
        audience: grant.audience.map(str::to_owned),
        auth_time: grant.auth_time,
        organization_id: grant.organization_id.map(str::to_owned),
        access_jti: Some(access.jti.clone()),
        access_expires_at: Some(access.expires_at),
        expires_at: now + env.environment.session_ttl * 1_000_000,
        used_at: None,
        revoked_at: None,
        inserted_at: now,
    }
}

/// The scopes a user's access token carries, decided at every issuance
/// since grants, scopes and roles change: OpenID scopes as consented; API
/// scopes only while the API defines them, the client's grant on the API
/// allows them and, where the API enforces RBAC, the user holds them as
/// permissions through their roles. Without a grant on the API any more the
/// grant is refused.
async fn user_scope(
    env: &EnvState,
    grant: &Authorization<'_>,
    subject: &Subject,
    requested: &str,
) -> Result<String, OAuthError> {
    let Some(audience) = grant.audience else { return Ok(requested.to_owned()) };
    let apis = env.apis().await?;
    let api = apis
        .by_identifier
        .get(audience)
        .ok_or_else(|| OAuthError::new("invalid_target", "the resource no longer exists"))?;
    let allowed = apis
        .allowed(&grant.client.id, api)
        .ok_or_else(|| invalid_grant("this client's grant on the resource has been withdrawn"))?;
    let kept: Vec<&str> = requested
        .split_ascii_whitespace()
        .filter(|scope| {
            super::authorize::OIDC_SCOPES.contains(scope)
                || (api.scopes.iter().any(|s| s == scope)
                    && allowed.iter().any(|s| s == scope)
                    && (!api.server.enforce_rbac || subject.permissions.iter().any(|p| p == scope)))
        })
        .collect();
    Ok(kept.join(" "))
}

/// The user's access token: RFC 9068 claims plus `roles`, `permissions`
/// and `auth_time`.
async fn access_token(
    core: &Core,
    env: &EnvState,
    grant: &Authorization<'_>,
    subject: &Subject,
    scope: &str,
) -> Result<Issued, OAuthError> {
    let (audience, ttl) = match grant.audience {
        Some(identifier) => {
            let apis = env.apis().await?;
            let api = apis
                .by_identifier
                .get(identifier)
                .ok_or_else(|| OAuthError::new("invalid_target", "the resource no longer exists"))?;
            (api.identifier.clone(), api.server.token_ttl)
        }
        None => (format!("{}/oauth/userinfo", env.issuer), DEFAULT_ACCESS_TTL_SECONDS),
    };
    let now = now_micros() / 1_000_000;
    let claims = AccessClaims {
        iss: env.issuer.clone(),
        sub: grant.user.id.clone(),
        aud: audience,
        exp: now + ttl,
        iat: now,
        jti: secret::random_token::<16>(),
        client_id: grant.client.client_id.clone(),
        scope: scope.to_owned(),
        auth_time: Some(grant.auth_time / 1_000_000),
        roles: Some(subject.roles.clone()),
        permissions: Some(subject.permissions.clone()),
        org_id: subject.organization.as_ref().map(|o| o.id.clone()),
    };
    let token = if grant.client.token_format == "opaque" {
        super::store_opaque(core, env, &claims).await?
    } else {
        super::sign(env, "at+jwt", &claims).await?
    };
    Ok(Issued { token, jti: claims.jti, expires_at: claims.exp * 1_000_000, expires_in: ttl })
}

/// The standard claims a scope releases (OIDC Core §5.4).
pub fn user_claims(user: &User, scopes: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    for scope in scopes.split_ascii_whitespace() {
        match scope {
            "profile" => {
                let name = [user.first_name.as_deref(), user.last_name.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                if !name.is_empty() {
                    claims.insert("name".into(), json!(name));
                }
                if let Some(first) = &user.first_name {
                    claims.insert("given_name".into(), json!(first));
                }
                if let Some(last) = &user.last_name {
                    claims.insert("family_name".into(), json!(last));
                }
                claims.insert("updated_at".into(), json!(user.updated_at / 1_000_000));
            }
            "email" => {
                claims.insert("email".into(), json!(user.email));
                claims.insert("email_verified".into(), json!(user.email_verified));
            }
            _ => {}
        }
    }
    claims
}

#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    #[serde(flatten)]
    organization: Map<String, Value>,
    #[serde(flatten)]
    profile: Map<String, Value>,
}

/// `org_id`, `org_name` and `org_slug` of an organization-scoped sign-in.
fn organization_claims(organization: Option<&OrganizationGrant>) -> Map<String, Value> {
    let mut claims = Map::new();
    if let Some(o) = organization {
        claims.insert("org_id".into(), json!(o.id));
        claims.insert("org_name".into(), json!(o.name));
        claims.insert("org_slug".into(), json!(o.slug));
    }
    claims
}

/// An ID token when `openid` was granted.
async fn id_token(
    env: &EnvState,
    grant: &Authorization<'_>,
    subject: &Subject,
    nonce: Option<&str>,
) -> Result<Option<String>, OAuthError> {
    if !grant.scope.split_ascii_whitespace().any(|s| s == "openid") {
        return Ok(None);
    }
    let now = now_micros() / 1_000_000;
    let claims = IdClaims {
        iss: &env.issuer,
        sub: &grant.user.id,
        aud: &grant.client.client_id,
        exp: now + ID_TOKEN_TTL_SECONDS,
        iat: now,
        auth_time: grant.auth_time / 1_000_000,
        nonce,
        sid: grant.session_id,
        organization: organization_claims(subject.organization.as_ref()),
        profile: user_claims(grant.user, grant.scope),
    };
    Ok(Some(super::sign(env, "JWT", &claims).await?))
}

/// Revokes a refresh-token family and the access tokens it issued: a
/// replayed code (whose id is the family's) or a reused refresh token.
async fn revoke_family(core: &Core, env: &EnvState, family_id: &str, why: &str) -> Result<(), OAuthError> {
    let mut tx = core.db.write_state().await?;
    // Reads the rows afresh, so a concurrent winner's access token counts.
    services::sessions::end_tokens(&mut tx, env.id(), "family_id", family_id, now_micros()).await?;
    tx.commit().await?;
    tracing::warn!(environment = %env.environment.handle, family = %family_id, "{why}; its tokens are revoked");
    Ok(())
}

/// UserInfo (OIDC Core §5.3) for a verified access token.
pub async fn userinfo(
    core: &Core,
    env: &EnvState,
    claims: &AccessClaims,
) -> Result<Option<Value>, ServiceError> {
    let mut conn = core.db.read().await?;
    let user: Option<User> = record::find(&mut conn, env.id(), &claims.sub).await?;
    let Some(user) = user.filter(|u| !u.blocked) else { return Ok(None) };
    // The organization's claims while the membership lasts.
    let organization = match &claims.org_id {
        Some(org_id) => repo::signin::organization_grant(&mut conn, env.id(), &user.id, org_id).await?,
        None => None,
    };
    let mut out = Map::new();
    out.insert("sub".into(), json!(user.id));
    out.extend(user_claims(&user, &claims.scope));
    out.extend(organization_claims(organization.as_ref()));
    Ok(Some(Value::Object(out)))
}
