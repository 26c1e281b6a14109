//! OAuth 2.1 endpoints: token, introspection, revocation, and discovery.
//! Errors are RFC 6749 §5.2 JSON with `Cache-Control: no-store`.

pub mod discovery;
mod userinfo;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{options, post};
use base64::Engine;
use portcullis_core::limits::{Limit, RetryAfter};
use portcullis_core::oauth::{self, OAuthError, Params, PresentedClient, RequestInfo, grants};
use portcullis_core::{Core, EnvState};
use serde::Serialize;
use serde_json::Value;
use tower_http::cors::{Any, CorsLayer};

use crate::env::{Env, RequestMeta};

/// A JSON response that must never be cached (tokens, errors, introspection).
fn no_store(status: StatusCode, body: &impl Serialize) -> Response {
    let mut response = (status, serde_json::to_vec(body).unwrap_or_default()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An OAuth error response; a failed Basic authentication gets a challenge.
pub struct OAuthFailure {
    error: OAuthError,
    basic_realm: Option<String>,
    retry_after: Option<u64>,
}

impl From<OAuthError> for OAuthFailure {
    fn from(error: OAuthError) -> Self {
        OAuthFailure { error, basic_realm: None, retry_after: None }
    }
}

impl From<RetryAfter> for OAuthFailure {
    /// 429 with `Retry-After`; the error code is Auth0's, RFC 6749 has none.
    fn from(RetryAfter(seconds): RetryAfter) -> Self {
        let mut error = OAuthError::new("too_many_requests", "too many requests: slow down and retry later");
        error.status = 429;
        OAuthFailure { error, basic_realm: None, retry_after: Some(seconds) }
    }
}

impl IntoResponse for OAuthFailure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.error.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = serde_json::json!({"error": self.error.code, "error_description": self.error.description});
        let mut response = no_store(status, &body);
        // RFC 6749 §5.2: a client that tried HTTP Basic gets a 401 with a
        // Basic challenge; one that authenticated in the body gets none.
        if let Some(realm) = self.basic_realm.filter(|_| status == StatusCode::UNAUTHORIZED)
            && let Ok(value) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// The form body of a token, introspection or revocation request: empty
/// values are absent, `resource` may repeat, any other repeat is refused.
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::new("invalid_request", "the body must be application/x-www-form-urlencoded"));
    }
    let params = Params::parse(body);
    match params.repeated.first() {
        Some(key) => Err(OAuthError::new("invalid_request", format!("parameter `{key}` is repeated"))),
        None => Ok(params),
    }
}

/// Reads client credentials from HTTP Basic (RFC 6749 §2.3.1) or the body;
/// using both at once is an error.
fn presented_client(headers: &HeaderMap, form: &Params) -> Result<(PresentedClient, bool), OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, encoded)| encoded.trim());
    match (basic, form.get("client_id")) {
        (Some(_), _) if form.get("client_secret").is_some() => {
            Err(OAuthError::new("invalid_request", "use one client authentication method"))
        }
        (Some(encoded), _) => {
            let invalid = || OAuthError::invalid_client("malformed Basic credentials");
            let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| invalid())?;
            let text = String::from_utf8(decoded).map_err(|_| invalid())?;
            let (id, secret) = text.split_once(':').ok_or_else(invalid)?;
            let decode = |s: &str| percent_decode(s).ok_or_else(invalid);
            let client_id = decode(id)?;
            if form.get("client_id").is_some_and(|body_id| body_id != client_id) {
                return Err(OAuthError::new(
                    "invalid_request",
                    "client_id in the body does not match Basic credentials",
                ));
            }
            Ok((PresentedClient { client_id, client_secret: Some(decode(secret)?) }, true))
        }
        (None, Some(client_id)) => Ok((
            PresentedClient {
                client_id: client_id.to_owned(),
                client_secret: form.get("client_secret").map(str::to_owned),
            },
            false,
        )),
        (None, None) => Err(OAuthError::invalid_client("client authentication is required")),
    }
}

/// `application/x-www-form-urlencoded` decoding of one Basic credential part.
fn percent_decode(s: &str) -> Option<String> {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space).decode_utf8().ok().map(|c| c.into_owned())
}

/// Authenticates the client of a token, introspection or revocation
/// request. Failures are limited per IP and per client id: once either is
/// spent, the credentials are refused unchecked until it refills. A failed
/// Basic authentication gets a challenge.
async fn authenticated(
    core: &Core,
    env: &EnvState,
    ip: &str,
    presented: &PresentedClient,
    used_basic: bool,
) -> Result<Arc<portcullis_store::model::Client>, OAuthFailure> {
    let limits = [(Limit::ClientAuthIp, ip), (Limit::ClientAuthClient, presented.client_id.as_str())];
    core.limiter.check_failures(&limits)?;
    match oauth::authenticate(env, presented).await {
        Ok(client) => Ok(client),
        Err(error) => {
            core.limiter.count_failure(&limits)?;
            Err(OAuthFailure {
                error,
                basic_realm: used_basic.then(|| env.issuer.clone()),
                retry_after: None,
            })
        }
    }
}

/// The client credentials of a request; malformed ones count as a failed
/// authentication from this IP.
fn presented_or_failed(
    core: &Core,
    ip: &str,
    headers: &HeaderMap,
    form: &Params,
) -> Result<(PresentedClient, bool), OAuthFailure> {
    core.limiter.check_failures(&[(Limit::ClientAuthIp, ip)])?;
    presented_client(headers, form).map_err(|error| {
        match core.limiter.count_failure(&[(Limit::ClientAuthIp, ip)]) {
            Ok(()) => OAuthFailure::from(error),
            Err(retry) => OAuthFailure::from(retry),
        }
    })
}

async fn token(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthFailure> {
    let form = parse_form(&headers, &body)?;
    let ip = meta.ip_address.clone().unwrap_or_default();
    let (presented, used_basic) = presented_or_failed(&core, &ip, &headers, &form)?;
    // Every call is limited before authentication, so codes and refresh
    // tokens cannot be guessed at speed either.
    core.limiter.check_all(&[(Limit::TokenIp, &ip), (Limit::TokenClient, &presented.client_id)])?;
    let grant_type = form.require("grant_type")?;
    let client = authenticated(&core, &env, &ip, &presented, used_basic).await?;
    let info = RequestInfo::from(meta);
    let response = match grant_type {
        "client_credentials" => {
            oauth::client_credentials(&core, &env, &client, form.get("scope"), &form.resources, info).await?
        }
        "authorization_code" => grants::authorization_code(&core, &env, &client, &form, info).await?,
        "refresh_token" => grants::refresh_token(&core, &env, &client, &form, info).await?,
        other => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant type `{other}` is not supported"),
            )
            .into());
        }
    };
    Ok(no_store(StatusCode::OK, &response))
}

async fn introspect(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthFailure> {
    let form = parse_form(&headers, &body)?;
    let ip = meta.ip_address.clone().unwrap_or_default();
    let (presented, used_basic) = presented_or_failed(&core, &ip, &headers, &form)?;
    let client = authenticated(&core, &env, &ip, &presented, used_basic).await?;
    // RFC 7662 §2.1: the endpoint must be protected from token scanning; a
    // client id alone (a public client) is not authentication.
    if client.client_type != "confidential" {
        return Err(
            OAuthError::invalid_client("introspection requires a confidential client's credentials").into()
        );
    }
    let token = form.require("token")?;
    let result: Value = oauth::introspect(&core, &env, &client, token).await?;
    Ok(no_store(StatusCode::OK, &result))
}

async fn revoke(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthFailure> {
    let form = parse_form(&headers, &body)?;
    let ip = meta.ip_address.clone().unwrap_or_default();
    let (presented, used_basic) = presented_or_failed(&core, &ip, &headers, &form)?;
    let client = authenticated(&core, &env, &ip, &presented, used_basic).await?;
    let token = form.require("token")?;
    let info = RequestInfo::from(meta);
    oauth::revoke(&core, &env, &client, token, info).await?;
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub fn router() -> Router<Arc<Core>> {
    // Browser apps (public clients) call these from their own origin. None
    // of them reads cookies, so any origin may, without credentials.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::WWW_AUTHENTICATE, header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600));
    let from_browsers = Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .merge(discovery::router())
        .merge(userinfo::router());
    // Preflights need an OPTIONS route under the CORS layer: otherwise the
    // app's 405 fallback answers them before the layer sees them.
    let from_browsers = [
        "/oauth/token",
        "/oauth/revoke",
        "/oauth/userinfo",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
    ]
    .into_iter()
    .fold(from_browsers, |router, path| router.route(path, options(|| async { StatusCode::NO_CONTENT })))
    .layer(cors);
    Router::new().route("/oauth/introspect", post(introspect)).merge(from_browsers)
}

/// Client credentials are read before anything is checked, from whatever
/// the caller sent: any header and body give credentials or an OAuth error,
/// and credentials a conforming client encodes read back exactly.
#[cfg(test)]
mod properties {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    use proptest::prelude::*;

    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(authorization) {
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_authorization_and_body_give_credentials_or_an_oauth_error(
            scheme in prop::sample::select(vec!["Basic", "basic", "Bearer", ""]),
            credentials in any::<String>(),
            encoded_credentials in any::<Vec<u8>>(),
            body in any::<String>(),
        ) {
            let form = Params::parse(body.as_bytes());
            let b64 = base64::engine::general_purpose::STANDARD.encode(&encoded_credentials);
            for value in [format!("{scheme} {credentials}"), format!("{scheme} {b64}")] {
                if let Err(err) = presented_client(&headers(&value), &form) {
                    prop_assert!(["invalid_client", "invalid_request"].contains(&err.code), "{}", err.code);
                    prop_assert!([400, 401].contains(&err.status));
                }
            }
        }

        #[test]
        fn encoded_basic_credentials_read_back_exactly(id in any::<String>(), secret in any::<String>()) {
            let pair = format!(
                "{}:{}",
                utf8_percent_encode(&id, NON_ALPHANUMERIC),
                utf8_percent_encode(&secret, NON_ALPHANUMERIC)
            );
            let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
            let (presented, used_basic) = presented_client(&headers(&value), &Params::parse(b"")).unwrap();
            prop_assert!(used_basic);
            prop_assert_eq!(presented.client_id, id.clone());
            prop_assert_eq!(presented.client_secret, Some(secret));
            // The same client named in the body as well is fine; another is not.
            let body = format!("client_id={}", utf8_percent_encode(&id, NON_ALPHANUMERIC));
            prop_assert!(presented_client(&headers(&value), &Params::parse(body.as_bytes())).is_ok());
            let other = format!("client_id={}x", utf8_percent_encode(&id, NON_ALPHANUMERIC));
            let err = presented_client(&headers(&value), &Params::parse(other.as_bytes())).unwrap_err();
            prop_assert_eq!(err.code, "invalid_request");
        }
    }
}
