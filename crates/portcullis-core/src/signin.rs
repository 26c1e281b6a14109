//! Password sign-in for the hosted pages: constant-time credential checks,
//! exponential lockout, and the browser session it starts.

use std::sync::Arc;

use portcullis_store::model::{Actor, Event, Session, User};
use portcullis_store::{now_micros, record};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::oauth::RequestInfo;
use crate::services::{sessions, target};
use crate::{Core, Ctx, EnvState, Result, ServiceError};

/// Failures before an account locks.
pub const LOCKOUT_THRESHOLD: i64 = 5;
/// The first lock; each further failure doubles it, up to [`LOCKOUT_MAX_SECONDS`].
pub const LOCKOUT_BASE_SECONDS: i64 = 30;
pub const LOCKOUT_MAX_SECONDS: i64 = 3600;

#[derive(Debug)]
pub enum LoginError {
    /// Wrong email or password (the two are never told apart).
    InvalidCredentials,
    /// Too many failures: try again after this many seconds.
    Locked {
        retry_after: i64,
    },
    /// Right password, but an administrator blocked the user.
    Blocked,
    /// Right password, but the environment requires a confirmed address
    /// and this one is not confirmed yet.
    EmailUnverified,
    Service(ServiceError),
}

impl From<ServiceError> for LoginError {
    fn from(e: ServiceError) -> Self {
        LoginError::Service(e)
    }
}

impl From<portcullis_store::StoreError> for LoginError {
    fn from(e: portcullis_store::StoreError) -> Self {
        LoginError::Service(e.into())
    }
}

/// A successful login: the session, and its cookie token when a new session
/// was started (re-authenticating an existing one keeps its cookie).
pub struct LoggedIn {
    pub user: User,
    pub session: Session,
    pub new_token: Option<String>,
}

/// A hash to verify against when the email is unknown, so an unknown email
/// costs the same Argon2id work as a wrong password.
async fn decoy_hash(core: &Core) -> Result<&'static str> {
    static DECOY: OnceCell<String> = OnceCell::const_new();
    DECOY
        .get_or_try_init(|| core.passwords.hash("portcullis decoy password".into()))
        .await
        .map(String::as_str)
}

/// Failed sign-ins for addresses that have no account, counted and locked
/// exactly like an account's, so the lockout cannot tell who has one.
///
/// In memory, per process (accounts keep theirs in the database): a restart
/// forgets them, and behind several instances each counts its own. Entries
/// go a day after their last failure; at [`UnknownLogins::CAPACITY`] the
/// stalest make room, so a flood of made-up addresses cannot grow memory.
#[derive(Default)]
pub struct UnknownLogins {
    failures: std::sync::Mutex<std::collections::HashMap<(String, String), Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: i64,
    locked_until: Option<i64>,
    last_at: i64,
}

impl UnknownLogins {
    const CAPACITY: usize = 100_000;
    const KEEP_MICROS: i64 = 24 * 3600 * 1_000_000;

    fn key(environment_id: &str, email: &str) -> (String, String) {
        (environment_id.to_owned(), email.trim().to_lowercase())
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, String), Failures>> {
        // A panic while holding the lock leaves plain counters behind.
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Until when the address is locked, if it is.
    fn locked_until(&self, environment_id: &str, email: &str, now: i64) -> Option<i64> {
        let entries = self.entries();
        entries.get(&Self::key(environment_id, email))?.locked_until.filter(|until| *until > now)
    }

    /// Counts one failure; returns the lock it starts, as for an account.
    fn fail(&self, environment_id: &str, email: &str, now: i64) -> Option<i64> {
        let mut entries = self.entries();
        let key = Self::key(environment_id, email);
        if !entries.contains_key(&key) && entries.len() >= Self::CAPACITY {
            entries.retain(|_, f| f.last_at > now - Self::KEEP_MICROS);
            if entries.len() >= Self::CAPACITY
                && let Some(stalest) = entries.iter().min_by_key(|(_, f)| f.last_at).map(|(k, _)| k.clone())
            {
                entries.remove(&stalest);
            }
        }
        let entry = entries.entry(key).or_insert(Failures { count: 0, locked_until: None, last_at: now });
        entry.count += 1;
        entry.last_at = now;
        entry.locked_until = lock_seconds(entry.count).map(|s| now + s * 1_000_000);
        entry.locked_until
    }

    /// Drops entries a day past their last failure.
    pub fn shrink(&self) {
        let now = now_micros();
        self.entries().retain(|_, f| f.last_at > now - Self::KEEP_MICROS);
    }
}

/// Seconds until `until`, rounded up.
fn seconds_until(until: i64, now: i64) -> i64 {
    (until - now + 999_999) / 1_000_000
}

/// How long an account stays locked after `failures` consecutive failures.
pub fn lock_seconds(failures: i64) -> Option<i64> {
    (failures >= LOCKOUT_THRESHOLD).then(|| {
        let doublings = (failures - LOCKOUT_THRESHOLD).min(16);
        (LOCKOUT_BASE_SECONDS << doublings).min(LOCKOUT_MAX_SECONDS)
    })
}

pub fn user_ctx(env: &Arc<EnvState>, user: &User, info: &RequestInfo) -> Ctx {
    Ctx {
        env: env.clone(),
        actor: Actor { kind: "user", id: Some(user.id.clone()), name: Some(user.email.clone()) },
        authority: crate::Authority::None,
        ip_address: info.ip_address.clone(),
        user_agent: info.user_agent.clone(),
    }
}

/// Checks an email and password and starts (or refreshes) a session.
/// `current` is the browser's live session, if any: the same user signing in
/// again re-authenticates it; another user's is revoked.
pub async fn password_login(
    core: &Core,
    env: &Arc<EnvState>,
    email: &str,
    password: &str,
    info: &RequestInfo,
    current: Option<&Session>,
) -> std::result::Result<LoggedIn, LoginError> {
    let mut conn = core.db.read().await?;
    let user: Option<User> =
        record::find_by(&mut conn, env.id(), "lower(email)", &email.trim().to_lowercase()).await?;
    drop(conn);
    let now = now_micros();
    let Some(user) = user else {
        // The same steps as for an account: the lock first, then the hash.
        if let Some(until) = core.unknown_logins.locked_until(env.id(), email, now) {
            return Err(LoginError::Locked { retry_after: seconds_until(until, now) });
        }
        core.passwords.verify(password.to_owned(), decoy_hash(core).await?.to_owned()).await?;
        return Err(match core.unknown_logins.fail(env.id(), email, now) {
            Some(until) => LoginError::Locked { retry_after: seconds_until(until, now) },
            None => LoginError::InvalidCredentials,
        });
    };
    if let Some(until) = user.locked_until.filter(|until| *until > now) {
        return Err(LoginError::Locked { retry_after: seconds_until(until, now) });
    }
    let stored = user.password_hash.clone().unwrap_or_default();
    let stored = if stored.is_empty() { decoy_hash(core).await?.to_owned() } else { stored };
    let ok = core.passwords.verify(password.to_owned(), stored).await? && user.password_hash.is_some();
    let ctx = user_ctx(env, &user, info);
    if !ok {
        let failures = user.failed_logins + 1;
        let locked_until = lock_seconds(failures).map(|s| now + s * 1_000_000);
        let mut tx = core.db.write_state().await?;
        let mut updated = user.clone();
        updated.failed_logins = failures;
        updated.locked_until = locked_until;
        record::update(tx.conn(), env.id(), &updated).await?;
        tx.commit().await?;
        core.events
            .record(
                ctx.origin(),
                Event {
                    action: "user.login_failed",
                    targets: vec![target("user", &user.id, Some(&user.email))],
                    changes: json!({}),
                    data: json!({"user_id": user.id, "failed_logins": failures, "locked": locked_until.is_some()}),
                },
            )
            .await;
        return Err(match locked_until {
            Some(until) => LoginError::Locked { retry_after: seconds_until(until, now) },
            None => LoginError::InvalidCredentials,
        });
    }
    if user.blocked {
        return Err(LoginError::Blocked);
    }
    if env.environment.require_email_verification && !user.email_verified {
        return Err(LoginError::EmailUnverified);
    }
    start_session(core, &ctx, user, current).await
}

/// Starts a session for a user who just proved who they are.
pub async fn start_session(
    core: &Core,
    ctx: &Ctx,
    user: User,
    current: Option<&Session>,
) -> std::result::Result<LoggedIn, LoginError> {
    let env = ctx.environment_id();
    let now = now_micros();
    let mut tx = core.db.write().await?;
    if user.failed_logins > 0 || user.locked_until.is_some() {
        let mut reset = user.clone();
        reset.failed_logins = 0;
        reset.locked_until = None;
        record::update(tx.conn(), env, &reset).await?;
    }
    let reuse = current.filter(|s| s.user_id == user.id && s.revoked_at.is_none());
    let (session, new_token, event) = match reuse {
        Some(existing) => {
            let mut session = existing.clone();
            session.authenticated_at = now;
            session.last_active_at = now;
            session.updated_at = now;
            record::update(tx.conn(), env, &session).await?;
            let event = Event {
                action: "session.reauthenticated",
                targets: vec![
                    target(sessions::KIND, &session.id, None),
                    target("user", &user.id, Some(&user.email)),
                ],
                changes: json!({}),
                data: serde_json::to_value(sessions::present(&session)).unwrap_or_default(),
            };
            (session, None, event)
        }
        None => {
            if let Some(other) = current.filter(|s| s.revoked_at.is_none()) {
                sessions::revoke_in(&mut tx, env, &mut other.clone(), now).await?;
            }
            let (session, token) = sessions::create_in(&mut tx, ctx, &user).await?;
            let event = sessions::created_event(&session, &user);
            (session, Some(token), event)
        }
    };
    tx.record(&ctx.origin(), &event).await?;
    tx.commit().await?;
    Ok(LoggedIn { user, session, new_token })
}
