//! The identity graph's rules: who should have an account in an app, what
//! that account should look like, and what step (if any) closes the gap.
//! Pure functions over rows, so the relay, the workers and reconciliation
//! all decide the same way.

use std::collections::{HashMap, HashSet};

use portcullis_core::services::apps::AppKind;
use portcullis_store::model::{App, AppAccount, ManualTask, User};
use portcullis_store::{StoreError, record, repo};
use serde_json::{Map, Value, json};
use sqlx::AnyConnection;

use crate::connector::Desired;

/// The directory facts the rules need about some users.
#[derive(Default)]
pub struct Directory {
    pub users: HashMap<String, User>,
    /// Role ids per user.
    pub roles: HashMap<String, HashSet<String>>,
    /// Email per user id, for managers.
    pub emails: HashMap<String, String>,
}

impl Directory {
    /// Loads these users (missing ones are deleted users), their roles and
    /// their managers' emails.
    pub async fn load(
        conn: &mut AnyConnection,
        environment_id: &str,
        ids: &[String],
    ) -> Result<Self, StoreError> {
        let mut users = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            users.extend(record::find_in::<User>(conn, environment_id, "id", chunk).await?);
        }
        Self::with_users(conn, environment_id, users).await
    }

    /// The same, for users already read.
    pub async fn with_users(
        conn: &mut AnyConnection,
        environment_id: &str,
        users: Vec<User>,
    ) -> Result<Self, StoreError> {
        let mut directory = Directory::default();
        let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
        for user in users {
            directory.emails.insert(user.id.clone(), user.email.clone());
            directory.users.insert(user.id.clone(), user);
        }
        for chunk in ids.chunks(500) {
            for (user, role) in
                repo::rbac::linked_ids(conn, "user_roles", "user_id", "role_id", chunk).await?
            {
                directory.roles.entry(user).or_default().insert(role);
            }
        }
        let managers: Vec<String> = directory
            .users
            .values()
            .filter_map(|u| u.manager_id.clone())
            .filter(|m| !directory.emails.contains_key(m))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for chunk in managers.chunks(500) {
            let found: Vec<User> = record::find_in(conn, environment_id, "id", chunk).await?;
            for manager in found {
                directory.emails.insert(manager.id, manager.email);
            }
        }
        Ok(directory)
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    /// Whether this user should have an account in the app: they exist, are
    /// not blocked, and hold one of the roles that give access.
    pub fn wants_account(&self, app: &App, user_id: &str) -> bool {
        let Some(user) = self.users.get(user_id) else { return false };
        !user.blocked
            && self
                .roles
                .get(user_id)
                .is_some_and(|roles| app.access_role_ids.0.iter().any(|r| roles.contains(r)))
    }

    /// How deep the user sits in the reporting chain (managers first).
    pub fn depth(&self, user_id: &str) -> i64 {
        let mut depth = 0;
        let mut next = self.users.get(user_id).and_then(|u| u.manager_id.clone());
        while let Some(id) = next {
            depth += 1;
            if depth > 64 {
                break;
            }
            next = self.users.get(&id).and_then(|u| u.manager_id.clone());
        }
        depth
    }

    /// The account the app should hold for this user.
    pub fn render(&self, app: &App, user: &User) -> Desired {
        let mut attributes = Map::new();
        if let Some(mappings) = app.attribute_mappings.0.as_object() {
            for (attribute, source) in mappings {
                let value = source.as_str().map_or(Value::Null, |s| self.source(user, s));
                attributes.insert(attribute.clone(), value);
            }
        }
        if matches!(AppKind::parse(&app.kind), Ok(AppKind::Expensify)) {
            // The updater requires a manager: the user's, else the app's
            // default approver, else themselves (the top of the chain).
            let manager = user
                .manager_id
                .as_ref()
                .and_then(|m| self.emails.get(m).cloned())
                .or_else(|| {
                    app.settings.0.get("default_manager_email").and_then(Value::as_str).map(str::to_owned)
                })
                .unwrap_or_else(|| user.email.clone());
            attributes.insert("managerEmail".into(), json!(manager));
        }
        if let Some(group_roles) = app.settings.0.get("group_roles").and_then(Value::as_object) {
            // The app's groups the user belongs in, by the roles they hold.
            let held = self.roles.get(&user.id);
            let mut groups: Vec<&str> = group_roles
                .iter()
                .filter(|(role, _)| held.is_some_and(|roles| roles.contains(*role)))
                .filter_map(|(_, group)| group.as_str())
                .collect();
            groups.sort_unstable();
            groups.dedup();
            attributes.insert(crate::connector::scim::GROUPS.into(), json!(groups));
        }
        if matches!(AppKind::parse(&app.kind), Ok(AppKind::Payhawk)) {
            // The role is the privilege: one raised in the portal is drift.
            let role = app.settings.0.get("employee_role").and_then(Value::as_str).unwrap_or("employee");
            attributes.insert("role".into(), json!(role));
        }
        if matches!(AppKind::parse(&app.kind), Ok(AppKind::TravelPerk)) {
            // Set by reference once the manager has an account (TravelPerk
            // maps it to the trip approver [D]).
            let manager = user.manager_id.as_ref().and_then(|m| self.emails.get(m)).map(|e| e.to_lowercase());
            attributes.insert(crate::connector::scim::MANAGER.into(), json!(manager));
        }
        Desired { user_id: user.id.clone(), email: user.email.clone(), attributes }
    }

    fn source(&self, user: &User, source: &str) -> Value {
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        match source {
            "email" => json!(user.email),
            "first_name" => text(&user.first_name),
            "last_name" => text(&user.last_name),
            "id" => json!(user.id),
            "name" => {
                let parts: Vec<&str> =
                    [user.first_name.as_deref(), user.last_name.as_deref()].into_iter().flatten().collect();
                if parts.is_empty() { Value::Null } else { json!(parts.join(" ")) }
            }
            "manager.email" => text(&user.manager_id.as_ref().and_then(|m| self.emails.get(m).cloned())),
            other => match other.strip_prefix("metadata.").and_then(|k| user.metadata.0.get(k)) {
                Some(Value::String(s)) => json!(s),
                Some(Value::Null) | None => Value::Null,
                Some(value) => json!(value.to_string()),
            },
        }
    }
}

/// A step the rules call for.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub action: &'static str,
    /// `{"attribute": {"from", "to"}}` for review.
    pub changes: Value,
    pub reason: String,
}

/// The attributes that differ, as `{"attr": {"from", "to"}}`; the login
/// counts as `email`, compared without case.
pub fn drift(desired: &Desired, login: Option<&str>, attributes: &Map<String, Value>) -> Map<String, Value> {
    let mut changes = Map::new();
    if !login.is_some_and(|l| l.eq_ignore_ascii_case(&desired.email)) {
        changes.insert("email".into(), json!({"from": login, "to": desired.email}));
    }
    for (key, want) in &desired.attributes {
        let have = attributes.get(key).unwrap_or(&Value::Null);
        if have != want {
            changes.insert(key.clone(), json!({"from": have, "to": want}));
        }
    }
    changes
}

/// What to do about one user's account in one app. `account` is the user's
/// current (not deleted) account, if any.
pub fn decide(
    app: &App,
    wanted: bool,
    desired: Option<&Desired>,
    account: Option<&AppAccount>,
) -> Option<Verdict> {
    match (wanted, desired, account) {
        (true, Some(desired), None) => Some(Verdict {
            action: "create",
            changes: Value::Object(drift(desired, None, &Map::new())),
            reason: "the user holds a role that gives access and has no account".into(),
        }),
        (true, Some(desired), Some(account)) => {
            let changes = drift(
                desired,
                account.login.as_deref(),
                account.attributes.0.as_object().unwrap_or(&Map::new()),
            );
            let kind = AppKind::parse(&app.kind).ok();
            if kind == Some(AppKind::StripeDashboard) && changes.contains_key("email") {
                return Some(Verdict {
                    action: "replace",
                    changes: Value::Object(changes),
                    reason: "Stripe's Dashboard cannot change a member's email: the member is deleted and the new address invited".into(),
                });
            }
            if account.status != "active" {
                let mut changes = changes;
                changes.insert("status".into(), json!({"from": account.status, "to": "active"}));
                Some(Verdict {
                    action: "update",
                    changes: Value::Object(changes),
                    reason: "the user should have access again".into(),
                })
            } else if !changes.is_empty() {
                Some(Verdict {
                    action: "update",
                    changes: Value::Object(changes),
                    reason: "the account differs from the directory".into(),
                })
            } else {
                None
            }
        }
        (false, _, Some(account)) if account.status == "active" => {
            Some(deprovision(app, account, "the user no longer has access"))
        }
        _ => None,
    }
}

/// The deprovisioning step for an account, per the app's mode.
pub fn deprovision(app: &App, account: &AppAccount, why: &str) -> Verdict {
    let hard = app.deprovision_mode == "hard";
    Verdict {
        action: if hard { "delete" } else { "deactivate" },
        changes: json!({"status": {"from": account.status, "to": if hard { "deleted" } else { "deactivated" }}}),
        reason: why.to_owned(),
    }
}

/// One person across every app: the graph's rows for them, how each
/// compares with what the directory wants, and the apps where they should
/// have an account but have none.
pub struct Person {
    /// `None` for a deleted user whose accounts are still in the graph.
    pub user: Option<User>,
    pub accounts: Vec<PersonAccount>,
    pub missing: Vec<(App, String)>,
}

pub struct PersonAccount {
    pub app: App,
    pub account: AppAccount,
    /// Whether the directory wants the person to have an account there.
    pub expected: bool,
    /// `in_step`, `drift`, `should_be_active`, `should_not_have`,
    /// `deprovisioned`, `superseded` (an older row beside the current one)
    /// or `app_disabled`.
    pub state: &'static str,
    /// What differs, `{"attribute": {"from", "to"}}`.
    pub changes: Value,
    /// The manual task open for this person in this app, if any.
    pub open_task: Option<String>,
}

/// The person view for a caller of the Management API, which needs
/// `apps:read` (it reads the identity graph, whoever the person is).
pub async fn person_for(
    core: &portcullis_core::Core,
    ctx: &portcullis_core::Ctx,
    user_id: &str,
) -> Result<Option<Person>, portcullis_core::ServiceError> {
    use portcullis_core::authz::{Family, Verb};
    ctx.require(Family::Apps, Verb::Read)?;
    let mut conn = core.db.read().await?;
    Ok(person(&mut conn, ctx.environment_id(), user_id).await?)
}

/// The person view of `user_id`, or `None` when the id names neither a
/// user nor any account.
pub async fn person(
    conn: &mut AnyConnection,
    environment_id: &str,
    user_id: &str,
) -> Result<Option<Person>, StoreError> {
    let user: Option<User> = record::find(conn, environment_id, user_id).await?;
    let accounts: Vec<AppAccount> =
        record::find_in(conn, environment_id, "user_id", &[user_id.to_owned()]).await?;
    if user.is_none() && accounts.is_empty() {
        return Ok(None);
    }
    let apps: Vec<App> = repo::all(conn, environment_id).await?;
    let directory = Directory::with_users(conn, environment_id, user.iter().cloned().collect()).await?;
    let tasks: Vec<ManualTask> =
        record::find_in(conn, environment_id, "user_id", &[user_id.to_owned()]).await?;
    let open_task = |app: &App| {
        tasks
            .iter()
            .find(|t| t.app_id == app.id && matches!(t.status.as_str(), "open" | "verification_failed"))
    };
    let mut person = Person { user, accounts: Vec::new(), missing: Vec::new() };
    for app in apps {
        let wanted = directory.wants_account(&app, user_id);
        let desired = person.user.as_ref().map(|u| directory.render(&app, u));
        let mine: Vec<&AppAccount> = accounts.iter().filter(|a| a.app_id == app.id).collect();
        // The account the hub acts on: the newest that is not deleted.
        let current = mine.iter().filter(|a| a.status != "deleted").max_by_key(|a| a.inserted_at).copied();
        let verdict = decide(&app, wanted, desired.as_ref(), current);
        if current.is_none()
            && app.enabled
            && let Some(verdict) = verdict.as_ref().filter(|v| v.action == "create")
        {
            let reason = match open_task(&app) {
                Some(task) => format!("{}; manual task {} is {}", verdict.reason, task.id, task.status),
                None => verdict.reason.clone(),
            };
            person.missing.push((app.clone(), reason));
        }
        for account in mine {
            let is_current = current.is_some_and(|c| c.id == account.id);
            let (state, changes) = match (&verdict, is_current) {
                _ if !app.enabled => ("app_disabled", json!({})),
                (_, false) if account.status == "deleted" => ("deprovisioned", json!({})),
                (_, false) => ("superseded", json!({})),
                (None, true) if account.status == "active" => ("in_step", json!({})),
                (None, true) => ("deprovisioned", json!({})),
                (Some(v), true) => {
                    let state = match v.action {
                        "update" if account.status != "active" => "should_be_active",
                        "update" => "drift",
                        _ => "should_not_have",
                    };
                    (state, v.changes.clone())
                }
            };
            person.accounts.push(PersonAccount {
                app: app.clone(),
                account: account.clone(),
                expected: wanted,
                state,
                changes,
                open_task: open_task(&app).filter(|_| is_current).map(|t| t.id.clone()),
            });
        }
    }
    Ok(Some(person))
}
