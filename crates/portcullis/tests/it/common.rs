//! Helpers shared by every test area: reading ids out of JSON:API documents,
//! creating resources through the Management API, finding the system
//! Management API, and JSON:API error-document assertions.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::TestServer;

/// The password every user created here gets.
pub const PASSWORD: &str = "correct horse battery";

/// The `id` of a single-resource document (`data.id`).
#[track_caller]
pub fn id_of(document: &Value) -> String {
    document["data"]["id"].as_str().unwrap_or_else(|| panic!("no data.id in {document}")).to_owned()
}

/// The ids of a collection document's primary data, in order.
#[track_caller]
pub fn ids(document: &Value) -> Vec<String> {
    document["data"]
        .as_array()
        .unwrap_or_else(|| panic!("data is not an array: {document}"))
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Creates a user with `attributes` (at least an `email`) and a valid
/// password; returns its id.
pub async fn create_user(server: &TestServer, token: &str, attributes: Value) -> String {
    let mut attributes = attributes;
    attributes["password"] = json!(PASSWORD);
    attributes["password_confirmation"] = json!(PASSWORD);
    id_of(&server.create(token, "/api/users", "user", attributes, Value::Null).await)
}

pub async fn create_role(server: &TestServer, token: &str, name: &str) -> String {
    id_of(&server.create(token, "/api/roles", "role", json!({"name": name}), Value::Null).await)
}

pub async fn create_permission(server: &TestServer, token: &str, name: &str) -> String {
    id_of(&server.create(token, "/api/permissions", "permission", json!({"name": name}), Value::Null).await)
}

/// Creates a resource server named `API {identifier}`; returns its id.
pub async fn create_api(server: &TestServer, token: &str, identifier: &str) -> String {
    let attributes = json!({"name": format!("API {identifier}"), "identifier": identifier});
    id_of(&server.create(token, "/api/resource-servers", "resource_server", attributes, Value::Null).await)
}

/// Creates a scope `name` on resource server `api`; returns its id.
pub async fn create_scope(server: &TestServer, token: &str, api: &str, name: &str) -> String {
    let relationships = json!({"resource_server": {"data": {"type": "resource_server", "id": api}}});
    id_of(&server.create(token, "/api/scopes", "scope", json!({"name": name}), relationships).await)
}

/// The id of the environment's system Management API resource server.
pub async fn system_api(server: &TestServer, token: &str) -> String {
    let (status, body) =
        server.api(Method::GET, "/api/resource-servers?filter[system]=true", token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1), "{body}");
    body["data"][0]["id"].as_str().expect("system API").to_owned()
}

/// Asserts a JSON:API error document: the HTTP status, and a first error with
/// `status` (as a string), `code`, a `title`, a `detail` and, when given,
/// `source.pointer`; and no `data`. Returns that first error.
#[track_caller]
pub fn assert_error(
    status: StatusCode,
    body: &Value,
    expected: u16,
    code: &str,
    pointer: Option<&str>,
) -> Value {
    assert_eq!(status.as_u16(), expected, "unexpected status; body: {body}");
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("not an error document: {body}"));
    assert!(!errors.is_empty(), "empty errors array: {body}");
    let error = errors[0].clone();
    assert_eq!(error["status"], json!(expected.to_string()), "status must be a string: {body}");
    assert_eq!(error["code"], code, "error code: {body}");
    assert!(error["title"].as_str().is_some_and(|t| !t.is_empty()), "title: {body}");
    assert!(error["detail"].as_str().is_some_and(|d| !d.is_empty()), "detail: {body}");
    if let Some(pointer) = pointer {
        assert_eq!(error["source"]["pointer"], pointer, "source.pointer: {body}");
    }
    assert!(body.get("data").is_none(), "an error document has no data: {body}");
    error
}

/// A 422 `invalid_attribute` error on `/data/attributes/{attribute}`.
#[track_caller]
pub fn assert_invalid(status: StatusCode, body: &Value, attribute: &str) {
    assert_error(status, body, 422, "invalid_attribute", Some(&format!("/data/attributes/{attribute}")));
}

/// A 409 `conflict` error with the given pointer.
#[track_caller]
pub fn assert_conflict(status: StatusCode, body: &Value, pointer: &str) {
    assert_error(status, body, 409, "conflict", Some(pointer));
}

/// A 404 `not_found` error.
#[track_caller]
pub fn assert_not_found(status: StatusCode, body: &Value) {
    assert_error(status, body, 404, "not_found", None);
}
