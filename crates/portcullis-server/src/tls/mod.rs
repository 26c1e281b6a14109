//! Certificates for the hosts Portcullis serves: the `ask` hook a TLS proxy
//! (Caddy's on-demand TLS) calls before it gets a certificate, and the
//! built-in ACME client with its TLS listener.
//!
//! These routes answer for the installation, not an environment: they sit
//! outside the `Host` resolution every other route goes through.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use portcullis_core::Core;
use serde::Deserialize;

/// Routes served at every host, before environment resolution.
pub fn router() -> Router<Arc<Core>> {
    Router::new().route(ASK_PATH, get(ask))
}

/// Where a TLS proxy asks whether it may get a certificate for a name.
pub const ASK_PATH: &str = "/tls/ask";

#[derive(Deserialize)]
struct AskQuery {
    domain: Option<String>,
}

/// `GET /tls/ask?domain=auth.example.com`: 200 for an environment's default
/// host or an active custom domain, 404 for anything else, so a proxy never
/// spends a certificate authority's rate limit on a name nobody serves.
async fn ask(State(core): State<Arc<Core>>, Query(query): Query<AskQuery>) -> (StatusCode, &'static str) {
    let Some(domain) = query.domain.filter(|domain| !domain.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "the domain query parameter is required\n");
    };
    match core.serves_host(&domain).await {
        Ok(true) => (StatusCode::OK, "served here\n"),
        Ok(false) => (StatusCode::NOT_FOUND, "not served here\n"),
        Err(error) => {
            tracing::warn!(%error, "tls ask: cannot tell whether a host is served");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n")
        }
    }
}
