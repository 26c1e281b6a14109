//! A minimal SQL builder for the `Any` driver that numbers placeholders
//! `$1, $2, ...`, which both SQLite and PostgreSQL accept. (sqlx's
//! `QueryBuilder<Any>` emits `?`, which PostgreSQL rejects.)

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{AnyConnection, Arguments, Encode, FromRow, Type};

use crate::record::SqlValue;
use crate::{Result, classify};

#[derive(Default)]
pub struct Sql {
    text: String,
    args: AnyArguments,
    count: usize,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Sql { text: text.into(), args: AnyArguments::default(), count: 0 }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: for<'q> Encode<'q, sqlx::Any> + Type<sqlx::Any> + Send + 'static,
    {
        self.count += 1;
        self.args.add(value).expect("encoding a bind value");
        self.text.push('$');
        self.text.push_str(&self.count.to_string());
        self
    }

    pub fn bind_value(&mut self, value: &SqlValue) -> &mut Self {
        match value {
            SqlValue::Text(v) => self.bind(v.clone()),
            SqlValue::Int(v) => self.bind(*v),
            SqlValue::Bool(v) => self.bind(*v),
        }
    }

    /// Binds each value, comma-separated.
    pub fn bind_list<'a>(&mut self, values: impl IntoIterator<Item = &'a SqlValue>) -> &mut Self {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind_value(value);
        }
        self
    }

    pub async fn execute(self, conn: &mut AnyConnection) -> Result<u64> {
        let done = sqlx::query_with(sqlx::AssertSqlSafe(self.text), self.args)
            .execute(conn)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }

    pub async fn fetch_all<R: for<'r> FromRow<'r, AnyRow> + Send + Unpin>(
        self,
        conn: &mut AnyConnection,
    ) -> Result<Vec<R>> {
        sqlx::query_as_with(sqlx::AssertSqlSafe(self.text), self.args).fetch_all(conn).await.map_err(classify)
    }

    pub async fn fetch_optional<R: for<'r> FromRow<'r, AnyRow> + Send + Unpin>(
        self,
        conn: &mut AnyConnection,
    ) -> Result<Option<R>> {
        sqlx::query_as_with(sqlx::AssertSqlSafe(self.text), self.args)
            .fetch_optional(conn)
            .await
            .map_err(classify)
    }

    pub async fn fetch_rows(self, conn: &mut AnyConnection) -> Result<Vec<AnyRow>> {
        sqlx::query_with(sqlx::AssertSqlSafe(self.text), self.args).fetch_all(conn).await.map_err(classify)
    }
}
