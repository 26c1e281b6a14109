//! `GET/PATCH /api/environment`: the settings of the environment addressed.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{assert_conflict, assert_error, assert_invalid, create_api};
use crate::db_test;

fn patch(attributes: Value) -> Option<Value> {
    Some(json!({"data": {"type": "environment", "attributes": attributes}}))
}

db_test!(get_shows_the_settings, |server| {
    let admin = server.admin_token().await;
    let (status, body) = server.api(Method::GET, "/api/environment", &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["type"], "environment");
    let attributes = &body["data"]["attributes"];
    assert_eq!(attributes["handle"], "acme-test");
    assert_eq!(attributes["name"], "Acme Test");
    assert_eq!(attributes["issuer"], server.issuer("acme-test"));
    assert_eq!(attributes["management_api"], server.management_api());
    assert_eq!(attributes["session_ttl"], 30 * 24 * 3600);
    assert_eq!(attributes["registration_enabled"], true);
    assert_eq!(attributes["default_audience"], Value::Null);

    // Each environment sees its own settings.
    let other = server.create_environment("other").await;
    let token = server.management_token("other", &other, None).await;
    let (_, body) = server.api_at("other", Method::GET, "/api/environment", &token, None).await;
    assert_eq!(body["data"]["attributes"]["handle"], "other");
    assert_ne!(body["data"]["id"], json!(null));
});

db_test!(patch_validates_and_persists, |server| {
    let admin = server.admin_token().await;
    let (_, before) = server.api(Method::GET, "/api/environment", &admin, None).await;
    let id = before["data"]["id"].as_str().unwrap().to_owned();

    for (attributes, pointer) in [
        (json!({"session_ttl": 299}), "session_ttl"),
        (json!({"session_ttl": 365 * 24 * 3600 + 1}), "session_ttl"),
        (json!({"session_ttl": null}), "session_ttl"),
        (json!({"session_ttl": "3600"}), "session_ttl"),
        (json!({"registration_enabled": null}), "registration_enabled"),
        (json!({"registration_enabled": "no"}), "registration_enabled"),
        (json!({"default_audience": "https://unknown.example.com"}), "default_audience"),
        (json!({"default_audience": ""}), "default_audience"),
        (json!({"name": ""}), "name"),
        (json!({"name": null}), "name"),
        (json!({"handle": "renamed"}), "handle"),
        (json!({"issuer": "https://evil.example.com"}), "issuer"),
        (json!({"session_ttl": 600, "default_audience": "https://unknown.example.com"}), "default_audience"),
    ] {
        let (status, body) = server.api(Method::PATCH, "/api/environment", &admin, patch(attributes)).await;
        assert_invalid(status, &body, pointer);
    }
    let (_, unchanged) = server.api(Method::GET, "/api/environment", &admin, None).await;
    assert_eq!(
        unchanged["data"]["attributes"], before["data"]["attributes"],
        "a rejected PATCH changed settings"
    );

    // Bounds are inclusive; changes are visible at once.
    for ttl in [300, 365 * 24 * 3600] {
        let (status, body) =
            server.api(Method::PATCH, "/api/environment", &admin, patch(json!({"session_ttl": ttl}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["attributes"]["session_ttl"], ttl);
    }
    let api = "https://orders.example.com";
    create_api(&server, &admin, api).await;
    let (status, body) = server
        .api(
            Method::PATCH,
            "/api/environment",
            &admin,
            Some(json!({"data": {"type": "environment", "id": id, "attributes": {
                "name": "Acme (test)", "registration_enabled": false, "default_audience": api}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let attributes = &body["data"]["attributes"];
    assert_eq!(attributes["name"], "Acme (test)");
    assert_eq!(attributes["registration_enabled"], false);
    assert_eq!(attributes["default_audience"], api);
    assert_eq!(attributes["handle"], "acme-test");

    let (_, body) = server.api(Method::GET, "/api/environment", &admin, None).await;
    assert_eq!(body["data"]["attributes"]["default_audience"], api);
    assert_eq!(body["data"]["attributes"]["registration_enabled"], false);
    assert_eq!(body["data"]["attributes"]["session_ttl"], 365 * 24 * 3600);

    // The Management API itself is a valid default audience; null clears it.
    let management = server.management_api();
    let (status, body) = server
        .api(Method::PATCH, "/api/environment", &admin, patch(json!({"default_audience": management})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["default_audience"], management);
    let (status, body) =
        server.api(Method::PATCH, "/api/environment", &admin, patch(json!({"default_audience": null}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["default_audience"], Value::Null);

    // The body must name this environment.
    let (status, body) = server
        .api(
            Method::PATCH,
            "/api/environment",
            &admin,
            Some(json!({"data": {"type": "environment", "id": "someone-else", "attributes": {"session_ttl": 900}}})),
        )
        .await;
    assert_conflict(status, &body, "/data/id");
    let (status, body) = server
        .api(
            Method::PATCH,
            "/api/environment",
            &admin,
            Some(json!({"data": {"type": "user", "attributes": {}}})),
        )
        .await;
    assert_conflict(status, &body, "/data/type");
    let (status, body) = server.api(Method::PUT, "/api/environment", &admin, patch(json!({}))).await;
    assert_error(status, &body, 405, "method_not_allowed", None);
});

db_test!(default_audience_must_remain_an_api_of_the_environment, |server| {
    let admin = server.admin_token().await;
    let api = "https://reports.example.com";
    let id = create_api(&server, &admin, api).await;
    // An identifier from another environment does not count.
    let other = server.create_environment("other").await;
    let token = server.management_token("other", &other, None).await;
    let (status, body) = server
        .api_at("other", Method::PATCH, "/api/environment", &token, patch(json!({"default_audience": api})))
        .await;
    assert_invalid(status, &body, "default_audience");

    let (status, body) =
        server.api(Method::PATCH, "/api/environment", &admin, patch(json!({"default_audience": api}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The default audience's API cannot be deleted while it is the default.
    let path = format!("/api/resource-servers/{id}");
    let (status, body) = server.api(Method::DELETE, &path, &admin, None).await;
    assert_error(status, &body, 409, "conflict", None);
    let (status, _) = server.api(Method::GET, &path, &admin, None).await;
    assert_eq!(status, StatusCode::OK, "the API survived");
    let (_, body) = server.api(Method::GET, "/api/environment", &admin, None).await;
    assert_eq!(body["data"]["attributes"]["default_audience"], api, "{body}");

    let (status, body) =
        server.api(Method::PATCH, "/api/environment", &admin, patch(json!({"default_audience": null}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = server.api(Method::DELETE, &path, &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
});

db_test!(concurrent_patches_do_not_lose_updates, |server| {
    let server = std::sync::Arc::new(server);
    let admin = server.admin_token().await;
    for round in 0..5 {
        let ttl = 600 + round;
        let enabled = round % 2 == 1;
        let patches = [json!({"session_ttl": ttl}), json!({"registration_enabled": enabled})];
        let tasks: Vec<_> = patches
            .into_iter()
            .map(|attributes| {
                let (server, admin) = (server.clone(), admin.clone());
                tokio::spawn(async move {
                    server.api(Method::PATCH, "/api/environment", &admin, patch(attributes)).await
                })
            })
            .collect();
        for task in tasks {
            let (status, body) = task.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (_, body) = server.api(Method::GET, "/api/environment", &admin, None).await;
        let attributes = &body["data"]["attributes"];
        assert_eq!(
            (&attributes["session_ttl"], &attributes["registration_enabled"]),
            (&json!(ttl), &json!(enabled)),
            "round {round}"
        );
    }
});
