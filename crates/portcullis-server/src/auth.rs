//! Management API authentication: a Bearer access token for this
//! environment's Management API, from a client that still has a grant on
//! it. The grants its scopes name, as far as that grant still allows them,
//! go on in the `Ctx` as its [`Authority`]; what each operation needs is
//! decided by the service (`Ctx::require`), so every transport gets the same
//! answer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portcullis_core::authz::Grants;
use portcullis_core::oauth::{self, VerifyError};
use portcullis_core::{Authority, Core, Ctx};
use portcullis_jsonapi::ApiError;
use portcullis_store::model::Actor;

use crate::env::{Env, RequestMeta};
use crate::error::ApiFailure;

fn challenge(realm: &str, error: Option<(&str, &str)>) -> String {
    match error {
        None => format!("Bearer realm=\"{realm}\""),
        Some((code, description)) => {
            format!("Bearer realm=\"{realm}\", error=\"{code}\", error_description=\"{description}\"")
        }
    }
}

/// An `Authorization` header that is not `Bearer <token>`.
pub(crate) struct MalformedAuthorization;

/// The RFC 6750 Bearer token of a request: `None` without an
/// `Authorization` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, MalformedAuthorization> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(MalformedAuthorization),
    }
}

/// Checks the token, then puts the request's [`Ctx`] in its extensions. A
/// Bearer challenge in the answer (a service's 403 for a missing scope)
/// gets this API's realm.
pub async fn authenticate(State(core): State<Arc<Core>>, mut request: Request, next: Next) -> Response {
    let ctx = match authenticated(&core, &mut request).await {
        Ok(ctx) => ctx,
        Err(failure) => return failure.into_response(),
    };
    let realm = ctx.env.management_api.clone();
    request.extensions_mut().insert(ctx);
    let mut response = next.run(request).await;
    let challenge = response.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
    if let Some(params) =
        challenge.and_then(|c| c.strip_prefix("Bearer ")).filter(|p| !p.starts_with("realm="))
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer realm=\"{realm}\", {params}"))
    {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

async fn authenticated(core: &Core, request: &mut Request) -> Result<Ctx, ApiFailure> {
    let Some(Env(env)) = request.extensions().get::<Env>().cloned() else {
        return Err(ApiError::internal().into());
    };
    let realm = env.management_api.clone();
    let token = match bearer_token(request.headers()) {
        Ok(None) => {
            return Err(ApiFailure::from(ApiError::unauthorized("an access token is required"))
                .with_challenge(challenge(&realm, None)));
        }
        Ok(Some(token)) => token,
        Err(MalformedAuthorization) => {
            return Err(ApiFailure::from(ApiError::unauthorized("use the Bearer authorization scheme"))
                .with_challenge(challenge(
                    &realm,
                    Some(("invalid_request", "malformed Authorization header")),
                )));
        }
    };
    let claims = match oauth::verify_access_token(core, &env, token).await {
        Ok(claims) => claims,
        Err(VerifyError::Rejected(reason)) => {
            return Err(ApiFailure::from(ApiError::unauthorized(reason.describe()))
                .with_challenge(challenge(&realm, Some(("invalid_token", reason.describe())))));
        }
        Err(VerifyError::Service(error)) => return Err(error.into()),
    };
    if !env.is_management_api(&claims.aud) {
        return Err(ApiFailure::from(ApiError::forbidden(
            "the access token's audience is not this environment's Management API",
        ))
        .with_challenge(challenge(&realm, Some(("invalid_token", "wrong audience")))));
    }
    // The token's scopes count only as far as its client's grant still
    // allows them: deleting or narrowing the grant takes effect at once.
    let client = env.client(&claims.client_id).await?.ok_or_else(|| withdrawn(&realm))?;
    let apis = env.apis().await?;
    let allowed = apis
        .by_identifier
        .get(&claims.aud)
        .and_then(|api| apis.allowed(&client.id, api))
        .ok_or_else(|| withdrawn(&realm))?;
    let claimed = Grants::from_scopes(claims.scopes());
    let held = claimed.intersection(Grants::from_scopes(allowed.iter().map(String::as_str)));
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let meta = RequestMeta::from_parts(request.headers(), peer);
    Ok(Ctx {
        env,
        actor: Actor { kind: "client", id: Some(claims.client_id), name: Some(client.name.clone()) },
        authority: Authority::Token { held, claimed },
        ip_address: meta.ip_address,
        user_agent: meta.user_agent,
    })
}

/// A 401 for a token whose client no longer has a Management API grant.
fn withdrawn(realm: &str) -> ApiFailure {
    const WHY: &str = "the client's Management API grant has been withdrawn";
    ApiFailure::from(ApiError::unauthorized(WHY))
        .with_challenge(challenge(realm, Some(("invalid_token", WHY))))
}

/// The Bearer reader sees every Management API and UserInfo request first:
/// any header gives no token, a non-empty token, or a malformed-header
/// answer; a token a client sends comes back exactly.
#[cfg(test)]
mod properties {
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn headers(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_authorization_header_is_read_without_panicking(value in prop::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(Some(token)) = bearer_token(&headers(&value)) {
                prop_assert!(!token.is_empty() && token.trim() == token);
            }
        }

        #[test]
        fn sent_tokens_read_back_exactly(
            scheme in prop::sample::select(vec!["Bearer", "bearer", "BEARER"]),
            token in "[A-Za-z0-9._~+/=-]{1,200}",
        ) {
            let sent = headers(format!("{scheme} {token}").as_bytes());
            prop_assert_eq!(bearer_token(&sent).ok().flatten(), Some(token.as_str()));
            let basic = format!("Basic {token}");
            prop_assert!(bearer_token(&headers(basic.as_bytes())).is_err());
        }
    }
}
