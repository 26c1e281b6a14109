//! The Management API's error type: a JSON:API error document and status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::{Field, ServiceError};
use portcullis_jsonapi::{ApiError, ErrorDocument, MEDIA_TYPE};
use portcullis_store::StoreError;

#[derive(Debug)]
pub struct ApiFailure {
    pub document: ErrorDocument,
    pub www_authenticate: Option<String>,
}

impl ApiFailure {
    pub fn with_challenge(mut self, challenge: String) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }
}

impl From<ApiError> for ApiFailure {
    fn from(error: ApiError) -> Self {
        ApiFailure { document: error.into(), www_authenticate: None }
    }
}

fn pointer(field: &Field) -> Option<String> {
    match field {
        Field::Attribute(name) => Some(format!("/data/attributes/{name}")),
        Field::Relationship(name) => Some(format!("/data/relationships/{name}")),
        Field::Resource => None,
    }
}

impl From<ServiceError> for ApiFailure {
    fn from(error: ServiceError) -> Self {
        let api = match &error {
            ServiceError::NotFound(kind) => ApiError::not_found(format!("{kind} not found")),
            ServiceError::Invalid { field, message } => {
                ApiError::invalid_attribute(pointer(field).unwrap_or_else(|| "/data".into()), message.clone())
            }
            ServiceError::Conflict { field, message } => match pointer(field) {
                Some(pointer) => ApiError::conflict(message.clone()).with_pointer(pointer),
                None => ApiError::conflict(message.clone()),
            },
            ServiceError::Forbidden(message) => ApiError::forbidden(message.clone()),
            ServiceError::MissingGrant { grant, withdrawn } => {
                let detail = if *withdrawn {
                    format!("the client's grant no longer allows the `{grant}` scope")
                } else {
                    format!("the access token lacks the `{grant}` scope")
                };
                // The authentication layer adds the realm to the challenge.
                return ApiFailure::from(ApiError::forbidden(detail))
                    .with_challenge(format!("Bearer error=\"insufficient_scope\", scope=\"{grant}\""));
            }
            // A related row vanished between the service's check and the
            // insert (a concurrent delete): the request named a resource that
            // no longer exists, which is the client's to retry, not a 500.
            ServiceError::Store(StoreError::ForeignKey) => ApiError::invalid_attribute(
                "/data/relationships",
                "a related resource does not exist (it may just have been deleted)",
            ),
            ServiceError::Store(_) | ServiceError::Internal(_) => {
                tracing::error!(%error, "request failed");
                ApiError::internal()
            }
        };
        api.into()
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.document.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.document).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
        if let Some(challenge) = self.www_authenticate.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiFailure>;

/// A request body over `limit` bytes (413).
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        413,
        "payload_too_large",
        "Payload Too Large",
        format!("request bodies are limited to {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vanished_related_row_is_the_clients_error_not_a_500() {
        let failure = ApiFailure::from(ServiceError::Store(StoreError::ForeignKey));
        assert_eq!(failure.document.status(), 422);
        let failure = ApiFailure::from(ServiceError::Internal("boom".into()));
        assert_eq!(failure.document.status(), 500);
    }
}
