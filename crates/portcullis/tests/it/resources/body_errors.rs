//! Request bodies of every write endpoint: media type, JSON syntax, the
//! JSON:API envelope, and error documents for routing failures.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{assert_conflict, assert_error, assert_invalid, create_role, id_of};
use crate::db_test;
use crate::harness::TestServer;

/// Every collection that accepts POST, with its resource type, as the
/// OpenAPI document (generated from the resource registry) lists them.
async fn writable(server: &TestServer) -> Vec<(String, String)> {
    let document: Value =
        server.http.get(server.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    let collections: Vec<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| !path.contains('{'))
        .filter_map(|(path, item)| {
            let schema = &item["post"]["requestBody"]["content"]["application/vnd.api+json"]["schema"];
            let kind = schema["properties"]["data"]["properties"]["type"]["const"].as_str()?;
            Some((path.clone(), kind.to_owned()))
        })
        .collect();
    assert!(collections.len() >= 12, "{collections:?}");
    assert!(collections.contains(&("/api/users".into(), "user".into())), "{collections:?}");
    collections
}

/// Sends `body` as-is with `content_type`; returns status and the parsed
/// body, after checking that the response is JSON:API.
async fn raw(
    server: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let mut request = server.http.request(method, server.url(path)).bearer_auth(token).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let media_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(media_type.as_deref(), Some("application/vnd.api+json"), "{status} {path}: {text}");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status} {path}: not JSON: {text}")))
}

const JSON_API: Option<&str> = Some("application/vnd.api+json");

db_test!(wrong_type_is_a_conflict_on_every_endpoint, |server| {
    let admin = server.admin_token().await;
    for (path, kind) in writable(&server).await {
        let body = json!({"data": {"type": "widget", "attributes": {}}});
        let (status, response) = server.api(Method::POST, &path, &admin, Some(body)).await;
        assert_conflict(status, &response, "/data/type");
        assert!(response["errors"][0]["detail"].as_str().unwrap().contains(&kind), "{response}");
    }
    // The type of another resource is no better.
    let (status, body) = server
        .api(
            Method::POST,
            "/api/users",
            &admin,
            Some(json!({"data": {"type": "role", "attributes": {"name": "x"}}})),
        )
        .await;
    assert_conflict(status, &body, "/data/type");
    assert_eq!(
        server.count("SELECT COUNT(*) FROM roles").await + server.count("SELECT COUNT(*) FROM users").await,
        0
    );

    // And on PATCH.
    let role = create_role(&server, &admin, "R").await;
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("/api/roles/{role}"),
            &admin,
            Some(json!({"data": {"type": "user", "id": role, "attributes": {"name": "x"}}})),
        )
        .await;
    assert_conflict(status, &body, "/data/type");
});

db_test!(malformed_bodies_are_400_on_every_endpoint, |server| {
    let admin = server.admin_token().await;
    for (path, kind) in writable(&server).await {
        let path = path.as_str();
        for text in ["", "{", "{\"data\": }", "null", "not json", "{\"data\": {\"type\": \"x\",}}"] {
            let (status, body) = raw(&server, Method::POST, path, &admin, JSON_API, text).await;
            assert_error(status, &body, 400, "invalid_body", None);
        }
        for (document, pointer) in [
            (json!([]), "/data"),
            (json!({}), "/data"),
            (json!({"data": null}), "/data"),
            (json!({"data": []}), "/data"),
            (json!({"data": "user"}), "/data"),
            (json!({"data": {"attributes": {}}}), "/data/type"),
            (json!({"data": {"type": null}}), "/data/type"),
            (json!({"data": {"type": 7}}), "/data/type"),
            (json!({"data": {"type": kind, "attributes": []}}), "/data/attributes"),
            (json!({"data": {"type": kind, "attributes": "x"}}), "/data/attributes"),
            (json!({"data": {"type": kind, "relationships": []}}), "/data/relationships"),
        ] {
            let (status, body) =
                raw(&server, Method::POST, path, &admin, JSON_API, document.to_string()).await;
            assert_error(status, &body, 400, "invalid_body", Some(pointer));
        }
    }
});

db_test!(content_type_must_be_json_api_or_json, |server| {
    let admin = server.admin_token().await;
    let body = |name: &str| json!({"data": {"type": "role", "attributes": {"name": name}}}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/vnd.api+json; ext=\"https://example.com/ext\""),
        Some("application/vnd.api+json; charset=utf-8"),
        Some("application/xml"),
        None,
    ] {
        for (path, _) in writable(&server).await {
            let (status, response) = raw(&server, Method::POST, &path, &admin, content_type, body("R")).await;
            assert_error(status, &response, 415, "unsupported_media_type", None);
            assert_eq!(response["errors"][0]["source"]["header"], "Content-Type", "{response}");
        }
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM roles").await, 0);

    // The JSON:API media type (any case) and plain JSON are accepted.
    for (i, content_type) in [
        "application/vnd.api+json",
        "Application/VND.API+JSON",
        "application/json",
        "application/json; charset=utf-8",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, response) =
            raw(&server, Method::POST, "/api/roles", &admin, Some(content_type), body(&format!("R{i}")))
                .await;
        assert_eq!(status, StatusCode::CREATED, "{content_type}: {response}");
    }

    // PATCH is held to the same rule.
    let role = create_role(&server, &admin, "Patched").await;
    let patch = json!({"data": {"type": "role", "id": role, "attributes": {"name": "P2"}}}).to_string();
    let (status, response) =
        raw(&server, Method::PATCH, &format!("/api/roles/{role}"), &admin, Some("text/plain"), patch).await;
    assert_error(status, &response, 415, "unsupported_media_type", None);
});

db_test!(patch_id_must_match_the_url, |server| {
    let admin = server.admin_token().await;
    let role = create_role(&server, &admin, "Original").await;
    let other = create_role(&server, &admin, "Other").await;
    let path = format!("/api/roles/{role}");
    for id in [json!(other), json!(42), json!(""), json!(null)] {
        let body = json!({"data": {"type": "role", "id": id, "attributes": {"name": "Hijacked"}}});
        let (status, response) = server.api(Method::PATCH, &path, &admin, Some(body)).await;
        assert_conflict(status, &response, "/data/id");
    }
    for id in [&role, &other] {
        let (_, body) = server.api(Method::GET, &format!("/api/roles/{id}"), &admin, None).await;
        assert_ne!(body["data"]["attributes"]["name"], "Hijacked");
    }
    // Without an id, the URL decides.
    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"data": {"type": "role", "attributes": {"name": "Renamed"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["name"], "Renamed");
});

db_test!(client_generated_ids_are_refused, |server| {
    let admin = server.admin_token().await;
    let chosen = "0190f5c2-0000-7000-8000-000000000001";
    let (status, body) = server
        .api(
            Method::POST,
            "/api/roles",
            &admin,
            Some(json!({"data": {"type": "role", "id": chosen, "attributes": {"name": "Mine"}}})),
        )
        .await;
    assert_error(status, &body, 403, "forbidden", Some("/data/id"));
    assert_eq!(server.count("SELECT COUNT(*) FROM roles").await, 0);
    // An explicit null id is the same as none.
    let (status, body) = server
        .api(
            Method::POST,
            "/api/roles",
            &admin,
            Some(json!({"data": {"type": "role", "id": null, "attributes": {"name": "Mine"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_ne!(id_of(&body), chosen);
});

db_test!(unknown_attributes_point_at_the_member, |server| {
    let admin = server.admin_token().await;
    let cases = [
        (
            "/api/users",
            "user",
            json!({"email": "a@example.com", "password": "password1", "password_confirmation": "password1", "nickname": "A"}),
            "nickname",
        ),
        ("/api/roles", "role", json!({"name": "R", "permissions": []}), "permissions"),
        ("/api/permissions", "permission", json!({"name": "a:b", "roles": []}), "roles"),
        ("/api/clients", "client", json!({"name": "C", "logo_uri": "https://x"}), "logo_uri"),
        (
            "/api/resource-servers",
            "resource_server",
            json!({"name": "A", "identifier": "urn:a", "signing_alg": "RS256"}),
            "signing_alg",
        ),
        ("/api/signing-keys", "signing_key", json!({"use": "sig"}), "use"),
    ];
    for (path, kind, attributes, member) in cases {
        let (status, body) = server
            .api(Method::POST, path, &admin, Some(json!({"data": {"type": kind, "attributes": attributes}})))
            .await;
        assert_invalid(status, &body, member);
    }
    // Members nested in attributes are pointed at by index.
    let (status, body) = server
        .api(
            Method::POST,
            "/api/clients",
            &admin,
            Some(json!({"data": {"type": "client", "attributes": {"name": "C", "grant_types": ["authorization_code", 5]}}})),
        )
        .await;
    assert_invalid(status, &body, "grant_types/1");
});

db_test!(routing_errors_are_json_api_documents, |server| {
    let admin = server.admin_token().await;
    let role = create_role(&server, &admin, "R").await;
    let (status, body) = raw(&server, Method::GET, "/api/widgets", &admin, None, "").await;
    assert_error(status, &body, 404, "not_found", None);
    let (status, body) = raw(&server, Method::GET, "/nowhere", &admin, None, "").await;
    assert_error(status, &body, 404, "not_found", None);
    for (method, path) in [
        (Method::DELETE, "/api/users".to_owned()),
        (Method::PUT, format!("/api/roles/{role}")),
        (Method::POST, format!("/api/roles/{role}")),
        (Method::PATCH, "/api/roles".to_owned()),
        (Method::GET, "/api/clients/x/rotate-secret".to_owned()),
        (Method::POST, "/api/environment".to_owned()),
    ] {
        let (status, body) = raw(&server, method.clone(), &path, &admin, JSON_API, "{}").await;
        assert_error(status, &body, 405, "method_not_allowed", None);
    }
    // The 405 says what is allowed.
    let response =
        server.http.put(server.url(&format!("/api/roles/{role}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    for method in ["GET", "PATCH", "DELETE"] {
        assert!(allow.contains(method), "Allow: {allow}");
    }

    // A body over the size limit.
    let name = "n".repeat(2 * 1024 * 1024);
    let big = json!({"data": {"type": "role", "attributes": {"name": name}}}).to_string();
    let (status, body) = raw(&server, Method::POST, "/api/roles", &admin, JSON_API, big).await;
    assert_error(status, &body, 413, "payload_too_large", None);
    assert_eq!(server.count("SELECT COUNT(*) FROM roles").await, 1);
});
