use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::sessions;
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create};
use portcullis_store::model::Session;
use serde::Deserialize;
use serde_json::json;

use super::{
    Access, Action, JsonApiBody, Ops, Resource, ResourceDef, Routes, attr, created_with_meta, no_content, ok,
    to_one,
};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

pub struct Sessions;

impl Resource for Sessions {
    type Model = Session;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "session",
        path: "sessions",
        family: Family::Sessions,
        summary: "End-user login sessions: where and when users signed in, and revocation.",
        query: QuerySpec {
            filters: &[("user_id", FieldKind::Id)],
            sorts: &[
                ("inserted_at", FieldKind::Timestamp),
                ("last_active_at", FieldKind::Timestamp),
                ("expires_at", FieldKind::Timestamp),
            ],
            includes: &["user"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("user_id", "user_id"),
            ("inserted_at", "inserted_at"),
            ("last_active_at", "last_active_at"),
            ("expires_at", "expires_at"),
        ],
        attributes: &[
            attr("status", "string", Access::ReadOnly, "`active`, `revoked` or `expired`."),
            attr("ip_address", "string", Access::ReadOnly, "Where the session started.").nullable(),
            attr("user_agent", "string", Access::ReadOnly, "The browser that started it.").nullable(),
            attr(
                "authenticated_at",
                "date-time",
                Access::ReadOnly,
                "When the user last signed in (OIDC `auth_time`).",
            ),
            attr("last_active_at", "date-time", Access::ReadOnly, "Last activity (see the `touch` action)."),
            attr(
                "expires_at",
                "date-time",
                Access::ReadOnly,
                "End of the session (environment `session_ttl`).",
            ),
            attr("revoked_at", "date-time", Access::ReadOnly, "When it was revoked, if it was.").nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[to_one("user", "user")],
        ops: Ops { list: true, get: true, create: true, update: false, delete: true },
        actions: &[
            Action::patch("touch", "Records activity now."),
            Action::patch("revoke", "Ends the session and the refresh tokens issued under it, at once."),
        ],
    };

    fn routes() -> Routes {
        Routes::default().create(create).delete(delete).action("touch", touch).action("revoke", revoke)
    }

    fn present(_: &Ctx, session: &Session) -> ResourceObject {
        sessions::present(session)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoAttributes {}

/// Starts a session for a user; the token (for the session cookie) is in
/// `meta.session_token`, shown once.
async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (NoAttributes {}, rels) = parse_create(&body, Sessions::DEF.kind)?;
    let user = rels.required("user", "user")?;
    let (session, token) = sessions::create(&core, &ctx, &user).await?;
    Ok(created_with_meta(sessions::present(&session), "session_token", json!(token)))
}

async fn touch(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(sessions::present(&sessions::touch(&core, &ctx, &id).await?)))
}

async fn revoke(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(sessions::present(&sessions::revoke(&core, &ctx, &id).await?)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    sessions::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}
