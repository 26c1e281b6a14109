use portcullis_core::services::scopes::{self, NewScope, ScopeChanges};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, Relationships, ResourceObject};
use portcullis_store::model::Scope;

use super::{Access, CRUD, Resource, ResourceDef, Routes, Writable, attr, required, to_one};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

pub struct Scopes;

impl Resource for Scopes {
    type Model = Scope;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "scope",
        path: "scopes",
        family: Family::Scopes,
        summary: "Custom scopes of a resource server (names unique per server).",
        query: QuerySpec {
            filters: &[("name", FieldKind::Text), ("resource_server_id", FieldKind::Id)],
            sorts: &[("name", FieldKind::Text), ("inserted_at", FieldKind::Timestamp)],
            includes: &["resource_server"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("name", "name"),
            ("resource_server_id", "resource_server_id"),
            ("inserted_at", "inserted_at"),
        ],
        attributes: &[
            required("name", "string", Access::ReadWrite, "A scope token, e.g. `read:documents`."),
            attr("description", "string", Access::ReadWrite, "Shown on consent screens.").nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[to_one("resource_server", "resource_server")],
        ops: CRUD,
        actions: &[],
    };

    fn routes() -> Routes {
        Routes::crud::<Self>()
    }

    fn present(_: &Ctx, scope: &Scope) -> ResourceObject {
        scopes::present(scope)
    }
}

impl Writable for Scopes {
    type New = NewScope;
    type Changes = ScopeChanges;

    async fn create(
        core: &Core,
        ctx: &Ctx,
        input: NewScope,
        relationships: &Relationships,
    ) -> ApiResult<Self::Model> {
        Ok(scopes::create(core, ctx, &relationships.required("resource_server", "resource_server")?, input)
            .await?)
    }

    async fn update(core: &Core, ctx: &Ctx, id: &str, input: ScopeChanges) -> ApiResult<Self::Model> {
        Ok(scopes::update(core, ctx, id, input).await?)
    }

    async fn delete(core: &Core, ctx: &Ctx, id: &str) -> ApiResult<()> {
        Ok(scopes::delete(core, ctx, id).await?)
    }
}
