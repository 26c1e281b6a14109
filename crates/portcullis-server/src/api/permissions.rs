use portcullis_core::services::permissions::{self, NewPermission, PermissionChanges};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, Relationships, ResourceObject};
use portcullis_store::model::Permission;

use super::{Access, CRUD, Resource, ResourceDef, Routes, Writable, attr, required};
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
        Routes::crud::<Self>()
    }

    fn present(_: &Ctx, permission: &Permission) -> ResourceObject {
        permissions::present(permission)
    }
}

impl Writable for Permissions {
    type New = NewPermission;
    type Changes = PermissionChanges;

    async fn create(
        core: &Core,
        ctx: &Ctx,
        input: NewPermission,
        _: &Relationships,
    ) -> ApiResult<Self::Model> {
        Ok(permissions::create(core, ctx, input).await?)
    }

    async fn update(core: &Core, ctx: &Ctx, id: &str, input: PermissionChanges) -> ApiResult<Self::Model> {
        Ok(permissions::update(core, ctx, id, input).await?)
    }

    async fn delete(core: &Core, ctx: &Ctx, id: &str) -> ApiResult<()> {
        Ok(permissions::delete(core, ctx, id).await?)
    }
}
