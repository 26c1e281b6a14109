//! Scopes: names unique per resource server, a required resource server.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    assert_conflict, assert_error, assert_invalid, assert_not_found, create_api, create_scope, id_of,
};
use crate::db_test;
use crate::harness::Creds;
use crate::resources::support::{doc, link_doc, patch_doc};

fn scope_doc(attributes: Value, api: &str) -> Value {
    link_doc("scope", attributes, &[("resource_server", "resource_server", api)])
}

db_test!(scopes_belong_to_a_resource_server, |server| {
    let admin = server.admin_token().await;
    let docs = create_api(&server, &admin, "https://docs.example.com").await;
    let mail = create_api(&server, &admin, "https://mail.example.com").await;

    let (status, body) = server
        .api(
            Method::POST,
            "/api/scopes",
            &admin,
            Some(scope_doc(json!({"name": "read:docs", "description": "Read"}), &docs)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = id_of(&body);
    assert_eq!(body["data"]["type"], "scope");
    assert_eq!(body["data"]["attributes"]["name"], "read:docs");
    assert_eq!(body["data"]["attributes"]["description"], "Read");
    assert_eq!(
        body["data"]["relationships"]["resource_server"]["data"],
        json!({"type": "resource_server", "id": docs})
    );

    // Unique per server; the same name on another server is fine.
    let (status, body) = server
        .api(Method::POST, "/api/scopes", &admin, Some(scope_doc(json!({"name": "read:docs"}), &docs)))
        .await;
    assert_conflict(status, &body, "/data/attributes/name");
    create_scope(&server, &admin, &mail, "read:docs").await;
    create_scope(&server, &admin, &docs, "write:docs").await;

    // The resource server is required and must exist here.
    let (status, body) =
        server.api(Method::POST, "/api/scopes", &admin, Some(doc("scope", json!({"name": "x"})))).await;
    assert_error(status, &body, 422, "required", Some("/data/relationships/resource_server"));
    let (status, body) = server
        .api(Method::POST, "/api/scopes", &admin, Some(scope_doc(json!({"name": "x"}), "no-such-api")))
        .await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/resource_server"));
    let (status, body) = server
        .api(
            Method::POST,
            "/api/scopes",
            &admin,
            Some(link_doc("scope", json!({"name": "x"}), &[("resource_server", "client", &docs)])),
        )
        .await;
    assert_error(
        status,
        &body,
        422,
        "invalid_attribute",
        Some("/data/relationships/resource_server/data/type"),
    );

    // Names are scope tokens (RFC 6749 §3.3).
    for name in ["", "read docs", "say\"hi\"", "back\\slash", "tab\there", "é"] {
        let (status, body) = server
            .api(Method::POST, "/api/scopes", &admin, Some(scope_doc(json!({"name": name}), &docs)))
            .await;
        assert_invalid(status, &body, "name");
    }
    let (status, body) =
        server.api(Method::POST, "/api/scopes", &admin, Some(scope_doc(json!({}), &docs))).await;
    assert_error(status, &body, 422, "required", Some("/data/attributes/name"));
    assert_eq!(server.count("SELECT COUNT(*) FROM scopes").await, 3);

    // PATCH: rename, conflicts, null name, description.
    let path = format!("/api/scopes/{id}");
    let patch = |attributes: Value| Some(patch_doc("scope", &id, attributes));
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"name": "write:docs"}))).await;
    assert_conflict(status, &body, "/data/attributes/name");
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"name": null}))).await;
    assert_invalid(status, &body, "name");
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"name": "has space"}))).await;
    assert_invalid(status, &body, "name");
    let (status, body) = server
        .api(Method::PATCH, &path, &admin, patch(json!({"name": "docs:read", "description": null})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["name"], "docs:read");
    assert_eq!(body["data"]["attributes"]["description"], Value::Null);
    assert_eq!(body["data"]["relationships"]["resource_server"]["data"]["id"], docs.as_str());

    let (status, _) = server.api(Method::DELETE, &path, &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.api(Method::GET, &path, &admin, None).await;
    assert_not_found(status, &body);
});

db_test!(grants_follow_renamed_and_deleted_scopes, |server| {
    let admin = server.admin_token().await;
    let docs = create_api(&server, &admin, "https://docs.example.com").await;
    let read = create_scope(&server, &admin, &docs, "read:docs").await;
    let write = create_scope(&server, &admin, &docs, "write:docs").await;
    let created = server
        .create(
            &admin,
            "/api/clients",
            "client",
            json!({"name": "C", "grant_types": ["client_credentials"]}),
            Value::Null,
        )
        .await;
    let creds = Creds {
        client_id: created["data"]["attributes"]["client_id"].as_str().unwrap().to_owned(),
        client_secret: created["meta"]["client_secret"].as_str().unwrap().to_owned(),
    };
    let grant = link_doc(
        "client_resource_server_grant",
        json!({"allowed_scopes": ["read:docs", "write:docs"]}),
        &[("client", "client", &id_of(&created)), ("resource_server", "resource_server", &docs)],
    );
    let (status, body) =
        server.api(Method::POST, "/api/client-resource-server-grants", &admin, Some(grant)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let grant_path = format!("/api/client-resource-server-grants/{}", id_of(&body));
    let token = |scope: &'static str| {
        let server = &server;
        let creds = &creds;
        async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("resource", "https://docs.example.com"),
                ("scope", scope),
            ];
            server.token_request("acme-test", creds, &form).await
        }
    };

    // A renamed scope stays granted under its new name.
    let (status, body) = server
        .api(
            Method::PATCH,
            &format!("/api/scopes/{read}"),
            &admin,
            Some(patch_doc("scope", &read, json!({"name": "docs:read"}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = server.api(Method::GET, &grant_path, &admin, None).await;
    assert_eq!(body["data"]["attributes"]["allowed_scopes"], json!(["docs:read", "write:docs"]));
    let (status, body) = token("docs:read").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = token("read:docs").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")), "{body}");

    // A deleted scope is no longer granted.
    let (status, _) = server.api(Method::DELETE, &format!("/api/scopes/{write}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = server.api(Method::GET, &grant_path, &admin, None).await;
    assert_eq!(body["data"]["attributes"]["allowed_scopes"], json!(["docs:read"]));
    let (status, body) = token("write:docs").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")), "{body}");
    // Re-creating a scope of that name does not silently re-grant it.
    create_scope(&server, &admin, &docs, "write:docs").await;
    let (status, body) = token("write:docs").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")), "{body}");
});
