//! Self-service account flows on the hosted pages: sign-up, email
//! confirmation, password reset and password change.
//!
//! Emailed links carry a random token whose SHA-256 is stored in
//! `user_tokens`; a link works once and expires (confirmation 24 h, reset
//! 1 h). Sign-up and reset requests answer the same whether or not the
//! address has an account: the lookup, the write and the mail happen after
//! the response, in the background.

use std::sync::Arc;

use portcullis_crypto::secret;
use portcullis_store::model::{Event, Session, User, UserToken};
use portcullis_store::{new_id, now_micros, record, repo};
use serde_json::json;

use crate::mail::{Mail, queue_in};
use crate::oauth::RequestInfo;
use crate::services::users::{self, NewUser};
use crate::services::{find_by_secret, sessions, target};
use crate::signin::user_ctx;
use crate::{Core, EnvState, Result, ServiceError};

/// What an emailed link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    ConfirmEmail,
    ResetPassword,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::ConfirmEmail => "email_confirmation",
            Purpose::ResetPassword => "password_reset",
        }
    }

    /// How long a link lives, in seconds.
    pub fn lifetime(self) -> i64 {
        match self {
            Purpose::ConfirmEmail => 24 * 3600,
            Purpose::ResetPassword => 3600,
        }
    }
}

/// A sign-up from the registration page.
#[derive(Debug)]
pub struct Registration {
    pub email: String,
    pub password: String,
    pub password_confirmation: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// Validates a sign-up and hashes its password, then (in the background)
/// creates the user and mails a confirmation link, or, when the address is
/// taken, mails its owner a note instead. Errors are about the input only;
/// they never tell whether the address has an account.
pub async fn register(
    core: &Arc<Core>,
    env: &Arc<EnvState>,
    input: Registration,
    info: &RequestInfo,
) -> Result<()> {
    if !env.environment.registration_enabled {
        return Err(ServiceError::Forbidden("registration is disabled in this environment".into()));
    }
    let new_user = NewUser {
        email: input.email,
        password: input.password,
        password_confirmation: input.password_confirmation,
        first_name: input.first_name,
        last_name: input.last_name,
        email_verified: false,
        blocked: false,
        manager_id: None,
        metadata: None,
    };
    let user = users::build(core, env.id(), new_user).await?;
    let (core, env, info) = (core.clone(), env.clone(), info.clone());
    tokio::spawn(async move {
        if let Err(error) = create_registered(&core, &env, user, &info).await {
            tracing::error!(%error, "sign-up failed after its answer was sent");
        }
    });
    Ok(())
}

/// Creates an account from an invitation link, signed in at once: the
/// address counts as confirmed (the link reached it), and public
/// registration need not be open (the invitation is an administrator's).
/// A taken address is a conflict on `email` (the link's holder may know).
pub async fn register_invited(
    core: &Core,
    env: &Arc<EnvState>,
    email: &str,
    input: Registration,
    info: &RequestInfo,
) -> Result<User> {
    let new_user = NewUser {
        email: email.to_owned(),
        password: input.password,
        password_confirmation: input.password_confirmation,
        first_name: input.first_name,
        last_name: input.last_name,
        email_verified: true,
        blocked: false,
        manager_id: None,
        metadata: None,
    };
    let user = users::build(core, env.id(), new_user).await?;
    let ctx = user_ctx(env, &user, info);
    let mut tx = core.db.write().await?;
    users::insert_in(&mut tx, &user).await?;
    tx.record(&ctx.origin(), &users::created_event("user.registered", &user)).await?;
    tx.commit().await?;
    Ok(user)
}

async fn create_registered(core: &Core, env: &Arc<EnvState>, user: User, info: &RequestInfo) -> Result<()> {
    let ctx = user_ctx(env, &user, info);
    let mut tx = core.db.write().await?;
    match users::insert_in(&mut tx, &user).await {
        Ok(()) => {}
        Err(ServiceError::Conflict { .. }) => {
            drop(tx);
            let mut tx = core.db.write_state().await?;
            queue_in(&mut tx, &core.master_key, env.id(), &account_exists_mail(env, &user.email)).await?;
            return tx.commit().await.map_err(Into::into);
        }
        Err(error) => return Err(error),
    }
    let token = issue_in(&mut tx, &user, Purpose::ConfirmEmail).await?;
    queue_in(&mut tx, &core.master_key, env.id(), &confirmation_mail(env, &user, &token)).await?;
    tx.record(&ctx.origin(), &users::created_event("user.registered", &user)).await?;
    tx.commit().await?;
    Ok(())
}

/// Creates a link token for `user` (voiding their earlier ones of the same
/// purpose) and returns it in clear, to mail.
async fn issue_in(tx: &mut portcullis_store::WriteTx, user: &User, purpose: Purpose) -> Result<String> {
    repo::signin::drop_user_tokens(tx.conn(), &user.environment_id, &user.id, Some(purpose.as_str())).await?;
    let token = secret::random_token::<32>();
    let now = now_micros();
    let row = UserToken {
        id: new_id(),
        environment_id: user.environment_id.clone(),
        user_id: user.id.clone(),
        purpose: purpose.as_str().to_owned(),
        token_hash: secret::hash_secret(&token),
        expires_at: now + purpose.lifetime() * 1_000_000,
        used_at: None,
        inserted_at: now,
    };
    record::insert(tx.conn(), &row).await?;
    Ok(token)
}

fn greeting(user: &User) -> String {
    match &user.first_name {
        Some(name) => format!("Hello {name},"),
        None => "Hello,".to_owned(),
    }
}

fn confirmation_mail(env: &EnvState, user: &User, token: &str) -> Mail {
    let name = &env.environment.name;
    Mail {
        to: user.email.clone(),
        subject: format!("Confirm your email for {name}"),
        text: format!(
            "{}\n\nConfirm your email address for your {name} account by opening this link:\n\n{}/confirm/{token}\n\nThe link works once and expires in 24 hours. If you did not sign up, ignore this message.\n",
            greeting(user),
            env.issuer,
        ),
    }
}

fn account_exists_mail(env: &EnvState, email: &str) -> Mail {
    let name = &env.environment.name;
    Mail {
        to: email.to_owned(),
        subject: format!("Your {name} account"),
        text: format!(
            "Hello,\n\nSomeone tried to create a {name} account with this email address, which already has one.\n\nIf it was you, sign in at {issuer}/login, or reset your password at {issuer}/password/forgot.\nIf it was not you, ignore this message: nothing has changed.\n",
            issuer = env.issuer,
        ),
    }
}

fn reset_mail(env: &EnvState, user: &User, token: &str) -> Mail {
    let name = &env.environment.name;
    Mail {
        to: user.email.clone(),
        subject: format!("Reset your {name} password"),
        text: format!(
            "{}\n\nSomeone asked to reset the password of your {name} account. To choose a new password, open this link:\n\n{}/password/reset/{token}\n\nThe link works once and expires in 1 hour. If you did not ask, ignore this message: your password has not changed.\n",
            greeting(user),
            env.issuer,
        ),
    }
}

/// A link's row, if the token names a live one of this purpose.
pub async fn find_link(
    core: &Core,
    env: &EnvState,
    token: &str,
    purpose: Purpose,
) -> Result<Option<UserToken>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let mut conn = core.db.read().await?;
    let row: Option<UserToken> = find_by_secret(&mut conn, env.id(), "token_hash", token).await?;
    Ok(row.filter(|row| {
        row.purpose == purpose.as_str() && row.used_at.is_none() && row.expires_at > now_micros()
    }))
}

/// Spends a link inside `tx`: its user, or `None` if another request spent
/// it first (or the user is gone).
async fn spend_in(tx: &mut portcullis_store::WriteTx, link: &UserToken, now: i64) -> Result<Option<User>> {
    let env = &link.environment_id;
    if !repo::signin::claim(tx.conn(), "user_tokens", env, &link.id, now).await? {
        return Ok(None);
    }
    Ok(record::find::<User>(tx.conn(), env, &link.user_id).await?)
}

/// Confirms the address a confirmation link was sent to. `None` when the
/// link is unknown, used or expired.
pub async fn confirm_email(
    core: &Core,
    env: &Arc<EnvState>,
    token: &str,
    info: &RequestInfo,
) -> Result<Option<User>> {
    let Some(link) = find_link(core, env, token, Purpose::ConfirmEmail).await? else {
        return Ok(None);
    };
    let mut tx = core.db.write().await?;
    let Some(mut user) = spend_in(&mut tx, &link, now_micros()).await? else {
        return Ok(None);
    };
    let was_verified = user.email_verified;
    user.email_verified = true;
    user.updated_at = now_micros();
    record::update(tx.conn(), env.id(), &user).await?;
    let ctx = user_ctx(env, &user, info);
    let event = Event {
        action: "user.updated",
        targets: vec![target(users::KIND, &user.id, Some(&user.email))],
        changes: json!({"email_verified": {"from": was_verified, "to": true}}),
        data: serde_json::to_value(users::present(&user)).unwrap_or_default(),
    };
    tx.record(&ctx.origin(), &event).await?;
    tx.commit().await?;
    Ok(Some(user))
}

/// Mails a new confirmation link if `email` belongs to a user whose address
/// is not confirmed yet (and who is not blocked); earlier links stop
/// working. Returns at once, like [`request_password_reset`], so the answer
/// never tells whether the address has an account.
pub fn resend_confirmation(core: &Arc<Core>, env: &Arc<EnvState>, email: &str) {
    let (core, env, email) = (core.clone(), env.clone(), email.trim().to_lowercase());
    tokio::spawn(async move {
        if let Err(error) = send_confirmation(&core, &env, &email).await {
            tracing::error!(%error, "confirmation mail failed");
        }
    });
}

async fn send_confirmation(core: &Core, env: &EnvState, email: &str) -> Result<()> {
    let mut conn = core.db.read().await?;
    let user: Option<User> = record::find_by(&mut conn, env.id(), "lower(email)", email).await?;
    drop(conn);
    let Some(user) = user.filter(|u| !u.blocked && !u.email_verified) else { return Ok(()) };
    let mut tx = core.db.write_state().await?;
    let token = issue_in(&mut tx, &user, Purpose::ConfirmEmail).await?;
    queue_in(&mut tx, &core.master_key, env.id(), &confirmation_mail(env, &user, &token)).await?;
    tx.commit().await?;
    Ok(())
}

/// Mails a reset link if `email` belongs to a user who may sign in. Returns
/// at once; the lookup and the mail happen in the background.
pub fn request_password_reset(core: &Arc<Core>, env: &Arc<EnvState>, email: &str) {
    let (core, env, email) = (core.clone(), env.clone(), email.trim().to_lowercase());
    tokio::spawn(async move {
        if let Err(error) = send_reset(&core, &env, &email).await {
            tracing::error!(%error, "password reset mail failed");
        }
    });
}

async fn send_reset(core: &Core, env: &EnvState, email: &str) -> Result<()> {
    let mut conn = core.db.read().await?;
    let user: Option<User> = record::find_by(&mut conn, env.id(), "lower(email)", email).await?;
    drop(conn);
    let Some(user) = user.filter(|u| !u.blocked) else { return Ok(()) };
    let mut tx = core.db.write_state().await?;
    let token = issue_in(&mut tx, &user, Purpose::ResetPassword).await?;
    queue_in(&mut tx, &core.master_key, env.id(), &reset_mail(env, &user, &token)).await?;
    tx.commit().await?;
    Ok(())
}

/// Sets a new password through a reset link. The link is spent, the
/// address counts as confirmed (the link reached it), any lockout ends, and
/// every session and refresh token of the user ends. `None` when the link is
/// unknown, used or expired.
pub async fn reset_password(
    core: &Core,
    env: &Arc<EnvState>,
    token: &str,
    password: &str,
    confirmation: &str,
    info: &RequestInfo,
) -> Result<Option<User>> {
    users::validate_password(password, confirmation)?;
    let Some(link) = find_link(core, env, token, Purpose::ResetPassword).await? else {
        return Ok(None);
    };
    let hash = core.passwords.hash(password.to_owned()).await?;
    let mut tx = core.db.write().await?;
    let now = now_micros();
    let Some(mut user) = spend_in(&mut tx, &link, now).await? else {
        return Ok(None);
    };
    user.password_hash = Some(hash);
    user.email_verified = true;
    user.failed_logins = 0;
    user.locked_until = None;
    user.updated_at = now;
    record::update(tx.conn(), env.id(), &user).await?;
    repo::signin::drop_user_tokens(tx.conn(), env.id(), &user.id, Some(Purpose::ResetPassword.as_str()))
        .await?;
    sessions::end_all_for_user(&mut tx, env.id(), &user.id).await?;
    let ctx = user_ctx(env, &user, info);
    tx.record(&ctx.origin(), &password_event("user.password_reset", &user)).await?;
    tx.commit().await?;
    Ok(Some(user))
}

fn password_event(action: &'static str, user: &User) -> Event {
    Event {
        action,
        targets: vec![target(users::KIND, &user.id, Some(&user.email))],
        changes: json!({}),
        data: serde_json::to_value(users::present(user)).unwrap_or_default(),
    }
}

/// The password-change form.
pub struct PasswordChange<'a> {
    pub current: &'a str,
    pub password: &'a str,
    pub confirmation: &'a str,
}

/// Changes a signed-in user's password after checking the current one.
/// The user's other sessions (and their refresh tokens) end; `session`
/// stays signed in.
pub async fn change_password(
    core: &Core,
    env: &Arc<EnvState>,
    (session, user): (&Session, &User),
    change: PasswordChange<'_>,
    info: &RequestInfo,
) -> Result<User> {
    let stored = user.password_hash.clone().unwrap_or_default();
    if stored.is_empty() || !core.passwords.verify(change.current.to_owned(), stored).await? {
        return Err(ServiceError::invalid("current_password", "the current password is incorrect"));
    }
    users::validate_password(change.password, change.confirmation)?;
    let hash = core.passwords.hash(change.password.to_owned()).await?;
    let mut tx = core.db.write().await?;
    let now = now_micros();
    let Some(mut user) = record::find::<User>(tx.conn(), env.id(), &user.id).await? else {
        return Err(ServiceError::NotFound("user"));
    };
    user.password_hash = Some(hash);
    user.updated_at = now;
    record::update(tx.conn(), env.id(), &user).await?;
    repo::signin::drop_user_tokens(tx.conn(), env.id(), &user.id, Some(Purpose::ResetPassword.as_str()))
        .await?;
    let others: Vec<Session> =
        record::find_in(tx.conn(), env.id(), "user_id", std::slice::from_ref(&user.id)).await?;
    for mut other in others.into_iter().filter(|s| s.id != session.id && s.revoked_at.is_none()) {
        sessions::revoke_in(&mut tx, env.id(), &mut other, now).await?;
    }
    let ctx = user_ctx(env, &user, info);
    tx.record(&ctx.origin(), &password_event("user.password_changed", &user)).await?;
    tx.commit().await?;
    Ok(user)
}
