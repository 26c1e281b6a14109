//! `GET/POST /login`: the password login page.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use portcullis_core::limits::{Limit, RetryAfter};
use portcullis_core::oauth::RequestInfo;
use portcullis_core::oauth::authorize::AuthorizationRequest;
use portcullis_core::signin::{self, LoginError};
use portcullis_core::{Core, EnvState};

use super::{
    FlowQuery, Submitted, browser_session, continue_flow, message_with_link, open_flow, render_form,
    server_error, set_session_cookie, too_many_requests,
};
use crate::env::{Env, RequestMeta};

async fn client_name(env: &EnvState, request: Option<&AuthorizationRequest>) -> Option<String> {
    let request = request?;
    env.client(&request.client_id).await.ok().flatten().map(|c| c.name.clone())
}

struct LoginPage<'a> {
    flow: Option<&'a str>,
    request: Option<&'a AuthorizationRequest>,
    email: Option<&'a str>,
    error: Option<&'a str>,
    /// Offer to send the confirmation link again.
    unconfirmed: bool,
}

async fn page(
    core: &Core,
    env: &EnvState,
    jar: CookieJar,
    status: StatusCode,
    view: LoginPage<'_>,
) -> Response {
    let email = view.email.or(view.request.and_then(|r| r.login_hint.as_deref()));
    render_form(
        core,
        env,
        jar,
        status,
        "login.html",
        minijinja::context! {
            flow => view.flow,
            email => email,
            error => view.error,
            client_name => client_name(env, view.request).await,
            registration_enabled => env.environment.registration_enabled,
            unconfirmed => view.unconfirmed,
        },
    )
}

async fn show(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    jar: CookieJar,
    Query(query): Query<FlowQuery>,
) -> Response {
    let request = match open_flow(&core, &env, query.flow.as_deref()) {
        Ok(request) => request,
        Err(page) => return page,
    };
    let view = LoginPage {
        flow: query.flow.as_deref(),
        request: request.as_ref(),
        email: None,
        error: None,
        unconfirmed: false,
    };
    page(&core, &env, jar, StatusCode::OK, view).await
}

async fn submit(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    jar: CookieJar,
    Submitted(form, request): Submitted,
) -> Response {
    let (Some(email), Some(password)) = (form.get("email"), form.get("password")) else {
        let view = LoginPage {
            flow: form.get("flow"),
            request: request.as_ref(),
            email: form.get("email"),
            error: Some("Enter your email and password."),
            unconfirmed: false,
        };
        return page(&core, &env, jar, StatusCode::BAD_REQUEST, view).await;
    };
    let ip = meta.ip_address.clone().unwrap_or_default();
    if let Err(RetryAfter(wait)) =
        core.limiter.check_all(&[(Limit::LoginIp, &ip), (Limit::LoginAccount, email)])
    {
        let view = LoginPage {
            flow: form.get("flow"),
            request: request.as_ref(),
            email: Some(email),
            error: Some("Too many sign-in attempts. Wait a minute, then try again."),
            unconfirmed: false,
        };
        let response = page(&core, &env, jar, StatusCode::TOO_MANY_REQUESTS, view).await;
        return too_many_requests(response, wait);
    }
    let current = match browser_session(&core, &env, &jar).await {
        Ok(current) => current,
        Err(error) => return server_error(&env, &error),
    };
    let info = RequestInfo::from(meta);
    let outcome =
        signin::password_login(&core, &env, email, password, &info, current.as_ref().map(|(s, _)| s)).await;
    let failed = |text: &'static str| LoginPage {
        flow: form.get("flow"),
        request: request.as_ref(),
        email: Some(email),
        error: Some(text),
        unconfirmed: false,
    };
    let logged_in = match outcome {
        Ok(logged_in) => logged_in,
        Err(LoginError::InvalidCredentials) => {
            let view = failed("The email or password is incorrect.");
            return page(&core, &env, jar, StatusCode::UNAUTHORIZED, view).await;
        }
        Err(LoginError::EmailUnverified) => {
            let view = LoginPage {
                unconfirmed: true,
                ..failed("Confirm your email address to sign in: open the link we sent to it.")
            };
            return page(&core, &env, jar, StatusCode::FORBIDDEN, view).await;
        }
        Err(LoginError::Blocked) => {
            let view = failed("This account has been blocked. Contact your administrator.");
            return page(&core, &env, jar, StatusCode::FORBIDDEN, view).await;
        }
        Err(LoginError::Locked { retry_after }) => {
            let view = failed("Too many failed sign-in attempts. Wait a few minutes, then try again.");
            let response = page(&core, &env, jar, StatusCode::TOO_MANY_REQUESTS, view).await;
            return too_many_requests(response, retry_after.unsigned_abs());
        }
        Err(LoginError::Service(error)) => return server_error(&env, &error),
    };
    let jar = match logged_in.new_token {
        Some(token) => set_session_cookie(&core, jar, token),
        None => jar,
    };
    let next = match &request {
        Some(request) => {
            let session = (logged_in.session, logged_in.user);
            continue_flow(&core, &env, request, Some(&session)).await
        }
        None => message_with_link(
            &env,
            "You are signed in",
            &format!("Signed in as {}.", logged_in.user.email),
            ("Change your password", "/password/change"),
        ),
    };
    (jar, next).into_response()
}

pub fn router() -> Router<Arc<Core>> {
    Router::new().route("/login", get(show).post(submit))
}
