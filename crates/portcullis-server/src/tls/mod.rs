//! Certificates for the hosts Portcullis serves: the `ask` hook a TLS proxy
//! (Caddy's on-demand TLS) calls before it gets a certificate, and the
//! built-in ACME client with its TLS listener.
//!
//! These routes answer for the installation, not an environment: the
//! `Host` resolution every other route goes through lets them pass.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use portcullis_core::Core;
use portcullis_store::now_micros;
use portcullis_store::sql::Sql;
use serde::Deserialize;

/// Routes served at every host, without environment resolution.
pub fn router() -> Router<Arc<Core>> {
    Router::new()
        .route(ASK_PATH, get(ask))
        .route(&format!("{CHALLENGE_PREFIX}{{token}}"), get(acme_challenge))
}

/// Where the CA fetches HTTP-01 answers (RFC 8555 §8.3).
const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Whether `path` is one of this module's routes.
pub(crate) fn is_installation_path(path: &str) -> bool {
    path == ASK_PATH || path.starts_with(CHALLENGE_PREFIX)
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

pub mod acme;
pub mod listener;

/// What can go wrong obtaining or serving a certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Store(#[from] portcullis_store::StoreError),
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("the order failed: {0}")]
    Order(String),
    #[error("{0} cannot be unsealed with the master key")]
    Sealed(&'static str),
    #[error("{0}")]
    Config(String),
}

/// `GET /.well-known/acme-challenge/{token}`: the HTTP-01 answer, from
/// whichever process placed the order, for the domain it was placed for.
async fn acme_challenge(
    State(core): State<Arc<Core>>,
    Path(token): Path<String>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> (StatusCode, String) {
    let Ok(host) = crate::env::request_host(&uri, &headers) else {
        return (StatusCode::NOT_FOUND, "no such challenge\n".into());
    };
    let host = portcullis_core::normalize_host(&host);
    let mut sql = Sql::new("SELECT key_authorization FROM acme_challenges WHERE token = ");
    sql.bind(token).push(" AND domain = ").bind(host).push(" AND expires_at > ").bind(now_micros());
    let answer = match core.db.read().await {
        Ok(mut conn) => sql.fetch_optional::<(String,)>(&mut conn).await,
        Err(error) => Err(error),
    };
    match answer {
        Ok(Some((answer,))) => (StatusCode::OK, answer),
        Ok(None) => (StatusCode::NOT_FOUND, "no such challenge\n".into()),
        Err(error) => {
            tracing::warn!(%error, "ACME challenge lookup failed");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n".into())
        }
    }
}
