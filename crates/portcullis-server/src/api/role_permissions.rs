use portcullis_core::Ctx;
use portcullis_core::services::links;
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject};
use portcullis_store::model::RolePermission;

use super::{Access, Ops, Resource, ResourceDef, Routes, attr, to_one};
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
        Routes::link::<RolePermission>()
    }

    fn present(_: &Ctx, link: &RolePermission) -> ResourceObject {
        links::present(link)
    }
}
