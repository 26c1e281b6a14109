use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::role_permissions;
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create};
use portcullis_store::model::RolePermission;
use serde::Deserialize;

use super::{Access, JsonApiBody, Ops, Resource, ResourceDef, Routes, attr, created, no_content, to_one};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

pub struct RolePermissions;

impl Resource for RolePermissions {
    type Model = RolePermission;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "role_permission",
        path: "role-permissions",
        family: Family::Roles,
        summary: "Grants a permission to a role (unique per pair).",
        query: QuerySpec {
            filters: &[("role_id", FieldKind::Id), ("permission_id", FieldKind::Id)],
            sorts: &[("inserted_at", FieldKind::Timestamp)],
            includes: &["role", "permission"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("role_id", "role_id"),
            ("permission_id", "permission_id"),
            ("inserted_at", "inserted_at"),
        ],
        attributes: &[
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[to_one("role", "role"), to_one("permission", "permission")],
        ops: Ops { list: true, get: true, create: true, update: false, delete: true },
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::default().create(create).delete(delete)
    }

    fn present(_: &Ctx, link: &RolePermission) -> ResourceObject {
        role_permissions::present(link)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoAttributes {}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (NoAttributes {}, rels) = parse_create(&body, RolePermissions::DEF.kind)?;
    let role = rels.required("role", "role")?;
    let permission = rels.required("permission", "permission")?;
    Ok(created(role_permissions::present(&role_permissions::create(&core, &ctx, &role, &permission).await?)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    role_permissions::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}
