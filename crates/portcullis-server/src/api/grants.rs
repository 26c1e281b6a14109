use portcullis_core::services::grants::{self, GrantAttributes};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, Relationships, ResourceObject};
use portcullis_store::model::Grant;

use super::{Access, CRUD, Resource, ResourceDef, Routes, Writable, attr, to_one};
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
        Routes::crud::<Self>()
    }

    fn present(_: &Ctx, grant: &Grant) -> ResourceObject {
        grants::present(grant)
    }
}

impl Writable for Grants {
    type New = GrantAttributes;
    type Changes = GrantAttributes;

    async fn create(
        core: &Core,
        ctx: &Ctx,
        input: GrantAttributes,
        relationships: &Relationships,
    ) -> ApiResult<Self::Model> {
        Ok(grants::create(
            core,
            ctx,
            &relationships.required("client", "client")?,
            &relationships.required("resource_server", "resource_server")?,
            input,
        )
        .await?)
    }

    async fn update(core: &Core, ctx: &Ctx, id: &str, input: GrantAttributes) -> ApiResult<Self::Model> {
        Ok(grants::update(core, ctx, id, input).await?)
    }

    async fn delete(core: &Core, ctx: &Ctx, id: &str) -> ApiResult<()> {
        Ok(grants::delete(core, ctx, id).await?)
    }
}
