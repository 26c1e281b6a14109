use portcullis_core::authz::Family;
use portcullis_core::services::memberships::Membership;
use portcullis_core::services::memberships::{self, MembershipChanges, NewMembership};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, Relationships, ResourceObject};

use super::{Access, CRUD, Resource, ResourceDef, Routes, Writable, attr, to_many, to_one};
use crate::error::ApiResult;

pub struct Memberships;

impl Resource for Memberships {
    type Model = Membership;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: memberships::KIND,
        path: "memberships",
        family: Family::Memberships,
        summary: "A user in an organization (at most once per pair).",
        query: QuerySpec {
            filters: &[("user_id", FieldKind::Id), ("organization_id", FieldKind::Id)],
            sorts: &[("inserted_at", FieldKind::Timestamp), ("updated_at", FieldKind::Timestamp)],
            includes: &["user", "organization", "roles", "roles.permissions"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("user_id", "user_id"),
            ("organization_id", "organization_id"),
            ("inserted_at", "inserted_at"),
            ("updated_at", "updated_at"),
        ],
        attributes: &[
            attr("metadata", "object", Access::ReadWrite, "The customer's own JSON object."),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[
            to_one("user", "user"),
            to_one("organization", "organization"),
            to_many("roles", "role").through("membership_roles", "membership_id", "role_id"),
        ],
        ops: CRUD,
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::crud::<Self>()
    }

    fn present(_: &Ctx, membership: &Membership) -> ResourceObject {
        memberships::present(membership)
    }
}

impl Writable for Memberships {
    type New = NewMembership;
    type Changes = MembershipChanges;

    async fn create(
        core: &Core,
        ctx: &Ctx,
        input: NewMembership,
        relationships: &Relationships,
    ) -> ApiResult<Self::Model> {
        Ok(memberships::create(
            core,
            ctx,
            &relationships.required("user", "user")?,
            &relationships.required("organization", "organization")?,
            input,
        )
        .await?)
    }

    async fn update(core: &Core, ctx: &Ctx, id: &str, input: MembershipChanges) -> ApiResult<Self::Model> {
        Ok(memberships::update(core, ctx, id, input).await?)
    }

    async fn delete(core: &Core, ctx: &Ctx, id: &str) -> ApiResult<()> {
        Ok(memberships::delete(core, ctx, id).await?)
    }
}
