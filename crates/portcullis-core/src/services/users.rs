use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, User};
use portcullis_store::types::JsonText;
use portcullis_store::{WriteTx, new_id, now_micros, record, repo};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Changes, Patch, attrs, fetch_in, finish, optional_text, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::error::{Field, conflict_on};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "user";

impl super::links::Linkable for User {
    const KIND: &'static str = KIND;

    fn label(&self) -> Option<&str> {
        Some(&self.email)
    }
}

impl Guarded for User {
    const FAMILY: Family = Family::Users;
}
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

pub fn present(user: &User) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &user.id,
        attrs(json!({
            "email": user.email,
            "email_verified": user.email_verified,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "blocked": user.blocked,
            "manager_id": user.manager_id,
            "metadata": user.metadata.0,
            "inserted_at": timestamp(user.inserted_at),
            "updated_at": timestamp(user.updated_at),
        })),
    )
}

pub fn name(user: &User) -> Option<&str> {
    Some(&user.email)
}

/// `create_with_password`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    pub password: String,
    pub password_confirmation: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub manager_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChanges {
    #[serde(default)]
    pub email: Patch<String>,
    #[serde(default)]
    pub first_name: Patch<String>,
    #[serde(default)]
    pub last_name: Patch<String>,
    #[serde(default)]
    pub email_verified: Patch<bool>,
    #[serde(default)]
    pub blocked: Patch<bool>,
    #[serde(default)]
    pub manager_id: Patch<String>,
    #[serde(default)]
    pub metadata: Patch<Value>,
    #[serde(default)]
    pub password: Patch<String>,
    #[serde(default)]
    pub password_confirmation: Patch<String>,
}

pub(crate) fn validate_email(email: &str) -> Result<String> {
    let email = email.trim();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && email.matches('@').count() == 1;
    if valid {
        Ok(email.to_owned())
    } else {
        Err(ServiceError::invalid("email", "email is not a valid address"))
    }
}

/// Common passwords of 8+ characters (see `data/README.md`), refused as new
/// passwords whatever their case.
static COMMON_PASSWORDS: std::sync::LazyLock<std::collections::HashSet<&'static str>> =
    std::sync::LazyLock::new(|| include_str!("../../data/common-passwords.txt").lines().collect());

/// The password policy: 8 to 128 characters, not a common password, and
/// confirmed.
pub fn validate_password(password: &str, confirmation: &str) -> Result<()> {
    let length = password.chars().count();
    if length < PASSWORD_MIN {
        return Err(ServiceError::invalid(
            "password",
            format!("password must be at least {PASSWORD_MIN} characters"),
        ));
    }
    if length > PASSWORD_MAX {
        return Err(ServiceError::invalid(
            "password",
            format!("password must be at most {PASSWORD_MAX} characters"),
        ));
    }
    if COMMON_PASSWORDS.contains(password.to_lowercase().as_str()) {
        return Err(ServiceError::invalid(
            "password",
            "password is too common: choose one that is harder to guess",
        ));
    }
    if !portcullis_crypto::secret::constant_time_eq(password, confirmation) {
        return Err(ServiceError::invalid(
            "password_confirmation",
            "password confirmation does not match password",
        ));
    }
    Ok(())
}

const EMAIL_TAKEN: &str = "email has already been taken";

pub async fn create(core: &Core, ctx: &Ctx, input: NewUser) -> Result<User> {
    ctx.require(Family::Users, Verb::Write)?;
    let manager_id = input.manager_id.clone();
    let mut user = build(core, ctx.environment_id(), input).await?;
    let mut tx = core.db.write().await?;
    if let Some(manager_id) = manager_id {
        user.manager_id = Some(check_manager(&mut tx, ctx.environment_id(), &user.id, manager_id).await?);
    }
    insert_in(&mut tx, &user).await?;
    finish(tx, ctx, created_event("user.created", &user)).await?;
    Ok(user)
}

/// A validated new user with its password hashed, not yet stored.
pub(crate) async fn build(core: &Core, environment_id: &str, input: NewUser) -> Result<User> {
    let email = validate_email(&input.email)?;
    validate_password(&input.password, &input.password_confirmation)?;
    let first_name = optional_text("first_name", input.first_name, 255)?;
    let last_name = optional_text("last_name", input.last_name, 255)?;
    let metadata = super::metadata_object(input.metadata.unwrap_or_else(|| json!({})))?;
    let password_hash = core.passwords.hash(input.password).await?;
    let now = now_micros();
    Ok(User {
        id: new_id(),
        environment_id: environment_id.to_owned(),
        email,
        email_verified: input.email_verified,
        first_name,
        last_name,
        password_hash: Some(password_hash),
        blocked: input.blocked,
        metadata: JsonText(metadata),
        inserted_at: now,
        updated_at: now,
        failed_logins: 0,
        locked_until: None,
        manager_id: None,
    })
}

/// A manager must be another user of this environment, and making them one
/// must not close a reporting loop.
async fn check_manager(
    tx: &mut WriteTx,
    environment_id: &str,
    user_id: &str,
    manager_id: String,
) -> Result<String> {
    let invalid = |detail: &str| ServiceError::invalid("manager_id", detail.to_owned());
    let mut next = Some(manager_id.clone());
    // Walk up the chain; real org charts are far shallower than this bound.
    for _ in 0..64 {
        let Some(id) = next else { return Ok(manager_id) };
        if id == user_id {
            return Err(invalid("manager_id would make the user their own manager"));
        }
        let manager: Option<User> = record::find(tx.conn(), environment_id, &id).await?;
        match manager {
            Some(manager) => next = manager.manager_id,
            None if id == manager_id => return Err(invalid("manager_id is not a user in this environment")),
            None => return Ok(manager_id),
        }
    }
    Err(invalid("manager_id chain is too deep"))
}

/// Inserts a built user; a taken email is a conflict on `email`.
pub(crate) async fn insert_in(tx: &mut WriteTx, user: &User) -> Result<()> {
    record::insert(tx.conn(), user).await.map_err(conflict_on(
        &["users_email_key"],
        Field::Attribute("email"),
        EMAIL_TAKEN,
    ))
}

/// `user.created` (by an admin) or `user.registered` (signed up).
pub(crate) fn created_event(action: &'static str, user: &User) -> Event {
    Event {
        action,
        targets: vec![target(KIND, &user.id, Some(&user.email))],
        changes: json!({"email": {"from": null, "to": user.email}, "first_name": {"from": null, "to": user.first_name}, "last_name": {"from": null, "to": user.last_name}}),
        data: serde_json::to_value(present(user)).unwrap_or_default(),
    }
}

pub async fn update(core: &Core, ctx: &Ctx, id: &str, input: UserChanges) -> Result<User> {
    ctx.require(Family::Users, Verb::Write)?;
    let new_password = match (input.password, input.password_confirmation) {
        (Patch::Absent, Patch::Absent) => None,
        (Patch::Value(password), confirmation) => {
            let confirmation = match confirmation {
                Patch::Value(c) => c,
                _ => String::new(),
            };
            validate_password(&password, &confirmation)?;
            Some(core.passwords.hash(password).await?)
        }
        _ => {
            return Err(ServiceError::invalid("password", "password is required with password_confirmation"));
        }
    };
    let mut tx = core.db.write().await?;
    let before: User = fetch_in(&mut tx, ctx, KIND, id).await?;
    let mut user = before.clone();
    if let Some(email) = input.email.required("email")? {
        user.email = validate_email(&email)?;
    }
    input.first_name.apply_to(&mut user.first_name);
    input.last_name.apply_to(&mut user.last_name);
    user.first_name = optional_text("first_name", user.first_name, 255)?;
    user.last_name = optional_text("last_name", user.last_name, 255)?;
    if let Some(v) = input.email_verified.required("email_verified")? {
        user.email_verified = v;
    }
    if let Some(v) = input.blocked.required("blocked")? {
        user.blocked = v;
    }
    if let Some(v) = input.metadata.required("metadata")? {
        user.metadata = JsonText(super::metadata_object(v)?);
    }
    match input.manager_id {
        Patch::Absent => {}
        Patch::Null => user.manager_id = None,
        Patch::Value(manager_id) => {
            user.manager_id = Some(check_manager(&mut tx, ctx.environment_id(), &user.id, manager_id).await?);
        }
    }
    let password_changed = new_password.is_some();
    if let Some(hash) = new_password {
        user.password_hash = Some(hash);
    }
    user.updated_at = now_micros();
    record::update(tx.conn(), ctx.environment_id(), &user).await.map_err(conflict_on(
        &["users_email_key"],
        Field::Attribute("email"),
        EMAIL_TAKEN,
    ))?;

    let mut changes = Changes::default();
    changes.track("email", &before.email, &user.email);
    changes.track("first_name", &before.first_name, &user.first_name);
    changes.track("last_name", &before.last_name, &user.last_name);
    changes.track("email_verified", &before.email_verified, &user.email_verified);
    changes.track("blocked", &before.blocked, &user.blocked);
    changes.track("manager_id", &before.manager_id, &user.manager_id);
    if before.blocked != user.blocked {
        // Blocking must take effect for cached token checks at once.
        tx.invalidate(ctx.environment_id());
    }
    if !before.email.eq_ignore_ascii_case(&user.email) || password_changed {
        // Links mailed to an old address must not confirm or reset the new
        // one, and a new password voids pending resets.
        repo::signin::drop_user_tokens(tx.conn(), ctx.environment_id(), &user.id, None).await?;
    }
    if user.blocked && !before.blocked {
        super::sessions::end_all_for_user(&mut tx, ctx.environment_id(), &user.id).await?;
    }
    let data = serde_json::to_value(present(&user)).unwrap_or_default();
    let targets = vec![target(KIND, &user.id, Some(&user.email))];
    if password_changed {
        tx.record(
            &ctx.origin(),
            &Event {
                action: "user.password_changed",
                targets: targets.clone(),
                changes: json!({}),
                data: data.clone(),
            },
        )
        .await?;
    }
    finish(tx, ctx, Event { action: "user.updated", targets, changes: changes.into_value(), data }).await?;
    Ok(user)
}

pub async fn delete(core: &Core, ctx: &Ctx, id: &str) -> Result<()> {
    ctx.require(Family::Users, Verb::Delete)?;
    super::delete::<User>(core, ctx, "user.deleted", id, present, name, true).await
}
