//! Self-service account pages: sign-up (`/register`), email confirmation
//! (`/confirm/:token`: a button that posts; `/confirm/resend` mails a new
//! link), forgotten password (`/password/forgot`), reset
//! (`/password/reset/:token`) and change (`/password/change`).
//!
//! Sign-up and reset requests answer the same whether or not the address
//! has an account (see `portcullis_core::account`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use portcullis_core::account::{self, PasswordChange, Purpose, Registration};
use portcullis_core::limits::{Limit, RetryAfter};
use portcullis_core::oauth::RequestInfo;
use portcullis_core::{Core, EnvState, ServiceError};

use super::{
    FlowQuery, PageForm, Submitted, browser_session, field_errors, message, message_with_link, open_flow,
    rate_limited, render_form, server_error, too_many_requests, with_flow,
};
use crate::env::{Env, RequestMeta};

fn registration_closed(env: &EnvState) -> Response {
    message(
        StatusCode::NOT_FOUND,
        env,
        "Sign-up is not available",
        "New accounts cannot be created here. Ask your administrator for an invitation.",
    )
}

fn link_expired(env: &EnvState, again: (&str, &str)) -> Response {
    let mut response = message_with_link(
        env,
        "This link is invalid or has expired",
        "Links in our emails work once and for a limited time.",
        again,
    );
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

/// What a form page shows besides its fields' values.
#[derive(Default)]
struct Feedback {
    error: Option<String>,
    errors: Option<minijinja::Value>,
    notice: Option<String>,
}

impl Feedback {
    /// A validation error goes beside its field; anything else is a server
    /// error for the caller to show.
    fn from_error(error: ServiceError) -> Result<Feedback, ServiceError> {
        match field_errors(&error) {
            Some(errors) => Ok(Feedback { errors: Some(errors), ..Feedback::default() }),
            None => Err(error),
        }
    }
}

// ---- sign-up -------------------------------------------------------------

fn register_page(
    core: &Core,
    env: &EnvState,
    jar: CookieJar,
    status: StatusCode,
    form: Option<&PageForm>,
    flow: Option<&str>,
    feedback: Feedback,
) -> Response {
    let value = |key: &str| form.and_then(|f| f.get(key)).map(str::to_owned);
    render_form(
        core,
        env,
        jar,
        status,
        "register.html",
        minijinja::context! {
            flow => flow,
            email => value("email"),
            first_name => value("first_name"),
            last_name => value("last_name"),
            error => feedback.error,
            errors => feedback.errors,
        },
    )
}

async fn show_register(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    jar: CookieJar,
    Query(query): Query<FlowQuery>,
) -> Response {
    if !env.environment.registration_enabled {
        return registration_closed(&env);
    }
    if let Err(page) = open_flow(&core, &env, query.flow.as_deref()) {
        return page;
    }
    register_page(&core, &env, jar, StatusCode::OK, None, query.flow.as_deref(), Feedback::default())
}

async fn submit_register(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    jar: CookieJar,
    Submitted(form, _): Submitted,
) -> Response {
    if !env.environment.registration_enabled {
        return registration_closed(&env);
    }
    let flow = form.get("flow");
    if let Err(RetryAfter(wait)) =
        core.limiter.check(Limit::RegisterIp, meta.ip_address.as_deref().unwrap_or_default())
    {
        return rate_limited(&env, wait);
    }
    let text = |key: &str| form.get(key).map(str::to_owned);
    let registration = Registration {
        email: text("email").unwrap_or_default(),
        password: text("password").unwrap_or_default(),
        password_confirmation: text("password_confirmation").unwrap_or_default(),
        first_name: text("first_name"),
        last_name: text("last_name"),
    };
    let email = registration.email.trim().to_owned();
    match account::register(&core, &env, registration, &RequestInfo::from(meta)).await {
        Ok(()) => message_with_link(
            &env,
            "Check your email",
            &format!(
                "We sent a message to {email}. Open the link in it to confirm your address (it expires in 24 hours), then sign in."
            ),
            ("Continue to sign in", &with_flow("/login", flow)),
        ),
        Err(ServiceError::Forbidden(_)) => registration_closed(&env),
        Err(error) => match Feedback::from_error(error) {
            Ok(feedback) => {
                register_page(&core, &env, jar, StatusCode::BAD_REQUEST, Some(&form), flow, feedback)
            }
            Err(error) => server_error(&env, &error),
        },
    }
}

// ---- email confirmation ----------------------------------------------------

/// The link shows a button rather than confirming on GET: mail scanners and
/// link previews fetch links, and must not spend them.
async fn show_confirm(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    match account::find_link(&core, &env, &token, Purpose::ConfirmEmail).await {
        Ok(Some(_)) => render_form(
            &core,
            &env,
            jar,
            StatusCode::OK,
            "confirm.html",
            minijinja::context! { token => token },
        ),
        Ok(None) => link_expired(&env, ("Sign in", "/login")),
        Err(error) => server_error(&env, &error),
    }
}

async fn confirm(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    Path(token): Path<String>,
    // Only the CSRF check: the form has no fields.
    _: Submitted,
) -> Response {
    match account::confirm_email(&core, &env, &token, &RequestInfo::from(meta)).await {
        Ok(Some(user)) => message_with_link(
            &env,
            "Your email is confirmed",
            &format!("Thank you: {} is confirmed.", user.email),
            ("Sign in", "/login"),
        ),
        Ok(None) => link_expired(&env, ("Sign in", "/login")),
        Err(error) => server_error(&env, &error),
    }
}

// ---- forgotten password ------------------------------------------------------

fn forgot_page(
    core: &Core,
    env: &EnvState,
    jar: CookieJar,
    status: StatusCode,
    flow: Option<&str>,
    email: Option<&str>,
    feedback: Feedback,
) -> Response {
    render_form(
        core,
        env,
        jar,
        status,
        "forgot.html",
        minijinja::context! { flow => flow, email => email, error => feedback.error, notice => feedback.notice },
    )
}

async fn show_forgot(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    jar: CookieJar,
    Query(query): Query<FlowQuery>,
) -> Response {
    if let Err(page) = open_flow(&core, &env, query.flow.as_deref()) {
        return page;
    }
    forgot_page(&core, &env, jar, StatusCode::OK, query.flow.as_deref(), None, Feedback::default())
}

async fn submit_forgot(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    jar: CookieJar,
    Submitted(form, _): Submitted,
) -> Response {
    let flow = form.get("flow");
    let Some(email) = form.get("email").map(str::trim).filter(|e| e.contains('@')) else {
        let feedback = Feedback {
            error: Some("Enter the email address of your account.".into()),
            ..Feedback::default()
        };
        return forgot_page(&core, &env, jar, StatusCode::BAD_REQUEST, flow, form.get("email"), feedback);
    };
    let ip = meta.ip_address.unwrap_or_default();
    if let Err(RetryAfter(wait)) =
        core.limiter.check_all(&[(Limit::ResetIp, &ip), (Limit::ResetAccount, email)])
    {
        let feedback = Feedback {
            error: Some("Too many reset requests. Wait a while, then try again.".into()),
            ..Feedback::default()
        };
        let page = forgot_page(&core, &env, jar, StatusCode::TOO_MANY_REQUESTS, flow, Some(email), feedback);
        return too_many_requests(page, wait);
    }
    account::request_password_reset(&core, &env, email);
    let feedback = Feedback {
        notice: Some(format!(
            "If {email} has an account here, we sent it a link to reset the password. The link expires in 1 hour."
        )),
        ..Feedback::default()
    };
    forgot_page(&core, &env, jar, StatusCode::OK, flow, Some(email), feedback)
}

// ---- a new confirmation link ---------------------------------------------------

fn resend_page(
    core: &Core,
    env: &EnvState,
    jar: CookieJar,
    status: StatusCode,
    flow: Option<&str>,
    email: Option<&str>,
    feedback: Feedback,
) -> Response {
    render_form(
        core,
        env,
        jar,
        status,
        "confirm_resend.html",
        minijinja::context! { flow => flow, email => email, error => feedback.error, notice => feedback.notice },
    )
}

async fn show_resend(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    jar: CookieJar,
    Query(query): Query<FlowQuery>,
) -> Response {
    if let Err(page) = open_flow(&core, &env, query.flow.as_deref()) {
        return page;
    }
    resend_page(&core, &env, jar, StatusCode::OK, query.flow.as_deref(), None, Feedback::default())
}

/// Limited like reset requests (it sends the same kind of mail), and
/// answered the same whether or not the address has an account.
async fn submit_resend(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    jar: CookieJar,
    Submitted(form, _): Submitted,
) -> Response {
    let flow = form.get("flow");
    let Some(email) = form.get("email").map(str::trim).filter(|e| e.contains('@')) else {
        let feedback = Feedback {
            error: Some("Enter the email address of your account.".into()),
            ..Feedback::default()
        };
        return resend_page(&core, &env, jar, StatusCode::BAD_REQUEST, flow, form.get("email"), feedback);
    };
    let ip = meta.ip_address.unwrap_or_default();
    if let Err(RetryAfter(wait)) =
        core.limiter.check_all(&[(Limit::ResetIp, &ip), (Limit::ResetAccount, email)])
    {
        let feedback = Feedback {
            error: Some("Too many requests for links. Wait a while, then try again.".into()),
            ..Feedback::default()
        };
        let page = resend_page(&core, &env, jar, StatusCode::TOO_MANY_REQUESTS, flow, Some(email), feedback);
        return too_many_requests(page, wait);
    }
    account::resend_confirmation(&core, &env, email);
    let feedback = Feedback {
        notice: Some(format!(
            "If {email} has an account waiting for confirmation, we sent it a new link. The link expires in 24 hours."
        )),
        ..Feedback::default()
    };
    resend_page(&core, &env, jar, StatusCode::OK, flow, Some(email), feedback)
}

// ---- reset through a link ------------------------------------------------------

fn reset_page(
    core: &Core,
    env: &EnvState,
    jar: CookieJar,
    status: StatusCode,
    token: &str,
    feedback: Feedback,
) -> Response {
    render_form(
        core,
        env,
        jar,
        status,
        "reset.html",
        minijinja::context! { token => token, error => feedback.error, errors => feedback.errors },
    )
}

const FORGOT_AGAIN: (&str, &str) = ("Ask for a new link", "/password/forgot");

async fn show_reset(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    match account::find_link(&core, &env, &token, Purpose::ResetPassword).await {
        Ok(Some(_)) => reset_page(&core, &env, jar, StatusCode::OK, &token, Feedback::default()),
        Ok(None) => link_expired(&env, FORGOT_AGAIN),
        Err(error) => server_error(&env, &error),
    }
}

async fn submit_reset(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    jar: CookieJar,
    Path(token): Path<String>,
    Submitted(form, _): Submitted,
) -> Response {
    let password = form.get("password").unwrap_or_default();
    let confirmation = form.get("password_confirmation").unwrap_or_default();
    match account::reset_password(&core, &env, &token, password, confirmation, &RequestInfo::from(meta)).await
    {
        Ok(Some(_)) => message_with_link(
            &env,
            "Your password has been changed",
            "Sign in with your new password. Your other sessions were signed out.",
            ("Sign in", "/login"),
        ),
        Ok(None) => link_expired(&env, FORGOT_AGAIN),
        Err(error) => match Feedback::from_error(error) {
            Ok(feedback) => reset_page(&core, &env, jar, StatusCode::BAD_REQUEST, &token, feedback),
            Err(error) => server_error(&env, &error),
        },
    }
}

// ---- change while signed in ------------------------------------------------------

fn change_page(
    core: &Core,
    env: &EnvState,
    jar: CookieJar,
    status: StatusCode,
    email: &str,
    feedback: Feedback,
) -> Response {
    render_form(
        core,
        env,
        jar,
        status,
        "password_change.html",
        minijinja::context! {
            user_email => email,
            error => feedback.error,
            errors => feedback.errors,
            notice => feedback.notice,
        },
    )
}

fn sign_in_first(env: &EnvState) -> Response {
    let mut response = message_with_link(
        env,
        "Sign in first",
        "You need to be signed in to change your password.",
        ("Sign in", "/login"),
    );
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
}

async fn show_change(State(core): State<Arc<Core>>, Env(env): Env, jar: CookieJar) -> Response {
    match browser_session(&core, &env, &jar).await {
        Ok(Some((_, user))) => {
            change_page(&core, &env, jar, StatusCode::OK, &user.email, Feedback::default())
        }
        Ok(None) => sign_in_first(&env),
        Err(error) => server_error(&env, &error),
    }
}

async fn submit_change(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    jar: CookieJar,
    Submitted(form, _): Submitted,
) -> Response {
    let (session, user) = match browser_session(&core, &env, &jar).await {
        Ok(Some(signed_in)) => signed_in,
        Ok(None) => return sign_in_first(&env),
        Err(error) => return server_error(&env, &error),
    };
    // Guessing the current password here is a login attempt.
    let ip = meta.ip_address.clone().unwrap_or_default();
    if let Err(RetryAfter(wait)) =
        core.limiter.check_all(&[(Limit::LoginIp, &ip), (Limit::LoginAccount, &user.email)])
    {
        return rate_limited(&env, wait);
    }
    let change = PasswordChange {
        current: form.get("current_password").unwrap_or_default(),
        password: form.get("password").unwrap_or_default(),
        confirmation: form.get("password_confirmation").unwrap_or_default(),
    };
    match account::change_password(&core, &env, (&session, &user), change, &RequestInfo::from(meta)).await {
        Ok(user) => {
            let feedback = Feedback {
                notice: Some("Your password has been changed. Your other sessions were signed out.".into()),
                ..Feedback::default()
            };
            change_page(&core, &env, jar, StatusCode::OK, &user.email, feedback)
        }
        Err(error) => match Feedback::from_error(error) {
            Ok(feedback) => change_page(&core, &env, jar, StatusCode::BAD_REQUEST, &user.email, feedback),
            Err(error) => server_error(&env, &error),
        },
    }
}

pub fn router() -> Router<Arc<Core>> {
    Router::new()
        .route("/register", get(show_register).post(submit_register))
        .route("/confirm/resend", get(show_resend).post(submit_resend))
        .route("/confirm/{token}", get(show_confirm).post(confirm))
        .route("/password/forgot", get(show_forgot).post(submit_forgot))
        .route("/password/reset/{token}", get(show_reset).post(submit_reset))
        .route("/password/change", get(show_change).post(submit_change))
}
