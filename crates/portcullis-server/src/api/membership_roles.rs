use portcullis_core::Ctx;
use portcullis_core::authz::Family;
use portcullis_core::services::membership_roles::MembershipRole;
use portcullis_core::services::{links, membership_roles};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject};

use super::{Access, Ops, Resource, ResourceDef, Routes, attr, to_one};

pub struct MembershipRoles;

impl Resource for MembershipRoles {
    type Model = MembershipRole;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: membership_roles::KIND,
        path: "membership-roles",
        family: Family::Memberships,
        summary: "Gives a member an organization-level role (unique per pair).",
        query: QuerySpec {
            filters: &[("membership_id", FieldKind::Id), ("role_id", FieldKind::Id)],
            sorts: &[("inserted_at", FieldKind::Timestamp)],
            includes: &["membership", "role"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("membership_id", "membership_id"),
            ("role_id", "role_id"),
            ("inserted_at", "inserted_at"),
        ],
        attributes: &[
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[to_one("membership", "membership"), to_one("role", "role")],
        ops: Ops { list: true, get: true, create: true, update: false, delete: true },
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::link::<MembershipRole>()
    }

    fn present(_: &Ctx, link: &MembershipRole) -> ResourceObject {
        links::present(link)
    }
}
