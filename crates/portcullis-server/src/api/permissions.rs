use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::permissions::{self, NewPermission, PermissionChanges};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create, parse_update};
use portcullis_store::model::Permission;

use super::{
    Access, CRUD, JsonApiBody, Resource, ResourceDef, Routes, attr, created, no_content, ok, required,
};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

pub struct Permissions;

impl Resource for Permissions {
    type Model = Permission;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "permission",
        path: "permissions",
        family: Family::Permissions,
        summary: "Application permissions in `resource:action` form, granted through roles.",
        query: QuerySpec {
            filters: &[("name", FieldKind::Text)],
            sorts: &[
                ("name", FieldKind::Text),
                ("inserted_at", FieldKind::Timestamp),
                ("updated_at", FieldKind::Timestamp),
            ],
            includes: &[],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[("name", "name"), ("inserted_at", "inserted_at"), ("updated_at", "updated_at")],
        attributes: &[
            required(
                "name",
                "string",
                Access::CreateOnly,
                "`resource:action`, unique in the environment; immutable.",
            ),
            attr("description", "string", Access::ReadWrite, "What the permission allows.").nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[],
        ops: CRUD,
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::default().create(create).update(update).delete(delete)
    }

    fn present(_: &Ctx, permission: &Permission) -> ResourceObject {
        permissions::present(permission)
    }
}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_create::<NewPermission>(&body, Permissions::DEF.kind)?;
    Ok(created(permissions::present(&permissions::create(&core, &ctx, input).await?)))
}

async fn update(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_update::<PermissionChanges>(&body, Permissions::DEF.kind, &id)?;
    Ok(ok(permissions::present(&permissions::update(&core, &ctx, &id, input).await?)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    permissions::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}
