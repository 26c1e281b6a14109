//! Browser login sessions. The cookie carries a random token; the row keeps
//! only its SHA-256. Revoking a session (or deleting it, or blocking its
//! user) ends the refresh tokens issued under it and puts their access
//! tokens on the revocation list, so it takes effect at once.

use portcullis_crypto::secret;
use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, Session, User};
use portcullis_store::{WriteTx, new_id, now_micros, record, repo};
use serde_json::json;

use super::{attrs, fetch_in, finish, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::{Core, Ctx, EnvState, Result, ServiceError};

pub const KIND: &str = "session";

impl Guarded for Session {
    const FAMILY: Family = Family::Sessions;
}

pub fn status(session: &Session, now: i64) -> &'static str {
    if session.revoked_at.is_some() {
        "revoked"
    } else if session.expires_at <= now {
        "expired"
    } else {
        "active"
    }
}

pub fn present(session: &Session) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &session.id,
        attrs(json!({
            "status": status(session, now_micros()),
            "ip_address": session.ip_address,
            "user_agent": session.user_agent,
            "authenticated_at": timestamp(session.authenticated_at),
            "last_active_at": timestamp(session.last_active_at),
            "expires_at": timestamp(session.expires_at),
            "revoked_at": session.revoked_at.map(timestamp),
            "inserted_at": timestamp(session.inserted_at),
            "updated_at": timestamp(session.updated_at),
        })),
    )
    .to_one("user", "user", Some(&session.user_id))
}

/// Starts a session for `user`; returns it and its token (shown once).
/// `ctx.actor` is the user at a login, or the client calling the API.
pub async fn create(core: &Core, ctx: &Ctx, user_id: &str) -> Result<(Session, String)> {
    ctx.require(Family::Sessions, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let user: User = record::find(tx.conn(), ctx.environment_id(), user_id)
        .await?
        .ok_or_else(|| ServiceError::invalid_relationship("user", "user does not exist"))?;
    if user.blocked {
        return Err(ServiceError::invalid_relationship("user", "the user is blocked"));
    }
    let (session, token) = create_in(&mut tx, ctx, &user).await?;
    finish(tx, ctx, created_event(&session, &user)).await?;
    Ok((session, token))
}

/// Inserts a new session inside `tx` (the caller records the event).
pub(crate) async fn create_in(tx: &mut WriteTx, ctx: &Ctx, user: &User) -> Result<(Session, String)> {
    let token = secret::random_token::<32>();
    let now = now_micros();
    let session = Session {
        id: new_id(),
        environment_id: ctx.environment_id().to_owned(),
        user_id: user.id.clone(),
        token_hash: secret::hash_secret(&token),
        ip_address: ctx.ip_address.clone(),
        user_agent: ctx.user_agent.clone(),
        authenticated_at: now,
        last_active_at: now,
        expires_at: now + ctx.env.environment.session_ttl * 1_000_000,
        revoked_at: None,
        inserted_at: now,
        updated_at: now,
    };
    record::insert(tx.conn(), &session).await?;
    Ok((session, token))
}

pub(crate) fn created_event(session: &Session, user: &User) -> Event {
    Event {
        action: "session.created",
        targets: vec![target(KIND, &session.id, None), target("user", &user.id, Some(&user.email))],
        changes: json!({}),
        data: serde_json::to_value(present(session)).unwrap_or_default(),
    }
}

/// The live session a cookie token names, with its user: not revoked, not
/// expired, and the user not blocked.
pub async fn find_active(core: &Core, env: &EnvState, token: &str) -> Result<Option<(Session, User)>> {
    let mut conn = core.db.read().await?;
    let Some(session) = super::find_by_secret::<Session>(&mut conn, env.id(), "token_hash", token).await?
    else {
        return Ok(None);
    };
    if status(&session, now_micros()) != "active" {
        return Ok(None);
    }
    let user: Option<User> = record::find(&mut conn, env.id(), &session.user_id).await?;
    Ok(user.filter(|u| !u.blocked).map(|user| (session, user)))
}

/// Records activity on a session (`PATCH /api/sessions/:id/touch`).
pub async fn touch(core: &Core, ctx: &Ctx, id: &str) -> Result<Session> {
    ctx.require(Family::Sessions, Verb::Write)?;
    let mut tx = core.db.write().await?;
    let mut session: Session = fetch_in(&mut tx, ctx, KIND, id).await?;
    let now = now_micros();
    if status(&session, now) != "active" {
        return Err(ServiceError::invalid("status", format!("the session is {}", status(&session, now))));
    }
    let before = session.last_active_at;
    session.last_active_at = now;
    session.updated_at = now;
    record::update(tx.conn(), ctx.environment_id(), &session).await?;
    let event = Event {
        action: "session.touched",
        targets: vec![target(KIND, &session.id, None)],
        changes: json!({"last_active_at": {"from": timestamp(before), "to": timestamp(now)}}),
        data: serde_json::to_value(present(&session)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(session)
}

/// Revokes a session and everything issued under it. Revoking a revoked
/// session changes nothing and records nothing. Users may end their own
/// sessions (signing out); anyone else needs `sessions:write`.
pub async fn revoke(core: &Core, ctx: &Ctx, id: &str) -> Result<Session> {
    let signing_out = ctx.actor.kind == "user";
    if !signing_out {
        ctx.require(Family::Sessions, Verb::Write)?;
    }
    let mut tx = core.db.write().await?;
    let mut session: Session = fetch_in(&mut tx, ctx, KIND, id).await?;
    if signing_out && ctx.actor.id.as_deref() != Some(session.user_id.as_str()) {
        return Err(ServiceError::NotFound(KIND));
    }
    if session.revoked_at.is_some() {
        return Ok(session);
    }
    let now = now_micros();
    revoke_in(&mut tx, ctx.environment_id(), &mut session, now).await?;
    let event = Event {
        action: "session.revoked",
        targets: vec![target(KIND, &session.id, None), target("user", &session.user_id, None)],
        changes: json!({"revoked_at": {"from": null, "to": timestamp(now)}}),
        data: serde_json::to_value(present(&session)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(session)
}

/// Marks a live session revoked inside `tx` and ends its tokens (the caller
/// records the event).
pub(crate) async fn revoke_in(
    tx: &mut WriteTx,
    environment_id: &str,
    session: &mut Session,
    now: i64,
) -> Result<()> {
    session.revoked_at = Some(now);
    session.updated_at = now;
    record::update(tx.conn(), environment_id, session).await?;
    end_tokens(tx, environment_id, "session_id", &session.id, now).await
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Sessions, Verb::Delete)?;
    let mut tx = core.db.write().await?;
    // The rows go with the session (ON DELETE CASCADE); their access tokens
    // must stop working too.
    end_tokens(&mut tx, ctx.environment_id(), "session_id", id, now_micros()).await?;
    super::delete_in::<Session>(&mut tx, ctx, "session.deleted", id, present, |_| None).await?;
    tx.commit().await?;
    Ok(())
}

/// Revokes the refresh tokens matching `column = value` and the access
/// tokens they issued.
pub(crate) async fn end_tokens(
    tx: &mut WriteTx,
    environment_id: &str,
    column: &'static str,
    value: &str,
    now: i64,
) -> Result<()> {
    let mut jtis = repo::signin::revoke_refresh_tokens(tx.conn(), environment_id, column, value, now).await?;
    // The access token a code redemption issued is on the code's row (a
    // family's id is its code's id), whether or not a refresh token came too.
    let code_column = if column == "family_id" { "id" } else { column };
    jtis.extend(
        repo::signin::access_jtis(tx.conn(), "authorization_codes", environment_id, code_column, value, now)
            .await?,
    );
    for (jti, expires_at) in &jtis {
        repo::tokens::revoke_jti(tx.conn(), environment_id, jti, *expires_at).await?;
    }
    if !jtis.is_empty() {
        tx.invalidate(environment_id);
    }
    Ok(())
}

/// Ends every session and refresh token of a user (when they are blocked).
pub(crate) async fn end_all_for_user(tx: &mut WriteTx, environment_id: &str, user_id: &str) -> Result<()> {
    let now = now_micros();
    repo::signin::revoke_user_sessions(tx.conn(), environment_id, user_id, now).await?;
    end_tokens(tx, environment_id, "user_id", user_id, now).await
}
