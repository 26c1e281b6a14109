use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use portcullis_core::services::signing_keys::{self, NewSigningKey};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{Direction, FieldKind, QuerySpec, ResourceObject, parse_create};
use portcullis_store::model::SigningKey;

use super::{Access, Action, JsonApiBody, Ops, Resource, ResourceDef, Routes, attr, created, no_content, ok};
use crate::error::ApiResult;
use portcullis_core::authz::Family;

pub struct SigningKeys;

impl Resource for SigningKeys {
    type Model = SigningKey;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: "signing_key",
        path: "signing-keys",
        family: Family::SigningKeys,
        summary: "Token signing keys. A new key becomes primary; private keys are encrypted at rest and never returned.",
        query: QuerySpec {
            filters: &[
                ("status", FieldKind::Text),
                ("algorithm", FieldKind::Text),
                ("kid", FieldKind::Text),
                ("primary", FieldKind::Bool),
            ],
            sorts: &[("inserted_at", FieldKind::Timestamp)],
            includes: &[],
            default_sort: &[("inserted_at", Direction::Desc)],
        },
        columns: &[
            ("status", "status"),
            ("algorithm", "algorithm"),
            ("kid", "kid"),
            ("primary", "is_primary"),
            ("inserted_at", "inserted_at"),
        ],
        attributes: &[
            attr("algorithm", "string", Access::CreateOnly, "`rs256` (default), `es256` or `eddsa`.")
                .one_of(&["rs256", "es256", "eddsa"]),
            attr(
                "key_size",
                "integer",
                Access::CreateOnly,
                "RSA modulus bits: 2048, 3072 or 4096 (default).",
            )
            .nullable(),
            attr("kid", "string", Access::ReadOnly, "Key id in token headers and the JWKS."),
            attr("status", "string", Access::ReadOnly, "`active` or `inactive`."),
            attr("primary", "boolean", Access::ReadOnly, "Whether this key signs new tokens."),
            attr("public_key", "object", Access::ReadOnly, "The public JWK."),
            attr("deactivated_at", "date-time", Access::ReadOnly, "When the key was deactivated.").nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[],
        ops: Ops { list: true, get: true, create: true, update: false, delete: true },
        actions: &[
            Action::patch(
                "deactivate",
                "Removes the key from the JWKS; a primary key hands over to the newest active key.",
            ),
            Action::patch("set-primary", "Makes an active key the one that signs new tokens."),
        ],
    };

    fn routes() -> Routes {
        Routes::default()
            .create(create)
            .delete(delete)
            .action("deactivate", deactivate)
            .action("set-primary", set_primary)
    }

    fn present(_: &Ctx, key: &SigningKey) -> ResourceObject {
        signing_keys::present(key)
    }
}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_create::<NewSigningKey>(&body, SigningKeys::DEF.kind)?;
    Ok(created(signing_keys::present(&signing_keys::create(&core, &ctx, input).await?)))
}

async fn deactivate(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(signing_keys::present(&signing_keys::deactivate(&core, &ctx, &id).await?)))
}

async fn set_primary(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(signing_keys::present(&signing_keys::set_primary(&core, &ctx, &id).await?)))
}

/// `DELETE /api/signing-keys/:id`: an inactive key only (409 otherwise).
async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    signing_keys::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}
