//! Writes that fail leave nothing behind: no data change, no audit row, no
//! outbox row — whether they fail validation up front, on a uniqueness
//! conflict inside the transaction, or concurrently with another write.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;
use crate::db_test;
use crate::jsonapi::support::*;

/// A failing request: method, path, body, then the expected status, code and pointer.
type FailingWrite = (Method, String, Value, u16, &'static str, Option<&'static str>);

db_test!(failed_writes_change_nothing_and_record_nothing, |server| {
    let token = server.admin_token().await;
    let admin = create_role(&server, &token, "Admin").await;
    create_role(&server, &token, "Viewer").await;
    let alice =
        create_user(&server, &token, json!({"email": "alice@example.com", "first_name": "Alice"})).await;
    create_user(&server, &token, json!({"email": "bob@example.com"})).await;
    assign_role(&server, &token, &alice, &admin).await;
    let permission = create_permission(&server, &token, "posts:read").await;
    assign_permission(&server, &token, &admin, &permission).await;
    settle_token_events(&server, 1).await;
    let before = snapshot(&server).await;
    let alice_before = get_ok(&server, &token, &format!("/api/users/{alice}")).await;
    let hash_before = text(&server, &format!("SELECT password_hash FROM users WHERE id = '{alice}'")).await;

    let user_role = |user: &str, role: &str| {
        json!({"data": {"type": "user_role", "attributes": {},
               "relationships": {"user": {"data": {"type": "user", "id": user}},
                                 "role": {"data": {"type": "role", "id": role}}}}})
    };
    let cases: Vec<FailingWrite> = vec![
        // Uniqueness conflicts, found by the database inside the transaction.
        (
            Method::POST,
            "/api/roles".into(),
            json!({"data": {"type": "role", "attributes": {"name": "Admin"}}}),
            409,
            "conflict",
            Some("/data/attributes/name"),
        ),
        (
            Method::PATCH,
            format!("/api/roles/{admin}"),
            json!({"data": {"type": "role", "attributes": {"name": "Viewer", "description": "renamed"}}}),
            409,
            "conflict",
            Some("/data/attributes/name"),
        ),
        (
            Method::POST,
            "/api/users".into(),
            json!({"data": {"type": "user", "attributes": {"email": "ALICE@example.com",
                   "password": "long enough pw", "password_confirmation": "long enough pw"}}}),
            409,
            "conflict",
            Some("/data/attributes/email"),
        ),
        // Half-way: the password is hashed and several fields change before
        // the UPDATE hits the email conflict; none of it may stick, and the
        // password-change event must not be recorded either.
        (
            Method::PATCH,
            format!("/api/users/{alice}"),
            json!({"data": {"type": "user", "attributes": {"email": "Bob@Example.com", "first_name": "Changed",
                   "blocked": true, "password": "a brand new password", "password_confirmation": "a brand new password"}}}),
            409,
            "conflict",
            Some("/data/attributes/email"),
        ),
        (
            Method::POST,
            "/api/user-roles".into(),
            user_role(&alice, &admin),
            409,
            "conflict",
            Some("/data/relationships/role"),
        ),
        (
            Method::POST,
            "/api/role-permissions".into(),
            json!({"data": {"type": "role_permission", "attributes": {},
                   "relationships": {"role": {"data": {"type": "role", "id": admin}},
                                     "permission": {"data": {"type": "permission", "id": permission}}}}}),
            409,
            "conflict",
            Some("/data/relationships/permission"),
        ),
        (
            Method::POST,
            "/api/permissions".into(),
            json!({"data": {"type": "permission", "attributes": {"name": "posts:read"}}}),
            409,
            "conflict",
            Some("/data/attributes/name"),
        ),
        // Validation failures.
        (
            Method::POST,
            "/api/roles".into(),
            json!({"data": {"type": "role", "attributes": {"name": "   "}}}),
            422,
            "invalid_attribute",
            Some("/data/attributes/name"),
        ),
        (
            Method::POST,
            "/api/roles".into(),
            json!({"data": {"type": "role", "attributes": {"description": "no name"}}}),
            422,
            "required",
            Some("/data/attributes/name"),
        ),
        (
            Method::POST,
            "/api/roles".into(),
            json!({"data": {"type": "role", "attributes": {"name": "Ok", "colour": "red"}}}),
            422,
            "invalid_attribute",
            Some("/data/attributes/colour"),
        ),
        (
            Method::POST,
            "/api/users".into(),
            json!({"data": {"type": "user", "attributes": {"email": "new@example.com",
                   "password": "long enough pw", "password_confirmation": "different pw!"}}}),
            422,
            "invalid_attribute",
            Some("/data/attributes/password_confirmation"),
        ),
        (
            Method::PATCH,
            format!("/api/users/{alice}"),
            json!({"data": {"type": "user", "attributes": {"first_name": "Changed", "email": "not an email"}}}),
            422,
            "invalid_attribute",
            Some("/data/attributes/email"),
        ),
        (
            Method::PATCH,
            format!("/api/users/{alice}"),
            json!({"data": {"type": "user", "attributes": {"first_name": "Changed", "metadata": [1, 2]}}}),
            422,
            "invalid_attribute",
            Some("/data/attributes/metadata"),
        ),
        (
            Method::POST,
            "/api/user-roles".into(),
            user_role(&alice, "0190a5b2-0000-7000-8000-000000000000"),
            422,
            "invalid_attribute",
            Some("/data/relationships/role"),
        ),
        // Malformed documents.
        (Method::POST, "/api/roles".into(), json!({"name": "Flat"}), 400, "invalid_body", Some("/data")),
        (
            Method::POST,
            "/api/roles".into(),
            json!({"data": {"type": "user", "attributes": {"name": "Wrong type"}}}),
            409,
            "conflict",
            Some("/data/type"),
        ),
        (
            Method::PATCH,
            format!("/api/roles/{admin}"),
            json!({"data": {"type": "role", "id": "someone-else", "attributes": {"name": "Other"}}}),
            409,
            "conflict",
            Some("/data/id"),
        ),
        // Missing targets.
        (
            Method::PATCH,
            "/api/roles/0190a5b2-0000-7000-8000-000000000000".into(),
            json!({"data": {"type": "role", "attributes": {"name": "Ghost"}}}),
            404,
            "not_found",
            None,
        ),
        (
            Method::DELETE,
            "/api/roles/0190a5b2-0000-7000-8000-000000000000".into(),
            Value::Null,
            404,
            "not_found",
            None,
        ),
    ];
    for (method, path, body, status, code, pointer) in cases {
        let body = (!body.is_null()).then_some(body);
        let reply = call(&server, method.clone(), &path, &token, body.clone()).await;
        let error = reply.assert_error(status, code);
        if let Some(pointer) = pointer {
            assert_eq!(error["source"]["pointer"], pointer, "{method} {path} {body:?}: {error}");
        }
        assert_eq!(snapshot(&server).await, before, "{method} {path} {body:?} left something behind");
    }

    // Not JSON, or not JSON:API.
    let raw = |content_type: &'static str, body: &'static str| {
        server
            .http
            .post(server.url("/api/roles"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = raw(MEDIA_TYPE, "{not json").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], MEDIA_TYPE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "invalid_body");
    assert_eq!(body["errors"][0]["status"], "400");
    let response =
        raw("text/plain", r#"{"data":{"type":"role","attributes":{"name":"Plain"}}}"#).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(response.headers()["content-type"], MEDIA_TYPE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["status"], "415");
    assert_eq!(snapshot(&server).await, before);

    // Specifically: the failed PATCHes changed nothing about Alice.
    let alice_after = get_ok(&server, &token, &format!("/api/users/{alice}")).await;
    assert_eq!(alice_after, alice_before);
    assert_eq!(
        text(&server, &format!("SELECT password_hash FROM users WHERE id = '{alice}'")).await,
        hash_before
    );
    for action in ["user.password_changed", "user.updated", "role.updated"] {
        assert_eq!(
            server.count(&format!("SELECT COUNT(*) FROM audit_events WHERE action = '{action}'")).await,
            0
        );
        assert_eq!(
            server.count(&format!("SELECT COUNT(*) FROM outbox_events WHERE event_type = '{action}'")).await,
            0
        );
    }
    let page = get_ok(&server, &token, "/api/audit-events?filter[action]=role.created").await;
    assert_eq!(ids(&page).len(), 2, "only the two successful role creations");

    // After all those failures the store still takes writes (no leaked lock,
    // no aborted transaction left on a pooled connection).
    let ok = tokio::time::timeout(Duration::from_secs(20), async {
        for i in 0..20 {
            create_role(&server, &token, &format!("After {i}")).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "writes hang after failed transactions");
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_events WHERE action = 'role.created'").await, 22);
    assert_eq!(
        server.count("SELECT COUNT(*) FROM outbox_events WHERE event_type = 'role.created'").await,
        22
    );
});

db_test!(concurrent_duplicates_commit_exactly_once, |server| {
    let token = server.admin_token().await;
    let user = create_user(&server, &token, json!({"email": "race@example.com"})).await;
    let role = create_role(&server, &token, "Racer").await;

    // Many simultaneous creates of the same role name: one wins, the rest conflict.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let http = server.http.clone();
        let url = server.url("/api/roles");
        let token = token.clone();
        tasks.spawn(async move {
            let body = json!({"data": {"type": "role", "attributes": {"name": "Same name"}}});
            let response = http
                .post(url)
                .bearer_auth(token)
                .header("content-type", MEDIA_TYPE)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        });
    }
    let mut statuses = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (status, body) = result.unwrap();
        if status != 201 {
            assert_eq!(body["errors"][0]["code"], "conflict", "{body}");
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
    assert_eq!(server.count("SELECT COUNT(*) FROM roles WHERE name = 'Same name'").await, 1);
    let created_for_name = "SELECT COUNT(*) FROM audit_events WHERE action = 'role.created' \
         AND target_id = (SELECT id FROM roles WHERE name = 'Same name')";
    assert_eq!(server.count(created_for_name).await, 1);
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_events WHERE action = 'role.created'").await, 2);
    assert_eq!(server.count("SELECT COUNT(*) FROM outbox_events WHERE event_type = 'role.created'").await, 2);

    // The same for a join row.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let http = server.http.clone();
        let url = server.url("/api/user-roles");
        let token = token.clone();
        let body = json!({"data": {"type": "user_role", "attributes": {},
            "relationships": {"user": {"data": {"type": "user", "id": user}},
                              "role": {"data": {"type": "role", "id": role}}}}});
        tasks.spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .header("content-type", MEDIA_TYPE)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(result) = tasks.join_next().await {
        statuses.push(result.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409]);
    assert_eq!(server.count("SELECT COUNT(*) FROM user_roles").await, 1);
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_events WHERE action = 'user_role.created'").await, 1);
    assert_eq!(
        server.count("SELECT COUNT(*) FROM outbox_events WHERE event_type = 'user_role.created'").await,
        1
    );
});
