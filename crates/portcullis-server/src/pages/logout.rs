//! Logout: RP-initiated logout (`GET/POST /oauth/logout`, OpenID Connect
//! RP-Initiated Logout 1.0) and the hosted form (`POST /logout`). A return
//! address must be registered for the client and matches exactly.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use portcullis_core::oauth::RequestInfo;
use portcullis_core::oauth::authorize::verify_id_token_hint;
use portcullis_core::services::sessions;
use portcullis_core::signin::user_ctx;
use portcullis_core::{Core, EnvState};
use portcullis_store::model::{Session, User};

use super::{
    PageForm, Submitted, browser_session, clear_session_cookie, message, redirect, render_form, server_error,
};
use crate::env::{Env, RequestMeta};

/// Where to go after logging out, once checked against the client.
struct Return {
    uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
}

fn invalid(env: &EnvState, text: &str) -> Response {
    message(StatusCode::BAD_REQUEST, env, "This sign-out request is invalid", text)
}

/// Checks `post_logout_redirect_uri` against the client's registered ones.
async fn checked_return(
    env: &EnvState,
    form: &PageForm,
    hinted_client: Option<&str>,
) -> Result<Return, Response> {
    let client_id = match (form.get("client_id"), hinted_client) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(env, "client_id does not match the id_token_hint."));
        }
        (a, b) => a.or(b).map(str::to_owned),
    };
    let uri = form.get("post_logout_redirect_uri").map(str::to_owned);
    if let Some(uri) = &uri {
        let Some(client_id) = &client_id else {
            return Err(invalid(env, "post_logout_redirect_uri needs client_id or id_token_hint."));
        };
        let client = match env.client(client_id).await {
            Ok(client) => client,
            Err(error) => return Err(server_error(env, &error)),
        };
        if !client.is_some_and(|c| c.post_logout_redirect_uris.0.iter().any(|r| r == uri)) {
            return Err(invalid(env, "post_logout_redirect_uri is not registered for this application."));
        }
    }
    Ok(Return { uri, state: form.get("state").map(str::to_owned), client_id })
}

fn finish(env: &EnvState, to: &Return) -> Response {
    match &to.uri {
        Some(uri) => {
            let mut url = uri.clone();
            if let Some(state) = &to.state {
                url.push(if uri.contains('?') { '&' } else { '?' });
                url.push_str(
                    &form_urlencoded::Serializer::new(String::new()).append_pair("state", state).finish(),
                );
            }
            redirect(&url)
        }
        None => message(StatusCode::OK, env, "You are signed out", "You can close this window."),
    }
}

async fn end_session(
    core: &Core,
    env: &Arc<EnvState>,
    meta: RequestMeta,
    session: &(Session, User),
) -> Result<(), Response> {
    let ctx = user_ctx(env, &session.1, &RequestInfo::from(meta));
    sessions::revoke(core, &ctx, &session.0.id).await.map(|_| ()).map_err(|error| server_error(env, &error))
}

async fn rp_logout(
    core: Arc<Core>,
    env: Arc<EnvState>,
    meta: RequestMeta,
    jar: CookieJar,
    form: PageForm,
) -> Response {
    let hint = match form.get("id_token_hint") {
        None => None,
        Some(token) => match verify_id_token_hint(&env, token).await {
            Ok(Some(hint)) => Some(hint),
            Ok(None) => return invalid(&env, "id_token_hint is not an ID token this server issued."),
            Err(error) => return server_error(&env, &error),
        },
    };
    let to = match checked_return(
        &env,
        &form,
        hint.as_ref().and_then(|h| h.audiences.first().map(String::as_str)),
    )
    .await
    {
        Ok(to) => to,
        Err(page) => return page,
    };
    let session = match browser_session(&core, &env, &jar).await {
        Ok(session) => session,
        Err(error) => return server_error(&env, &error),
    };
    match (&session, &hint) {
        (None, _) => (clear_session_cookie(&core, jar), finish(&env, &to)).into_response(),
        // The RP proved which user it is logging out: no need to ask.
        (Some(current), Some(hint)) if hint.subject == current.1.id => {
            if let Err(page) = end_session(&core, &env, meta, current).await {
                return page;
            }
            (clear_session_cookie(&core, jar), finish(&env, &to)).into_response()
        }
        // Without proof, ask the user (a forged link must not log them out).
        (Some(_), _) => render_form(
            &core,
            &env,
            jar,
            StatusCode::OK,
            "logout.html",
            minijinja::context! {
                                    post_logout_redirect_uri => to.uri, state => to.state, client_id => to.client_id,
            },
        ),
    }
}

async fn rp_logout_get(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    jar: CookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    rp_logout(core, env, meta, jar, PageForm::parse(query.unwrap_or_default().as_bytes())).await
}

async fn rp_logout_post(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    jar: CookieJar,
    body: Bytes,
) -> Response {
    rp_logout(core, env, meta, jar, PageForm::parse(&body)).await
}

/// The confirmation form (also usable on its own).
async fn logout(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    jar: CookieJar,
    Submitted(form, _): Submitted,
) -> Response {
    let to = match checked_return(&env, &form, None).await {
        Ok(to) => to,
        Err(page) => return page,
    };
    match browser_session(&core, &env, &jar).await {
        Ok(Some(current)) => {
            if let Err(page) = end_session(&core, &env, meta, &current).await {
                return page;
            }
        }
        Ok(None) => {}
        Err(error) => return server_error(&env, &error),
    }
    (clear_session_cookie(&core, jar), finish(&env, &to)).into_response()
}

pub fn router() -> Router<Arc<Core>> {
    Router::new()
        .route("/oauth/logout", get(rp_logout_get).post(rp_logout_post))
        .route("/logout", post(logout))
}
