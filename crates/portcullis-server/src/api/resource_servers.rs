use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::resource_servers::{self, NewResourceServer, ResourceServerChanges};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create, parse_update};
use portcullis_store::model::ResourceServer;

use super::{
    Access, CRUD, JsonApiBody, Resource, ResourceDef, Routes, attr, created, no_content, ok, required,
};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

pub struct ResourceServers;

impl Resource for ResourceServers {
    type Model = ResourceServer;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "resource_server",
        path: "resource-servers",
        family: Family::ResourceServers,
        summary: "APIs that accept this environment's access tokens. The system Management API cannot be changed.",
        query: QuerySpec {
            filters: &[
                ("name", FieldKind::Text),
                ("identifier", FieldKind::Text),
                ("system", FieldKind::Bool),
            ],
            sorts: &[
                ("name", FieldKind::Text),
                ("inserted_at", FieldKind::Timestamp),
                ("updated_at", FieldKind::Timestamp),
            ],
            includes: &[],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("name", "name"),
            ("identifier", "identifier"),
            ("system", "system"),
            ("inserted_at", "inserted_at"),
            ("updated_at", "updated_at"),
        ],
        attributes: &[
            required("name", "string", Access::ReadWrite, "Display name."),
            required(
                "identifier",
                "string",
                Access::CreateOnly,
                "Audience URI (RFC 8707), unique; immutable.",
            ),
            attr(
                "token_ttl",
                "integer",
                Access::ReadWrite,
                "Access-token lifetime in seconds, 60-86400 (default 3600).",
            ),
            attr(
                "allow_offline_access",
                "boolean",
                Access::ReadWrite,
                "Whether refresh tokens may be issued for it.",
            ),
            attr(
                "enforce_rbac",
                "boolean",
                Access::ReadWrite,
                "User tokens carry only the API scopes the user holds as permissions through their roles (default false).",
            ),
            attr("system", "boolean", Access::ReadOnly, "True for the built-in Management API."),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[],
        ops: CRUD,
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::default().create(create).update(update).delete(delete)
    }

    fn present(ctx: &Ctx, server: &ResourceServer) -> ResourceObject {
        resource_servers::present_with(server, &ctx.env.management_api)
    }
}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_create::<NewResourceServer>(&body, ResourceServers::DEF.kind)?;
    let server = resource_servers::create(&core, &ctx, input).await?;
    Ok(created(ResourceServers::present(&ctx, &server)))
}

async fn update(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_update::<ResourceServerChanges>(&body, ResourceServers::DEF.kind, &id)?;
    let server = resource_servers::update(&core, &ctx, &id, input).await?;
    Ok(ok(ResourceServers::present(&ctx, &server)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    resource_servers::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}
