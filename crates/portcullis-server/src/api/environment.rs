//! `GET/PATCH /api/environment`: the settings of the environment addressed.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router, middleware};
use portcullis_core::services::environments::{self, EnvironmentChanges};
use portcullis_core::{Core, Ctx};
use portcullis_jsonapi::parse_update;

use super::{JsonApiBody, ok};
use crate::auth;
use crate::error::ApiResult;

async fn show(Extension(ctx): Extension<Ctx>) -> ApiResult<Response> {
    Ok(ok(environments::present(&ctx.env)))
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

pub fn router(core: &Arc<Core>) -> Router<Arc<Core>> {
    Router::new()
        .route("/api/environment", get(show).patch(update))
        .route_layer(middleware::from_fn_with_state((core.clone(), "environment"), auth::require_scope))
}
