//! Reconciliation: read an app's whole roster, correlate each account with a
//! user (the stored external id first, then the app's own claim such as
//! Stripe `metadata.idp_user_id`, then the email without case), classify
//! what differs, refresh the graph, and propose a plan for a person to
//! approve. A roster read that fails changes nothing: deactivations are
//! only ever derived from a complete read.

use std::collections::{HashMap, HashSet};

use portcullis_core::services::apps::AppKind;
use portcullis_core::{Core, ServiceError};
use portcullis_store::model::{App, AppAccount, ProvisioningPlan, User};
use portcullis_store::types::JsonText;
use portcullis_store::{new_id, now_micros, record, repo};
use serde::Serialize;
use serde_json::{Value, json};

use crate::connector::{AccountStatus, ConnectorError, RemoteAccount};
use crate::graph::{self, Directory};
use crate::plan::{self, Planned};
use crate::worker::Worker;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading the app's roster failed, so nothing was changed: {0}")]
    Roster(ConnectorError),
    /// A manual app has no API to read a roster from.
    #[error("{0} has no API to read its accounts from: its manual tasks are the record")]
    NotReadable(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<portcullis_store::StoreError> for ReconcileError {
    fn from(error: portcullis_store::StoreError) -> Self {
        ReconcileError::Service(error.into())
    }
}

/// What reconciliation found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub accounts_read: usize,
    pub linked: usize,
    pub missing: usize,
    pub orphaned: usize,
    pub active_but_should_not: usize,
    pub drift: usize,
    /// Accounts the hub does not manage: a Stripe customer that is no one in
    /// the directory and was not made by the hub, an Expensify policy owner.
    pub unmanaged: usize,
    /// Manual tasks whose completion this read confirmed, and those whose
    /// account it found otherwise (they are open for completion again).
    pub tasks_verified: usize,
    pub tasks_failed_verification: usize,
    /// The proposed steps, in apply order.
    pub steps: Vec<ProposedStep>,
    /// The stored plan (none on a dry run or when nothing differs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProposedStep {
    pub action: &'static str,
    pub user_id: Option<String>,
    pub external_id: Option<String>,
    pub login: Option<String>,
    pub reason: String,
    pub changes: Value,
}

/// Reconciles one app. `progress` hears the number of accounts read so far.
pub async fn reconcile(
    worker: &Worker,
    app: &App,
    dry_run: bool,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Report, ReconcileError> {
    let core: &Core = &worker.core;
    let env = app.environment_id.as_str();
    let kind = AppKind::parse(&app.kind)?;
    if kind == AppKind::Manual {
        return Err(ReconcileError::NotReadable(app.name.clone()));
    }
    let connector = worker.connector(app).map_err(ReconcileError::Roster)?;
    // The directory is read while the roster pages in: a paginated read
    // spends most of its time waiting on the app's rate limits.
    let loaded_at = now_micros();
    let load = async {
        let mut conn = core.db.read().await?;
        let users: Vec<User> = repo::all(&mut conn, env).await?;
        let accounts: Vec<AppAccount> =
            record::find_in(&mut conn, env, "app_id", std::slice::from_ref(&app.id)).await?;
        let directory = Directory::with_users(&mut conn, env, users.clone()).await?;
        Ok::<_, portcullis_store::StoreError>((users, accounts, directory))
    };
    let (roster, loaded) = tokio::join!(connector.roster(progress), load);
    let roster = roster.map_err(ReconcileError::Roster)?;
    let (users, accounts, directory) = loaded?;
    let by_email: HashMap<String, &User> = users.iter().map(|u| (u.email.to_lowercase(), u)).collect();
    let stored: HashMap<&str, &AppAccount> = accounts.iter().map(|a| (a.external_id.as_str(), a)).collect();

    let mut report = Report { accounts_read: roster.len(), ..Report::default() };
    // Correlate: stored link, the app's claim, then email.
    let mut owner_of: HashMap<String, &RemoteAccount> = HashMap::new();
    let mut orphans: Vec<&RemoteAccount> = Vec::new();
    let mut correlated: Vec<(&RemoteAccount, Option<&str>)> = Vec::new();
    for remote in &roster {
        let user = stored
            .get(remote.external_id.as_str())
            .and_then(|a| a.user_id.as_deref())
            .filter(|id| directory.user(id).is_some())
            .or_else(|| remote.claimed_user_id.as_deref().filter(|id| directory.user(id).is_some()))
            .or_else(|| {
                remote.login.as_ref().and_then(|l| by_email.get(&l.to_lowercase())).map(|u| u.id.as_str())
            });
        match user {
            // One account per person: a second one is reported, not linked.
            Some(user) if !owner_of.contains_key(user) => {
                owner_of.insert(user.to_owned(), remote);
                correlated.push((remote, Some(user)));
            }
            _ => {
                // Stripe customers are not all people in the directory: only
                // the ones the hub made or linked are orphans.
                let managed =
                    !remote.protected && (kind != AppKind::Stripe || remote.claimed_user_id.is_some());
                if managed {
                    orphans.push(remote);
                    correlated.push((remote, None));
                } else {
                    report.unmanaged += 1;
                }
            }
        }
    }

    // Refresh the graph from the complete read, then plan from it.
    let now = now_micros();
    let seen: HashSet<&str> = roster.iter().map(|r| r.external_id.as_str()).collect();
    // A user's row the read did not find under its stored id (a task done
    // by hand records the login until the app's own id is known) moves onto
    // the account the read found for that user rather than linger beside it.
    let mut unseen_of_user: HashMap<&str, &AppAccount> = accounts
        .iter()
        .filter(|a| !seen.contains(a.external_id.as_str()) && a.status != "deleted")
        .filter_map(|a| a.user_id.as_deref().map(|u| (u, a)))
        .collect();
    let mut rekeyed: HashSet<String> = HashSet::new();
    let mut graph_rows: HashMap<String, AppAccount> = HashMap::new();
    for (remote, user) in &correlated {
        let existing = stored.get(remote.external_id.as_str()).copied().or_else(|| {
            let stale = unseen_of_user.remove((*user)?)?;
            rekeyed.insert(stale.id.clone());
            Some(stale)
        });
        let row = AppAccount {
            id: existing.map_or_else(new_id, |a| a.id.clone()),
            environment_id: env.to_owned(),
            app_id: app.id.clone(),
            user_id: user.map(str::to_owned),
            external_id: remote.external_id.clone(),
            login: remote.login.clone(),
            status: remote.status.as_str().to_owned(),
            attributes: JsonText(Value::Object(remote.attributes.clone())),
            last_seen_at: Some(now),
            inserted_at: existing.map_or(now, |a| a.inserted_at),
            updated_at: now,
        };
        graph_rows.insert(remote.external_id.clone(), row);
    }
    // Accounts the graph knew that the app no longer lists: Expensify
    // removed them from the policy, Stripe deleted them.
    let gone_status = if kind == AppKind::Expensify { "deactivated" } else { "deleted" };
    let vanished: Vec<AppAccount> = accounts
        .iter()
        .filter(|a| {
            !seen.contains(a.external_id.as_str()) && a.status == "active" && !rekeyed.contains(&a.id)
        })
        .map(|a| AppAccount { status: gone_status.to_owned(), updated_at: now, ..a.clone() })
        .collect();

    let mut steps: Vec<Planned> = Vec::new();
    let mut handled: HashSet<String> = HashSet::new();
    for (remote, user) in &correlated {
        let row = &graph_rows[&remote.external_id];
        let Some(user_id) = user else {
            if remote.status == AccountStatus::Active {
                report.orphaned += 1;
                steps.push(Planned {
                    user_id: None,
                    app_account_id: Some(row.id.clone()),
                    position: 0,
                    verdict: graph::deprovision(app, row, "the account belongs to no one in the directory"),
                });
            }
            continue;
        };
        handled.insert((*user_id).to_owned());
        let wanted = directory.wants_account(app, user_id);
        let desired = directory.user(user_id).map(|u| directory.render(app, u));
        match graph::decide(app, wanted, desired.as_ref(), Some(row)) {
            None => report.linked += 1,
            Some(verdict) => {
                match verdict.action {
                    "update" if row.status != "active" => report.missing += 1,
                    "update" => report.drift += 1,
                    _ => report.active_but_should_not += 1,
                }
                steps.push(Planned {
                    user_id: Some((*user_id).to_owned()),
                    app_account_id: Some(row.id.clone()),
                    position: directory.depth(user_id),
                    verdict,
                });
            }
        }
    }
    for user in &users {
        if handled.contains(&user.id) || !directory.wants_account(app, &user.id) {
            continue;
        }
        let desired = directory.render(app, user);
        if let Some(verdict) = graph::decide(app, true, Some(&desired), None) {
            report.missing += 1;
            steps.push(Planned {
                user_id: Some(user.id.clone()),
                app_account_id: None,
                position: directory.depth(&user.id),
                verdict,
            });
        }
    }
    steps.sort_by_key(|s| s.position);
    let rows_by_id: HashMap<&str, &AppAccount> = graph_rows.values().map(|r| (r.id.as_str(), r)).collect();
    report.steps = steps
        .iter()
        .map(|s| {
            let row = s.app_account_id.as_deref().and_then(|id| rows_by_id.get(id).copied());
            ProposedStep {
                action: s.verdict.action,
                user_id: s.user_id.clone(),
                external_id: row.map(|r| r.external_id.clone()),
                login: row.and_then(|r| r.login.clone()),
                reason: s.verdict.reason.clone(),
                changes: s.verdict.changes.clone(),
            }
        })
        .collect();
    if dry_run {
        return Ok(report);
    }

    let mut tx = core.db.write_state().await?;
    let by_id: HashMap<&str, &AppAccount> = accounts.iter().map(|a| (a.id.as_str(), a)).collect();
    let (new_rows, known_rows): (Vec<AppAccount>, Vec<AppAccount>) =
        graph_rows.into_values().partition(|row| !by_id.contains_key(row.id.as_str()));
    record::insert_many(tx.conn(), &new_rows).await?;
    for row in &known_rows {
        let changed = by_id.get(row.id.as_str()).is_none_or(|b| {
            b.user_id != row.user_id
                || b.external_id != row.external_id
                || b.login != row.login
                || b.status != row.status
                || b.attributes.0 != row.attributes.0
        });
        if changed {
            record::update(tx.conn(), env, row).await?;
        }
    }
    for row in &vanished {
        record::update(tx.conn(), env, row).await?;
    }
    // Every account the read saw is touched; usually that is all of the
    // app's accounts but a few, so the statement names the few. Accounts
    // made while the roster was read were not seen by it and keep theirs.
    let seen_ids: HashSet<&str> = known_rows.iter().map(|r| r.id.as_str()).collect();
    let unseen: Vec<String> =
        accounts.iter().filter(|a| !seen_ids.contains(a.id.as_str())).map(|a| a.id.clone()).collect();
    if unseen.len() <= repo::provisioning::TOUCH_EXCEPT_MAX {
        repo::provisioning::touch_app_accounts_except(tx.conn(), env, &app.id, &unseen, loaded_at, now)
            .await?;
    } else {
        let seen: Vec<String> = known_rows.iter().map(|r| r.id.clone()).collect();
        repo::provisioning::touch_accounts(tx.conn(), env, &seen, now).await?;
    }
    let threshold = repo::environments::by_id(tx.conn(), env)
        .await?
        .map_or(portcullis_core::services::environments::MASS_CHANGE_THRESHOLD_DEFAULT, |e| {
            e.mass_change_threshold
        });
    let summary = json!({
        "accounts_read": report.accounts_read,
        "linked": report.linked,
        "missing": report.missing,
        "orphaned": report.orphaned,
        "active_but_should_not": report.active_but_should_not,
        "drift": report.drift,
        "unmanaged": report.unmanaged,
    });
    let origin = plan::origin(env);
    // Tasks done by hand, checked against the graph as this read left it.
    let mut after: HashMap<String, Vec<AppAccount>> = HashMap::new();
    let mut final_rows: HashMap<&str, &AppAccount> = by_id.clone();
    for row in known_rows.iter().chain(&new_rows).chain(&vanished) {
        final_rows.insert(row.id.as_str(), row);
    }
    for row in final_rows.values() {
        if let Some(user) = &row.user_id {
            after.entry(user.clone()).or_default().push((*row).clone());
        }
    }
    let verified = crate::tasks::verify(&mut tx, &origin, app, &after, now).await?;
    report.tasks_verified = verified.verified;
    report.tasks_failed_verification = verified.failed;
    let plans: Vec<ProvisioningPlan> =
        plan::store(&mut tx, app, "reconcile", threshold, steps, summary.clone(), now).await?;
    let mut row: App = record::find(tx.conn(), env, &app.id).await?.ok_or(ServiceError::NotFound("app"))?;
    row.last_reconciled_at = Some(now);
    record::update(tx.conn(), env, &row).await?;
    let event = portcullis_store::model::Event {
        action: "app.reconciled",
        targets: vec![portcullis_store::model::Target {
            kind: "app".into(),
            id: app.id.clone(),
            name: Some(app.name.clone()),
        }],
        changes: json!({}),
        data: json!({"report": summary, "plan_id": plans.first().map(|p| p.id.clone())}),
    };
    tx.record(&origin, &event).await?;
    tx.commit().await?;
    report.plan_id = plans.first().map(|p| p.id.clone());
    Ok(report)
}
