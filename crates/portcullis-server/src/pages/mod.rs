//! Hosted pages: the authorization endpoint's browser side, login, consent
//! and logout. Server-rendered (minijinja, autoescaped), usable without
//! JavaScript, protected by a double-submit CSRF cookie.
//!
//! A sign-in in progress is carried from page to page as a sealed `flow`
//! (see `portcullis_core::oauth::authorize`), so no page keeps server state
//! between requests except the session itself.

// Page helpers return the page to show as their error: it is what the
// handler sends next, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

mod account;
mod authorize;
mod consent;
mod invitations;
mod login;
mod logout;
mod organizations;

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use portcullis_core::oauth::authorize::{self as flow, AuthorizationRequest, Next};
use portcullis_core::services::sessions;
use portcullis_core::{Core, EnvState, ServiceError};
use portcullis_crypto::secret;
use portcullis_store::model::{Session, User};

use crate::env::Env;

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    let templates = [
        ("base.html", include_str!("../../templates/base.html")),
        ("login.html", include_str!("../../templates/login.html")),
        ("register.html", include_str!("../../templates/register.html")),
        ("consent.html", include_str!("../../templates/consent.html")),
        ("confirm.html", include_str!("../../templates/confirm.html")),
        ("confirm_resend.html", include_str!("../../templates/confirm_resend.html")),
        ("forgot.html", include_str!("../../templates/forgot.html")),
        ("reset.html", include_str!("../../templates/reset.html")),
        ("logout.html", include_str!("../../templates/logout.html")),
        ("message.html", include_str!("../../templates/message.html")),
        ("password_change.html", include_str!("../../templates/password_change.html")),
        ("invitation.html", include_str!("../../templates/invitation.html")),
        ("organization_pick.html", include_str!("../../templates/organization_pick.html")),
    ];
    for (name, source) in templates {
        env.add_template(name, source).expect("bundled templates parse");
    }
    env
});

/// Security headers for every hosted page: no caching, no framing, no
/// scripts, no referrer (flows and codes live in URLs).
fn harden(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
}

/// Renders a template with the environment's name added.
pub(crate) fn render(status: StatusCode, env: &EnvState, name: &str, context: minijinja::Value) -> Response {
    let context = minijinja::context! { env_name => env.environment.name.clone(), ..context };
    let body = TEMPLATES.get_template(name).and_then(|t| t.render(context));
    let mut response = match body {
        Ok(html) => (status, html).into_response(),
        Err(error) => {
            tracing::error!(%error, template = name, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    harden(&mut response);
    response
}

/// A page with a title and a message (errors and notices).
pub(crate) fn message(status: StatusCode, env: &EnvState, title: &str, text: &str) -> Response {
    render(
        status,
        env,
        "message.html",
        minijinja::context! { title => title, message => text, error => status.is_client_error() || status.is_server_error() },
    )
}

/// A notice with one link onwards (e.g. "Sign in").
pub(crate) fn message_with_link(env: &EnvState, title: &str, text: &str, link: (&str, &str)) -> Response {
    let (link_text, link_href) = link;
    render(
        StatusCode::OK,
        env,
        "message.html",
        minijinja::context! { title => title, message => text, link_text => link_text, link_href => link_href },
    )
}

/// Field messages of a validation error, keyed by field name, for a form's
/// template (`errors.password`); `None` for other errors.
pub(crate) fn field_errors(error: &ServiceError) -> Option<minijinja::Value> {
    match error {
        ServiceError::Invalid { field: portcullis_core::Field::Attribute(field), message } => {
            Some(minijinja::Value::from_pairs([(*field, message.clone())]))
        }
        _ => None,
    }
}

/// Answers 429 with `Retry-After`.
pub(crate) fn too_many_requests(mut response: Response, retry_after: u64) -> Response {
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Ok(value) = HeaderValue::from_str(&retry_after.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The page for a request over its rate limit.
pub(crate) fn rate_limited(env: &EnvState, retry_after: u64) -> Response {
    let text = format!("Too many attempts from here. Wait {retry_after} seconds, then try again.");
    too_many_requests(message(StatusCode::TOO_MANY_REQUESTS, env, "Slow down", &text), retry_after)
}

/// `?flow=` carried to the next page's URL, if a sign-in is in progress.
pub(crate) fn with_flow(path: &str, flow: Option<&str>) -> String {
    match flow {
        Some(flow) => {
            let query = form_urlencoded::Serializer::new(String::new()).append_pair("flow", flow).finish();
            format!("{path}?{query}")
        }
        None => path.to_owned(),
    }
}

pub(crate) fn server_error(env: &EnvState, error: &ServiceError) -> Response {
    tracing::error!(%error, "hosted page failed");
    message(StatusCode::INTERNAL_SERVER_ERROR, env, "Something went wrong", "Please try again in a moment.")
}

/// A redirect that the page headers also apply to.
pub(crate) fn redirect(to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    harden(&mut response);
    response
}

/// Cookie names: `__Host-` prefixed (Secure, host-only, Path=/) on https.
fn cookie_name(core: &Core, base: &'static str) -> String {
    if core.config.public_scheme == "https" { format!("__Host-{base}") } else { base.to_owned() }
}

fn cookie(core: &Core, name: String, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::new(name, value);
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Lax);
    cookie.set_path("/");
    cookie.set_secure(core.config.public_scheme == "https");
    cookie
}

pub(crate) fn session_cookie_name(core: &Core) -> String {
    cookie_name(core, "portcullis_session")
}

pub(crate) fn set_session_cookie(core: &Core, jar: CookieJar, token: String) -> CookieJar {
    jar.add(cookie(core, session_cookie_name(core), token))
}

pub(crate) fn clear_session_cookie(core: &Core, jar: CookieJar) -> CookieJar {
    jar.remove(cookie(core, session_cookie_name(core), String::new()))
}

/// The browser's live session, if its cookie names one.
pub(crate) async fn browser_session(
    core: &Core,
    env: &EnvState,
    jar: &CookieJar,
) -> Result<Option<(Session, User)>, ServiceError> {
    match jar.get(&session_cookie_name(core)) {
        Some(cookie) if !cookie.value().is_empty() => sessions::find_active(core, env, cookie.value()).await,
        _ => Ok(None),
    }
}

/// The CSRF token for this browser (double-submit: the form field must
/// equal the cookie). Sets the cookie when the browser has none.
fn csrf_token(core: &Core, jar: CookieJar) -> (CookieJar, String) {
    let name = cookie_name(core, "portcullis_csrf");
    match jar.get(&name).map(|c| c.value().to_owned()).filter(|v| v.len() >= 32) {
        Some(token) => (jar, token),
        None => {
            let token = secret::random_token::<32>();
            (jar.add(cookie(core, name, token.clone())), token)
        }
    }
}

/// Renders a page with a form: adds the browser's CSRF token to the
/// context (setting its cookie if needed).
pub(crate) fn render_form(
    core: &Core,
    env: &EnvState,
    jar: CookieJar,
    status: StatusCode,
    name: &str,
    context: minijinja::Value,
) -> Response {
    let (jar, csrf) = csrf_token(core, jar);
    (jar, render(status, env, name, minijinja::context! { csrf => csrf, ..context })).into_response()
}

/// Whether a submitted form carries this browser's CSRF token.
fn csrf_ok(core: &Core, jar: &CookieJar, form: &PageForm) -> bool {
    let name = cookie_name(core, "portcullis_csrf");
    match (jar.get(&name), form.get("csrf")) {
        (Some(cookie), Some(sent)) => {
            cookie.value().len() >= 32 && secret::constant_time_eq(cookie.value(), sent)
        }
        _ => false,
    }
}

fn csrf_failed(env: &EnvState) -> Response {
    message(
        StatusCode::FORBIDDEN,
        env,
        "Your session has expired",
        "The form was too old or did not come from this site. Go back, reload the page and try again.",
    )
}

/// A submitted hosted-page form (`application/x-www-form-urlencoded`).
pub(crate) struct PageForm(std::collections::HashMap<String, String>);

impl PageForm {
    pub fn parse(body: &[u8]) -> PageForm {
        PageForm(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// The body of every hosted-page form post: the fields, once they passed the
/// CSRF check, and the sign-in flow they carry (if any). A forged, stale or
/// altered post is answered with the page that says so.
pub(crate) struct Submitted(pub PageForm, pub Option<AuthorizationRequest>);

impl FromRequest<Arc<Core>> for Submitted {
    type Rejection = Response;

    async fn from_request(request: Request, core: &Arc<Core>) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let Env(env) =
            Env::from_request_parts(&mut parts, core).await.map_err(IntoResponse::into_response)?;
        let jar = CookieJar::from_headers(&parts.headers);
        let body = Bytes::from_request(Request::from_parts(parts, body), core)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = PageForm::parse(&body);
        if !csrf_ok(core, &jar, &form) {
            return Err(csrf_failed(&env));
        }
        let flow = open_flow(core, &env, form.get("flow"))?;
        Ok(Submitted(form, flow))
    }
}

/// `?flow=` on the pages of a sign-in.
#[derive(serde::Deserialize)]
pub(crate) struct FlowQuery {
    pub flow: Option<String>,
}

/// Opens the `flow` a page was given; `None` (and the page to show) when it
/// is missing, altered or expired.
pub(crate) fn open_flow(
    core: &Core,
    env: &EnvState,
    sealed: Option<&str>,
) -> Result<Option<AuthorizationRequest>, Response> {
    match sealed {
        None => Ok(None),
        Some(sealed) => flow::open(core, env, sealed).map(Some).ok_or_else(|| {
            message(
                StatusCode::BAD_REQUEST,
                env,
                "This sign-in has expired",
                "Go back to the application and start signing in again.",
            )
        }),
    }
}

/// Takes a sign-in one step further: to the login page, the consent page,
/// the organization picker, or back to the client with a code or an error.
pub(crate) async fn continue_flow(
    core: &Core,
    env: &EnvState,
    request: &AuthorizationRequest,
    session: Option<&(Session, User)>,
) -> Response {
    match flow::next_step(core, env, request, session).await {
        Ok(step) => step_response(core, env, request, step),
        Err(error) => server_error(env, &error),
    }
}

/// The answer for a step of `request`'s sign-in.
pub(crate) fn step_response(
    core: &Core,
    env: &EnvState,
    request: &AuthorizationRequest,
    step: Next,
) -> Response {
    let sealed = |path: &str| match flow::seal(core, env, request) {
        Ok(sealed) => redirect(&with_flow(path, Some(&sealed))),
        Err(error) => server_error(env, &error),
    };
    match step {
        Next::Login => sealed("/login"),
        Next::Consent { .. } => sealed("/consent"),
        Next::PickOrganization(_) => sealed(organizations::PICK_PATH),
        Next::Redirect(url) => redirect(&url),
        Next::Spent => message(
            StatusCode::BAD_REQUEST,
            env,
            "Already signed in",
            "This sign-in request has been completed already. Start again from the application.",
        ),
    }
}

pub fn router() -> Router<Arc<Core>> {
    Router::new()
        .merge(authorize::router())
        .merge(login::router())
        .merge(consent::router())
        .merge(logout::router())
        .merge(account::router())
        .merge(invitations::router())
        .merge(organizations::router())
}
