//! Generic, environment-scoped CRUD for tables declared as [`Record`]s.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, QueryBuilder};

use crate::{Result, classify};

/// A value to bind, typed the way `Any` encodes on both backends.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(Some(v.to_owned()))
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(Some(v))
    }
}
impl From<&String> for SqlValue {
    fn from(v: &String) -> Self {
        SqlValue::Text(Some(v.clone()))
    }
}
impl From<Option<String>> for SqlValue {
    fn from(v: Option<String>) -> Self {
        SqlValue::Text(v)
    }
}
impl From<&Option<String>> for SqlValue {
    fn from(v: &Option<String>) -> Self {
        SqlValue::Text(v.clone())
    }
}
impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(Some(v))
    }
}
impl From<Option<i64>> for SqlValue {
    fn from(v: Option<i64>) -> Self {
        SqlValue::Int(v)
    }
}
impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Bool(v)
    }
}

pub(crate) fn push_value(qb: &mut QueryBuilder<sqlx::Any>, value: &SqlValue) {
    match value {
        SqlValue::Text(v) => qb.push_bind(v.clone()),
        SqlValue::Int(v) => qb.push_bind(*v),
        SqlValue::Bool(v) => qb.push_bind(*v),
    };
}

/// A row type stored in one table with `id` and `environment_id` columns.
/// `COLUMNS` lists every column in the order `values` returns them.
pub trait Record: for<'r> FromRow<'r, AnyRow> + Send + Unpin + 'static {
    const TABLE: &'static str;
    const COLUMNS: &'static [&'static str];
    /// Columns a generic update never touches.
    const IMMUTABLE: &'static [&'static str] = &["id", "environment_id", "inserted_at"];

    fn id(&self) -> &str;
    fn values(&self) -> Vec<SqlValue>;
}

fn column_list<R: Record>() -> String {
    R::COLUMNS.join(", ")
}

pub async fn insert<R: Record>(conn: &mut AnyConnection, record: &R) -> Result<()> {
    let mut qb = QueryBuilder::new(format!("INSERT INTO {} ({}) VALUES (", R::TABLE, column_list::<R>()));
    let mut values = qb.separated(", ");
    for value in record.values() {
        match value {
            SqlValue::Text(v) => values.push_bind(v),
            SqlValue::Int(v) => values.push_bind(v),
            SqlValue::Bool(v) => values.push_bind(v),
        };
    }
    qb.push(")");
    qb.build().execute(conn).await.map_err(classify)?;
    Ok(())
}

/// Writes every mutable column of `record` back to its row.
pub async fn update<R: Record>(conn: &mut AnyConnection, environment_id: &str, record: &R) -> Result<()> {
    let mut qb = QueryBuilder::new(format!("UPDATE {} SET ", R::TABLE));
    let mut first = true;
    for (column, value) in R::COLUMNS.iter().zip(record.values()) {
        if R::IMMUTABLE.contains(column) {
            continue;
        }
        if !first {
            qb.push(", ");
        }
        first = false;
        qb.push(*column).push(" = ");
        push_value(&mut qb, &value);
    }
    qb.push(" WHERE id = ").push_bind(record.id().to_owned());
    qb.push(" AND environment_id = ").push_bind(environment_id.to_owned());
    let done = qb.build().execute(conn).await.map_err(classify)?;
    if done.rows_affected() == 0 {
        return Err(crate::StoreError::NotFound);
    }
    Ok(())
}

pub async fn find<R: Record>(conn: &mut AnyConnection, environment_id: &str, id: &str) -> Result<Option<R>> {
    find_by::<R>(conn, environment_id, "id", id).await
}

/// The row whose `column` equals `value`, in this environment.
pub async fn find_by<R: Record>(
    conn: &mut AnyConnection,
    environment_id: &str,
    column: &str,
    value: &str,
) -> Result<Option<R>> {
    let mut qb =
        QueryBuilder::new(format!("SELECT {} FROM {} WHERE environment_id = ", column_list::<R>(), R::TABLE));
    qb.push_bind(environment_id.to_owned());
    qb.push(format!(" AND {column} = ")).push_bind(value.to_owned());
    qb.build_query_as::<R>().fetch_optional(conn).await.map_err(classify)
}

/// Rows of this environment whose `column` is one of `values`.
pub async fn find_in<R: Record>(
    conn: &mut AnyConnection,
    environment_id: &str,
    column: &str,
    values: &[String],
) -> Result<Vec<R>> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb =
        QueryBuilder::new(format!("SELECT {} FROM {} WHERE environment_id = ", column_list::<R>(), R::TABLE));
    qb.push_bind(environment_id.to_owned());
    qb.push(format!(" AND {column} IN ("));
    let mut list = qb.separated(", ");
    for value in values {
        list.push_bind(value.clone());
    }
    qb.push(") ORDER BY id");
    qb.build_query_as::<R>().fetch_all(conn).await.map_err(classify)
}

pub async fn delete<R: Record>(conn: &mut AnyConnection, environment_id: &str, id: &str) -> Result<bool> {
    let mut qb = QueryBuilder::new(format!("DELETE FROM {} WHERE id = ", R::TABLE));
    qb.push_bind(id.to_owned()).push(" AND environment_id = ").push_bind(environment_id.to_owned());
    let done = qb.build().execute(conn).await.map_err(classify)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) fn select_columns<R: Record>() -> String {
    column_list::<R>()
}
