//! The one JSON:API layer every Management API resource goes through:
//! documents, request bodies, query parameters and error objects.
//!
//! This crate is transport-neutral (no HTTP framework types); the server turns
//! [`ErrorDocument`]s into responses.

pub mod body;
pub mod document;
pub mod error;
pub mod query;

pub use body::{Relationships, parse_create, parse_update};
pub use document::{Document, Links, ResourceObject};
pub use error::{ApiError, ErrorDocument};
pub use query::{
    Cursor, Direction, FieldKind, Filter, FilterOp, ListParams, Page, QuerySpec, Scalar, SortKey,
    encode_cursor, parse_fetch, parse_list,
};

/// The JSON:API media type.
pub const MEDIA_TYPE: &str = "application/vnd.api+json";
