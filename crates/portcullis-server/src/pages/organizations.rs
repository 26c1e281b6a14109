//! `GET/POST /organizations/pick`: a sign-in for a client that requires an
//! organization, by a member of several who named none, stops here for the
//! user to choose. The choice goes into the sealed flow; the next step
//! checks the membership again, so a forged choice gets `access_denied`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use portcullis_core::Core;
use portcullis_core::oauth::authorize::{self as flow, Next};

use super::{
    FlowQuery, Submitted, browser_session, continue_flow, message, open_flow, render_form, server_error,
    step_response,
};
use crate::env::Env;

pub const PICK_PATH: &str = "/organizations/pick";

fn expired(env: &portcullis_core::EnvState) -> Response {
    message(
        StatusCode::BAD_REQUEST,
        env,
        "This sign-in has expired",
        "Go back to the application and start signing in again.",
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
        Ok(None) => return expired(&env),
        Err(page) => return page,
    };
    let session = match browser_session(&core, &env, &jar).await {
        Ok(session) => session,
        Err(error) => return server_error(&env, &error),
    };
    let step = match flow::next_step(&core, &env, &request, session.as_ref()).await {
        Ok(step) => step,
        Err(error) => return server_error(&env, &error),
    };
    let Next::PickOrganization(organizations) = step else {
        return step_response(&core, &env, &request, step);
    };
    let organizations: Vec<minijinja::Value> =
        organizations.into_iter().map(|(id, name)| minijinja::context! { id => id, name => name }).collect();
    let client_name = env.client(&request.client_id).await.ok().flatten().map(|c| c.name.clone());
    render_form(
        &core,
        &env,
        jar,
        StatusCode::OK,
        "organization_pick.html",
        minijinja::context! {
            action => PICK_PATH,
            flow => query.flow,
            organizations => organizations,
            client_name => client_name,
        },
    )
}

async fn submit(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    jar: CookieJar,
    Submitted(form, request): Submitted,
) -> Response {
    let Some(mut request) = request else { return expired(&env) };
    let session = match browser_session(&core, &env, &jar).await {
        Ok(session) => session,
        Err(error) => return server_error(&env, &error),
    };
    request.organization = form.get("organization").map(str::to_owned);
    continue_flow(&core, &env, &request, session.as_ref()).await
}

pub fn router() -> Router<Arc<Core>> {
    Router::new().route(PICK_PATH, get(show).post(submit))
}
