//! Manual tasks: where people make the change. A step of an app provisioned
//! by hand (kind `manual`, or `provisioning: manual`) opens a task with the
//! concrete steps instead of calling a connector, and waits (`waiting`).
//! Completing the task records who did it, settles the step, writes the
//! graph and closes the plan; a later reconciliation of an app that can be
//! read checks that the app really is as the task said.

use std::collections::HashMap;
use std::time::Duration;

use portcullis_core::services::manual_tasks::{self, KIND};
use portcullis_core::services::provisioning_plans::decided_by;
use portcullis_core::{Core, Ctx, ServiceError};
use portcullis_store::model::{App, AppAccount, Event, ManualTask, ProvisioningStep, Target};
use portcullis_store::types::JsonText;
use portcullis_store::{WriteTx, new_id, now_micros, record};
use serde_json::{Map, Value, json};

use crate::connector::{AccountStatus, Applied, Desired, Op, Request};
use crate::worker::{account_event, finish_plan, upsert_account};

/// Days a person has for a task unless the app's `task_due_days` says.
const DEFAULT_DUE_DAYS: u64 = 2;

/// The task a step becomes, with instructions rendered from its request.
pub fn open(app: &App, step: &ProvisioningStep, request: &Request, now: i64) -> ManualTask {
    let (title, instructions) = instructions(app, step, &request.op);
    let settings = &app.settings.0;
    let days = settings.get("task_due_days").and_then(Value::as_u64).unwrap_or(DEFAULT_DUE_DAYS);
    ManualTask {
        id: new_id(),
        environment_id: app.environment_id.clone(),
        app_id: app.id.clone(),
        plan_id: step.plan_id.clone(),
        step_id: step.id.clone(),
        user_id: step.user_id.clone(),
        action: step.action.clone(),
        title,
        instructions: JsonText(instructions),
        assignee: settings.get("task_assignee").and_then(Value::as_str).map(str::to_owned),
        due_at: now + Duration::from_secs(days * 86_400).as_micros() as i64,
        status: "open".into(),
        completed_by: None,
        completed_at: None,
        note: None,
        verified_at: None,
        verification: None,
        inserted_at: now,
        updated_at: now,
    }
}

/// `(title, steps)` for a person, concrete enough to follow without the hub.
fn instructions(app: &App, step: &ProvisioningStep, op: &Op) -> (String, Vec<String>) {
    let mut steps = Vec::new();
    if !app.base_url.is_empty() {
        steps.push(format!("Sign in to {}'s admin console: {}", app.name, app.base_url));
    } else {
        steps.push(format!("Sign in to {} as an administrator.", app.name));
    }
    let attributes = |desired: &Desired| -> Vec<String> {
        desired
            .attributes
            .iter()
            .map(|(name, value)| match value {
                Value::Null => format!("Leave {name} empty."),
                Value::String(s) => format!("Set {name} to \"{s}\"."),
                other => format!("Set {name} to {other}."),
            })
            .collect()
    };
    let title = match op {
        Op::Create { desired } => {
            steps.push(format!("Create an account for {} with the login {}.", desired.email, desired.email));
            steps.extend(attributes(desired));
            steps.push("Make sure the account is active and can sign in.".into());
            format!("Create {}'s account in {}", desired.email, app.name)
        }
        Op::Update { external_id, desired } => {
            steps.push(format!("Open the account {external_id} ({}).", desired.email));
            if let Some(changes) = step.changes.0.as_object() {
                for (name, change) in changes {
                    steps.push(format!("Change {name} from {} to {}.", change["from"], change["to"]));
                }
            }
            steps.extend(attributes(desired));
            format!("Update {}'s account in {}", desired.email, app.name)
        }
        Op::Deactivate { external_id, login, .. } => {
            let who = login.as_deref().unwrap_or(external_id);
            steps.push(format!("Find the account {who}."));
            steps.push("Deactivate (suspend) it so it can no longer sign in; keep its data.".into());
            steps.push(
                "Revoke the account's API keys, tokens and active sessions, if the app has any.".into(),
            );
            steps.push("Transfer anything it owns that others still need.".into());
            format!("Deactivate {who}'s account in {}", app.name)
        }
        Op::Replace { external_id, desired } => {
            steps.push(format!("Delete the account {external_id}: the app cannot change it in place."));
            steps.push(format!("Create an account for {} with the login {}.", desired.email, desired.email));
            steps.extend(attributes(desired));
            format!("Replace the account {external_id} with {}'s in {}", desired.email, app.name)
        }
        Op::Manual { title, instructions } => {
            steps.extend(instructions.iter().cloned());
            title.clone()
        }
        Op::Delete { external_id } => {
            steps.push(format!("Find the account {external_id}."));
            steps.push("Revoke its API keys and tokens, then delete it. This cannot be undone.".into());
            format!("Delete the account {external_id} in {}", app.name)
        }
    };
    steps.push("Mark this task complete in Portcullis, with a note if anything differed.".into());
    (title, steps)
}

/// What a person reports when completing a task.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    /// Anything worth keeping: what differed, a ticket number.
    #[serde(default)]
    pub note: Option<String>,
    /// The account's id in the app, when it has one the person can see;
    /// otherwise the login stands for it until a reconciliation reads it.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// Marks a task done: the step succeeds with what the task asked for, the
/// graph records the account, and the plan closes once its last step has.
pub async fn complete(
    core: &Core,
    ctx: &Ctx,
    id: &str,
    input: Completion,
) -> Result<ManualTask, ServiceError> {
    ctx.require(portcullis_core::authz::Family::Apps, portcullis_core::authz::Verb::Write)?;
    let env = ctx.environment_id();
    if input.note.as_deref().is_some_and(|n| n.len() > 2000) {
        return Err(ServiceError::invalid("note", "note must be at most 2000 characters"));
    }
    if input.external_id.as_deref().is_some_and(|e| e.trim().is_empty() || e.len() > 255) {
        return Err(ServiceError::invalid("external_id", "external_id must be 1 to 255 characters"));
    }
    let now = now_micros();
    let mut tx = core.db.write().await?;
    let mut task: ManualTask = record::find(tx.conn(), env, id).await?.ok_or(ServiceError::NotFound(KIND))?;
    if !matches!(task.status.as_str(), "open" | "verification_failed") {
        return Err(ServiceError::conflict(
            portcullis_core::error::Field::Attribute("status"),
            format!("only an open task can be completed; this one is {}", task.status),
        ));
    }
    let mut step: ProvisioningStep = record::find(tx.conn(), env, &task.step_id)
        .await?
        .ok_or(ServiceError::NotFound("provisioning_step"))?;
    let app: App = record::find(tx.conn(), env, &task.app_id).await?.ok_or(ServiceError::NotFound("app"))?;
    let request: Request = step
        .request
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .ok_or_else(|| ServiceError::Internal(format!("step {} has no request", step.id)))?;
    let by = decided_by(ctx);
    if step.status == "waiting" && request.op.is_manual() {
        // Nothing the graph holds changes (revoking keys, say).
        step.status = "succeeded".into();
        step.completed_at = Some(now);
        step.updated_at = now;
        step.last_error = None;
        step.result = Some(json!({"completed_by": by}).to_string());
        record::update(tx.conn(), env, &step).await?;
        finish_plan(&mut tx, &app, &step.plan_id, now).await?;
    } else if step.status == "waiting" {
        // A task reopened by verification has settled its step already.
        let applied = applied(&request.op, input.external_id.as_deref());
        let account = upsert_account(&mut tx, &app, &step, &applied, now).await?;
        step.app_account_id = Some(account.id.clone());
        step.status = "succeeded".into();
        step.completed_at = Some(now);
        step.updated_at = now;
        step.last_error = None;
        step.result = Some(
            json!({"external_id": applied.external_id, "status": applied.status.as_str(), "completed_by": by})
                .to_string(),
        );
        record::update(tx.conn(), env, &step).await?;
        let action = match step.action.as_str() {
            "create" => "app_account.provisioned",
            "deactivate" => "app_account.deactivated",
            "delete" => "app_account.deleted",
            _ => "app_account.updated",
        };
        tx.record(&ctx.origin(), &account_event(action, &app, &account, &step)).await?;
        finish_plan(&mut tx, &app, &step.plan_id, now).await?;
    }
    let before = task.status.clone();
    task.status = "done".into();
    task.completed_by = Some(by);
    task.completed_at = Some(now);
    task.note = input.note.or(task.note);
    task.verified_at = None;
    task.verification = None;
    task.updated_at = now;
    record::update(tx.conn(), env, &task).await?;
    let event = Event {
        action: "manual_task.completed",
        targets: targets(&task),
        changes: json!({"status": {"from": before, "to": "done"}}),
        data: serde_json::to_value(manual_tasks::present(&task)).unwrap_or_default(),
    };
    tx.record(&ctx.origin(), &event).await?;
    tx.commit().await?;
    Ok(task)
}

/// What a completed task says the app now holds.
fn applied(op: &Op, external_id: Option<&str>) -> Applied {
    let given = |fallback: &str| external_id.map_or_else(|| fallback.to_owned(), str::to_owned);
    match op {
        Op::Create { desired } | Op::Update { desired, .. } | Op::Replace { desired, .. } => Applied {
            external_id: match op {
                Op::Update { external_id: known, .. } => given(known),
                _ => given(&desired.email.to_lowercase()),
            },
            login: Some(desired.email.clone()),
            status: AccountStatus::Active,
            attributes: desired.set_attributes(),
        },
        Op::Deactivate { external_id: known, login, .. } => Applied {
            external_id: given(known),
            login: login.clone(),
            status: AccountStatus::Deactivated,
            attributes: Map::new(),
        },
        Op::Delete { external_id: known } => Applied {
            external_id: given(known),
            login: None,
            status: AccountStatus::Deleted,
            attributes: Map::new(),
        },
        // Never written to the graph (see `complete`); its account stays.
        Op::Manual { .. } => Applied {
            external_id: external_id.unwrap_or_default().to_owned(),
            login: None,
            status: AccountStatus::Active,
            attributes: Map::new(),
        },
    }
}

fn targets(task: &ManualTask) -> Vec<Target> {
    let mut targets = vec![
        Target { kind: KIND.into(), id: task.id.clone(), name: Some(task.title.clone()) },
        Target { kind: "app".into(), id: task.app_id.clone(), name: None },
    ];
    if let Some(user) = &task.user_id {
        targets.push(Target { kind: "user".into(), id: user.clone(), name: None });
    }
    targets
}

/// The opened-task event, recorded with the step that waits on it.
pub fn opened_event(task: &ManualTask) -> Event {
    Event {
        action: "manual_task.opened",
        targets: targets(task),
        changes: json!({}),
        data: serde_json::to_value(manual_tasks::present(task)).unwrap_or_default(),
    }
}

/// What verification made of the app's completed tasks.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Verified {
    pub verified: usize,
    pub failed: usize,
}

/// Checks every completed task of `app` against the graph as a complete
/// roster read just left it (`rows`, by user id): a task whose account is
/// not as it said is marked `verification_failed` with what was found, and
/// can be completed again once fixed.
pub async fn verify(
    tx: &mut WriteTx,
    origin: &portcullis_store::model::Origin,
    app: &App,
    rows: &HashMap<String, Vec<AppAccount>>,
    now: i64,
) -> Result<Verified, portcullis_store::StoreError> {
    let env = app.environment_id.as_str();
    let tasks: Vec<ManualTask> =
        record::find_in(tx.conn(), env, "app_id", std::slice::from_ref(&app.id)).await?;
    let mut outcome = Verified::default();
    // A manual step (revoking keys) has nothing a roster read can show.
    for mut task in tasks.into_iter().filter(|t| t.status == "done" && t.action != "manual") {
        let accounts = task.user_id.as_ref().and_then(|u| rows.get(u)).map(Vec::as_slice).unwrap_or_default();
        let active = accounts.iter().any(|a| a.status == "active");
        let (ok, finding) = match task.action.as_str() {
            "create" | "update" if active => {
                (true, format!("{} lists an active account for the user", app.name))
            }
            "create" | "update" => (false, format!("{} lists no active account for the user", app.name)),
            "deactivate" | "delete" if active => {
                (false, format!("{} still lists an active account for the user", app.name))
            }
            _ => (true, format!("{} lists no active account for the user", app.name)),
        };
        task.status = if ok { "verified" } else { "verification_failed" }.into();
        task.verified_at = Some(now);
        task.verification = Some(finding);
        task.updated_at = now;
        record::update(tx.conn(), env, &task).await?;
        let event = Event {
            action: if ok { "manual_task.verified" } else { "manual_task.verification_failed" },
            targets: targets(&task),
            changes: json!({"status": {"from": "done", "to": task.status}}),
            data: serde_json::to_value(manual_tasks::present(&task)).unwrap_or_default(),
        };
        tx.record(origin, &event).await?;
        if ok {
            outcome.verified += 1;
        } else {
            outcome.failed += 1;
        }
    }
    Ok(outcome)
}
