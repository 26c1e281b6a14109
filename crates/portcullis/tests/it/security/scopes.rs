//! Authorization is decided in one place, the services: every operation the
//! OpenAPI document lists is refused (403, nothing written) to a token
//! holding every Management API scope but the one the document names for
//! it, even with a body the document allows, and is not refused to a token
//! holding that scope alone; and every scope the document advertises guards
//! some operation.

use std::collections::{BTreeSet, HashMap};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::assert_error;
use crate::db_test;
use crate::oauth::support::management_client;

/// Audited writes; issuing the tokens above is audited too.
const WRITES: &str = "SELECT COUNT(*) FROM audit_events WHERE action <> 'token.issued'";

db_test!(every_documented_operation_needs_exactly_its_documented_scope, |server| {
    let admin = server.admin_token().await;
    let document: Value =
        server.http.get(server.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    let all_scopes: Vec<String> =
        document["components"]["securitySchemes"]["bearer"]["flows"]["clientCredentials"]["scopes"]
            .as_object()
            .expect("scopes in the document")
            .keys()
            .cloned()
            .collect();
    assert!(all_scopes.len() >= 30, "{all_scopes:?}");
    let scope_refs: Vec<&str> = all_scopes.iter().map(String::as_str).collect();
    let (_, creds) = management_client(&server, &admin, "Every scope", &scope_refs).await;

    // Tokens per required scope: all the others, and that one alone.
    let mut without: HashMap<String, String> = HashMap::new();
    let mut only: HashMap<String, String> = HashMap::new();
    let mut operations = 0;
    let mut guarding = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if !["get", "post", "patch", "put", "delete"].contains(&method.as_str()) {
                continue; // path-level `parameters`
            }
            let Some(security) = operation.get("security") else {
                panic!("{method} {path} has no security requirement");
            };
            let required = security[0]["bearer"].as_array().unwrap();
            assert_eq!(required.len(), 1, "{method} {path}: {security}");
            let scope = required[0].as_str().unwrap().to_owned();
            assert!(all_scopes.contains(&scope), "{method} {path} names an undeclared scope {scope}");
            guarding.insert(scope.clone());
            if !without.contains_key(&scope) {
                let others: Vec<&str> = scope_refs.iter().copied().filter(|s| *s != scope).collect();
                let token = server.management_token("acme-test", &creds, Some(&others.join(" "))).await;
                without.insert(scope.clone(), token);
                let token = server.management_token("acme-test", &creds, Some(&scope)).await;
                only.insert(scope.clone(), token);
            }

            // No such resource, and the smallest body the document allows:
            // the service checks the scope before it looks anything up.
            let url = path.replace("{id}", "00000000-0000-0000-0000-000000000000");
            let body = operation
                .get("requestBody")
                .map(|body| example(&body["content"]["application/vnd.api+json"]["schema"]));
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let writes_before = server.count(WRITES).await;
            let (status, reply) = server.api(method.clone(), &url, &without[&scope], body.clone()).await;
            assert_error(status, &reply, 403, "forbidden", None);
            let detail = reply["errors"][0]["detail"].as_str().unwrap();
            assert!(detail.contains(&scope), "{method} {url}: the error names {scope}: {reply}");
            assert_eq!(server.count(WRITES).await, writes_before, "{method} {url} wrote while refused");

            let (status, reply) = server.api(method.clone(), &url, &only[&scope], body).await;
            assert_ne!(status, StatusCode::FORBIDDEN, "{method} {url} refused {scope} alone: {reply}");
            assert!(status.is_success() || status.is_client_error(), "{method} {url}: {status} {reply}");
            operations += 1;
        }
    }
    assert!(operations >= 60, "only {operations} operations documented");
    let advertised: BTreeSet<String> = all_scopes.iter().cloned().collect();
    assert_eq!(guarding, advertised, "advertised scopes that guard nothing, or the reverse");
});

/// The smallest value `schema` allows: required members only, the first
/// allowed value, one of each type.
fn example(schema: &Value) -> Value {
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(value) = schema["enum"].as_array().and_then(|values| values.iter().find(|v| !v.is_null())) {
        return value.clone();
    }
    let ty = match &schema["type"] {
        Value::String(ty) => ty.as_str(),
        Value::Array(types) => {
            types.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null")
        }
        _ => "object",
    };
    match ty {
        "object" => {
            let required = schema["required"].as_array().cloned().unwrap_or_default();
            let members = required
                .iter()
                .filter_map(Value::as_str)
                .map(|name| (name.to_owned(), example(&schema["properties"][name])));
            Value::Object(members.collect())
        }
        "array" if schema["minItems"].as_u64().unwrap_or(0) > 0 => json!([example(&schema["items"])]),
        "array" => json!([]),
        "string" if schema["format"] == "date-time" => json!("2026-01-01T00:00:00Z"),
        "string" => json!("x"),
        "integer" | "number" => json!(schema["minimum"].as_i64().unwrap_or(1).max(1)),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}
