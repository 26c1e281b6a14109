//! HTTP transport for Portcullis: the environment resolver, the JSON:API
//! Management API under `/api/`, the OAuth endpoints and discovery, hosted
//! pages, and inbound app webhooks under `/hooks/`.

pub mod api;
pub mod auth;
pub mod env;
pub mod error;
pub mod hooks;
pub mod oauth;
pub mod openapi;
pub mod pages;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Router, middleware};
use portcullis_core::Core;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Request bodies larger than this are refused (413).
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

/// The whole HTTP application.
pub fn app(core: Arc<Core>) -> Router {
    // Reconciliation and inbound app webhooks use the hub's connectors.
    let worker = portcullis_provision::Worker::new(
        core.clone(),
        portcullis_provision::connector::http::shared_throttle(),
    );
    // Management API answers carry secrets (`meta.client_secret`) and
    // personal data: no cache may keep them.
    let management = api::router(&core)
        .route("/api/openapi.json", axum::routing::get(openapi::serve))
        .layer(middleware::map_response(no_store));
    Router::new()
        .merge(management)
        .merge(oauth::router())
        .merge(pages::router())
        .merge(hooks::router())
        .merge(tls::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::Extension(worker))
        .layer(middleware::from_fn_with_state(core.clone(), env::resolve))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(middleware::map_response(payload_too_large))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(core)
}

/// Paths whose last segment is a single-use secret (emailed links).
const SECRET_PATHS: &[&str] = &["/confirm/", "/password/reset/", "/invitations/"];

/// The request's span: method and path, with the secret of an emailed link
/// redacted and no query string (it can carry `id_token_hint`, codes and
/// `login_hint`), so logs never hold a credential.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %redacted_path(request.uri().path()),
        version = ?request.version(),
    )
}

fn redacted_path(path: &str) -> std::borrow::Cow<'_, str> {
    match SECRET_PATHS.iter().find(|prefix| path.starts_with(*prefix)) {
        Some(prefix) => format!("{prefix}[redacted]").into(),
        None => path.into(),
    }
}

/// `Cache-Control: no-store` on every Management API answer.
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

async fn not_found() -> error::ApiFailure {
    portcullis_jsonapi::ApiError::not_found("no such route").into()
}

async fn method_not_allowed() -> error::ApiFailure {
    portcullis_jsonapi::ApiError::new(
        405,
        "method_not_allowed",
        "Method Not Allowed",
        "this route does not support the request method",
    )
    .into()
}

/// The body limit layer answers in plain text; answer with an error document.
async fn payload_too_large(response: Response) -> Response {
    let plain =
        !response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().ends_with(b"json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && plain {
        return error::ApiFailure::from(error::too_large(BODY_LIMIT)).into_response();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::redacted_path;

    #[test]
    fn emailed_link_secrets_never_reach_a_span() {
        assert_eq!(redacted_path("/confirm/abcDEF123"), "/confirm/[redacted]");
        assert_eq!(redacted_path("/password/reset/s3cr3t/extra"), "/password/reset/[redacted]");
        assert_eq!(redacted_path("/password/forgot"), "/password/forgot");
        assert_eq!(redacted_path("/invitations/s3cr3t"), "/invitations/[redacted]");
        assert_eq!(redacted_path("/api/users/0193"), "/api/users/0193");
    }
}
