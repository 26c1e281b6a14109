//! Audit finding 13: redirect URIs are checked when a client is registered
//! or changed, since the authorization endpoint then matches them exactly.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::assert_invalid;
use crate::db_test;
use crate::harness::TestServer;

async fn register(
    server: &TestServer,
    token: &str,
    client_type: &str,
    field: &str,
    uri: &str,
) -> (StatusCode, Value) {
    let attributes = json!({"name": "App", "client_type": client_type, field: [uri]});
    server
        .api(
            Method::POST,
            "/api/clients",
            token,
            Some(json!({"data": {"type": "client", "attributes": attributes}})),
        )
        .await
}

/// Refused for every client type.
const REFUSED: &[&str] = &[
    "https://*.evil.test/cb",
    "https://app.example.com/*",
    "https://user:pw@app.example.com/cb",
    "https://user@app.example.com/cb",
    " https://app.example.com/cb",
    "https://app.example.com/cb ",
    "https://app.example.com/c b",
    "https://app.example.com/cb\n",
    "https://app.example.com/cb#",
    "https://app.example.com/cb#x",
    "http://app.example.com/cb",
    "http://127.0.0.1.evil.test/cb",
    "http://localhost.evil.test/cb",
    "HTTPS://App.Example.com/cb",
    "https://app.example.com:443/cb",
    "https://app.example.com/a/../cb",
    "https:///cb",
    "javascript:alert(1)",
    "data:text/html,hi",
    "file:///etc/passwd",
    "myapp:/callback",
    "/relative/callback",
    "",
];

/// Accepted for every client type.
const ACCEPTED: &[&str] = &[
    "https://app.example.com/cb",
    "https://app.example.com/cb?tenant=a",
    "https://app.example.com",
    "http://localhost:3000/callback",
    "http://app.localhost/callback",
    "http://127.0.0.1/cb",
    "http://127.0.0.2:8080/cb",
    "http://[::1]:8080/cb",
];

db_test!(redirect_uris_are_absolute_exact_and_https_except_on_loopback, |server| {
    let admin = server.admin_token().await;
    for client_type in ["confidential", "public"] {
        for field in ["redirect_uris", "post_logout_redirect_uris"] {
            for uri in REFUSED {
                let (status, body) = register(&server, &admin, client_type, field, uri).await;
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{client_type} {field} {uri:?}: {body}");
                assert_invalid(status, &body, field);
            }
            for uri in ACCEPTED {
                let (status, body) = register(&server, &admin, client_type, field, uri).await;
                assert_eq!(status, StatusCode::CREATED, "{client_type} {field} {uri:?}: {body}");
                assert_eq!(body["data"]["attributes"][field], json!([uri]), "stored as typed");
            }
        }
    }
    // Nothing refused was stored.
    let expected = 1 + 2 * 2 * ACCEPTED.len() as i64;
    assert_eq!(server.count("SELECT COUNT(*) FROM clients").await, expected);
});

db_test!(private_use_schemes_are_for_public_native_clients_only, |server| {
    let admin = server.admin_token().await;
    let native = "com.example.app:/oauth2redirect";
    let (status, body) = register(&server, &admin, "confidential", "redirect_uris", native).await;
    assert_invalid(status, &body, "redirect_uris");
    assert!(body["errors"][0]["detail"].as_str().unwrap().contains("RFC 8252"), "{body}");
    let (status, body) = register(&server, &admin, "public", "redirect_uris", native).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();

    // The same rules on update.
    let patch = |uri: &str| json!({"data": {"type": "client", "id": id, "attributes": {"redirect_uris": [native, uri]}}});
    let path = format!("/api/clients/{id}");
    let (status, body) =
        server.api(Method::PATCH, &path, &admin, Some(patch("https://*.example.com/cb"))).await;
    assert_invalid(status, &body, "redirect_uris");
    let (status, body) =
        server.api(Method::PATCH, &path, &admin, Some(patch("http://app.example.com/cb"))).await;
    assert_invalid(status, &body, "redirect_uris");
    let (status, body) =
        server.api(Method::PATCH, &path, &admin, Some(patch("https://app.example.com/cb"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["redirect_uris"], json!([native, "https://app.example.com/cb"]));
});
