//! The relay: reads the outbox for directory changes and turns them into
//! plans. It is level-triggered: an event only says *whose* accounts to look
//! at; what to do is decided from the current directory and graph, so
//! events read late, twice or out of order still lead to the right steps.
//! Plans and the events' `published_at` commit together: a crash either
//! leaves the events unread or the plans made.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use portcullis_store::model::{App, AppAccount, OutboxEvent};
use portcullis_store::{StoreError, WriteTx, now_micros, record, repo};
use serde_json::json;

use crate::graph::{self, Directory};
use crate::plan::{self, Planned};

/// The event types that can change who should have which account.
pub use repo::provisioning::RELAYED_EVENT_TYPES as EVENT_TYPES;
const BATCH: i64 = 1000;

/// What a batch of events asks the relay to look at, per environment.
#[derive(Default)]
struct Dirty {
    users: BTreeSet<String>,
    /// Apps to look at in full (every user with access or an account).
    apps: BTreeSet<String>,
    roles: BTreeSet<String>,
}

fn collect(events: &[OutboxEvent]) -> BTreeMap<String, Dirty> {
    let mut dirty: BTreeMap<String, Dirty> = BTreeMap::new();
    for event in events {
        let entry = dirty.entry(event.environment_id.clone()).or_default();
        let data = &event.payload.0["data"];
        let id = data["id"].as_str().map(str::to_owned);
        match event.event_type.as_str() {
            t if t.starts_with("user.") => entry.users.extend(id),
            t if t.starts_with("user_role.") => {
                entry.users.extend(data["relationships"]["user"]["data"]["id"].as_str().map(str::to_owned));
            }
            "role.deleted" => entry.roles.extend(id),
            "app.created" | "app.updated" => entry.apps.extend(id),
            _ => {}
        }
    }
    dirty
}

/// Reads one batch; `Ok(false)` when there was nothing to read.
pub async fn run_once(core: &portcullis_core::Core) -> Result<bool, StoreError> {
    let mut tx = core.db.write_state().await?;
    let events = repo::provisioning::pending_events(tx.conn(), &EVENT_TYPES, BATCH).await?;
    if events.is_empty() {
        return Ok(false);
    }
    let now = now_micros();
    for (environment_id, dirty) in collect(&events) {
        plan_environment(&mut tx, &environment_id, dirty, now).await?;
    }
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    repo::provisioning::mark_published(tx.conn(), &ids, now).await?;
    tx.commit().await?;
    Ok(true)
}

async fn plan_environment(
    tx: &mut WriteTx,
    environment_id: &str,
    dirty: Dirty,
    now: i64,
) -> Result<(), StoreError> {
    let apps: Vec<App> = repo::all(tx.conn(), environment_id).await?;
    let apps: Vec<App> = apps.into_iter().filter(|a| a.enabled).collect();
    if apps.is_empty() {
        return Ok(());
    }
    let threshold = repo::environments::by_id(tx.conn(), environment_id)
        .await?
        .map_or(portcullis_core::services::environments::MASS_CHANGE_THRESHOLD_DEFAULT, |e| {
            e.mass_change_threshold
        });
    // Users whose email changed may be someone's manager: their reports'
    // accounts name them.
    let mut users: BTreeSet<String> = dirty.users.clone();
    let reports: Vec<portcullis_store::model::User> = record::find_in(
        tx.conn(),
        environment_id,
        "manager_id",
        &dirty.users.iter().cloned().collect::<Vec<_>>(),
    )
    .await?;
    users.extend(reports.into_iter().map(|u| u.id));
    for app in &apps {
        let mut scope = users.clone();
        let full =
            dirty.apps.contains(&app.id) || app.access_role_ids.0.iter().any(|r| dirty.roles.contains(r));
        let accounts: Vec<AppAccount> =
            record::find_in(tx.conn(), environment_id, "app_id", std::slice::from_ref(&app.id)).await?;
        if full {
            let holders =
                repo::rbac::linked_ids(tx.conn(), "user_roles", "role_id", "user_id", &app.access_role_ids.0)
                    .await?;
            scope.extend(holders.into_iter().map(|(_, user)| user));
            scope.extend(accounts.iter().filter_map(|a| a.user_id.clone()));
        }
        if scope.is_empty() {
            continue;
        }
        let ids: Vec<String> = scope.into_iter().collect();
        let directory = Directory::load(tx.conn(), environment_id, &ids).await?;
        // A burst of events about one user plans one step: skip what is
        // already planned and unfinished.
        let open: HashSet<(String, String)> =
            repo::provisioning::open_steps(tx.conn(), environment_id, &app.id).await?.into_iter().collect();
        let mut by_user: HashMap<&str, &AppAccount> = HashMap::new();
        for account in accounts.iter().filter(|a| a.status != "deleted") {
            if let Some(user) = &account.user_id {
                by_user.insert(user, account);
            }
        }
        let mut steps = Vec::new();
        for user_id in &ids {
            let wanted = directory.wants_account(app, user_id);
            let desired = directory.user(user_id).map(|u| directory.render(app, u));
            let account = by_user.get(user_id.as_str()).copied();
            let Some(verdict) = graph::decide(app, wanted, desired.as_ref(), account) else { continue };
            if open.contains(&(user_id.clone(), verdict.action.to_owned())) {
                continue;
            }
            steps.push(Planned {
                user_id: Some(user_id.clone()),
                app_account_id: account.map(|a| a.id.clone()),
                position: directory.depth(user_id),
                verdict,
            });
        }
        plan::store(tx, app, "event", threshold, steps, json!({}), now).await?;
    }
    Ok(())
}
