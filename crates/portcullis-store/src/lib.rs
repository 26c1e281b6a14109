//! Storage for Portcullis on SQLite (embedded default) and PostgreSQL, through
//! one code path on sqlx's `Any` driver.
//!
//! Every write goes through [`WriteTx`], whose `commit` refuses to commit a
//! transaction that did not record its audit event and outbox event: a change
//! and the record of it land together or not at all.

pub mod db;
pub mod listing;
pub mod model;
pub mod private_fs;
pub mod record;
pub mod repo;
pub mod sql;
pub mod types;

pub use db::{Backend, Db, WriteTx};
pub use listing::{CondOp, Condition, Listing, OrderBy, Window};
pub use record::{Record, SqlValue};
pub use types::{DbBool, JsonText};

/// Errors from the store. Services map them to their own error type.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint failed; the payload names the index (PostgreSQL) or
    /// carries SQLite's message, which names the index or the columns.
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    /// A foreign key pointed at a row that does not exist.
    #[error("foreign key violated")]
    ForeignKey,
    #[error("a write transaction was committed without its audit event")]
    Unaudited,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether this is the unique violation of `index` (named in both schemas).
    pub fn is_conflict_on(&self, index: &str) -> bool {
        matches!(self, StoreError::Conflict(what) if what.contains(index))
    }
}

pub(crate) fn classify(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        match db.kind() {
            sqlx::error::ErrorKind::UniqueViolation => {
                let what = db.constraint().map_or_else(|| db.message().to_owned(), str::to_owned);
                return StoreError::Conflict(what);
            }
            sqlx::error::ErrorKind::ForeignKeyViolation => return StoreError::ForeignKey,
            _ => {}
        }
    }
    if matches!(error, sqlx::Error::RowNotFound) {
        return StoreError::NotFound;
    }
    StoreError::Database(error)
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Microseconds since the Unix epoch, the unit of every stored timestamp.
pub fn now_micros() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// A duration in the unit of stored timestamps, for `now_micros() + …`.
pub fn micros(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// A new time-ordered resource id (UUIDv7).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Formats stored microseconds as RFC 3339 UTC, the API's timestamp format.
pub fn listing_time(micros: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}
