use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::clients::{self, ClientChanges, NewClient};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create, parse_update};
use portcullis_store::model::Client;
use serde_json::json;

use super::{
    Access, Action, CRUD, JsonApiBody, Resource, ResourceDef, Routes, attr, created, created_with_meta,
    no_content, ok, ok_with_meta, required,
};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

pub struct Clients;

impl Resource for Clients {
    type Model = Client;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "client",
        path: "clients",
        family: Family::Clients,
        summary: "OAuth clients (applications). The secret is returned once, in `meta.client_secret`.",
        query: QuerySpec {
            filters: &[
                ("name", FieldKind::Text),
                ("client_id", FieldKind::Text),
                ("client_type", FieldKind::Text),
                ("token_format", FieldKind::Text),
                ("first_party", FieldKind::Bool),
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
            ("client_id", "client_id"),
            ("client_type", "client_type"),
            ("token_format", "token_format"),
            ("first_party", "first_party"),
            ("inserted_at", "inserted_at"),
            ("updated_at", "updated_at"),
        ],
        attributes: &[
            required("name", "string", Access::ReadWrite, "Display name."),
            attr("client_id", "string", Access::ReadOnly, "Generated public identifier."),
            attr("client_type", "string", Access::CreateOnly, "`confidential` (default) or `public`.").one_of(&["confidential", "public"]),
            attr(
                "redirect_uris",
                "array",
                Access::ReadWrite,
                "Up to 10 URLs, matched exactly: https, or http on loopback; public (native) clients may also use a reverse-domain private-use scheme (RFC 8252). No fragment, userinfo or wildcard.",
            ),
            attr(
                "post_logout_redirect_uris",
                "array",
                Access::ReadWrite,
                "Where RP-initiated logout may return to: up to 10 URLs, under the rules of `redirect_uris`.",
            ),
            attr(
                "grant_types",
                "array",
                Access::ReadWrite,
                "`authorization_code` (default), `client_credentials`, `refresh_token`.",
            ).one_of(&["authorization_code", "client_credentials", "refresh_token"]),
            attr("token_format", "string", Access::ReadWrite, "`jwt` (default) or `opaque`.").one_of(&["jwt", "opaque"]),
            attr(
                "organization_usage",
                "string",
                Access::ReadWrite,
                "Whether sign-ins name an organization (`/oauth/authorize?organization=`): `deny` (default), `allow`, or `require` (users pick one of theirs when none is named).",
            )
            .one_of(&["deny", "allow", "require"]),
            attr("first_party", "boolean", Access::CreateOnly, "Skips consent; immutable after creation."),
            attr(
                "require_pkce",
                "boolean",
                Access::ReadWrite,
                "Authorization requests must carry a PKCE `code_challenge` (default true). Only confidential clients may set false, for legacy apps.",
            ),
            attr(
                "serves_resource_server_id",
                "string",
                Access::ReadWrite,
                "The API (resource server id) this client is the backend of, if any: besides the client a token was issued to, only a client serving the token's API may introspect it. Not the Management API.",
            ).nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[],
        ops: CRUD,
        actions: &[Action::patch("rotate-secret", "Replaces the secret; the new one is in `meta.client_secret`.")],
    };

    fn routes() -> Routes {
        Routes::default().create(create).update(update).delete(delete).action("rotate-secret", rotate_secret)
    }

    fn present(_: &Ctx, client: &Client) -> ResourceObject {
        clients::present(client)
    }
}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_create::<NewClient>(&body, Clients::DEF.kind)?;
    let (client, secret) = clients::create(&core, &ctx, input).await?;
    Ok(match secret {
        Some(secret) => created_with_meta(clients::present(&client), "client_secret", json!(secret)),
        None => created(clients::present(&client)),
    })
}

async fn update(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_update::<ClientChanges>(&body, Clients::DEF.kind, &id)?;
    Ok(ok(clients::present(&clients::update(&core, &ctx, &id, input).await?)))
}

async fn rotate_secret(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (client, secret) = clients::rotate_secret(&core, &ctx, &id).await?;
    Ok(ok_with_meta(clients::present(&client), "client_secret", json!(secret)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    clients::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}
