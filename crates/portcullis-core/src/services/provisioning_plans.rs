//! Provisioning plans: the changes the hub intends to make in one app, as
//! steps. A plan the hub may apply on its own is created `approved`; one that
//! deletes, or deprovisions more accounts than the environment's
//! `mass_change_threshold`, or comes from reconciliation, waits as `draft`
//! until a person approves or rejects it.

use portcullis_jsonapi::ResourceObject;
use portcullis_store::model::{Event, ProvisioningPlan, ProvisioningStep};
use portcullis_store::{now_micros, record, repo};
use serde_json::json;

use super::{attrs, fetch_in, finish, target, timestamp};
use crate::authz::{Family, Guarded, Verb};
use crate::{Core, Ctx, Result, ServiceError};

pub const KIND: &str = "provisioning_plan";

impl Guarded for ProvisioningPlan {
    const FAMILY: Family = Family::Apps;
}

impl Guarded for ProvisioningStep {
    const FAMILY: Family = Family::Apps;
}
pub const STEP_KIND: &str = "provisioning_step";

pub fn present(plan: &ProvisioningPlan) -> ResourceObject {
    ResourceObject::new(
        KIND,
        &plan.id,
        attrs(json!({
            "source": plan.source,
            "status": plan.status,
            "approval_reason": plan.approval_reason,
            "summary": plan.summary.0,
            "decided_by": plan.decided_by,
            "decided_at": plan.decided_at.map(timestamp),
            "finished_at": plan.finished_at.map(timestamp),
            "inserted_at": timestamp(plan.inserted_at),
            "updated_at": timestamp(plan.updated_at),
        })),
    )
    .to_one("app", "app", Some(&plan.app_id))
}

pub fn present_step(step: &ProvisioningStep) -> ResourceObject {
    ResourceObject::new(
        STEP_KIND,
        &step.id,
        attrs(json!({
            "action": step.action,
            "position": step.position,
            "status": step.status,
            "reason": step.reason,
            "changes": step.changes.0,
            "attempts": step.attempts,
            "next_attempt_at": timestamp(step.next_attempt_at),
            "last_error": step.last_error,
            "completed_at": step.completed_at.map(timestamp),
            "inserted_at": timestamp(step.inserted_at),
            "updated_at": timestamp(step.updated_at),
        })),
    )
    .to_one("plan", KIND, Some(&step.plan_id))
    .to_one("app", "app", Some(&step.app_id))
    .to_one("user", "user", step.user_id.as_deref())
    .to_one("app_account", "app_account", step.app_account_id.as_deref())
}

pub fn decided_by(ctx: &Ctx) -> String {
    ctx.actor.name.clone().or_else(|| ctx.actor.id.clone()).unwrap_or_else(|| ctx.actor.kind.to_owned())
}

/// Approves a draft: workers take its steps on their next pass.
pub async fn approve(core: &Core, ctx: &Ctx, id: &str) -> Result<ProvisioningPlan> {
    ctx.require(Family::Apps, Verb::Write)?;
    decide(core, ctx, id, "approved").await
}

/// Rejects a draft: its steps are cancelled and nothing is applied.
pub async fn reject(core: &Core, ctx: &Ctx, id: &str) -> Result<ProvisioningPlan> {
    ctx.require(Family::Apps, Verb::Write)?;
    decide(core, ctx, id, "rejected").await
}

async fn decide(core: &Core, ctx: &Ctx, id: &str, status: &'static str) -> Result<ProvisioningPlan> {
    let mut tx = core.db.write().await?;
    // Only one decision wins, even when two people click at once.
    let now = now_micros();
    let by = decided_by(ctx);
    if !repo::provisioning::decide(tx.conn(), ctx.environment_id(), id, status, &by, now).await? {
        let plan: ProvisioningPlan = fetch_in(&mut tx, ctx, KIND, id).await?;
        return Err(ServiceError::conflict(
            crate::error::Field::Attribute("status"),
            format!("only a draft plan can be {status}; this one is {}", plan.status),
        ));
    }
    // Approved steps are due already (from their creation); rejected ones
    // must never run.
    if status == "rejected" {
        repo::provisioning::cancel_steps(tx.conn(), ctx.environment_id(), id, now).await?;
    }
    let plan: ProvisioningPlan = fetch_in(&mut tx, ctx, KIND, id).await?;
    let event = Event {
        action: if status == "approved" {
            "provisioning_plan.approved"
        } else {
            "provisioning_plan.rejected"
        },
        targets: vec![target(KIND, &plan.id, None), target("app", &plan.app_id, None)],
        changes: json!({"status": {"from": "draft", "to": status}}),
        data: serde_json::to_value(present(&plan)).unwrap_or_default(),
    };
    finish(tx, ctx, event).await?;
    Ok(plan)
}

/// A plan's steps in apply order.
pub async fn steps(core: &Core, ctx: &Ctx, plan_id: &str) -> Result<Vec<ProvisioningStep>> {
    ctx.require(Family::Apps, Verb::Read)?;
    let mut conn = core.db.read().await?;
    let mut steps: Vec<ProvisioningStep> =
        record::find_in(&mut conn, ctx.environment_id(), "plan_id", &[plan_id.to_owned()]).await?;
    steps.sort_by(|a, b| (a.position, &a.id).cmp(&(b.position, &b.id)));
    Ok(steps)
}
