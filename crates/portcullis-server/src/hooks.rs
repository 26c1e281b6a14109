//! `POST /hooks/apps/:id`: signed change events from the apps the lifecycle
//! hub provisions (Stripe `customer.*`). The app authenticates with its
//! signature, not a token, so this lives outside `/api/`. Any answer but 2xx
//! makes the app deliver again later, which is what a failed read wants.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Extension, Json, Router};
use portcullis_core::Core;
use portcullis_jsonapi::ApiError;
use portcullis_provision::Worker;
use portcullis_provision::webhook::{self, Receipt, WebhookError};

use crate::env::Env;
use crate::error::ApiFailure;

pub fn router() -> Router<Arc<Core>> {
    Router::new().route("/hooks/apps/{id}", post(receive))
}

async fn receive(
    Env(env): Env,
    Extension(worker): Extension<Arc<Worker>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Receipt>, ApiFailure> {
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    match webhook::receive(&worker, &env.environment.id, &id, signature, &body).await {
        Ok(receipt) => Ok(Json(receipt)),
        Err(WebhookError::NotFound(detail)) => Err(ApiError::not_found(detail).into()),
        Err(WebhookError::Signature(detail)) => {
            Err(ApiError::new(400, "invalid_signature", "Invalid signature", detail).into())
        }
        Err(WebhookError::Payload(detail)) => Err(ApiError::invalid_body(detail).into()),
        Err(error @ WebhookError::AppUnavailable(_)) => {
            Err(ApiError::new(503, "app_unavailable", "App unavailable", error.to_string()).into())
        }
        Err(WebhookError::Service(error)) => Err(error.into()),
    }
}
