//! `GET/POST /oauth/authorize`: validates the request, then hands it to the
//! sign-in flow. Errors about the client or redirect URI are shown as a page;
//! every other error goes back to the client (RFC 6749 §4.1.2.1).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use portcullis_core::Core;
use portcullis_core::oauth::Params;
use portcullis_core::oauth::authorize::{self as flow, AuthorizeError};

use super::{browser_session, continue_flow, message, redirect, server_error};
use crate::env::Env;

async fn authorize(
    core: &Core,
    env: &portcullis_core::EnvState,
    jar: &CookieJar,
    params: Params,
) -> Response {
    let request = match flow::validate(env, &params).await {
        Ok(request) => request,
        Err(AuthorizeError::Page(text)) => {
            return message(StatusCode::BAD_REQUEST, env, "This sign-in request is invalid", &text);
        }
        Err(AuthorizeError::Redirect(url)) => return redirect(&url),
        Err(AuthorizeError::Service(error)) => return server_error(env, &error),
    };
    let session = match browser_session(core, env, jar).await {
        Ok(session) => session,
        Err(error) => return server_error(env, &error),
    };
    continue_flow(core, env, &request, session.as_ref()).await
}

async fn authorize_get(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    jar: CookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    authorize(&core, &env, &jar, params).await
}

async fn authorize_post(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    jar: CookieJar,
    body: Bytes,
) -> Response {
    authorize(&core, &env, &jar, Params::parse(&body)).await
}

pub fn router() -> Router<Arc<Core>> {
    Router::new().route("/oauth/authorize", get(authorize_get).post(authorize_post))
}
