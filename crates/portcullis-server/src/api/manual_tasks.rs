//! `/api/manual-tasks`: plan steps handed to people, reassignable, with
//! `complete` (who did it is recorded; a later reconciliation verifies it
//! where the app can be read).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::manual_tasks::{self, TaskChanges};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{ApiError, Direction, FieldKind, QuerySpec, ResourceObject, parse_update};
use portcullis_provision::tasks::{self, Completion};
use portcullis_store::model::ManualTask;
use serde_json::Value;

use super::{Access, Action, JsonApiBody, Ops, Resource, ResourceDef, Routes, attr, ok, to_one};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

pub struct ManualTasks;

impl Resource for ManualTasks {
    type Model = ManualTask;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "manual_task",
        path: "manual-tasks",
        family: Family::Apps,
        summary: "Changes people make by hand in apps without an API (or provisioned manually), with who did them and whether a reconciliation confirmed it.",
        query: QuerySpec {
            filters: &[
                ("app_id", FieldKind::Text),
                ("user_id", FieldKind::Text),
                ("status", FieldKind::Text),
                ("assignee", FieldKind::TextCi),
            ],
            sorts: &[
                ("inserted_at", FieldKind::Timestamp),
                ("due_at", FieldKind::Timestamp),
                ("updated_at", FieldKind::Timestamp),
            ],
            includes: &["user"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("app_id", "app_id"),
            ("user_id", "user_id"),
            ("status", "status"),
            ("assignee", "assignee"),
            ("due_at", "due_at"),
            ("inserted_at", "inserted_at"),
            ("updated_at", "updated_at"),
        ],
        attributes: &[
            attr(
                "action",
                "string",
                Access::ReadOnly,
                "The step's action: `create`, `update`, `deactivate` or `delete`.",
            ),
            attr("title", "string", Access::ReadOnly, "What to do, in a line."),
            attr("instructions", "array", Access::ReadOnly, "The concrete steps, in order."),
            attr(
                "assignee",
                "string",
                Access::ReadWrite,
                "Who does it (an email or a team); from the app's `task_assignee`.",
            )
            .nullable(),
            attr(
                "due_at",
                "date-time",
                Access::ReadWrite,
                "When it is due; from the app's `task_due_days` (default 2).",
            ),
            attr(
                "status",
                "string",
                Access::ReadOnly,
                "`open`, `done`, `verified` or `verification_failed` (a reconciliation found the account otherwise; complete it again once fixed).",
            ),
            attr("completed_by", "string", Access::ReadOnly, "Who marked it done.").nullable(),
            attr("completed_at", "date-time", Access::ReadOnly, "When.").nullable(),
            attr("note", "string", Access::ReadOnly, "What the person said on completing it.").nullable(),
            attr("verified_at", "date-time", Access::ReadOnly, "When a reconciliation checked it.")
                .nullable(),
            attr("verification", "string", Access::ReadOnly, "What that reconciliation found.").nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[
            to_one("app", "app"),
            to_one("plan", "provisioning_plan"),
            to_one("step", "provisioning_step"),
            to_one("user", "user"),
        ],
        ops: Ops { list: true, get: true, create: false, update: true, delete: false },
        actions: &[Action::post(
            "complete",
            "Marks the task done; optional `{\"note\": …, \"external_id\": …}` (plain JSON or JSON:API `meta`). The step succeeds and the graph records the account.",
        )],
    };

    fn routes() -> Routes {
        Routes::default().update(update).action("complete", complete)
    }

    fn present(_: &Ctx, task: &ManualTask) -> ResourceObject {
        manual_tasks::present(task)
    }
}

async fn update(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_update::<TaskChanges>(&body, ManualTasks::DEF.kind, &id)?;
    Ok(ok(manual_tasks::present(&manual_tasks::update(&core, &ctx, &id, input).await?)))
}

async fn complete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let input = if body.is_empty() {
        Completion::default()
    } else {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|_| ApiError::new(400, "invalid_json", "Invalid JSON", "the body is not JSON"))?;
        let fields = value.get("meta").cloned().unwrap_or(value);
        serde_json::from_value(fields).map_err(|e| {
            ApiError::new(400, "invalid_body", "Invalid body", format!("expected note and external_id: {e}"))
        })?
    };
    Ok(ok(manual_tasks::present(&tasks::complete(&core, &ctx, &id, input).await?)))
}
