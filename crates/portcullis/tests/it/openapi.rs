//! `/api/openapi.json` is generated from the resource declarations; these
//! tests hold it to the routes the server really answers.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::db_test;

const METHODS: [&str; 5] = ["get", "post", "patch", "put", "delete"];

fn method(name: &str) -> Method {
    Method::from_bytes(name.to_ascii_uppercase().as_bytes()).expect("method")
}

/// Follows a local `$ref` (`#/components/...`) in `document`.
fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    document.pointer(reference.strip_prefix('#')?)
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => out.push(reference.clone()),
                    _ => collect_refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

db_test!(openapi_document_is_valid_and_names_every_scope_it_uses, |server| {
    // Served without a token, to the environment's host, as OpenAPI 3.1.
    let response = server.http.get(server.url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["servers"][0]["url"], server.issuer("acme-test"));
    let flows = &document["components"]["securitySchemes"]["bearer"]["flows"]["clientCredentials"];
    assert_eq!(flows["tokenUrl"], server.url("/oauth/token"));

    let mut references = Vec::new();
    collect_refs(&document, &mut references);
    assert!(!references.is_empty());
    for reference in &references {
        assert!(resolve(&document, reference).is_some(), "dangling $ref {reference}");
    }

    // Every scope an operation requires is one the token endpoint grants.
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() > 20, "{} paths", paths.len());
    for (path, item) in paths {
        for verb in METHODS {
            let Some(operation) = item.get(verb) else { continue };
            let scope = operation["security"][0]["bearer"][0].as_str().unwrap_or_default();
            assert!(flows["scopes"].get(scope).is_some(), "{verb} {path} requires unknown scope `{scope}`");
        }
    }
});

db_test!(openapi_paths_and_methods_are_exactly_the_routes_served, |server| {
    let token = server.admin_token().await;
    let document: Value =
        server.http.get(server.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    let paths = document["paths"].as_object().expect("paths");
    for (path, item) in paths {
        // A member route with an id that does not exist: the resource's own
        // 404, never the router's "no such route".
        let concrete = path.replace("{id}", "00000000-0000-7000-8000-000000000000");
        for verb in METHODS {
            let (status, body) = server.api(method(verb), &concrete, &token, None).await;
            let detail = body["errors"][0]["detail"].as_str().unwrap_or_default().to_owned();
            if item.get(verb).is_some() {
                assert_ne!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{verb} {path} is documented but not served"
                );
                assert_ne!(detail, "no such route", "{verb} {path} is documented but not routed");
                assert!(!status.is_server_error(), "{verb} {path}: {status} {body}");
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{verb} {path} is served but not documented"
                );
            }
        }
    }
});
