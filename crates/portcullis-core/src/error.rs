//! The service-level error type. Transports map it to their own format.

use portcullis_store::StoreError;

/// Which part of the input an error is about, for `source.pointer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Attribute(&'static str),
    Relationship(&'static str),
    /// The resource as a whole (e.g. a delete that would break a rule).
    Resource,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Invalid { field: Field, message: String },
    #[error("{message}")]
    Conflict { field: Field, message: String },
    #[error("{0}")]
    Forbidden(String),
    /// The caller lacks the Management API scope this needs; `withdrawn`:
    /// its token names the scope, but its client's grant no longer allows it.
    #[error("this needs the `{grant}` scope")]
    MissingGrant { grant: crate::authz::Grant, withdrawn: bool },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid { field: Field::Attribute(field), message: message.into() }
    }

    pub fn invalid_relationship(field: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid { field: Field::Relationship(field), message: message.into() }
    }

    pub fn conflict(field: Field, message: impl Into<String>) -> Self {
        ServiceError::Conflict { field, message: message.into() }
    }
}

impl From<portcullis_crypto::CryptoError> for ServiceError {
    fn from(error: portcullis_crypto::CryptoError) -> Self {
        ServiceError::Internal(error.to_string())
    }
}

/// Maps a unique violation to a conflict on `field`. `markers` name the index
/// (PostgreSQL reports it) and `table.column` (SQLite reports columns).
pub(crate) fn conflict_on(
    markers: &'static [&'static str],
    field: Field,
    message: &'static str,
) -> impl Fn(StoreError) -> ServiceError {
    move |error| {
        if markers.iter().any(|m| error.is_conflict_on(m)) {
            ServiceError::conflict(field.clone(), message)
        } else {
            ServiceError::Store(error)
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
