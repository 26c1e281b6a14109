use portcullis_core::Ctx;
use portcullis_core::services::links;
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject};
use portcullis_store::model::UserRole;

use super::{Access, Ops, Resource, ResourceDef, Routes, attr, to_one};
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
        Routes::link::<UserRole>()
    }

    fn present(_: &Ctx, link: &UserRole) -> ResourceObject {
        links::present(link)
    }
}
