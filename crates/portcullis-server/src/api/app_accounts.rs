//! `/api/app-accounts`: the identity graph, read-only (the hub writes it).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use portcullis_core::services::app_accounts;
use portcullis_core::{Core, Ctx, ServiceError};
use portcullis_jsonapi::{Direction, Document, FieldKind, QuerySpec, ResourceObject};
use portcullis_provision::graph;
use portcullis_store::model::AppAccount;
use serde_json::json;

use super::{Access, ApiResult, Ops, Resource, ResourceDef, Routes, attr, respond, to_one};
use portcullis_core::authz::Family;

/// The person view's path: one user's accounts across every app.
pub const OF_USER_PATH: &str = "/api/users/{id}/app-accounts";

pub struct AppAccounts;

impl Resource for AppAccounts {
    type Model = AppAccount;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "app_account",
        path: "app-accounts",
        family: Family::Apps,
        summary: "Accounts found or created in apps, linked to their user (or orphaned).",
        query: QuerySpec {
            filters: &[
                ("app_id", FieldKind::Text),
                ("user_id", FieldKind::Text),
                ("status", FieldKind::Text),
                ("external_id", FieldKind::Text),
                ("login", FieldKind::TextCi),
            ],
            sorts: &[("inserted_at", FieldKind::Timestamp), ("updated_at", FieldKind::Timestamp)],
            includes: &["user"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("app_id", "app_id"),
            ("user_id", "user_id"),
            ("status", "status"),
            ("external_id", "external_id"),
            ("login", "login"),
            ("inserted_at", "inserted_at"),
            ("updated_at", "updated_at"),
        ],
        attributes: &[
            attr(
                "external_id",
                "string",
                Access::ReadOnly,
                "The app's id for the account (Expensify: the email).",
            ),
            attr("login", "string", Access::ReadOnly, "The account's email or login in the app.").nullable(),
            attr("status", "string", Access::ReadOnly, "`active`, `deactivated` or `deleted`."),
            attr("orphaned", "boolean", Access::ReadOnly, "Linked to no user."),
            attr("attributes", "object", Access::ReadOnly, "The account's attributes as last seen or set."),
            attr("last_seen_at", "date-time", Access::ReadOnly, "When the hub last saw or changed it.")
                .nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "When the hub first recorded it."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[to_one("app", "app"), to_one("user", "user")],
        ops: Ops { list: true, get: true, create: false, update: false, delete: false },
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::default().extra(OF_USER_PATH, get(of_user))
    }

    fn present(_: &Ctx, account: &AppAccount) -> ResourceObject {
        app_accounts::present(account)
    }
}

/// `GET /api/users/:id/app-accounts`: the user's accounts in every app,
/// each with `meta` saying how it compares with the directory (`state`,
/// `expected`, `changes`), and in the document's `meta.missing` the enabled
/// apps where the user should have an account and has none. A deleted user
/// whose accounts remain still has a view: that is when it matters most.
async fn of_user(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let person = graph::person_for(&core, &ctx, &id).await?;
    let person = person.ok_or(ServiceError::NotFound("user"))?;
    let data = person
        .accounts
        .iter()
        .map(|entry| {
            app_accounts::present(&entry.account).with_meta(
                "graph",
                json!({
                    "app_name": entry.app.name,
                    "app_kind": entry.app.kind,
                    "expected": entry.expected,
                    "state": entry.state,
                    "changes": entry.changes,
                    "open_task": entry.open_task,
                }),
            )
        })
        .collect();
    let missing: Vec<_> = person
        .missing
        .iter()
        .map(|(app, reason)| json!({"app_id": app.id, "app_name": app.name, "app_kind": app.kind, "reason": reason}))
        .collect();
    let document = Document::many(data)
        .with_meta("user_exists", json!(person.user.is_some()))
        .with_meta("missing", json!(missing));
    Ok(respond(StatusCode::OK, &document))
}
