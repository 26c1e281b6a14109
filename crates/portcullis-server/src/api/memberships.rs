use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::authz::Family;
use portcullis_core::services::memberships::{self, MembershipChanges, NewMembership};
use portcullis_core::{Core, Ctx, ServiceError, services};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create, parse_update};
use portcullis_store::model::Membership;

use super::{
    Access, CRUD, JsonApiBody, Resource, ResourceDef, Routes, add_to_many, attr, created, no_content, ok,
    to_many, to_one,
};
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
            includes: &["user", "organization", "roles"],
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
            to_many("roles", "role"),
        ],
        ops: CRUD,
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::default().create(create).update(update).delete(delete)
    }

    fn present(_: &Ctx, membership: &Membership) -> ResourceObject {
        memberships::present(membership)
    }

    /// `include=roles`: the member's organization-level roles.
    async fn link_many(
        core: &Core,
        _: &Ctx,
        objects: &mut [ResourceObject],
        include: &[String],
    ) -> Result<(), ServiceError> {
        if include.iter().any(|i| i == "roles") {
            let ids: Vec<String> = objects.iter().map(|o| o.id.clone()).collect();
            let pairs =
                services::linked_ids(core, "membership_roles", "membership_id", "role_id", &ids).await?;
            add_to_many(objects, "roles", "role", &pairs);
        }
        Ok(())
    }
}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, rels) = parse_create::<NewMembership>(&body, Memberships::DEF.kind)?;
    let user = rels.required("user", "user")?;
    let organization = rels.required("organization", "organization")?;
    Ok(created(memberships::present(&memberships::create(&core, &ctx, &user, &organization, input).await?)))
}

async fn update(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_update::<MembershipChanges>(&body, Memberships::DEF.kind, &id)?;
    Ok(ok(memberships::present(&memberships::update(&core, &ctx, &id, input).await?)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    memberships::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}
