//! Assertions and small helpers shared by the resource tests.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::TestServer;

/// Asserts a JSON:API error document: the HTTP status, and a first error with
/// `status` (as a string), `code`, a `title`, a `detail` and, when given,
/// `source.pointer`.
#[track_caller]
pub fn assert_error(status: StatusCode, body: &Value, expected: u16, code: &str, pointer: Option<&str>) {
    assert_eq!(status.as_u16(), expected, "unexpected status; body: {body}");
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("not an error document: {body}"));
    assert!(!errors.is_empty(), "empty errors array: {body}");
    let error = &errors[0];
    assert_eq!(error["status"], json!(expected.to_string()), "status must be a string: {body}");
    assert_eq!(error["code"], code, "error code: {body}");
    assert!(error["title"].as_str().is_some_and(|t| !t.is_empty()), "title: {body}");
    assert!(error["detail"].as_str().is_some_and(|d| !d.is_empty()), "detail: {body}");
    if let Some(pointer) = pointer {
        assert_eq!(error["source"]["pointer"], pointer, "source.pointer: {body}");
    }
    assert!(body.get("data").is_none(), "an error document has no data: {body}");
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

/// `{"data": {"type": kind, "attributes": attributes}}`.
pub fn doc(kind: &str, attributes: Value) -> Value {
    json!({"data": {"type": kind, "attributes": attributes}})
}

/// `{"data": {"type": kind, "attributes": {}, "relationships": ...}}` with
/// to-one linkage for each `(name, type, id)`.
pub fn link_doc(kind: &str, attributes: Value, links: &[(&str, &str, &str)]) -> Value {
    let mut relationships = serde_json::Map::new();
    for (name, related, id) in links {
        relationships.insert((*name).to_owned(), json!({"data": {"type": related, "id": id}}));
    }
    json!({"data": {"type": kind, "attributes": attributes, "relationships": relationships}})
}

/// `{"data": {"type": kind, "id": id, "attributes": attributes}}`.
pub fn patch_doc(kind: &str, id: &str, attributes: Value) -> Value {
    json!({"data": {"type": kind, "id": id, "attributes": attributes}})
}

/// The `id` of a created resource document.
pub fn id_of(document: &Value) -> String {
    document["data"]["id"].as_str().unwrap_or_else(|| panic!("no data.id in {document}")).to_owned()
}

/// Creates a user with a valid password; returns its id.
pub async fn create_user(server: &TestServer, token: &str, email: &str) -> String {
    let password = "correct horse battery";
    let created = server
        .create(
            token,
            "/api/users",
            "user",
            json!({"email": email, "password": password, "password_confirmation": password}),
            Value::Null,
        )
        .await;
    id_of(&created)
}

pub async fn create_role(server: &TestServer, token: &str, name: &str) -> String {
    id_of(&server.create(token, "/api/roles", "role", json!({"name": name}), Value::Null).await)
}

pub async fn create_permission(server: &TestServer, token: &str, name: &str) -> String {
    id_of(&server.create(token, "/api/permissions", "permission", json!({"name": name}), Value::Null).await)
}

pub async fn create_api(server: &TestServer, token: &str, identifier: &str) -> String {
    let attributes = json!({"name": format!("API {identifier}"), "identifier": identifier});
    id_of(&server.create(token, "/api/resource-servers", "resource_server", attributes, Value::Null).await)
}

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
    body["data"][0]["id"].as_str().unwrap().to_owned()
}

/// SQL string literal quoting for white-box checks on ids we generated.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
