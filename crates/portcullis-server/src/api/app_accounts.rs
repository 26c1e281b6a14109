//! `/api/app-accounts`: the identity graph, read-only (the hub writes it).

use std::sync::Arc;

use axum::Router;
use axum::routing::MethodRouter;
use portcullis_core::services::app_accounts;
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject};
use portcullis_store::model::AppAccount;

use super::{Access, Ops, Resource, ResourceDef, attr, resource_router};

pub struct AppAccounts;

impl Resource for AppAccounts {
    type Model = AppAccount;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "app_account",
        path: "app-accounts",
        scope: "apps",
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
            attr("login", "string", Access::ReadOnly, "The account's email or login in the app."),
            attr("status", "string", Access::ReadOnly, "`active`, `deactivated` or `deleted`."),
            attr("orphaned", "boolean", Access::ReadOnly, "Linked to no user."),
            attr("attributes", "object", Access::ReadOnly, "The account's attributes as last seen or set."),
            attr("last_seen_at", "date-time", Access::ReadOnly, "When the hub last saw or changed it."),
            attr("inserted_at", "date-time", Access::ReadOnly, "When the hub first recorded it."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[("app", "app"), ("user", "user")],
        ops: Ops { list: true, get: true, create: false, update: false, delete: false },
        actions: &[],
    };

    fn present(_: &Ctx, account: &AppAccount) -> ResourceObject {
        app_accounts::present(account)
    }
}

pub fn router(core: &Arc<Core>) -> Router<Arc<Core>> {
    resource_router::<AppAccounts>(core, MethodRouter::new(), MethodRouter::new(), vec![])
}
