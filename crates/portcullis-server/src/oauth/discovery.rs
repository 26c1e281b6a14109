//! Discovery (OpenID Connect Discovery 1.0, RFC 8414) and the JWKS.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis_core::Core;
use portcullis_core::oauth::authorize::OIDC_SCOPES;
use serde_json::{Value, json};

use crate::env::Env;
use crate::error::ApiResult;

/// What this server implements; every endpoint listed here exists.
fn metadata(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "end_session_endpoint": format!("{issuer}/oauth/logout"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "scopes_supported": OIDC_SCOPES,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "name",
                             "given_name", "family_name", "updated_at", "email", "email_verified",
                             "org_id", "org_name", "org_slug"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "resource_indicators_supported": true,
        "authorization_response_iss_parameter_supported": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    })
}

fn json_response(value: &Value, cache_seconds: u32) -> Response {
    let mut response = serde_json::to_vec(value).unwrap_or_default().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={cache_seconds}")) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    response
}

async fn configuration(Env(env): Env) -> Response {
    json_response(&metadata(&env.issuer), 300)
}

async fn jwks(Env(env): Env) -> ApiResult<Response> {
    // Short cache: a deactivated key must leave relying parties' caches soon.
    Ok(json_response(&env.keys().await?.jwks, 60))
}

pub fn router() -> Router<Arc<Core>> {
    Router::new()
        .route("/.well-known/openid-configuration", get(configuration))
        .route("/.well-known/oauth-authorization-server", get(configuration))
        .route("/.well-known/jwks.json", get(jwks))
}
