//! `GET/POST /consent`: asks the signed-in user to allow a third-party
//! client the scopes it requested; the answer is remembered per user and
//! client.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use portcullis_core::Core;
use portcullis_core::oauth::RequestInfo;
use portcullis_core::oauth::authorize as flow;
use portcullis_core::signin::user_ctx;

use super::{
    FlowQuery, Submitted, browser_session, continue_flow, message, open_flow, redirect, render_form,
    server_error,
};
use crate::env::{Env, RequestMeta};

/// What a scope means, for people.
fn describe(scope: &str) -> &'static str {
    match scope {
        "openid" => "Confirm who you are",
        "profile" => "See your name",
        "email" => "See your email address and whether it is verified",
        "offline_access" => "Stay connected when you are not using it",
        "address" => "See your postal address",
        "phone" => "See your phone number",
        _ => "",
    }
}

/// Consent belongs to a sign-in; without a flow there is nothing to ask.
fn nothing_to_authorize(env: &portcullis_core::EnvState) -> Response {
    message(
        StatusCode::BAD_REQUEST,
        env,
        "Nothing to authorize",
        "Start from the application you want to use.",
    )
}

async fn show(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    jar: CookieJar,
    Query(query): Query<FlowQuery>,
) -> Response {
    let request = match open_flow(&core, &env, query.flow.as_deref()) {
        Ok(Some(request)) => request,
        Ok(None) => return nothing_to_authorize(&env),
        Err(page) => return page,
    };
    let session = match browser_session(&core, &env, &jar).await {
        Ok(Some(session)) => session,
        Ok(None) => return continue_flow(&core, &env, &request, None).await,
        Err(error) => return server_error(&env, &error),
    };
    let client_name = match env.client(&request.client_id).await {
        Ok(Some(client)) => client.name.clone(),
        Ok(None) => return continue_flow(&core, &env, &request, Some(&session)).await,
        Err(error) => return server_error(&env, &error),
    };
    let scopes: Vec<_> = request
        .scopes
        .iter()
        .map(|s| minijinja::context! { name => s, description => describe(s) })
        .collect();
    render_form(
        &core,
        &env,
        jar,
        StatusCode::OK,
        "consent.html",
        minijinja::context! {
            flow => query.flow,
            client_name => client_name,
            user_email => session.1.email,
            scopes => scopes,
        },
    )
}

async fn submit(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    jar: CookieJar,
    Submitted(form, request): Submitted,
) -> Response {
    let Some(request) = request else {
        return nothing_to_authorize(&env);
    };
    let session = match browser_session(&core, &env, &jar).await {
        Ok(Some(session)) => session,
        Ok(None) => return continue_flow(&core, &env, &request, None).await,
        Err(error) => return server_error(&env, &error),
    };
    if form.get("decision") != Some("allow") {
        return redirect(&flow::denied(&env, &request));
    }
    let client = match env.client(&request.client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => return continue_flow(&core, &env, &request, Some(&session)).await,
        Err(error) => return server_error(&env, &error),
    };
    let ctx = user_ctx(&env, &session.1, &RequestInfo::from(meta));
    if let Err(error) = flow::grant_consent(&core, &ctx, &session.1, &client, &request.scopes).await {
        return server_error(&env, &error);
    }
    continue_flow(&core, &env, &request, Some(&session)).await
}

pub fn router() -> Router<Arc<Core>> {
    Router::new().route("/consent", get(show).post(submit))
}
