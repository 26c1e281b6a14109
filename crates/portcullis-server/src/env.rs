//! Environment resolution from the `Host` header, and request metadata.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portcullis_core::{Core, EnvState};
use portcullis_jsonapi::ApiError;

use crate::error::ApiFailure;

/// The environment this request addresses.
#[derive(Clone)]
pub struct Env(pub Arc<EnvState>);

/// The host a request addresses: an absolute-form target's authority wins
/// over `Host` (RFC 9112 §3.2.2); two `Host` headers are refused, since
/// proxies and this server could each pick another one.
pub(crate) fn request_host(uri: &Uri, headers: &HeaderMap) -> Result<String, ApiFailure> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let header_host = hosts.next();
    if hosts.next().is_some() {
        return Err(ApiError::bad_request("invalid_host", "the request has more than one Host header").into());
    }
    if let Some(host) = uri.host() {
        return Ok(match uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        });
    }
    match header_host.map(|h| h.to_str()) {
        Some(Ok(host)) => Ok(host.to_owned()),
        Some(Err(_)) => Err(ApiError::bad_request("invalid_host", "the Host header is not valid").into()),
        None => Ok(String::new()),
    }
}

/// Resolves the environment once per request; unknown hosts get a 404.
/// The installation's own routes (`crate::tls`) are served at any host.
pub async fn resolve(State(core): State<Arc<Core>>, mut request: Request, next: Next) -> Response {
    if crate::tls::is_installation_path(request.uri().path()) {
        return next.run(request).await;
    }
    let host = match request_host(request.uri(), request.headers()) {
        Ok(host) => host,
        Err(failure) => return failure.into_response(),
    };
    match core.environment_for_host(&host).await {
        Ok(Some(env)) => {
            request.extensions_mut().insert(Env(env));
            next.run(request).await
        }
        Ok(None) => {
            ApiFailure::from(ApiError::not_found(format!("no environment is served at host `{host}`")))
                .into_response()
        }
        Err(error) => ApiFailure::from(error).into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Env {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Env>().cloned().ok_or_else(|| ApiError::internal().into())
    }
}

/// Client IP and user agent, for audit records.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

impl RequestMeta {
    pub fn from_parts(headers: &HeaderMap, peer: Option<SocketAddr>) -> Self {
        RequestMeta {
            ip_address: peer.map(|p| p.ip().to_string()),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(512).collect()),
        }
    }
}

impl From<RequestMeta> for portcullis_core::oauth::RequestInfo {
    fn from(meta: RequestMeta) -> Self {
        portcullis_core::oauth::RequestInfo { ip_address: meta.ip_address, user_agent: meta.user_agent }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        Ok(RequestMeta::from_parts(&parts.headers, peer))
    }
}
