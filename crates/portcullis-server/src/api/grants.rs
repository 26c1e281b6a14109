use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::grants::{self, GrantAttributes};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create, parse_update};
use portcullis_store::model::Grant;

use super::{
    Access, CRUD, JsonApiBody, Resource, ResourceDef, Routes, attr, created, no_content, ok, to_one,
};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

pub struct Grants;

impl Resource for Grants {
    type Model = Grant;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "client_resource_server_grant",
        path: "client-resource-server-grants",
        family: Family::ClientGrants,
        summary: "Lets a client get tokens for a resource server, limited to `allowed_scopes` (null: all).",
        query: QuerySpec {
            filters: &[("client_id", FieldKind::Id), ("resource_server_id", FieldKind::Id)],
            sorts: &[("inserted_at", FieldKind::Timestamp)],
            includes: &["client", "resource_server"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("client_id", "client_id"),
            ("resource_server_id", "resource_server_id"),
            ("inserted_at", "inserted_at"),
        ],
        attributes: &[
            attr(
                "allowed_scopes",
                "array",
                Access::ReadWrite,
                "Scope names the client may request; null means every scope.",
            )
            .nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[to_one("client", "client"), to_one("resource_server", "resource_server")],
        ops: CRUD,
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::default().create(create).update(update).delete(delete)
    }

    fn present(_: &Ctx, grant: &Grant) -> ResourceObject {
        grants::present(grant)
    }
}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, rels) = parse_create::<GrantAttributes>(&body, Grants::DEF.kind)?;
    let client = rels.required("client", "client")?;
    let server = rels.required("resource_server", "resource_server")?;
    Ok(created(grants::present(&grants::create(&core, &ctx, &client, &server, input).await?)))
}

async fn update(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_update::<GrantAttributes>(&body, Grants::DEF.kind, &id)?;
    Ok(ok(grants::present(&grants::update(&core, &ctx, &id, input).await?)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    grants::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}
