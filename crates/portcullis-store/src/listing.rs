//! Collection queries: conditions, ordering and offset or keyset windows,
//! always scoped to one environment. Column expressions come from resource
//! declarations in code, never from requests; values are always bound.

use sqlx::{AnyConnection, Row};

use crate::record::{Record, SqlValue, select_columns};
use crate::sql::Sql;
use crate::{Result, classify};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CondOp {
    Eq,
    /// Case-insensitive equality.
    EqCi,
    /// Case-insensitive substring match.
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// A column or SQL expression declared by the resource.
    pub expr: &'static str,
    pub op: CondOp,
    pub value: SqlValue,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub expr: &'static str,
    pub desc: bool,
    /// Compare `lower(expr)`: case-insensitive order, served by the same
    /// `lower(...)` index that case-insensitive uniqueness needs.
    pub fold_case: bool,
}

impl OrderBy {
    fn push_expr(&self, qb: &mut Sql) {
        if self.fold_case {
            qb.push("lower(").push(self.expr).push(")");
        } else {
            qb.push(self.expr);
        }
    }

    fn push_value(&self, qb: &mut Sql, value: &SqlValue) {
        if self.fold_case {
            qb.push("lower(").bind_value(value).push(")");
        } else {
            qb.bind_value(value);
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    Offset {
        limit: u32,
        offset: u64,
    },
    /// Rows strictly after the row with these sort values and id.
    After {
        limit: u32,
        values: Vec<SqlValue>,
        id: String,
    },
    /// Rows strictly before it (returned in normal order).
    Before {
        limit: u32,
        values: Vec<SqlValue>,
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub conditions: Vec<Condition>,
    /// Ties are broken by `id`, in the direction of the first key.
    pub order: Vec<OrderBy>,
    pub window: Window,
}

/// One page of rows, plus whether more rows lie beyond it in the direction read.
#[derive(Debug)]
pub struct Slice<R> {
    pub rows: Vec<R>,
    pub more: bool,
}

fn push_conditions(qb: &mut Sql, environment_id: &str, conditions: &[Condition]) {
    qb.push(" WHERE environment_id = ").bind(environment_id.to_owned());
    for condition in conditions {
        qb.push(" AND ");
        match condition.op {
            CondOp::Eq => {
                qb.push(condition.expr).push(" = ").bind_value(&condition.value);
            }
            CondOp::EqCi => {
                qb.push(&format!("lower({}) = lower(", condition.expr))
                    .bind_value(&condition.value)
                    .push(")");
            }
            CondOp::Contains => {
                let needle = match &condition.value {
                    SqlValue::Text(Some(text)) => text.as_str(),
                    _ => "",
                };
                let escaped = needle.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                // Both sides are folded by the database, so they fold alike
                // (SQLite's lower() only folds ASCII).
                qb.push(&format!("lower({}) LIKE lower(", condition.expr))
                    .bind(format!("%{escaped}%"))
                    .push(") ESCAPE '\\'");
            }
        }
    }
}

/// Ids break ties in the direction of the first sort key: ids are UUIDv7,
/// so on `-inserted_at` rows from the same microsecond still list newest
/// first.
fn id_desc(order: &[OrderBy]) -> bool {
    order.first().is_some_and(|key| key.desc)
}

/// `(e1, e2, id) > (v1, v2, id0)` for mixed directions, as an OR of prefixes.
fn push_keyset(qb: &mut Sql, order: &[OrderBy], values: &[SqlValue], id: &str, forward: bool) {
    qb.push(" AND (");
    for i in 0..=order.len() {
        if i > 0 {
            qb.push(" OR ");
        }
        qb.push("(");
        for (j, key) in order.iter().take(i).enumerate() {
            key.push_expr(qb);
            qb.push(" = ");
            key.push_value(qb, &values[j]);
            qb.push(" AND ");
        }
        match order.get(i) {
            Some(key) => {
                let greater = key.desc != forward; // ascending + forward reads greater values
                key.push_expr(qb);
                qb.push(if greater { " > " } else { " < " });
                key.push_value(qb, &values[i]);
            }
            None => {
                // The id tie-break runs in the first key's direction.
                let greater = id_desc(order) != forward;
                qb.push(if greater { "id > " } else { "id < " }).bind(id.to_owned());
            }
        }
        qb.push(")");
    }
    qb.push(")");
}

fn push_order(qb: &mut Sql, order: &[OrderBy], reverse: bool) {
    qb.push(" ORDER BY ");
    for key in order {
        let desc = key.desc != reverse;
        key.push_expr(qb);
        qb.push(if desc { " DESC, " } else { " ASC, " });
    }
    qb.push(if id_desc(order) != reverse { "id DESC" } else { "id ASC" });
}

pub async fn list<R: Record>(
    conn: &mut AnyConnection,
    environment_id: &str,
    listing: &Listing,
) -> Result<Slice<R>> {
    let mut qb = Sql::new(format!("SELECT {} FROM {}", select_columns::<R>(), R::TABLE));
    push_conditions(&mut qb, environment_id, &listing.conditions);
    let (limit, reverse) = match &listing.window {
        Window::Offset { limit, .. } => (*limit, false),
        Window::After { limit, values, id } => {
            push_keyset(&mut qb, &listing.order, values, id, true);
            (*limit, false)
        }
        Window::Before { limit, values, id } => {
            push_keyset(&mut qb, &listing.order, values, id, false);
            (*limit, true)
        }
    };
    push_order(&mut qb, &listing.order, reverse);
    qb.push(" LIMIT ").bind(i64::from(limit) + 1);
    if let Window::Offset { offset, .. } = listing.window {
        qb.push(" OFFSET ").bind(offset as i64);
    }
    let mut rows: Vec<R> = qb.fetch_all(conn).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    if reverse {
        rows.reverse();
    }
    Ok(Slice { rows, more })
}

pub async fn count<R: Record>(
    conn: &mut AnyConnection,
    environment_id: &str,
    conditions: &[Condition],
) -> Result<i64> {
    let mut qb = Sql::new(format!("SELECT COUNT(*) AS n FROM {}", R::TABLE));
    push_conditions(&mut qb, environment_id, conditions);
    let rows = qb.fetch_rows(conn).await?;
    rows.first().map_or(Ok(0), |row| row.try_get::<i64, _>("n").map_err(classify))
}
