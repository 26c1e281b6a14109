//! Users: `create_with_password` validation, password secrecy and hashing,
//! updates, uniqueness and deletion.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    assert_conflict, assert_error, assert_invalid, assert_not_found, create_role, create_user, id_of,
};
use crate::db_test;
use crate::harness::TestServer;
use crate::resources::support::{doc, link_doc, patch_doc, quote};

const PASSWORD: &str = "s3cret-Passw0rd!";

fn new_user(email: &str) -> Value {
    json!({"email": email, "password": PASSWORD, "password_confirmation": PASSWORD})
}

db_test!(create_returns_the_user_without_any_password, |server| {
    let admin = server.admin_token().await;
    let (status, body) = server
        .api(
            Method::POST,
            "/api/users",
            &admin,
            Some(doc(
                "user",
                json!({"email": "ada@example.com", "password": PASSWORD, "password_confirmation": PASSWORD,
                       "first_name": "Ada", "last_name": "Lovelace", "metadata": {"plan": "pro", "seats": 3}}),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = id_of(&body);
    let attributes = &body["data"]["attributes"];
    assert_eq!(body["data"]["type"], "user");
    assert_eq!(attributes["email"], "ada@example.com");
    assert_eq!(attributes["first_name"], "Ada");
    assert_eq!(attributes["last_name"], "Lovelace");
    assert_eq!(attributes["email_verified"], false);
    assert_eq!(attributes["blocked"], false);
    assert_eq!(attributes["metadata"], json!({"plan": "pro", "seats": 3}));
    assert!(attributes["inserted_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{body}");
    assert_eq!(attributes["inserted_at"], attributes["updated_at"]);

    // The password appears nowhere: not on create, not on GET, not in lists.
    let (_, one) = server.api(Method::GET, &format!("/api/users/{id}"), &admin, None).await;
    let (_, list) = server.api(Method::GET, "/api/users", &admin, None).await;
    assert_eq!(one["data"]["attributes"]["email"], "ada@example.com");
    assert_eq!(list["data"][0]["id"], id.as_str());
    for document in [&body, &one, &list] {
        let text = document.to_string();
        assert!(!text.contains(PASSWORD), "password leaked: {text}");
        assert!(!text.contains("password"), "a password attribute is shown: {text}");
        assert!(!text.contains("argon2"), "the password hash is shown: {text}");
    }

    // Stored as an Argon2id PHC string, never in plain text, and not in
    // audit records or event payloads either.
    let row = quote(&id);
    assert_eq!(
        server
            .count(&format!(
                "SELECT COUNT(*) FROM users WHERE id = {row} AND password_hash LIKE '$argon2id$%'"
            ))
            .await,
        1
    );
    let needle = format!("'%{PASSWORD}%'");
    assert_eq!(
        server.count(&format!("SELECT COUNT(*) FROM users WHERE password_hash LIKE {needle}")).await,
        0
    );
    assert_eq!(
        server.count(&format!("SELECT COUNT(*) FROM audit_events WHERE changes LIKE {needle}")).await,
        0
    );
    assert_eq!(
        server.count(&format!("SELECT COUNT(*) FROM outbox_events WHERE payload LIKE {needle}")).await,
        0
    );
    assert_eq!(server.count("SELECT COUNT(*) FROM outbox_events WHERE payload LIKE '%argon2id%'").await, 0);
});

db_test!(create_validates_every_attribute, |server| {
    let admin = server.admin_token().await;
    let with = |changes: Value| {
        let mut attributes = new_user("valid@example.com");
        for (key, value) in changes.as_object().unwrap() {
            attributes[key] = value.clone();
        }
        doc("user", attributes)
    };
    let long = "x".repeat(129);
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            with(json!({"password_confirmation": "s3cret-Passw0rd?"})),
            422,
            "invalid_attribute",
            "password_confirmation",
        ),
        (
            with(json!({"password": "short7!", "password_confirmation": "short7!"})),
            422,
            "invalid_attribute",
            "password",
        ),
        (
            with(json!({"password": long, "password_confirmation": long})),
            422,
            "invalid_attribute",
            "password",
        ),
        (with(json!({"email": "not-an-email"})), 422, "invalid_attribute", "email"),
        (with(json!({"email": "a@"})), 422, "invalid_attribute", "email"),
        (with(json!({"email": "@example.com"})), 422, "invalid_attribute", "email"),
        (with(json!({"email": "a b@example.com"})), 422, "invalid_attribute", "email"),
        (with(json!({"email": "a@b@example.com"})), 422, "invalid_attribute", "email"),
        (with(json!({"email": "a@.example.com"})), 422, "invalid_attribute", "email"),
        (with(json!({"email": ""})), 422, "invalid_attribute", "email"),
        (with(json!({"email": 42})), 422, "invalid_attribute", "email"),
        (with(json!({"first_name": 7})), 422, "invalid_attribute", "first_name"),
        (with(json!({"first_name": "f".repeat(256)})), 422, "invalid_attribute", "first_name"),
        (with(json!({"metadata": ["not", "an", "object"]})), 422, "invalid_attribute", "metadata"),
        (with(json!({"metadata": "text"})), 422, "invalid_attribute", "metadata"),
        (with(json!({"blocked": "yes"})), 422, "invalid_attribute", "blocked"),
        (with(json!({"password_hash": "$argon2id$v=19$forged"})), 422, "invalid_attribute", "password_hash"),
        (with(json!({"id": "chosen-by-client"})), 422, "invalid_attribute", "id"),
        (
            doc("user", json!({"password": PASSWORD, "password_confirmation": PASSWORD})),
            422,
            "required",
            "email",
        ),
        (
            doc("user", json!({"email": "a@example.com", "password_confirmation": PASSWORD})),
            422,
            "required",
            "password",
        ),
        (
            doc("user", json!({"email": "a@example.com", "password": PASSWORD})),
            422,
            "required",
            "password_confirmation",
        ),
    ];
    for (body, expected, code, attribute) in cases {
        let (status, response) = server.api(Method::POST, "/api/users", &admin, Some(body.clone())).await;
        assert_error(status, &response, expected, code, Some(&format!("/data/attributes/{attribute}")));
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM users").await, 0, "a rejected create wrote a row");

    // The bounds themselves are accepted: 8 and 128 characters.
    for (email, password) in
        [("eight@example.com", "8chars!!".to_owned()), ("max@example.com", "p".repeat(128))]
    {
        let attributes = json!({"email": email, "password": password, "password_confirmation": password});
        let (status, body) =
            server.api(Method::POST, "/api/users", &admin, Some(doc("user", attributes))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // Length counts characters, not bytes: 8 two-byte characters are enough.
    let accents = "éééééééé";
    let attributes =
        json!({"email": "utf8@example.com", "password": accents, "password_confirmation": accents});
    let (status, body) = server.api(Method::POST, "/api/users", &admin, Some(doc("user", attributes))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
});

db_test!(email_is_unique_case_insensitively_per_environment, |server| {
    let admin = server.admin_token().await;
    create_user(&server, &admin, json!({"email": "Grace@Example.com"})).await;
    for email in ["grace@example.com", "GRACE@EXAMPLE.COM", "Grace@Example.com", "  grace@example.com "] {
        let (status, body) =
            server.api(Method::POST, "/api/users", &admin, Some(doc("user", new_user(email)))).await;
        assert_conflict(status, &body, "/data/attributes/email");
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM users").await, 1);

    // Another environment has its own users.
    let other = server.create_environment("other").await;
    let other_token = server.management_token("other", &other, None).await;
    let (status, body) = server
        .api_at(
            "other",
            Method::POST,
            "/api/users",
            &other_token,
            Some(doc("user", new_user("grace@example.com"))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // ... and cannot see this one's.
    let (status, list) = server.api_at("other", Method::GET, "/api/users", &other_token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
});

db_test!(patch_updates_and_validates, |server| {
    let admin = server.admin_token().await;
    let id = create_user(&server, &admin, json!({"email": "lin@example.com"})).await;
    create_user(&server, &admin, json!({"email": "taken@example.com"})).await;
    let path = format!("/api/users/{id}");
    let patch = |attributes: Value| Some(patch_doc("user", &id, attributes));

    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            patch(json!({"first_name": "Lin", "last_name": "Ng", "blocked": true, "email_verified": true,
                         "metadata": {"tier": 2}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let attributes = &body["data"]["attributes"];
    assert_eq!(
        (
            &attributes["first_name"],
            &attributes["last_name"],
            &attributes["blocked"],
            &attributes["email_verified"]
        ),
        (&json!("Lin"), &json!("Ng"), &json!(true), &json!(true))
    );
    assert_eq!(attributes["metadata"], json!({"tier": 2}));
    assert_eq!(attributes["email"], "lin@example.com", "absent attributes keep their value");
    assert!(attributes["updated_at"].as_str() >= attributes["inserted_at"].as_str());

    // Nullable attributes may be cleared; non-nullable ones may not.
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"last_name": null}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["last_name"], Value::Null);
    assert_eq!(body["data"]["attributes"]["first_name"], "Lin");
    for attribute in ["email", "blocked", "email_verified", "metadata"] {
        let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({attribute: null}))).await;
        assert_invalid(status, &body, attribute);
    }

    // Validation failures.
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"metadata": [1, 2]}))).await;
    assert_invalid(status, &body, "metadata");
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"email": "nope"}))).await;
    assert_invalid(status, &body, "email");
    let (status, body) =
        server.api(Method::PATCH, &path, &admin, patch(json!({"inserted_at": "2020-01-01T00:00:00Z"}))).await;
    assert_invalid(status, &body, "inserted_at");
    let (status, body) =
        server.api(Method::PATCH, &path, &admin, patch(json!({"email": "TAKEN@example.com"}))).await;
    assert_conflict(status, &body, "/data/attributes/email");

    // A rejected PATCH changes nothing, not even the attributes that were valid.
    let (status, body) = server
        .api(Method::PATCH, &path, &admin, patch(json!({"first_name": "Changed", "metadata": "bad"})))
        .await;
    assert_invalid(status, &body, "metadata");
    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            patch(json!({"first_name": "Changed", "email": "taken@example.com"})),
        )
        .await;
    assert_conflict(status, &body, "/data/attributes/email");
    let (_, current) = server.api(Method::GET, &path, &admin, None).await;
    assert_eq!(current["data"]["attributes"]["first_name"], "Lin");
    assert_eq!(current["data"]["attributes"]["email"], "lin@example.com");
    assert_eq!(current["data"]["attributes"]["metadata"], json!({"tier": 2}));

    // A user may change the case of their own address.
    let (status, body) =
        server.api(Method::PATCH, &path, &admin, patch(json!({"email": "Lin@Example.com"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["email"], "Lin@Example.com");

    // An empty PATCH is fine and changes nothing.
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["first_name"], "Lin");

    // Unknown id.
    let (status, body) = server
        .api(
            Method::PATCH,
            "/api/users/nope",
            &admin,
            Some(patch_doc("user", "nope", json!({"first_name": "X"}))),
        )
        .await;
    assert_not_found(status, &body);
});

async fn password_hash(server: &TestServer, id: &str) -> String {
    use sqlx::Row;
    let sql = format!("SELECT password_hash FROM users WHERE id = {}", quote(id));
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(server.core.db.pool()).await.expect("user row");
    row.try_get::<String, _>(0).expect("password_hash")
}

db_test!(patch_changes_the_password_only_with_a_matching_confirmation, |server| {
    let admin = server.admin_token().await;
    let id = create_user(&server, &admin, json!({"email": "pw@example.com"})).await;
    let path = format!("/api/users/{id}");
    let original = password_hash(&server, &id).await;
    let patch = |attributes: Value| Some(patch_doc("user", &id, attributes));

    let (status, body) =
        server.api(Method::PATCH, &path, &admin, patch(json!({"password": "new-password-1"}))).await;
    assert_invalid(status, &body, "password_confirmation");
    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            patch(json!({"password": "new-password-1", "password_confirmation": "other"})),
        )
        .await;
    assert_invalid(status, &body, "password_confirmation");
    let (status, body) = server
        .api(Method::PATCH, &path, &admin, patch(json!({"password_confirmation": "new-password-1"})))
        .await;
    assert_invalid(status, &body, "password");
    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            patch(json!({"password": "short", "password_confirmation": "short"})),
        )
        .await;
    assert_invalid(status, &body, "password");
    assert_eq!(password_hash(&server, &id).await, original, "a rejected password change was stored");

    let (status, body) = server
        .api(
            Method::PATCH,
            &path,
            &admin,
            patch(json!({"password": "new-password-1", "password_confirmation": "new-password-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.to_string().contains("new-password-1"));
    assert!(!body.to_string().contains("password"));
    let changed = password_hash(&server, &id).await;
    assert_ne!(changed, original);
    assert!(changed.starts_with("$argon2id$"), "{changed}");
});

db_test!(delete_removes_the_user_and_its_roles, |server| {
    let admin = server.admin_token().await;
    let id = create_user(&server, &admin, json!({"email": "gone@example.com"})).await;
    let keep = create_user(&server, &admin, json!({"email": "kept@example.com"})).await;
    let role = create_role(&server, &admin, "Viewer").await;
    for user in [&id, &keep] {
        let (status, body) = server
            .api(
                Method::POST,
                "/api/user-roles",
                &admin,
                Some(link_doc("user_role", json!({}), &[("user", "user", user), ("role", "role", &role)])),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let path = format!("/api/users/{id}");

    let response = server.http.delete(server.url(&path)).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty(), "204 has no body");

    let (status, body) = server.api(Method::GET, &path, &admin, None).await;
    assert_not_found(status, &body);
    assert!(body["errors"][0]["detail"].as_str().unwrap().contains("user"), "{body}");
    let (status, body) = server.api(Method::DELETE, &path, &admin, None).await;
    assert_not_found(status, &body);
    let (status, body) = server
        .api(Method::PATCH, &path, &admin, Some(patch_doc("user", &id, json!({"first_name": "Back"}))))
        .await;
    assert_not_found(status, &body);

    assert_eq!(
        server.count(&format!("SELECT COUNT(*) FROM user_roles WHERE user_id = {}", quote(&id))).await,
        0
    );
    assert_eq!(server.count("SELECT COUNT(*) FROM user_roles").await, 1, "other users keep their roles");
    let (_, role_doc) = server.api(Method::GET, &format!("/api/roles/{role}"), &admin, None).await;
    assert_eq!(role_doc["data"]["attributes"]["user_count"], 1);

    // The address is free again.
    let (status, body) =
        server.api(Method::POST, "/api/users", &admin, Some(doc("user", new_user("GONE@example.com")))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
});

db_test!(get_unknown_user_is_a_json_api_404, |server| {
    let admin = server.admin_token().await;
    let (status, body) =
        server.api(Method::GET, "/api/users/0190f5c2-0000-7000-8000-000000000000", &admin, None).await;
    assert_not_found(status, &body);
});
