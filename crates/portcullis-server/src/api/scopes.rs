use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::scopes::{self, NewScope, ScopeChanges};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create, parse_update};
use portcullis_store::model::Scope;

use super::{
    Access, CRUD, JsonApiBody, Resource, ResourceDef, Routes, attr, created, no_content, ok, required, to_one,
};
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
        Routes::default().create(create).update(update).delete(delete)
    }

    fn present(_: &Ctx, scope: &Scope) -> ResourceObject {
        scopes::present(scope)
    }
}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, rels) = parse_create::<NewScope>(&body, Scopes::DEF.kind)?;
    let server = rels.required("resource_server", "resource_server")?;
    Ok(created(scopes::present(&scopes::create(&core, &ctx, &server, input).await?)))
}

async fn update(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_update::<ScopeChanges>(&body, Scopes::DEF.kind, &id)?;
    Ok(ok(scopes::present(&scopes::update(&core, &ctx, &id, input).await?)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    scopes::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}
