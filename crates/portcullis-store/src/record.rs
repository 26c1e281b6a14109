//! Generic, environment-scoped CRUD for tables declared as [`Record`]s.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow};

use crate::sql::Sql;

use crate::Result;

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
    let mut sql = Sql::new(format!("INSERT INTO {} ({}) VALUES (", R::TABLE, column_list::<R>()));
    sql.bind_list(&record.values()).push(")");
    sql.execute(conn).await?;
    Ok(())
}

/// Rows per multi-row `INSERT`: few statements per batch, and full chunks
/// share one SQL text, so the prepared statement is reused. (At most 32766
/// bound values per statement on SQLite, 65535 on PostgreSQL.)
const ROWS_PER_INSERT: usize = 500;

/// Inserts many rows with multi-row `INSERT`s: one statement per chunk, so a
/// batch of audit events costs a handful of statements, not two per event.
pub async fn insert_many<R: Record>(conn: &mut AnyConnection, records: &[R]) -> Result<()> {
    let per_statement = ROWS_PER_INSERT;
    for chunk in records.chunks(per_statement) {
        let mut sql = Sql::new(format!("INSERT INTO {} ({}) VALUES ", R::TABLE, column_list::<R>()));
        for (i, record) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.bind_list(&record.values()).push(")");
        }
        sql.execute(conn).await?;
    }
    Ok(())
}

/// Writes every mutable column of `record` back to its row.
pub async fn update<R: Record>(conn: &mut AnyConnection, environment_id: &str, record: &R) -> Result<()> {
    let mut sql = Sql::new(format!("UPDATE {} SET ", R::TABLE));
    let mut first = true;
    for (column, value) in R::COLUMNS.iter().zip(record.values()) {
        if R::IMMUTABLE.contains(column) {
            continue;
        }
        if !first {
            sql.push(", ");
        }
        first = false;
        sql.push(column).push(" = ").bind_value(&value);
    }
    sql.push(" WHERE id = ").bind(record.id().to_owned());
    sql.push(" AND environment_id = ").bind(environment_id.to_owned());
    if sql.execute(conn).await? == 0 {
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
    let mut sql =
        Sql::new(format!("SELECT {} FROM {} WHERE environment_id = ", column_list::<R>(), R::TABLE));
    sql.bind(environment_id.to_owned());
    sql.push(&format!(" AND {column} = ")).bind(value.to_owned());
    sql.fetch_optional(conn).await
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
    let mut sql =
        Sql::new(format!("SELECT {} FROM {} WHERE environment_id = ", column_list::<R>(), R::TABLE));
    sql.bind(environment_id.to_owned());
    sql.push(&format!(" AND {column} IN ("));
    let values: Vec<SqlValue> = values.iter().map(SqlValue::from).collect();
    sql.bind_list(&values).push(") ORDER BY id");
    sql.fetch_all(conn).await
}

pub async fn delete<R: Record>(conn: &mut AnyConnection, environment_id: &str, id: &str) -> Result<bool> {
    let mut sql = Sql::new(format!("DELETE FROM {} WHERE id = ", R::TABLE));
    sql.bind(id.to_owned()).push(" AND environment_id = ").bind(environment_id.to_owned());
    Ok(sql.execute(conn).await? > 0)
}

/// The column list of `R`, for a `SELECT` the generic functions do not cover.
pub fn select_columns<R: Record>() -> String {
    column_list::<R>()
}
