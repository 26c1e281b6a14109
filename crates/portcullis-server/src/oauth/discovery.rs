//! Discovery (OpenID Connect Discovery 1.0, RFC 8414) and the JWKS.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis_core::Core;
use serde_json::{Value, json};

use crate::env::Env;
use crate::error::ApiResult;

/// What this server implements today; every endpoint listed here exists.
fn metadata(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "subject_types_supported": ["public"],
        "resource_indicators_supported": true,
        "scopes_supported": [],
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
