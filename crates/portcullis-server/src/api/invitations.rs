//! `/api/invitations`: invitations to join an organization, and their
//! answers. The reference documents accept and decline at
//! `/invitations/:id/accept|decline` (without `/api`); that public endpoint
//! is in `pages::invitations` and runs the same service.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use portcullis_core::authz::Family;
use portcullis_core::services::invitations::Invitation;
use portcullis_core::services::invitations::{self, Answer, Answered, NewInvitation, Proof};
use portcullis_core::services::memberships;
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::{ApiError, Direction, Document, FieldKind, QuerySpec, ResourceObject, parse_create};
use serde::Deserialize;

use super::{
    Access, Action, JsonApiBody, Ops, Resource, ResourceDef, Routes, attr, created, no_content, ok, required,
    respond, to_one,
};
use crate::error::ApiResult;

pub struct Invitations;

/// The body of an answer: the link's token in `meta`.
pub const ANSWER_META: &[(&str, &str)] =
    &[("token", "The invitation link's token: the last segment of its `/invitations/{token}` URL.")];

impl Resource for Invitations {
    type Model = Invitation;
    const DEF: &'static ResourceDef = &ResourceDef {
        kind: invitations::KIND,
        path: "invitations",
        family: Family::Invitations,
        summary: "Invitations to join an organization, sent by email with a single-use link.",
        query: QuerySpec {
            filters: &[("organization_id", FieldKind::Id), ("email", FieldKind::TextCi)],
            sorts: &[
                ("inserted_at", FieldKind::Timestamp),
                ("updated_at", FieldKind::Timestamp),
                ("expires_at", FieldKind::Timestamp),
            ],
            includes: &["organization", "user"],
            default_sort: &[("inserted_at", Direction::Asc)],
        },
        columns: &[
            ("organization_id", "organization_id"),
            ("email", "email"),
            ("inserted_at", "inserted_at"),
            ("updated_at", "updated_at"),
            ("expires_at", "expires_at"),
        ],
        attributes: &[
            required("email", "string", Access::CreateOnly, "The invited address (stored lower-cased)."),
            attr(
                "role_ids",
                "array",
                Access::CreateOnly,
                "Roles (ids) the membership gets on acceptance; deleted roles are left out.",
            ),
            attr(
                "status",
                "string",
                Access::ReadOnly,
                "`pending`, `accepted`, `declined`, `revoked` or `expired` (pending past `expires_at`).",
            ),
            attr(
                "expires_at",
                "date-time",
                Access::ReadOnly,
                "When the link stops working (environment `invitation_ttl` after sending).",
            ),
            attr(
                "inviter",
                "object",
                Access::ReadOnly,
                "Who sent it: `{type, id, name}` of the client, user or operator.",
            )
            .nullable(),
            attr("responded_at", "date-time", Access::ReadOnly, "When it was accepted, declined or revoked.")
                .nullable(),
            attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
            attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
        ],
        relationships: &[
            to_one("organization", "organization"),
            // Who accepted or declined: set by the answer.
            to_one("user", "user").read_only(),
        ],
        ops: Ops { list: true, get: true, create: true, update: false, delete: true },
        actions: &[
            Action::patch("revoke", "Revokes a pending invitation: its link stops working."),
            Action::post(
                "accept",
                "Accepts with the link's token for the account of the invited address: creates the membership and its roles.",
            )
            .with_meta(ANSWER_META),
            Action::post("decline", "Declines with the link's token.").with_meta(ANSWER_META),
        ],
    };

    fn routes() -> Routes {
        Routes::default()
            .create(create)
            .delete(delete)
            .action("revoke", revoke)
            .action("accept", accept)
            .action("decline", decline)
    }

    fn present(_: &Ctx, invitation: &Invitation) -> ResourceObject {
        invitations::present(invitation)
    }
}

async fn create(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, relationships) = parse_create::<NewInvitation>(&body, invitations::KIND)?;
    let organization = relationships.required("organization", "organization")?;
    let invitation = invitations::create(&core, &ctx, &organization, input).await?;
    Ok(created(invitations::present(&invitation)))
}

async fn delete(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    invitations::delete(&core, &ctx, &id).await?;
    Ok(no_content())
}

async fn revoke(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(invitations::present(&invitations::revoke(&core, &ctx, &id).await?)))
}

#[derive(Deserialize)]
struct AnswerDocument {
    meta: AnswerMeta,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerMeta {
    pub token: String,
}

/// Reads `{"meta": {"token": "…"}}`.
pub fn answer_token(body: &[u8]) -> ApiResult<String> {
    let document: AnswerDocument = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_body(format!("expected {{\"meta\": {{\"token\": \"…\"}}}}: {e}")))?;
    Ok(document.meta.token)
}

/// The answer's document: the invitation, and the membership an acceptance
/// made (included).
pub fn answered(ctx: &Ctx, answered: &Answered) -> Response {
    let mut document = Document::one(Invitations::present(ctx, &answered.invitation));
    document.include(answered.membership.iter().map(memberships::present).collect());
    respond(StatusCode::OK, &document)
}

async fn answer(core: &Core, ctx: &Ctx, id: &str, body: &[u8], what: Answer) -> ApiResult<Response> {
    let token = answer_token(body)?;
    let proof = Proof { token: Some(&token), user: None };
    let done = invitations::answer(core, ctx, Some(id), proof, what).await?;
    Ok(answered(ctx, &done))
}

async fn accept(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    answer(&core, &ctx, &id, &body, Answer::Accept).await
}

async fn decline(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    answer(&core, &ctx, &id, &body, Answer::Decline).await
}
