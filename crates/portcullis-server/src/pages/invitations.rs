//! `/invitations/{token}`: the page an invitation mail links to, and the
//! documented `POST /invitations/{id}/accept|decline` endpoint.
//!
//! The page shows the organization; a signed-in user whose address is the
//! invitation's accepts or declines, anyone else signs in or up first (the
//! address fixed to the invited one; an account made here counts as
//! confirmed, since the link reached the mailbox). The endpoint answers
//! JSON:API and needs the link's token in `meta` or a user access token of
//! the invited, verified address.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use portcullis_core::account::{self, Registration};
use portcullis_core::limits::{Limit, RetryAfter};
use portcullis_core::oauth::{self, RequestInfo};
use portcullis_core::services::invitations::Invitation;
use portcullis_core::services::invitations::{self, Answer, Proof};
use portcullis_core::signin::{self, LoginError};
use portcullis_core::{Core, EnvState, ServiceError};
use portcullis_jsonapi::ApiError;
use portcullis_store::model::{Session, User};

use super::{
    PageForm, Submitted, browser_session, field_errors, message, message_with_link, rate_limited,
    render_form, server_error, set_session_cookie, too_many_requests,
};
use crate::api::invitations::{answer_token, answered};
use crate::auth::bearer_token;
use crate::env::{Env, RequestMeta};
use crate::error::{ApiFailure, ApiResult};

/// An invitation the page can still answer, with its organization's name.
struct Open {
    invitation: Invitation,
    organization: String,
}

/// The invitation a link names, or the page that says why it cannot be used.
async fn open(core: &Core, env: &EnvState, token: &str) -> Result<Open, Response> {
    let invitation = match invitations::by_link(core, env, token).await {
        Ok(Some(invitation)) => invitation,
        Ok(None) => {
            return Err(message(
                StatusCode::NOT_FOUND,
                env,
                "Invitation not found",
                "This invitation link is not valid. Check that you opened the whole link from the email.",
            ));
        }
        Err(error) => return Err(server_error(env, &error)),
    };
    let closed = |text: &str| Err(message(StatusCode::GONE, env, "This invitation cannot be used", text));
    match invitations::status(&invitation, portcullis_store::now_micros()) {
        "pending" => {}
        "accepted" => return closed("This invitation has already been accepted."),
        "declined" => return closed("This invitation has been declined."),
        "revoked" => {
            return closed("This invitation has been revoked. Ask the person who invited you for a new one.");
        }
        _ => return closed("This invitation has expired. Ask the person who invited you for a new one."),
    }
    match invitations::organization_of(core, &invitation).await {
        Ok(Some(organization)) => Ok(Open { invitation, organization: organization.name }),
        Ok(None) => Err(message(
            StatusCode::GONE,
            env,
            "This invitation cannot be used",
            "The organization no longer exists.",
        )),
        Err(error) => Err(server_error(env, &error)),
    }
}

/// What the page shows besides the invitation.
#[derive(Default)]
struct View<'a> {
    error: Option<&'a str>,
    errors: Option<minijinja::Value>,
    form: Option<&'a PageForm>,
}

async fn page(
    core: &Core,
    env: &EnvState,
    jar: CookieJar,
    status: StatusCode,
    (token, open): (&str, &Open),
    session: Option<&(Session, User)>,
    view: View<'_>,
) -> Response {
    let invited = &open.invitation.email;
    let mode = match session {
        Some((_, user)) if user.email.to_lowercase() == *invited => "answer",
        Some(_) => "wrong_account",
        None => match invitations::invitee(core, &open.invitation).await {
            Ok(Some(_)) => "sign_in",
            Ok(None) => "sign_up",
            Err(error) => return server_error(env, &error),
        },
    };
    let field = |name: &str| view.form.and_then(|f| f.get(name)).map(str::to_owned);
    render_form(
        core,
        env,
        jar,
        status,
        "invitation.html",
        minijinja::context! {
            mode => mode,
            token => token,
            organization => open.organization.clone(),
            email => invited,
            signed_in_as => session.map(|(_, user)| user.email.clone()),
            error => view.error,
            errors => view.errors,
            first_name => field("first_name"),
            last_name => field("last_name"),
        },
    )
}

fn limited(core: &Core, env: &EnvState, meta: &RequestMeta) -> Option<Response> {
    let ip = meta.ip_address.clone().unwrap_or_default();
    core.limiter.check(Limit::InvitationIp, &ip).err().map(|RetryAfter(wait)| rate_limited(env, wait))
}

async fn show(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    if let Some(response) = limited(&core, &env, &meta) {
        return response;
    }
    let open = match open(&core, &env, &token).await {
        Ok(open) => open,
        Err(response) => return response,
    };
    let session = match browser_session(&core, &env, &jar).await {
        Ok(session) => session,
        Err(error) => return server_error(&env, &error),
    };
    page(&core, &env, jar, StatusCode::OK, (&token, &open), session.as_ref(), View::default()).await
}

async fn submit(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    jar: CookieJar,
    Path(token): Path<String>,
    Submitted(form, _): Submitted,
) -> Response {
    if let Some(response) = limited(&core, &env, &meta) {
        return response;
    }
    let open = match open(&core, &env, &token).await {
        Ok(open) => open,
        Err(response) => return response,
    };
    let session = match browser_session(&core, &env, &jar).await {
        Ok(session) => session,
        Err(error) => return server_error(&env, &error),
    };
    let info = RequestInfo::from(meta.clone());
    let at = (token.as_str(), &open);
    match form.get("step") {
        Some("sign_in") => sign_in(&core, &env, jar, at, session, &form, &meta).await,
        Some("sign_up") => sign_up(&core, &env, jar, at, session, &form, &info).await,
        Some("accept") => respond(&core, &env, at, session, Answer::Accept, &info).await,
        Some("decline") => respond(&core, &env, at, session, Answer::Decline, &info).await,
        _ => {
            let view = View { error: Some("Choose what to do with the invitation."), ..View::default() };
            page(&core, &env, jar, StatusCode::BAD_REQUEST, at, session.as_ref(), view).await
        }
    }
}

async fn sign_in(
    core: &Core,
    env: &Arc<EnvState>,
    jar: CookieJar,
    at: (&str, &Open),
    session: Option<(Session, User)>,
    form: &PageForm,
    meta: &RequestMeta,
) -> Response {
    let email = &at.1.invitation.email;
    let ip = meta.ip_address.clone().unwrap_or_default();
    if let Err(RetryAfter(wait)) =
        core.limiter.check_all(&[(Limit::LoginIp, &ip), (Limit::LoginAccount, email)])
    {
        return rate_limited(env, wait);
    }
    let failed = |text: &'static str| View { error: Some(text), ..View::default() };
    let Some(password) = form.get("password") else {
        let view = failed("Enter your password.");
        return page(core, env, jar, StatusCode::BAD_REQUEST, at, session.as_ref(), view).await;
    };
    let info = RequestInfo::from(meta.clone());
    let current = session.as_ref().map(|(s, _)| s);
    let (status, text) = match signin::password_login(core, env, email, password, &info, current).await {
        Ok(logged_in) => {
            let jar = match logged_in.new_token {
                Some(token) => set_session_cookie(core, jar, token),
                None => jar,
            };
            let session = (logged_in.session, logged_in.user);
            return page(core, env, jar, StatusCode::OK, at, Some(&session), View::default()).await;
        }
        Err(LoginError::InvalidCredentials) => (StatusCode::UNAUTHORIZED, "The password is incorrect."),
        Err(LoginError::EmailUnverified) => {
            (StatusCode::FORBIDDEN, "Confirm your email address to sign in: open the link we sent to it.")
        }
        Err(LoginError::Blocked) => {
            (StatusCode::FORBIDDEN, "This account has been blocked. Contact your administrator.")
        }
        Err(LoginError::Locked { retry_after }) => {
            let view = failed("Too many failed sign-in attempts. Wait a few minutes, then try again.");
            let response = page(core, env, jar, StatusCode::TOO_MANY_REQUESTS, at, None, view).await;
            return too_many_requests(response, retry_after.unsigned_abs());
        }
        Err(LoginError::Service(error)) => return server_error(env, &error),
    };
    page(core, env, jar, status, at, None, failed(text)).await
}

async fn sign_up(
    core: &Core,
    env: &Arc<EnvState>,
    jar: CookieJar,
    at: (&str, &Open),
    session: Option<(Session, User)>,
    form: &PageForm,
    info: &RequestInfo,
) -> Response {
    let ip = info.ip_address.clone().unwrap_or_default();
    if let Err(RetryAfter(wait)) = core.limiter.check(Limit::RegisterIp, &ip) {
        return rate_limited(env, wait);
    }
    let registration = Registration {
        email: at.1.invitation.email.clone(),
        password: form.get("password").unwrap_or_default().to_owned(),
        password_confirmation: form.get("password_confirmation").unwrap_or_default().to_owned(),
        first_name: form.get("first_name").map(str::to_owned),
        last_name: form.get("last_name").map(str::to_owned),
    };
    let email = at.1.invitation.email.clone();
    let user = match account::register_invited(core, env, &email, registration, info).await {
        Ok(user) => user,
        Err(ServiceError::Conflict { .. }) => {
            let view =
                View { error: Some("This address has an account already: sign in."), ..View::default() };
            return page(core, env, jar, StatusCode::CONFLICT, at, session.as_ref(), view).await;
        }
        Err(error) => match field_errors(&error) {
            Some(errors) => {
                let view = View { errors: Some(errors), form: Some(form), ..View::default() };
                return page(core, env, jar, StatusCode::UNPROCESSABLE_ENTITY, at, None, view).await;
            }
            None => return server_error(env, &error),
        },
    };
    let ctx = signin::user_ctx(env, &user, info);
    let current = session.as_ref().map(|(s, _)| s);
    match signin::start_session(core, &ctx, user, current).await {
        Ok(logged_in) => {
            let jar = match logged_in.new_token {
                Some(token) => set_session_cookie(core, jar, token),
                None => jar,
            };
            let session = (logged_in.session, logged_in.user);
            page(core, env, jar, StatusCode::OK, at, Some(&session), View::default()).await
        }
        Err(LoginError::Service(error)) => server_error(env, &error),
        Err(_) => message(StatusCode::FORBIDDEN, env, "Cannot sign in", "This account cannot sign in."),
    }
}

async fn respond(
    core: &Core,
    env: &Arc<EnvState>,
    (token, open): (&str, &Open),
    session: Option<(Session, User)>,
    what: Answer,
    info: &RequestInfo,
) -> Response {
    // A signed-in user of another address may still decline by the link.
    let user =
        session.as_ref().map(|(_, user)| user).filter(|u| u.email.to_lowercase() == open.invitation.email);
    if what == Answer::Accept && user.is_none() {
        return message(
            StatusCode::FORBIDDEN,
            env,
            "Sign in first",
            "Sign in as the invited address to accept.",
        );
    }
    let ctx = invitations::answer_ctx(env, user, info);
    let proof = Proof { token: Some(token), user };
    match invitations::answer(core, &ctx, None, proof, what).await {
        Ok(_) if what == Answer::Accept => message_with_link(
            env,
            &format!("You joined {}", open.organization),
            &format!(
                "You are now a member of {}. You can close this page and sign in to the application.",
                open.organization
            ),
            ("Change your password", "/password/change"),
        ),
        Ok(_) => message(
            StatusCode::OK,
            env,
            "Invitation declined",
            &format!("You declined the invitation to {}.", open.organization),
        ),
        Err(ServiceError::Conflict { message: text, .. }) => {
            message(StatusCode::CONFLICT, env, "This invitation cannot be used", &text)
        }
        Err(ServiceError::Forbidden(text)) => message(StatusCode::FORBIDDEN, env, "Not allowed", &text),
        Err(error) => server_error(env, &error),
    }
}

/// `POST /invitations/{id}/accept|decline`: the link's token in `meta`, or
/// the invited user's access token as `Authorization: Bearer`.
async fn answer_endpoint(
    core: &Core,
    env: &Arc<EnvState>,
    meta: RequestMeta,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
    what: Answer,
) -> ApiResult<Response> {
    let ip = meta.ip_address.clone().unwrap_or_default();
    if let Err(RetryAfter(wait)) = core.limiter.check(Limit::InvitationIp, &ip) {
        let failure: ApiFailure = ApiError::new(
            429,
            "too_many_requests",
            "Too Many Requests",
            "too many invitation answers from here",
        )
        .into();
        return Ok(too_many_requests(failure.into_response(), wait));
    }
    let unauthenticated =
        |detail: &str| ApiFailure::from(ApiError::new(401, "unauthorized", "Unauthorized", detail));
    let token = if body.iter().all(u8::is_ascii_whitespace) { None } else { Some(answer_token(body)?) };
    let bearer = bearer_token(headers).map_err(|_| unauthenticated("use the Bearer authorization scheme"))?;
    let user = match bearer {
        Some(access_token) => {
            let claims =
                oauth::verify_access_token(core, env, access_token).await.map_err(|error| match error {
                    oauth::VerifyError::Rejected(reason) => unauthenticated(reason.describe()),
                    oauth::VerifyError::Service(error) => error.into(),
                })?;
            if !claims.is_user_token() {
                return Err(ApiError::forbidden("the access token is not a user's").into());
            }
            Some(
                invitations::user(core, env, &claims.sub)
                    .await?
                    .ok_or_else(|| unauthenticated("the token's user no longer exists"))?,
            )
        }
        None => None,
    };
    if token.is_none() && user.is_none() {
        return Err(unauthenticated(
            "send the link's token as {\"meta\": {\"token\": …}} or a user's access token",
        ));
    }
    let info = RequestInfo::from(meta);
    let ctx = invitations::answer_ctx(env, user.as_ref(), &info);
    let proof = Proof { token: token.as_deref(), user: user.as_ref() };
    let done = invitations::answer(core, &ctx, Some(id), proof, what).await?;
    Ok(answered(&ctx, &done))
}

async fn accept(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    answer_endpoint(&core, &env, meta, &headers, &id, &body, Answer::Accept).await
}

async fn decline(
    State(core): State<Arc<Core>>,
    Env(env): Env,
    meta: RequestMeta,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    answer_endpoint(&core, &env, meta, &headers, &id, &body, Answer::Decline).await
}

pub fn router() -> Router<Arc<Core>> {
    // One parameter name for both: the router matches by position.
    Router::new()
        .route("/invitations/{key}", get(show).post(submit))
        .route("/invitations/{key}/accept", post(accept))
        .route("/invitations/{key}/decline", post(decline))
}
