//! The authorization endpoint's logic (RFC 6749 §4.1, OIDC Core §3.1.2):
//! validating a request, carrying it through login and consent as a sealed
//! "flow", deciding what the user must do next, and issuing the code.
//!
//! The flow is the validated request plus the time it started, sealed with
//! the master key (AES-GCM, bound to the environment). It needs no server
//! state, cannot be altered by the browser, and its start time is what makes
//! `prompt=login`, `prompt=consent` and `max_age` terminate: a login or a
//! consent given after the flow started satisfies them.

use std::sync::Arc;

use portcullis_crypto::{jws, secret};
use portcullis_store::model::{AuthorizationCode, Client, Consent, Event, Session, User};
use portcullis_store::types::JsonText;
use portcullis_store::{new_id, now_micros, record};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{OAuthError, Params};
use crate::services::memberships::Membership;
use crate::services::organizations::Organization;
use crate::services::target;
use crate::{Core, Ctx, EnvState, Result, ServiceError};

/// Scopes every environment understands without a `resource`.
pub const OIDC_SCOPES: [&str; 6] = ["openid", "profile", "email", "address", "phone", "offline_access"];
/// How long a code may wait to be redeemed.
pub const CODE_TTL_SECONDS: i64 = 600;
/// How long a sign-in may take from `/oauth/authorize` to the code.
pub const FLOW_TTL_SECONDS: i64 = 3600;

/// A validated authorization request, as carried through the sign-in pages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// The resource server identifier the access token is for.
    pub audience: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// The `sub` of a valid `id_token_hint`.
    pub hint_subject: Option<String>,
    /// When `/oauth/authorize` first saw this request (microseconds).
    pub started_at: i64,
    /// Random: the flow issues at most one code (a resubmitted form is refused).
    pub flow_id: String,
    /// `organization=` as sent (an id or a slug), or the id the user picked.
    #[serde(default)]
    pub organization: Option<String>,
}

impl AuthorizationRequest {
    fn prompts(&self, value: &str) -> bool {
        self.prompt.iter().any(|p| p == value)
    }
}

/// Why an authorization request failed.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: show an error page and
    /// never redirect (RFC 6749 §4.1.2.1).
    Page(String),
    /// Send the error to the client's redirect URI.
    Redirect(String),
    Service(ServiceError),
}

impl From<ServiceError> for AuthorizeError {
    fn from(e: ServiceError) -> Self {
        AuthorizeError::Service(e)
    }
}

/// `redirect_uri` with `params` appended to its query (it may have one).
fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut url = redirect_uri.to_owned();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    url.push(if redirect_uri.contains('?') { '&' } else { '?' });
    url.push_str(&query.finish());
    url
}

/// An error response at the redirect URI, with `state` and RFC 9207 `iss`.
pub fn error_redirect(env: &EnvState, redirect_uri: &str, state: Option<&str>, error: &OAuthError) -> String {
    let mut params = vec![("error", error.code), ("error_description", error.description.as_str())];
    if let Some(state) = state {
        params.push(("state", state));
    }
    params.push(("iss", &env.issuer));
    redirect_with(redirect_uri, &params)
}

/// Validates an authorization request. Client and redirect URI first: until
/// both are known good, errors are shown, not redirected.
pub async fn validate(env: &EnvState, params: &Params) -> Result<AuthorizationRequest, AuthorizeError> {
    for key in ["client_id", "redirect_uri"] {
        if params.repeated.iter().any(|r| r == key) {
            return Err(AuthorizeError::Page(format!("The parameter `{key}` is repeated.")));
        }
    }
    let client_id = params
        .get("client_id")
        .ok_or_else(|| AuthorizeError::Page("The request has no `client_id`.".into()))?;
    let client = env.client(client_id).await?.ok_or_else(|| {
        AuthorizeError::Page("The application that sent you here is not registered.".into())
    })?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| AuthorizeError::Page("The request has no `redirect_uri`.".into()))?;
    // Exact string comparison (RFC 9700 §2.1): no prefix or pattern matching.
    if !client.redirect_uris.0.iter().any(|registered| registered == redirect_uri) {
        return Err(AuthorizeError::Page("The redirect URI is not registered for this application.".into()));
    }
    let state = params.get("state");
    let fail = |code: &'static str, description: String| {
        AuthorizeError::Redirect(error_redirect(
            env,
            redirect_uri,
            state,
            &OAuthError::new(code, description),
        ))
    };
    if let Some(key) = params.repeated.first() {
        return Err(fail("invalid_request", format!("parameter `{key}` is repeated")));
    }
    if params.get("request").is_some() {
        return Err(fail("request_not_supported", "request objects are not supported".into()));
    }
    if params.get("request_uri").is_some() {
        return Err(fail("request_uri_not_supported", "request_uri is not supported".into()));
    }
    match params.get("response_type") {
        None => return Err(fail("invalid_request", "parameter `response_type` is required".into())),
        Some("code") => {}
        Some(other) => {
            return Err(fail(
                "unsupported_response_type",
                format!("response_type `{other}` is not supported"),
            ));
        }
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(fail("invalid_request", "only response_mode=query is supported".into()));
    }
    if !client.allows_grant("authorization_code") {
        return Err(fail(
            "unauthorized_client",
            "this client may not use the authorization code flow".into(),
        ));
    }

    let code_challenge = match (params.get("code_challenge"), params.get("code_challenge_method")) {
        // OAuth 2.1 §4.1.1: every client, unless exempted (confidential only).
        (None, None) if client.require_pkce => {
            return Err(fail("invalid_request", "this client must use PKCE (code_challenge)".into()));
        }
        (None, None) => None,
        (None, Some(_)) => {
            return Err(fail("invalid_request", "code_challenge_method without code_challenge".into()));
        }
        (Some(challenge), Some("S256")) => {
            if challenge.len() != 43
                || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                return Err(fail(
                    "invalid_request",
                    "code_challenge must be a base64url SHA-256 (43 characters)".into(),
                ));
            }
            Some(challenge.to_owned())
        }
        (Some(_), _) => {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not supported)".into(),
            ));
        }
    };

    let prompt: Vec<String> = params
        .get("prompt")
        .map(|p| p.split_ascii_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(unknown) =
        prompt.iter().find(|p| !["none", "login", "consent", "select_account"].contains(&p.as_str()))
    {
        return Err(fail("invalid_request", format!("prompt `{unknown}` is not supported")));
    }
    if prompt.iter().any(|p| p == "none") && prompt.len() > 1 {
        return Err(fail("invalid_request", "prompt=none cannot be combined with other values".into()));
    }
    let max_age = match params.get("max_age") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| fail("invalid_request", "max_age must be a non-negative integer".into()))?,
        ),
    };

    let apis = env.apis().await?;
    let api = match params.resources.as_slice() {
        [] => None,
        [one] => match apis.by_identifier.get(one) {
            Some(api) if !api.server.system => Some(api),
            Some(_) => {
                return Err(fail(
                    "invalid_target",
                    "the Management API cannot be requested for a user".into(),
                ));
            }
            None => return Err(fail("invalid_target", "the requested resource is unknown".into())),
        },
        _ => return Err(fail("invalid_target", "request one resource per authorization".into())),
    };
    // The client needs a grant on the API, and asks only for what it allows
    // (tokens are narrowed further when issued: see `grants::user_scope`).
    let allowed = match api {
        Some(api) => Some(apis.allowed(&client.id, api).ok_or_else(|| {
            fail("invalid_target", "this client has no grant for the requested resource".into())
        })?),
        None => None,
    };
    let mut scopes = Vec::new();
    for scope in params.get("scope").unwrap_or_default().split_ascii_whitespace() {
        let known =
            OIDC_SCOPES.contains(&scope) || api.is_some_and(|api| api.scopes.iter().any(|n| n == scope));
        if !known {
            let hint = if api.is_none() { " (API scopes need a `resource`)" } else { "" };
            return Err(fail("invalid_scope", format!("scope `{scope}` is unknown{hint}")));
        }
        if !OIDC_SCOPES.contains(&scope) && !allowed.is_some_and(|a| a.iter().any(|n| n == scope)) {
            return Err(fail("invalid_scope", format!("scope `{scope}` is not granted to this client")));
        }
        // offline_access is dropped for clients that cannot refresh.
        let refreshable = client.allows_grant("refresh_token");
        if (scope != "offline_access" || refreshable) && !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }

    let organization = params.get("organization").map(str::to_owned);
    if organization.is_some() && client.organization_usage == "deny" {
        return Err(fail("invalid_request", "this client does not sign users in to organizations".into()));
    }
    if organization.as_ref().is_some_and(|o| o.is_empty() || o.len() > 100) {
        return Err(fail("invalid_request", "organization must be an organization's id or slug".into()));
    }

    let hint_subject = match params.get("id_token_hint") {
        None => None,
        Some(hint) => Some(
            verify_id_token_hint(env, hint)
                .await?
                .filter(|h| h.audiences.contains(&client.client_id))
                .map(|h| h.subject)
                .ok_or_else(|| {
                    fail("invalid_request", "id_token_hint is not an ID token this server issued".into())
                })?,
        ),
    };

    Ok(AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scopes,
        audience: api.map(|api| api.identifier.clone()),
        state: state.map(str::to_owned),
        nonce: params.get("nonce").map(str::to_owned),
        code_challenge,
        prompt,
        max_age,
        login_hint: params.get("login_hint").map(|h| h.chars().take(254).collect()),
        hint_subject,
        started_at: now_micros(),
        flow_id: secret::random_token::<16>(),
        organization,
    })
}

/// What a verified `id_token_hint` says.
#[derive(Debug, Clone)]
pub struct IdTokenHint {
    pub subject: String,
    pub audiences: Vec<String>,
    pub session_id: Option<String>,
}

/// Verifies an ID token this environment issued (signature and issuer; it
/// may have expired, as hints often have).
pub async fn verify_id_token_hint(env: &EnvState, token: &str) -> Result<Option<IdTokenHint>> {
    let keys = env.keys().await?;
    let Ok(verified) = jws::verify(token, |kid| keys.verifiers.get(kid)) else { return Ok(None) };
    let claims = verified.claims;
    if verified.header["typ"] != "JWT" || !claims["iss"].as_str().is_some_and(|iss| env.issues(iss)) {
        return Ok(None);
    }
    let audiences = match &claims["aud"] {
        serde_json::Value::String(aud) => vec![aud.clone()],
        serde_json::Value::Array(auds) => auds.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
        _ => return Ok(None),
    };
    let Some(subject) = claims["sub"].as_str().map(str::to_owned) else { return Ok(None) };
    Ok(Some(IdTokenHint { subject, audiences, session_id: claims["sid"].as_str().map(str::to_owned) }))
}

fn flow_aad(env: &EnvState) -> String {
    format!("authorization-flow:{}", env.id())
}

/// Seals a request for the sign-in pages to carry.
pub fn seal(core: &Core, env: &EnvState, request: &AuthorizationRequest) -> Result<String> {
    let plain = serde_json::to_vec(request).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(core.master_key.seal(&plain, &flow_aad(env))?)
}

/// Opens a sealed flow; `None` if it was altered, belongs to another
/// environment or is older than [`FLOW_TTL_SECONDS`].
pub fn open(core: &Core, env: &EnvState, flow: &str) -> Option<AuthorizationRequest> {
    let plain = core.master_key.open(flow, &flow_aad(env)).ok()?;
    let request: AuthorizationRequest = serde_json::from_slice(&plain).ok()?;
    (now_micros() - request.started_at < FLOW_TTL_SECONDS * 1_000_000).then_some(request)
}

/// What the user must do next for a request.
#[derive(Debug)]
pub enum Next {
    /// Show the login page.
    Login,
    /// Ask for consent to these scopes.
    Consent { client: Arc<Client>, scopes: Vec<String> },
    /// Done (a code) or failed (an error): go back to the client.
    Redirect(String),
    /// The flow already issued its code (a form sent twice, the back
    /// button): nothing more comes of it.
    Spent,
    /// The client requires an organization and none was named: the user
    /// picks one of theirs (id, name).
    PickOrganization(Vec<(String, String)>),
}

/// Decides the next step for `request` given the browser's session, and
/// issues the code once nothing is left to ask.
pub async fn next_step(
    core: &Core,
    env: &EnvState,
    request: &AuthorizationRequest,
    session: Option<&(Session, User)>,
) -> Result<Next> {
    let fail = |code: &'static str, description: &str| {
        Next::Redirect(error_redirect(
            env,
            &request.redirect_uri,
            request.state.as_deref(),
            &OAuthError::new(code, description),
        ))
    };
    let Some(client) = env.client(&request.client_id).await? else {
        return Ok(fail("unauthorized_client", "the client no longer exists"));
    };
    let silent = request.prompts("none");
    let now = now_micros();
    let needs_login = match session {
        None => true,
        Some((session, user)) => {
            let fresh = session.authenticated_at >= request.started_at;
            let too_old = request.max_age.is_some_and(|max| now - session.authenticated_at > max * 1_000_000);
            let other_user = request.hint_subject.as_ref().is_some_and(|sub| *sub != user.id);
            !fresh && (request.prompts("login") || too_old || other_user)
        }
    };
    if needs_login {
        return Ok(if silent { fail("login_required", "the user must sign in") } else { Next::Login });
    }
    let Some((session, user)) = session else { return Ok(Next::Login) };
    if !client.first_party {
        let mut conn = core.db.read().await?;
        let consent = find_consent(&mut conn, env.id(), &user.id, &client.id).await?;
        drop(conn);
        let covered = consent.as_ref().is_some_and(|c| {
            request.scopes.iter().all(|s| c.scopes.0.contains(s))
                && (!request.prompts("consent") || c.updated_at >= request.started_at)
        });
        if !covered {
            return Ok(if silent {
                fail("consent_required", "the user must consent to the requested scopes")
            } else {
                Next::Consent { client, scopes: request.scopes.clone() }
            });
        }
    }
    let organization_id = match organization(core, env, request, &client, user).await? {
        Ok(organization_id) => organization_id,
        Err(Pick::Among(organizations)) if !silent => return Ok(Next::PickOrganization(organizations)),
        Err(Pick::Among(_)) => {
            return Ok(fail("interaction_required", "the user must choose an organization"));
        }
        Err(Pick::Refused(code, description)) => return Ok(fail(code, description)),
    };
    let Some(code) = issue_code(core, env, request, &client, session, organization_id).await? else {
        return Ok(Next::Spent);
    };
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = request.state.as_deref() {
        params.push(("state", state));
    }
    params.push(("iss", &env.issuer));
    Ok(Next::Redirect(redirect_with(&request.redirect_uri, &params)))
}

/// Why a sign-in has no organization yet.
enum Pick {
    /// The user is a member of several: they choose.
    Among(Vec<(String, String)>),
    /// An OAuth error for the client.
    Refused(&'static str, &'static str),
}

/// The organization the sign-in is for: the one named (by id or slug),
/// which the user must be a member of; for a client that requires one and
/// named none, the user's only organization, or a choice among theirs.
async fn organization(
    core: &Core,
    env: &EnvState,
    request: &AuthorizationRequest,
    client: &Client,
    user: &User,
) -> Result<Result<Option<String>, Pick>> {
    let mut conn = core.db.read().await?;
    let memberships: Vec<Membership> =
        record::find_in(&mut conn, env.id(), "user_id", std::slice::from_ref(&user.id)).await?;
    let Some(named) = &request.organization else {
        if client.organization_usage != "require" {
            return Ok(Ok(None));
        }
        let ids: Vec<String> = memberships.iter().map(|m| m.organization_id.clone()).collect();
        let mut organizations: Vec<Organization> = record::find_in(&mut conn, env.id(), "id", &ids).await?;
        organizations.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(match organizations.as_slice() {
            [] => Err(Pick::Refused("access_denied", "the user is not a member of any organization")),
            [only] => Ok(Some(only.id.clone())),
            _ => Err(Pick::Among(organizations.into_iter().map(|o| (o.id, o.name)).collect())),
        });
    };
    let by_id: Option<Organization> = record::find(&mut conn, env.id(), named).await?;
    let found = match by_id {
        Some(organization) => Some(organization),
        None => record::find_by::<Organization>(&mut conn, env.id(), "slug", named).await?,
    };
    let Some(organization) = found else {
        return Ok(Err(Pick::Refused("invalid_request", "the organization is unknown")));
    };
    if !memberships.iter().any(|m| m.organization_id == organization.id) {
        return Ok(Err(Pick::Refused("access_denied", "the user is not a member of the organization")));
    }
    Ok(Ok(Some(organization.id)))
}

/// The user refused consent.
pub fn denied(env: &EnvState, request: &AuthorizationRequest) -> String {
    error_redirect(
        env,
        &request.redirect_uri,
        request.state.as_deref(),
        &OAuthError::new("access_denied", "the user denied the request"),
    )
}

/// The user's remembered consent for a client (by the client's row id).
async fn find_consent(
    conn: &mut sqlx::AnyConnection,
    environment_id: &str,
    user_id: &str,
    client_row_id: &str,
) -> Result<Option<Consent>> {
    let consents: Vec<Consent> =
        record::find_in(conn, environment_id, "user_id", &[user_id.to_owned()]).await?;
    Ok(consents.into_iter().find(|c| c.client_id == client_row_id))
}

/// Remembers that the user (the `ctx` actor) allowed `scopes` to the client.
pub async fn grant_consent(
    core: &Core,
    ctx: &Ctx,
    user: &User,
    client: &Client,
    scopes: &[String],
) -> Result<()> {
    let mut tx = core.db.write().await?;
    let env = ctx.environment_id();
    let now = now_micros();
    let consent = match find_consent(tx.conn(), env, &user.id, &client.id).await? {
        Some(mut consent) => {
            for scope in scopes {
                if !consent.scopes.0.contains(scope) {
                    consent.scopes.0.push(scope.clone());
                }
            }
            consent.updated_at = now;
            record::update(tx.conn(), env, &consent).await?;
            consent
        }
        None => {
            let consent = Consent {
                id: new_id(),
                environment_id: env.to_owned(),
                user_id: user.id.clone(),
                client_id: client.id.clone(),
                scopes: JsonText(scopes.to_vec()),
                inserted_at: now,
                updated_at: now,
            };
            record::insert(tx.conn(), &consent).await?;
            consent
        }
    };
    tx.record(
        &ctx.origin(),
        &Event {
            action: "consent.granted",
            targets: vec![
                target("user", &user.id, Some(&user.email)),
                target("client", &client.id, Some(&client.name)),
            ],
            changes: json!({}),
            data: json!({"user_id": user.id, "client_id": client.client_id, "scopes": consent.scopes.0}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn issue_code(
    core: &Core,
    env: &EnvState,
    request: &AuthorizationRequest,
    client: &Client,
    session: &Session,
    organization_id: Option<String>,
) -> Result<Option<String>> {
    let code = secret::random_token::<32>();
    let now = now_micros();
    let row = AuthorizationCode {
        id: new_id(),
        environment_id: env.id().to_owned(),
        code_hash: secret::hash_secret(&code),
        client_id: client.id.clone(),
        user_id: session.user_id.clone(),
        session_id: Some(session.id.clone()),
        redirect_uri: request.redirect_uri.clone(),
        scope: request.scopes.join(" "),
        audience: request.audience.clone(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        auth_time: session.authenticated_at,
        access_jti: None,
        access_expires_at: None,
        expires_at: now + CODE_TTL_SECONDS * 1_000_000,
        used_at: None,
        inserted_at: now,
        flow_id: Some(request.flow_id.clone()),
        organization_id,
    };
    let mut tx = core.db.write_state().await?;
    match record::insert(tx.conn(), &row).await {
        Ok(()) => {}
        Err(portcullis_store::StoreError::Conflict(index))
            if index.contains("flow_id") || index.contains("flow_key") =>
        {
            return Ok(None);
        }
        Err(error) => return Err(error.into()),
    }
    tx.commit().await?;
    Ok(Some(code))
}
