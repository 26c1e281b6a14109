//! Helpers shared by the JSON:API layer tests: raw calls that keep the
//! response headers, JSON:API error assertions, and white-box SQL checks.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{self, id_of};
use crate::harness::TestServer;

pub const MEDIA_TYPE: &str = "application/vnd.api+json";
/// The user agent every call here sends, so audit rows can be checked for it.
pub const USER_AGENT: &str = "portcullis-jsonapi-tests/1.0";

/// A response: status, `Content-Type` and parsed body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

/// A Management API call against `handle`, keeping the response headers.
pub async fn call_at(
    server: &TestServer,
    handle: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = server
        .http
        .request(method, format!("{}{path}", server.issuer(handle)))
        .bearer_auth(token)
        .header("user-agent", USER_AGENT);
    if let Some(body) = body {
        request = request.header("content-type", MEDIA_TYPE).body(serde_json::to_vec(&body).unwrap());
    }
    let response = request.send().await.expect("api request");
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers.get("content-type").map(|v| v.to_str().expect("ascii header").to_owned());
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text}"))
    };
    Reply { status, content_type, headers, body }
}

pub async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    call_at(server, "acme-test", method, path, token, body).await
}

/// A GET that must succeed with a JSON:API document.
pub async fn get_ok(server: &TestServer, token: &str, path: &str) -> Value {
    let reply = call(server, Method::GET, path, token, None).await;
    assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.body);
    assert_eq!(reply.content_type.as_deref(), Some(MEDIA_TYPE), "GET {path}");
    assert_eq!(reply.body["jsonapi"]["version"], "1.1", "GET {path}");
    reply.body
}

impl Reply {
    /// Asserts a JSON:API error document (see [`common::assert_error`])
    /// served with the JSON:API media type; returns `errors[0]`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        self.assert_error_at(status, code, None)
    }

    /// [`Reply::assert_error`], and the error's `source.pointer` is `pointer`
    /// when given.
    #[track_caller]
    pub fn assert_error_at(&self, status: u16, code: &str, pointer: Option<&str>) -> Value {
        let error = common::assert_error(self.status, &self.body, status, code, pointer);
        assert_eq!(self.content_type.as_deref(), Some(MEDIA_TYPE), "error Content-Type; body: {}", self.body);
        error
    }

    /// A 400 `invalid_parameter` error naming `parameter` in `source.parameter`.
    #[track_caller]
    pub fn assert_bad_parameter(&self, parameter: &str) -> Value {
        let error = self.assert_error(400, "invalid_parameter");
        assert_eq!(error["source"]["parameter"], parameter, "{error}");
        error
    }
}

/// Percent-encodes a query-string value (everything but unreserved characters).
pub fn enc(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub async fn assign_role(server: &TestServer, token: &str, user: &str, role: &str) -> String {
    let created = server
        .create(
            token,
            "/api/user-roles",
            "user_role",
            json!({}),
            json!({"user": {"data": {"type": "user", "id": user}},
                   "role": {"data": {"type": "role", "id": role}}}),
        )
        .await;
    id_of(&created)
}

pub async fn assign_permission(server: &TestServer, token: &str, role: &str, permission: &str) -> String {
    let created = server
        .create(
            token,
            "/api/role-permissions",
            "role_permission",
            json!({}),
            json!({"role": {"data": {"type": "role", "id": role}},
                   "permission": {"data": {"type": "permission", "id": permission}}}),
        )
        .await;
    id_of(&created)
}

/// Runs a query returning one text column (or NULL) of at most one row.
pub async fn text(server: &TestServer, sql: &str) -> Option<String> {
    use sqlx::Row;
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_optional(server.core.db.pool())
        .await
        .expect("text query");
    row.and_then(|r| r.try_get::<Option<String>, _>(0).expect("text column"))
}

/// Every value of one text column.
pub async fn texts(server: &TestServer, sql: &str) -> Vec<String> {
    use sqlx::Row;
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(server.core.db.pool())
        .await
        .expect("texts query");
    rows.iter().map(|r| r.try_get::<String, _>(0).expect("text column")).collect()
}

/// Counts of every table a write may touch, plus audit and outbox rows other
/// than the asynchronous `token.issued` ones. Equal snapshots mean nothing
/// was written.
pub async fn snapshot(server: &TestServer) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for (name, sql) in [
        ("users", "SELECT COUNT(*) FROM users"),
        ("roles", "SELECT COUNT(*) FROM roles"),
        ("permissions", "SELECT COUNT(*) FROM permissions"),
        ("user_roles", "SELECT COUNT(*) FROM user_roles"),
        ("role_permissions", "SELECT COUNT(*) FROM role_permissions"),
        ("clients", "SELECT COUNT(*) FROM clients"),
        ("signing_keys", "SELECT COUNT(*) FROM signing_keys"),
        ("audit", "SELECT COUNT(*) FROM audit_events WHERE action <> 'token.issued'"),
        ("outbox", "SELECT COUNT(*) FROM outbox_events WHERE event_type <> 'token.issued'"),
        ("max updated_at", "SELECT COALESCE(MAX(updated_at), 0) FROM users"),
        ("max role updated_at", "SELECT COALESCE(MAX(updated_at), 0) FROM roles"),
    ] {
        out.push((name, server.count(sql).await));
    }
    out
}

/// Polls until `sql` counts at least `at_least`; returns the last count.
pub async fn wait_for_count(server: &TestServer, sql: &str, at_least: i64) -> i64 {
    for _ in 0..100 {
        let n = server.count(sql).await;
        if n >= at_least {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.count(sql).await
}

/// Waits until every `token.issued` event handed to the asynchronous sink
/// so far has been written (so later counts are stable).
pub async fn settle_token_events(server: &TestServer, tokens_issued: i64) {
    let sql = "SELECT COUNT(*) FROM audit_events WHERE action = 'token.issued'";
    let n = wait_for_count(server, sql, tokens_issued).await;
    assert!(n >= tokens_issued, "token.issued events did not arrive: {n} < {tokens_issued}");
}
