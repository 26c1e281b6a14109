//! Turning verdicts into plans: which steps the hub may apply on its own and
//! which wait for a person.

use portcullis_store::model::{App, AppAccount, Event, Origin, ProvisioningPlan, ProvisioningStep, Target};
use portcullis_store::types::JsonText;
use portcullis_store::{StoreError, WriteTx, new_id, record};
use serde_json::{Value, json};

use crate::graph::Verdict;

/// A step before it is stored.
pub struct Planned {
    pub user_id: Option<String>,
    pub app_account_id: Option<String>,
    pub position: i64,
    pub verdict: Verdict,
}

fn is_deprovisioning(action: &str) -> bool {
    matches!(action, "deactivate" | "delete")
}

/// Adds the steps no connector can take after the ones that call for them:
/// a Stripe Dashboard member's API keys outlive the member, so deleting
/// one is followed by a task to revoke them.
async fn with_manual_follow_ups(
    tx: &mut WriteTx,
    app: &App,
    steps: Vec<Planned>,
) -> Result<Vec<Planned>, StoreError> {
    if app.kind != "stripe_dashboard" {
        return Ok(steps);
    }
    let mut all = Vec::with_capacity(steps.len());
    for step in steps {
        let follow_up = if step.verdict.action == "delete" {
            let account: Option<AppAccount> = match &step.app_account_id {
                Some(id) => record::find(tx.conn(), &app.environment_id, id).await?,
                None => None,
            };
            let who = account.and_then(|a| a.login).unwrap_or_else(|| "the removed member".to_owned());
            Some(Planned {
                user_id: step.user_id.clone(),
                app_account_id: step.app_account_id.clone(),
                position: step.position,
                verdict: Verdict {
                    action: "manual",
                    changes: json!({
                        "title": format!("Revoke the Stripe API keys {who} created or saw"),
                        "instructions": [
                            "Sign in to the Stripe Dashboard as an administrator.",
                            format!("Open Developers → API keys and find the keys {who} created or revealed."),
                            "Roll every secret and restricted key they could see, and update the systems that use them.",
                            "Delete restricted keys that were made for them alone.",
                            format!("Under Settings → Team, cancel any pending invitation to {who}."),
                        ],
                    }),
                    reason: "Stripe's API keys outlive the team member who created them; the SCIM API cannot revoke them".into(),
                },
            })
        } else {
            None
        };
        all.push(step);
        all.extend(follow_up);
    }
    Ok(all)
}

/// Stores the steps of one planning pass for one app. Event-driven passes
/// split into a plan applied at once (creates, updates, soft deactivations)
/// and a draft for the rest: deletions always, and every deprovisioning
/// step once there are more than `threshold` of them. Reconciliation plans
/// are drafts: a person reviews what the hub found before it acts.
pub async fn store(
    tx: &mut WriteTx,
    app: &App,
    source: &'static str,
    threshold: i64,
    steps: Vec<Planned>,
    summary: Value,
    now: i64,
) -> Result<Vec<ProvisioningPlan>, StoreError> {
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let origin = &origin(&app.environment_id);
    let steps = with_manual_follow_ups(tx, app, steps).await?;
    let deprovisioning = steps.iter().filter(|s| is_deprovisioning(s.verdict.action)).count() as i64;
    let over_threshold = deprovisioning > threshold;
    let mut automatic = Vec::new();
    let mut held = Vec::new();
    let mut reasons = Vec::new();
    if source == "reconcile" {
        reasons.push("reconciliation plans are applied after review".to_owned());
        held = steps;
    } else {
        if over_threshold {
            reasons.push(format!(
                "{deprovisioning} deprovisioning steps exceed the environment's mass_change_threshold ({threshold})"
            ));
        }
        for step in steps {
            // A replace deletes too; a manual step follows a deletion.
            let deletes = matches!(step.verdict.action, "delete" | "replace" | "manual");
            let needs_approval = deletes || over_threshold && is_deprovisioning(step.verdict.action);
            if deletes && !reasons.iter().any(|r| r.starts_with("deleting")) {
                reasons.push("deleting accounts cannot be undone and needs approval".to_owned());
            }
            if needs_approval { held.push(step) } else { automatic.push(step) }
        }
    }
    let mut plans = Vec::new();
    for (steps, draft) in [(automatic, false), (held, true)] {
        if steps.is_empty() {
            continue;
        }
        let mut counts = serde_json::Map::new();
        for step in &steps {
            let n = counts.entry(step.verdict.action).or_insert(json!(0));
            *n = json!(n.as_i64().unwrap_or(0) + 1);
        }
        let mut summary = summary.clone();
        if let Value::Object(map) = &mut summary {
            map.insert("steps".into(), Value::Object(counts));
        }
        let plan = ProvisioningPlan {
            id: new_id(),
            environment_id: app.environment_id.clone(),
            app_id: app.id.clone(),
            source: source.to_owned(),
            status: if draft { "draft" } else { "approved" }.to_owned(),
            approval_reason: draft.then(|| reasons.join("; ")),
            summary: JsonText(summary),
            decided_by: (!draft).then(|| "Lifecycle hub (automatic)".to_owned()),
            decided_at: (!draft).then_some(now),
            finished_at: None,
            inserted_at: now,
            updated_at: now,
        };
        record::insert(tx.conn(), &plan).await?;
        let rows: Vec<ProvisioningStep> = steps
            .into_iter()
            .map(|step| ProvisioningStep {
                id: new_id(),
                environment_id: app.environment_id.clone(),
                plan_id: plan.id.clone(),
                app_id: app.id.clone(),
                user_id: step.user_id,
                app_account_id: step.app_account_id,
                action: step.verdict.action.to_owned(),
                position: step.position,
                status: "pending".to_owned(),
                reason: Some(step.verdict.reason),
                changes: JsonText(step.verdict.changes),
                request: None,
                result: None,
                attempts: 0,
                next_attempt_at: now,
                lease_owner: None,
                lease_expires_at: None,
                last_error: None,
                completed_at: None,
                inserted_at: now,
                updated_at: now,
            })
            .collect();
        for chunk in rows.chunks(200) {
            record::insert_many(tx.conn(), chunk).await?;
        }
        let event = Event {
            action: "provisioning_plan.created",
            targets: vec![
                Target { kind: "provisioning_plan".into(), id: plan.id.clone(), name: None },
                Target { kind: "app".into(), id: app.id.clone(), name: Some(app.name.clone()) },
            ],
            changes: json!({}),
            data: serde_json::to_value(portcullis_core::services::provisioning_plans::present(&plan))
                .unwrap_or_default(),
        };
        tx.record(origin, &event).await?;
        plans.push(plan);
    }
    Ok(plans)
}

/// The hub's own audit origin in an environment.
pub fn origin(environment_id: &str) -> Origin {
    Origin {
        environment_id: environment_id.to_owned(),
        actor: portcullis_store::model::Actor {
            kind: "system",
            id: None,
            name: Some("Lifecycle hub".into()),
        },
        ip_address: None,
        user_agent: None,
    }
}
