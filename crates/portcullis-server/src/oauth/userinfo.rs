//! `GET/POST /oauth/userinfo` (OIDC Core §5.3): the signed-in user's claims
//! for an access token that was granted `openid`. Errors follow RFC 6750 §3.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis_core::oauth::{self, VerifyError, grants};
use portcullis_core::{Core, EnvState};
use serde_json::json;

use super::no_store;
use crate::auth::{MalformedAuthorization, bearer_token};
use crate::env::Env;

/// An RFC 6750 error: the status, a `WWW-Authenticate: Bearer` challenge and
/// the same error as JSON.
fn bearer_error(env: &EnvState, status: StatusCode, code: Option<&str>, description: &str) -> Response {
    let mut challenge = format!("Bearer realm=\"{}\"", env.issuer);
    if let Some(code) = code {
        challenge.push_str(&format!(", error=\"{code}\", error_description=\"{description}\""));
        if code == "insufficient_scope" {
            challenge.push_str(", scope=\"openid\"");
        }
    }
    let body = json!({"error": code.unwrap_or("invalid_request"), "error_description": description});
    let mut response = no_store(status, &body);
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The token from `Authorization: Bearer` or, on POST, the form body.
fn presented_token(headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, &'static str> {
    let from_header = bearer_token(headers)
        .map_err(|MalformedAuthorization| "use the Bearer authorization scheme")?
        .map(str::to_owned);
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    let from_body = if is_form {
        form_urlencoded::parse(body)
            .find(|(k, v)| k == "access_token" && !v.is_empty())
            .map(|(_, v)| v.into_owned())
    } else {
        None
    };
    match (from_header, from_body) {
        (Some(_), Some(_)) => Err("send the access token one way only"),
        (a, b) => Ok(a.or(b)),
    }
}

async fn userinfo(State(core): State<Arc<Core>>, Env(env): Env, headers: HeaderMap, body: Bytes) -> Response {
    let token = match presented_token(&headers, &body) {
        Ok(Some(token)) => token,
        Ok(None) => return bearer_error(&env, StatusCode::UNAUTHORIZED, None, "an access token is required"),
        Err(why) => return bearer_error(&env, StatusCode::BAD_REQUEST, Some("invalid_request"), why),
    };
    let claims = match oauth::verify_access_token(&core, &env, &token).await {
        Ok(claims) => claims,
        Err(VerifyError::Rejected(reason)) => {
            return bearer_error(&env, StatusCode::UNAUTHORIZED, Some("invalid_token"), reason.describe());
        }
        Err(VerifyError::Service(error)) => {
            tracing::error!(%error, "userinfo failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if !claims.is_user_token() || !claims.scopes().any(|s| s == "openid") {
        return bearer_error(
            &env,
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            "the access token was not granted the openid scope for a user",
        );
    }
    match grants::userinfo(&core, &env, &claims).await {
        Ok(Some(info)) => no_store(StatusCode::OK, &info),
        Ok(None) => {
            bearer_error(&env, StatusCode::UNAUTHORIZED, Some("invalid_token"), "the user no longer exists")
        }
        Err(error) => {
            tracing::error!(%error, "userinfo failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

pub fn router() -> Router<Arc<Core>> {
    Router::new().route("/oauth/userinfo", get(userinfo).post(userinfo))
}
