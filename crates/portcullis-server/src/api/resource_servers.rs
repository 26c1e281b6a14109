use portcullis_core::services::resource_servers::{self, NewResourceServer, ResourceServerChanges};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, Relationships, ResourceObject};
use portcullis_store::model::ResourceServer;

use super::{Access, CRUD, Resource, ResourceDef, Routes, Writable, attr, required};
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
        Routes::crud::<Self>()
    }

    fn present(ctx: &Ctx, server: &ResourceServer) -> ResourceObject {
        resource_servers::present_with(server, &ctx.env.management_api)
    }
}

impl Writable for ResourceServers {
    type New = NewResourceServer;
    type Changes = ResourceServerChanges;

    async fn create(
        core: &Core,
        ctx: &Ctx,
        input: NewResourceServer,
        _: &Relationships,
    ) -> ApiResult<Self::Model> {
        Ok(resource_servers::create(core, ctx, input).await?)
    }

    async fn update(
        core: &Core,
        ctx: &Ctx,
        id: &str,
        input: ResourceServerChanges,
    ) -> ApiResult<Self::Model> {
        Ok(resource_servers::update(core, ctx, id, input).await?)
    }

    async fn delete(core: &Core, ctx: &Ctx, id: &str) -> ApiResult<()> {
        Ok(resource_servers::delete(core, ctx, id).await?)
    }
}
