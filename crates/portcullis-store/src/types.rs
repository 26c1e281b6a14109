//! Column types that decode the same on both backends through `Any`.

use serde::de::DeserializeOwned;
use sqlx::any::{Any, AnyTypeInfo, AnyTypeInfoKind, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Decode, Type};

/// A boolean stored as `BOOLEAN` on PostgreSQL and `INTEGER` 0/1 on SQLite
/// (sqlx's `Any` driver cannot read SQLite's BOOLEAN affinity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbBool(pub bool);

impl Type<Any> for DbBool {
    fn type_info() -> AnyTypeInfo {
        <bool as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        matches!(ty.kind(), AnyTypeInfoKind::Bool) || ty.kind().is_integer()
    }
}

impl<'r> Decode<'r, Any> for DbBool {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        match <bool as Decode<Any>>::decode(value.clone()) {
            Ok(b) => Ok(DbBool(b)),
            Err(_) => Ok(DbBool(<i64 as Decode<Any>>::decode(value)? != 0)),
        }
    }
}

impl From<DbBool> for bool {
    fn from(value: DbBool) -> bool {
        value.0
    }
}

/// A value stored as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonText<T>(pub T);

impl<T: DeserializeOwned> TryFrom<String> for JsonText<T> {
    type Error = serde_json::Error;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&text).map(JsonText)
    }
}
