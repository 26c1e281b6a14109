//! JSON:API error objects (https://jsonapi.org/format/#error-objects).

use serde::Serialize;

/// What an error is about: one member of the request. Serializes as the
/// JSON:API `source` object, e.g. `{"pointer": "/data/attributes/email"}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum ErrorSource {
    Pointer(String),
    Parameter(String),
    Header(String),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApiError {
    /// The HTTP status, as a string per the spec.
    #[serde(serialize_with = "status_as_string")]
    pub status: u16,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<ErrorSource>,
}

fn status_as_string<S: serde::Serializer>(status: &u16, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&status.to_string())
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, code, title, detail: detail.into(), source: None }
    }

    /// The JSON Pointer this error is about, if any.
    pub fn pointer(&self) -> Option<&str> {
        match &self.source {
            Some(ErrorSource::Pointer(pointer)) => Some(pointer),
            _ => None,
        }
    }

    /// The query parameter this error is about, if any.
    pub fn parameter(&self) -> Option<&str> {
        match &self.source {
            Some(ErrorSource::Parameter(parameter)) => Some(parameter),
            _ => None,
        }
    }

    pub fn with_pointer(mut self, pointer: impl Into<String>) -> Self {
        self.source = Some(ErrorSource::Pointer(pointer.into()));
        self
    }

    pub fn with_parameter(mut self, parameter: impl Into<String>) -> Self {
        self.source = Some(ErrorSource::Parameter(parameter.into()));
        self
    }

    pub fn with_header(mut self, header: impl Into<String>) -> Self {
        self.source = Some(ErrorSource::Header(header.into()));
        self
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(400, code, "Bad Request", detail)
    }

    pub fn invalid_parameter(parameter: &str, detail: impl Into<String>) -> Self {
        Self::bad_request("invalid_parameter", detail).with_parameter(parameter)
    }

    pub fn invalid_body(detail: impl Into<String>) -> Self {
        Self::bad_request("invalid_body", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", "Unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(403, "forbidden", "Forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not_found", "Not Found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(409, "conflict", "Conflict", detail)
    }

    /// A validation failure on one attribute or relationship (422).
    pub fn invalid_attribute(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(422, "invalid_attribute", "Unprocessable Entity", detail).with_pointer(pointer)
    }

    pub fn required(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(422, "required", "Unprocessable Entity", detail).with_pointer(pointer)
    }

    pub fn internal() -> Self {
        Self::new(500, "internal_error", "Internal Server Error", "an unexpected error occurred")
    }
}

/// A document holding one or more errors; its HTTP status is the first error's
/// (all errors produced together share a status in this code base).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorDocument {
    pub errors: Vec<ApiError>,
}

impl ErrorDocument {
    pub fn status(&self) -> u16 {
        self.errors.first().map_or(500, |e| e.status)
    }
}

impl From<ApiError> for ErrorDocument {
    fn from(error: ApiError) -> Self {
        ErrorDocument { errors: vec![error] }
    }
}

impl From<Vec<ApiError>> for ErrorDocument {
    fn from(errors: Vec<ApiError>) -> Self {
        ErrorDocument { errors }
    }
}
