use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::user_roles;
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create};
use portcullis_store::model::UserRole;
use serde::Deserialize;

use super::{Access, JsonApiBody, Ops, Resource, ResourceDef, Routes, attr, created, no_content, to_one};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

pub struct UserRoles;

impl Resource for UserRoles {
    type Model = UserRole;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "user_role",
        path: "user-roles",
        family: Family::Users,
        summary: "Assigns a role to a user (unique per pair).",
        query: QuerySpec {
            filters: &[("user_id", FieldKind::Id), ("role_id", FieldKind::Id)],
            sorts: &[("inserted_at", FieldKind::Timestamp)],
            includes: &["user", "role"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[("user_id", "user_id"), ("role_id", "role_id"), ("inserted_at", "inserted_at")],
        attributes: &[
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[to_one("user", "user"), to_one("role", "role")],
        ops: Ops { list: true, get: true, create: true, update: false, delete: true },
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::default().create(create).delete(delete)
    }

    fn present(_: &Ctx, link: &UserRole) -> ResourceObject {
        user_roles::present(link)
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
    let (NoAttributes {}, rels) = parse_create(&body, UserRoles::DEF.kind)?;
    let user = rels.required("user", "user")?;
    let role = rels.required("role", "role")?;
    Ok(created(user_roles::present(&user_roles::create(&core, &ctx, &user, &role).await?)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    user_roles::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}
