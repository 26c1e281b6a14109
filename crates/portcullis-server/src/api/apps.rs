//! `/api/apps`: the SaaS apps the lifecycle hub provisions, and
//! `POST /api/apps/:id/reconcile`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::apps::{self, AppChanges, NewApp};
use portcullis_core::{Core, Ctx, ServiceError};
use portcullis_jsonapi::{
    ApiError, Direction, Document, FieldKind, QuerySpec, Relationships, ResourceObject,
};
use portcullis_provision::Worker;
use portcullis_provision::reconcile::{self, ReconcileError};
use portcullis_store::model::App;
use serde_json::{Value, json};

use super::{Access, Action, CRUD, Resource, ResourceDef, Routes, Writable, attr, required, respond};
use crate::error::{ApiFailure, ApiResult};
use portcullis_core::authz::Family;

pub struct Apps;

impl Resource for Apps {
    type Model = App;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "app",
        path: "apps",
        family: Family::Apps,
        summary: "SaaS apps the lifecycle hub keeps in step with the directory.",
        query: QuerySpec {
            filters: &[("name", FieldKind::Text), ("kind", FieldKind::Text), ("enabled", FieldKind::Bool)],
            sorts: &[("name", FieldKind::Text), ("inserted_at", FieldKind::Timestamp)],
            includes: &[],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("name", "name"),
            ("kind", "kind"),
            ("enabled", "enabled"),
            ("inserted_at", "inserted_at"),
        ],
        attributes: &[
            required("name", "string", Access::ReadWrite, "Unique in the environment."),
            required(
                "kind",
                "string",
                Access::CreateOnly,
                "`expensify`, `stripe` (customers), `stripe_dashboard` (team members, through Stripe's SCIM API), `travelperk`, `payhawk`, `scim` (any SCIM 2.0 service provider) or `manual` (no API: people make the changes from manual tasks).",
            ),
            attr(
                "base_url",
                "string",
                Access::ReadWrite,
                "The app's API origin; defaults to the vendor's. SCIM and Stripe Dashboard: the SCIM root (e.g. `https://app.example/scim/v2`), required. Manual: the admin console, optional, for the tasks' instructions.",
            ),
            required(
                "credentials",
                "object",
                Access::WriteOnly,
                "Expensify: `partner_user_id`, `partner_user_secret`. Stripe: `secret_key`, optional `webhook_secret`. SCIM and Stripe Dashboard: `bearer_token` (Stripe's SCIM API key). TravelPerk and Payhawk: `api_key`. Stored encrypted, never returned.",
            ),
            attr("credentials_set", "boolean", Access::ReadOnly, "Whether credentials are stored."),
            attr(
                "settings",
                "object",
                Access::ReadWrite,
                "Expensify: `policy_id` (required), `employee_role`, `default_manager_email`. SCIM: `deactivate_style` (`path`, the default, or `pathless` as Okta sends it), `group_roles` (role id → SCIM group name: the role's holders are the group's members; other groups are never touched), `requests_per_second` (1-100, default 10). Payhawk: `account_id` (required), `employee_role` (default `employee`), `card_action` on removal (`block_reassignable_close_rest`, the default, `close_all` or `keep`). Any kind: `task_assignee` and `task_due_days` (1-90, default 2) for manual tasks.",
            ),
            attr(
                "access_role_ids",
                "array",
                Access::ReadWrite,
                "Users holding any of these roles get an account; none means no one.",
            ),
            attr(
                "attribute_mappings",
                "object",
                Access::ReadWrite,
                "App attribute → user source (`first_name`, `name`, `metadata.<key>`, …). SCIM attributes are paths: `name.givenName`, `title`, `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`.",
            ),
            attr(
                "deprovision_mode",
                "string",
                Access::ReadWrite,
                "`soft` (deactivate, default) or `hard` (delete, always after approval; Expensify has no delete and refuses it; Stripe Dashboard and Payhawk are always hard).",
            ),
            attr(
                "provisioning",
                "string",
                Access::ReadWrite,
                "`automatic` (the connector makes the changes; default) or `manual` (people do, from manual tasks; the connector only reads, to verify them). A `manual` app is always `manual`.",
            ),
            attr("enabled", "boolean", Access::ReadWrite, "A disabled app is left alone."),
            attr(
                "last_reconciled_at",
                "date-time",
                Access::ReadOnly,
                "End of the last complete roster read.",
            )
            .nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[],
        ops: CRUD,
        actions: &[Action::post(
            "reconcile",
            "Reads the app's roster, refreshes the identity graph and proposes a draft plan; `{\"dry_run\": true}` only reports.",
        )],
    };

    fn routes() -> Routes {
        Routes::crud::<Self>().action("reconcile", reconcile_app)
    }

    fn present(_: &Ctx, app: &App) -> ResourceObject {
        apps::present(app)
    }
}

impl Writable for Apps {
    type New = NewApp;
    type Changes = AppChanges;

    async fn create(core: &Core, ctx: &Ctx, input: NewApp, _: &Relationships) -> ApiResult<Self::Model> {
        Ok(apps::create(core, ctx, input).await?)
    }

    async fn update(core: &Core, ctx: &Ctx, id: &str, input: AppChanges) -> ApiResult<Self::Model> {
        Ok(apps::update(core, ctx, id, input).await?)
    }

    async fn delete(core: &Core, ctx: &Ctx, id: &str) -> ApiResult<()> {
        Ok(apps::delete(core, ctx, id).await?)
    }
}

/// Reconciles now. The body is optional: `{"dry_run": true}` (plain JSON or
/// a JSON:API `meta` member) reports without storing anything.
async fn reconcile_app(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Extension(worker): Extension<Arc<Worker>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let dry_run = if body.is_empty() {
        false
    } else {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|_| ApiError::new(400, "invalid_json", "Invalid JSON", "the body is not JSON"))?;
        let flag = value.get("dry_run").or_else(|| value.pointer("/meta/dry_run"));
        match flag {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ServiceError::invalid("dry_run", "dry_run must be a boolean").into()),
        }
    };
    let app = apps::reconcile_target(&core, &ctx, &id).await?;
    let report = match reconcile::reconcile(&worker, &app, dry_run, &|_| {}).await {
        Ok(report) => report,
        Err(ReconcileError::Service(error)) => return Err(error.into()),
        Err(error @ ReconcileError::NotReadable(_)) => {
            return Err(ApiError::new(422, "not_readable", "Nothing to reconcile", error.to_string()).into());
        }
        Err(ReconcileError::Roster(error)) => {
            let failure: ApiFailure = ApiError::new(
                502,
                "roster_read_failed",
                "Roster read failed",
                format!("{error}; nothing was changed"),
            )
            .into();
            return Err(failure);
        }
    };
    let app = apps::reconcile_target(&core, &ctx, &id).await?;
    let document = Document::one(apps::present(&app))
        .with_meta("reconciliation", json!(report))
        .with_meta("dry_run", json!(dry_run));
    Ok(respond(axum::http::StatusCode::OK, &document))
}
