//! `/api/provisioning-plans` with `approve` and `reject`, and
//! `/api/provisioning-steps` (read-only).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::provisioning_plans as plans;
use portcullis_core::{Core, Ctx, ServiceError};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject};
use portcullis_store::model::{ProvisioningPlan, ProvisioningStep};

use super::{Access, Action, Ops, Resource, ResourceDef, Routes, add_to_many, attr, ok, to_many, to_one};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

const READ: Ops = Ops { list: true, get: true, create: false, update: false, delete: false };

pub struct Plans;

impl Resource for Plans {
    type Model = ProvisioningPlan;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "provisioning_plan",
        path: "provisioning-plans",
        family: Family::Apps,
        summary: "Changes the hub intends in one app: applied at once when safe, otherwise a draft awaiting approval.",
        query: QuerySpec {
            filters: &[("app_id", FieldKind::Text), ("status", FieldKind::Text), ("source", FieldKind::Text)],
            sorts: &[("inserted_at", FieldKind::Timestamp), ("updated_at", FieldKind::Timestamp)],
            includes: &["steps"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("app_id", "app_id"),
            ("status", "status"),
            ("source", "source"),
            ("inserted_at", "inserted_at"),
            ("updated_at", "updated_at"),
        ],
        attributes: &[
            attr("source", "string", Access::ReadOnly, "`event` (directory changes) or `reconcile`."),
            attr(
                "status",
                "string",
                Access::ReadOnly,
                "`draft`, `approved`, `applying`, `applied`, `failed` or `rejected`.",
            ),
            attr("approval_reason", "string", Access::ReadOnly, "Why the plan waits for a person.")
                .nullable(),
            attr("summary", "object", Access::ReadOnly, "Step counts; for reconciliation, what was found."),
            attr("decided_by", "string", Access::ReadOnly, "Who approved or rejected it.").nullable(),
            attr("decided_at", "date-time", Access::ReadOnly, "When.").nullable(),
            attr("finished_at", "date-time", Access::ReadOnly, "When its last step finished.").nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[to_one("app", "app"), to_many("steps", "provisioning_step")],
        ops: READ,
        actions: &[
            Action::patch("approve", "Approves a draft; its steps are applied."),
            Action::patch("reject", "Rejects a draft; its steps are cancelled."),
        ],
    };

    fn routes() -> Routes {
        Routes::default().action("approve", approve).action("reject", reject)
    }

    fn present(_: &Ctx, plan: &ProvisioningPlan) -> ResourceObject {
        plans::present(plan)
    }

    async fn link_many(
        core: &Core,
        ctx: &Ctx,
        objects: &mut [ResourceObject],
        include: &[String],
    ) -> Result<(), ServiceError> {
        if include.iter().any(|i| i == "steps") {
            let mut pairs = Vec::new();
            for object in objects.iter() {
                for step in plans::steps(core, ctx, &object.id).await? {
                    pairs.push((object.id.clone(), step.id));
                }
            }
            add_to_many(objects, "steps", "provisioning_step", &pairs);
        }
        Ok(())
    }
}

pub struct Steps;

impl Resource for Steps {
    type Model = ProvisioningStep;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "provisioning_step",
        path: "provisioning-steps",
        family: Family::Apps,
        summary: "One change to one account, with its attempts and outcome.",
        query: QuerySpec {
            filters: &[
                ("plan_id", FieldKind::Text),
                ("app_id", FieldKind::Text),
                ("user_id", FieldKind::Text),
                ("status", FieldKind::Text),
                ("action", FieldKind::Text),
            ],
            sorts: &[("inserted_at", FieldKind::Timestamp), ("position", FieldKind::Int)],
            includes: &[],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("plan_id", "plan_id"),
            ("app_id", "app_id"),
            ("user_id", "user_id"),
            ("status", "status"),
            ("action", "action"),
            ("position", "position"),
            ("inserted_at", "inserted_at"),
        ],
        attributes: &[
            attr("action", "string", Access::ReadOnly, "`create`, `update`, `deactivate` or `delete`."),
            attr("position", "integer", Access::ReadOnly, "Apply order in the plan (managers first)."),
            attr(
                "status",
                "string",
                Access::ReadOnly,
                "`pending`, `running`, `waiting` (on a manual task), `succeeded`, `failed`, `skipped` or `cancelled`.",
            ),
            attr("reason", "string", Access::ReadOnly, "Why the hub planned it.").nullable(),
            attr("changes", "object", Access::ReadOnly, "`{attribute: {from, to}}`."),
            attr("attempts", "integer", Access::ReadOnly, "Calls made so far."),
            attr("next_attempt_at", "date-time", Access::ReadOnly, "When it is due.").nullable(),
            attr("last_error", "string", Access::ReadOnly, "The last failure, or why it was skipped.")
                .nullable(),
            attr("completed_at", "date-time", Access::ReadOnly, "When it finished.").nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[
            to_one("plan", "provisioning_plan"),
            to_one("app", "app"),
            to_one("user", "user"),
            to_one("app_account", "app_account"),
        ],
        ops: READ,
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::default()
    }

    fn present(_: &Ctx, step: &ProvisioningStep) -> ResourceObject {
        plans::present_step(step)
    }
}

async fn approve(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(plans::present(&plans::approve(&core, &ctx, &id).await?)))
}

async fn reject(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(plans::present(&plans::reject(&core, &ctx, &id).await?)))
}
