//! A minimal SQL builder for the `Any` driver. It records where each bound
//! value goes and renders the placeholders for the connection's backend when
//! the statement runs: `$1, $2, ...` on PostgreSQL, plain `?` on SQLite.
//! (sqlx's `QueryBuilder<Any>` always emits `?`, which PostgreSQL rejects;
//! numbered parameters on SQLite cost a scan of the statement's parameter
//! list per bound value, which made large multi-row inserts quadratic.)

use std::fmt::Write;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{AnyConnection, Arguments, Encode, FromRow, Type};

use crate::record::SqlValue;
use crate::{Result, classify};

#[derive(Default)]
pub struct Sql {
    text: String,
    args: AnyArguments,
    /// Byte offsets in `text` where the placeholders go, in binding order.
    placeholders: Vec<usize>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Sql { text: text.into(), args: AnyArguments::default(), placeholders: Vec::new() }
    }

    /// The statement text for `conn`'s backend.
    fn render(&self, conn: &AnyConnection) -> String {
        let numbered = !conn.backend_name().eq_ignore_ascii_case("sqlite");
        let mut out = String::with_capacity(self.text.len() + self.placeholders.len() * 4);
        let mut from = 0;
        for (i, &at) in self.placeholders.iter().enumerate() {
            out.push_str(&self.text[from..at]);
            if numbered {
                let _ = write!(out, "${}", i + 1);
            } else {
                out.push('?');
            }
            from = at;
        }
        out.push_str(&self.text[from..]);
        out
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: for<'q> Encode<'q, sqlx::Any> + Type<sqlx::Any> + Send + 'static,
    {
        self.args.add(value).expect("encoding a bind value");
        self.placeholders.push(self.text.len());
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
        let done = sqlx::query_with(sqlx::AssertSqlSafe(self.render(conn)), self.args)
            .execute(conn)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }

    pub async fn fetch_all<R: for<'r> FromRow<'r, AnyRow> + Send + Unpin>(
        self,
        conn: &mut AnyConnection,
    ) -> Result<Vec<R>> {
        sqlx::query_as_with(sqlx::AssertSqlSafe(self.render(conn)), self.args)
            .fetch_all(conn)
            .await
            .map_err(classify)
    }

    pub async fn fetch_optional<R: for<'r> FromRow<'r, AnyRow> + Send + Unpin>(
        self,
        conn: &mut AnyConnection,
    ) -> Result<Option<R>> {
        sqlx::query_as_with(sqlx::AssertSqlSafe(self.render(conn)), self.args)
            .fetch_optional(conn)
            .await
            .map_err(classify)
    }

    pub async fn fetch_rows(self, conn: &mut AnyConnection) -> Result<Vec<AnyRow>> {
        sqlx::query_with(sqlx::AssertSqlSafe(self.render(conn)), self.args)
            .fetch_all(conn)
            .await
            .map_err(classify)
    }
}
