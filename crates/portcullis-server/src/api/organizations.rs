use portcullis_core::authz::Family;
use portcullis_core::services::memberships;
use portcullis_core::services::organizations::Organization;
use portcullis_core::services::organizations::{self, NewOrganization, OrganizationChanges};
use portcullis_core::{Core, Ctx, ServiceError};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, Relationships, ResourceObject};
use serde_json::json;

use super::{Access, CRUD, Resource, ResourceDef, Routes, Writable, attr, required, to_many};
use crate::error::ApiResult;

pub struct Organizations;

impl Resource for Organizations {
    type Model = Organization;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: organizations::KIND,
        path: "organizations",
        family: Family::Organizations,
        summary: "The customer companies of a B2B app.",
        query: QuerySpec {
            filters: &[("name", FieldKind::Text), ("slug", FieldKind::Text)],
            sorts: &[
                ("name", FieldKind::Text),
                ("slug", FieldKind::Text),
                ("inserted_at", FieldKind::Timestamp),
                ("updated_at", FieldKind::Timestamp),
            ],
            includes: &["memberships", "memberships.user", "memberships.roles"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("name", "name"),
            ("slug", "slug"),
            ("inserted_at", "inserted_at"),
            ("updated_at", "updated_at"),
        ],
        attributes: &[
            required("name", "string", Access::ReadWrite, "Display name, at most 100 characters."),
            attr(
                "slug",
                "string",
                Access::ReadWrite,
                "URL-safe handle, unique in the environment: 1–64 lowercase letters, digits and inner hyphens. Derived from the name when omitted.",
            ),
            attr("metadata", "object", Access::ReadWrite, "The customer's own JSON object."),
            attr("member_count", "integer", Access::ReadOnly, "Members (single GET only)."),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[to_many("memberships", "membership").through(
            "memberships",
            "organization_id",
            "id",
        )],
        ops: CRUD,
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::crud::<Self>()
    }

    fn present(_: &Ctx, organization: &Organization) -> ResourceObject {
        organizations::present(organization)
    }

    async fn detail(
        core: &Core,
        ctx: &Ctx,
        mut object: ResourceObject,
    ) -> Result<ResourceObject, ServiceError> {
        let members = memberships::count_in(core, ctx, &object.id).await?;
        object.attributes.insert("member_count".into(), json!(members));
        Ok(object)
    }
}

impl Writable for Organizations {
    type New = NewOrganization;
    type Changes = OrganizationChanges;

    async fn create(
        core: &Core,
        ctx: &Ctx,
        input: NewOrganization,
        _: &Relationships,
    ) -> ApiResult<Self::Model> {
        Ok(organizations::create(core, ctx, input).await?)
    }

    async fn update(core: &Core, ctx: &Ctx, id: &str, input: OrganizationChanges) -> ApiResult<Self::Model> {
        Ok(organizations::update(core, ctx, id, input).await?)
    }

    async fn delete(core: &Core, ctx: &Ctx, id: &str) -> ApiResult<()> {
        Ok(organizations::delete(core, ctx, id).await?)
    }
}
