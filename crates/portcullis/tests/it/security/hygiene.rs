//! Audit findings 6, 11 and 12: which host a request addresses, control
//! characters in single-line fields, and `Cache-Control: no-store` on the
//! Management API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{assert_error, assert_invalid, id_of};
use crate::db_test;
use crate::harness::TestServer;

/// Sends `request` as raw bytes and returns the status and the whole answer.
async fn raw(server: &TestServer, request: String) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

db_test!(an_absolute_target_wins_over_host_and_two_hosts_are_refused, |server| {
    server.create_environment("other").await;
    let port = server.port;
    let discovery = "/.well-known/openid-configuration";

    // RFC 9112 §3.2.2: the absolute-form target's authority is the host.
    let (status, answer) = raw(
        &server,
        format!(
            "GET http://acme-test.localhost:{port}{discovery} HTTP/1.1\r\nHost: other.localhost:{port}\r\n\
             Connection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(&format!("\"issuer\":\"{}\"", server.issuer("acme-test"))), "{answer}");
    assert!(!answer.contains("other.localhost"), "{answer}");

    // The ordinary origin form still goes by Host.
    let (status, answer) = raw(
        &server,
        format!("GET {discovery} HTTP/1.1\r\nHost: other.localhost:{port}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(&format!("\"issuer\":\"{}\"", server.issuer("other"))), "{answer}");

    // Two Host headers: a 400, whichever names which environment.
    for (first, second) in [("acme-test", "other"), ("acme-test", "acme-test")] {
        let (status, answer) = raw(
            &server,
            format!(
                "GET {discovery} HTTP/1.1\r\nHost: {first}.localhost:{port}\r\nHost: {second}.localhost:{port}\r\n\
                 Connection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status, 400, "{answer}");
        assert!(!answer.contains("\"issuer\""), "{answer}");
    }
});

db_test!(single_line_fields_refuse_control_characters, |server| {
    let admin = server.admin_token().await;
    let users_before = server.count("SELECT COUNT(*) FROM users").await;
    for (field, value) in
        [("first_name", "Ada\u{0}"), ("last_name", "Love\r\nlace"), ("email", "ada\u{0}@example.com")]
    {
        let mut attributes = json!({"email": "ada@example.com", "password": crate::common::PASSWORD,
            "password_confirmation": crate::common::PASSWORD});
        attributes[field] = json!(value);
        let (status, body) = server
            .api(
                Method::POST,
                "/api/users",
                &admin,
                Some(json!({"data": {"type": "user", "attributes": attributes}})),
            )
            .await;
        assert_invalid(status, &body, field);
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM users").await, users_before, "nothing half-written");

    // The audit's case: an environment name with CR/LF would reach a mail Subject.
    let patch =
        json!({"data": {"type": "environment", "attributes": {"name": "Acme\r\nBcc: all@evil.test"}}});
    let (status, body) = server.api(Method::PATCH, "/api/environment", &admin, Some(patch)).await;
    assert_invalid(status, &body, "name");
    let (_, body) = server.api(Method::GET, "/api/environment", &admin, None).await;
    assert_eq!(body["data"]["attributes"]["name"], "Acme Test");

    for (path, kind, attributes, field) in [
        (
            "/api/clients",
            "client",
            json!({"name": "Tab\tbed", "grant_types": ["client_credentials"]}),
            "name",
        ),
        ("/api/roles", "role", json!({"name": "Ops\u{7f}"}), "name"),
        ("/api/roles", "role", json!({"name": "Ops", "description": "bell\u{7}"}), "description"),
    ] {
        let (status, body) = server
            .api(Method::POST, path, &admin, Some(json!({"data": {"type": kind, "attributes": attributes}})))
            .await;
        assert_invalid(status, &body, field);
    }
    // A description is free text: line breaks and tabs are fine there.
    let role = server
        .create(
            &admin,
            "/api/roles",
            "role",
            json!({"name": "Ops", "description": "Runs things.\n\tOn call."}),
            Value::Null,
        )
        .await;
    assert_eq!(role["data"]["attributes"]["description"], "Runs things.\n\tOn call.");
    let id = id_of(&role);
    let patch = json!({"data": {"type": "role", "id": id, "attributes": {"name": "Ops\nTeam"}}});
    let (status, body) = server.api(Method::PATCH, &format!("/api/roles/{id}"), &admin, Some(patch)).await;
    assert_invalid(status, &body, "name");
});

db_test!(management_api_answers_are_never_cached, |server| {
    let admin = server.admin_token().await;
    let no_store = |response: &reqwest::Response| {
        let value = response.headers().get("cache-control").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(value.as_deref(), Some("no-store"), "{} {}", response.status(), response.url());
    };
    let send = |method: Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut request = server.http.request(method, server.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/vnd.api+json").body(body.to_string());
        }
        request.send()
    };
    // A secret in meta, once.
    let created = send(
        Method::POST,
        "/api/clients",
        Some(&admin),
        Some(json!({"data": {"type": "client", "attributes": {"name": "Worker", "grant_types": ["client_credentials"]}}})),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    no_store(&created);
    let body: Value = created.json().await.unwrap();
    assert!(body["meta"]["client_secret"].is_string());
    let id = id_of(&body);
    let rotated =
        send(Method::PATCH, &format!("/api/clients/{id}/rotate-secret"), Some(&admin), None).await.unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    no_store(&rotated);
    // Reads, errors, and the OpenAPI document.
    for (path, token, status) in [
        ("/api/users", Some(admin.as_str()), 200),
        ("/api/users", None, 401),
        ("/api/users/nope", Some(admin.as_str()), 404),
        ("/api/environment", Some(admin.as_str()), 200),
        ("/api/openapi.json", None, 200),
    ] {
        let response = send(Method::GET, path, token, None).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        no_store(&response);
    }
    let (status, body) = server.api(Method::GET, "/api/users?page[limit]=0", &admin, None).await;
    assert_error(status, &body, 400, "invalid_parameter", None);
});
