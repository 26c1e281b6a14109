use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::authz::Family;
use portcullis_core::services::memberships;
use portcullis_core::services::organizations::{self, NewOrganization, OrganizationChanges};
use portcullis_core::{Core, Ctx, ServiceError, services};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create, parse_update};
use portcullis_store::model::Organization;
use serde_json::json;

use super::{
    Access, CRUD, JsonApiBody, Resource, ResourceDef, Routes, add_to_many, attr, created, no_content, ok,
    required, to_many,
};
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
            includes: &["memberships"],
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
        relationships: &[to_many("memberships", "membership")],
        ops: CRUD,
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::default().create(create).update(update).delete(delete)
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

    async fn link_many(
        core: &Core,
        _: &Ctx,
        objects: &mut [ResourceObject],
        include: &[String],
    ) -> Result<(), ServiceError> {
        if include.iter().any(|i| i == "memberships") {
            let ids: Vec<String> = objects.iter().map(|o| o.id.clone()).collect();
            let pairs = services::linked_ids(core, "memberships", "organization_id", "id", &ids).await?;
            add_to_many(objects, "memberships", "membership", &pairs);
        }
        Ok(())
    }
}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_create::<NewOrganization>(&body, Organizations::DEF.kind)?;
    Ok(created(organizations::present(&organizations::create(&core, &ctx, input).await?)))
}

async fn update(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_update::<OrganizationChanges>(&body, Organizations::DEF.kind, &id)?;
    Ok(ok(organizations::present(&organizations::update(&core, &ctx, &id, input).await?)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    organizations::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}
