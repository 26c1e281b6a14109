//! `GET/PATCH /api/environment`: the settings of the environment addressed.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use portcullis_core::services::environments::{self, EnvironmentChanges};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::parse_update;

use super::{Access, Attr, JsonApiBody, attr, ok};
use crate::error::ApiResult;

pub const KIND: &str = environments::KIND;

/// What `GET /api/environment` shows and `PATCH` may change (for the
/// OpenAPI document; the environment is one resource, not a collection).
pub const ATTRIBUTES: &[Attr] = &[
    attr("handle", "string", Access::ReadOnly, "DNS label naming the environment: `{handle}.{base_domain}`."),
    attr("name", "string", Access::ReadWrite, "Display name (mail subjects, hosted pages)."),
    attr("issuer", "string", Access::ReadOnly, "The OpenID issuer."),
    attr("management_api", "string", Access::ReadOnly, "The Management API's audience."),
    attr(
        "session_ttl",
        "integer",
        Access::ReadWrite,
        "Browser session lifetime in seconds, 300 to 31536000.",
    ),
    attr("registration_enabled", "boolean", Access::ReadWrite, "Whether `/register` is open."),
    attr(
        "invitation_ttl",
        "integer",
        Access::ReadWrite,
        "How long an invitation link lives, in seconds: 3600 to 7776000 (default 604800, 7 days).",
    ),
    attr(
        "require_email_verification",
        "boolean",
        Access::ReadWrite,
        "Password sign-in waits until the user's address is confirmed (default false).",
    ),
    attr(
        "default_audience",
        "string",
        Access::ReadWrite,
        "The API `client_credentials` tokens are for when a request names no `resource`.",
    )
    .nullable(),
    attr(
        "mass_change_threshold",
        "integer",
        Access::ReadWrite,
        "Deprovisioning steps one provisioning pass may take without approval, 0 to 1000000.",
    ),
    attr("inserted_at", "date-time", Access::ReadOnly, "Creation time (UTC)."),
    attr("updated_at", "date-time", Access::ReadOnly, "Last change (UTC)."),
];

async fn show(Extension(ctx): Extension<Ctx>) -> ApiResult<Response> {
    Ok(ok(environments::settings(&ctx)?))
}

async fn update(
    State(core): State<Arc<Core>>,
    Extension(ctx): Extension<Ctx>,
    JsonApiBody(body): JsonApiBody,
) -> ApiResult<Response> {
    let (input, _) = parse_update::<EnvironmentChanges>(&body, environments::KIND, ctx.environment_id())?;
    let updated = environments::update(&core, &ctx, input).await?;
    // The cached state was dropped by the commit; load the fresh one.
    let fresh = core.environment(&updated.handle).await?.unwrap_or_else(|| ctx.env.clone());
    Ok(ok(environments::present(&fresh)))
}

pub fn router() -> Router<Arc<Core>> {
    Router::new().route("/api/environment", get(show).patch(update))
}
