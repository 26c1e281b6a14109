//! Client resource server grants: allowed_scopes limited to the server's
//! scopes, one grant per (client, resource server).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    assert_conflict, assert_error, assert_invalid, assert_not_found, create_api, create_scope, id_of,
    system_api,
};
use crate::db_test;
use crate::harness::TestServer;
use crate::resources::support::{doc, link_doc, patch_doc};

const PATH: &str = "/api/client-resource-server-grants";
const KIND: &str = "client_resource_server_grant";

async fn create_client(server: &TestServer, token: &str, name: &str) -> String {
    let attributes = json!({"name": name, "grant_types": ["client_credentials"]});
    id_of(&server.create(token, "/api/clients", "client", attributes, Value::Null).await)
}

fn grant_doc(attributes: Value, client: &str, api: &str) -> Value {
    link_doc(KIND, attributes, &[("client", "client", client), ("resource_server", "resource_server", api)])
}

/// POSTs a grant of `api` to `client` with `attributes`.
async fn post_grant(
    server: &TestServer,
    token: &str,
    attributes: Value,
    client: &str,
    api: &str,
) -> (StatusCode, Value) {
    server.api(Method::POST, PATH, token, Some(grant_doc(attributes, client, api))).await
}

db_test!(allowed_scopes_must_belong_to_the_resource_server, |server| {
    let admin = server.admin_token().await;
    let docs = create_api(&server, &admin, "https://docs.example.com").await;
    let mail = create_api(&server, &admin, "https://mail.example.com").await;
    create_scope(&server, &admin, &docs, "read:docs").await;
    create_scope(&server, &admin, &docs, "write:docs").await;
    create_scope(&server, &admin, &mail, "send:mail").await;
    let client = create_client(&server, &admin, "Worker").await;

    for scopes in [json!(["read:docs", "send:mail"]), json!(["nope"]), json!(["users:read"]), json!([""])] {
        let (status, body) =
            post_grant(&server, &admin, json!({"allowed_scopes": scopes}), &client, &docs).await;
        assert_invalid(status, &body, "allowed_scopes");
    }
    let (status, body) =
        post_grant(&server, &admin, json!({"allowed_scopes": "read:docs"}), &client, &docs).await;
    assert_invalid(status, &body, "allowed_scopes");
    assert_eq!(
        server.count("SELECT COUNT(*) FROM client_resource_server_grants").await,
        1,
        "only the admin's grant"
    );

    // Duplicates are dropped, order is kept.
    let (status, body) = post_grant(
        &server,
        &admin,
        json!({"allowed_scopes": ["write:docs", "read:docs", "write:docs"]}),
        &client,
        &docs,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = id_of(&body);
    assert_eq!(body["data"]["type"], KIND);
    assert_eq!(body["data"]["attributes"]["allowed_scopes"], json!(["write:docs", "read:docs"]));
    assert_eq!(body["data"]["relationships"]["client"]["data"], json!({"type": "client", "id": client}));
    assert_eq!(
        body["data"]["relationships"]["resource_server"]["data"],
        json!({"type": "resource_server", "id": docs})
    );

    // PATCH: the same rules; null means every scope; [] means none.
    let path = format!("{PATH}/{id}");
    let patch = |attributes: Value| Some(patch_doc(KIND, &id, attributes));
    let (status, body) =
        server.api(Method::PATCH, &path, &admin, patch(json!({"allowed_scopes": ["send:mail"]}))).await;
    assert_invalid(status, &body, "allowed_scopes");
    let (status, body) =
        server.api(Method::PATCH, &path, &admin, patch(json!({"allowed_scopes": null}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["allowed_scopes"], Value::Null);
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"allowed_scopes": []}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["allowed_scopes"], json!([]));
    let (status, body) =
        server.api(Method::PATCH, &path, &admin, patch(json!({"allowed_scopes": ["read:docs"]}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = server.api(Method::GET, &path, &admin, None).await;
    assert_eq!(body["data"]["attributes"]["allowed_scopes"], json!(["read:docs"]));
    // The linked client and server are fixed.
    let (status, body) = server.api(Method::PATCH, &path, &admin, patch(json!({"client_id": client}))).await;
    assert_invalid(status, &body, "client_id");

    // Without allowed_scopes, the grant covers every scope.
    let other = create_client(&server, &admin, "Other").await;
    let (status, body) = post_grant(&server, &admin, json!({}), &other, &docs).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["attributes"]["allowed_scopes"], Value::Null);
});

db_test!(management_api_grants_take_management_scopes, |server| {
    let admin = server.admin_token().await;
    let api = system_api(&server, &admin).await;
    let client = create_client(&server, &admin, "Ops").await;
    // Unknown scopes, and scopes that would guard no route, are refused.
    for scopes in [
        json!(["users:fly"]),
        json!(["read:docs"]),
        json!(["users:read", "users:admin"]),
        json!(["audit_events:write"]),
        json!(["billing:read"]),
    ] {
        let (status, body) =
            post_grant(&server, &admin, json!({"allowed_scopes": scopes}), &client, &api).await;
        assert_invalid(status, &body, "allowed_scopes");
    }
    let (status, body) = post_grant(
        &server,
        &admin,
        json!({"allowed_scopes": ["users:read", "roles:write", "scopes:delete"]}),
        &client,
        &api,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
});

db_test!(one_grant_per_client_and_resource_server, |server| {
    let admin = server.admin_token().await;
    let docs = create_api(&server, &admin, "https://docs.example.com").await;
    let mail = create_api(&server, &admin, "https://mail.example.com").await;
    let client = create_client(&server, &admin, "Worker").await;
    let other = create_client(&server, &admin, "Other").await;

    let (status, body) = post_grant(&server, &admin, json!({}), &client, &docs).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let first = id_of(&body);
    let (status, body) = post_grant(&server, &admin, json!({}), &client, &docs).await;
    assert_conflict(status, &body, "/data/relationships/resource_server");
    for (c, a) in [(&client, &mail), (&other, &docs)] {
        let (status, body) = post_grant(&server, &admin, json!({}), c, a).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // Relationships: required, of the right type, existing.
    let only_client = link_doc(KIND, json!({}), &[("client", "client", &client)]);
    let (status, body) = server.api(Method::POST, PATH, &admin, Some(only_client)).await;
    assert_error(status, &body, 422, "required", Some("/data/relationships/resource_server"));
    let only_api = link_doc(KIND, json!({}), &[("resource_server", "resource_server", &docs)]);
    let (status, body) = server.api(Method::POST, PATH, &admin, Some(only_api)).await;
    assert_error(status, &body, 422, "required", Some("/data/relationships/client"));
    let (status, body) = post_grant(&server, &admin, json!({}), "nope", &docs).await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/client"));
    let (status, body) = post_grant(&server, &admin, json!({}), &client, "nope").await;
    assert_error(status, &body, 422, "invalid_attribute", Some("/data/relationships/resource_server"));
    let (status, body) = server.api(Method::POST, PATH, &admin, Some(doc(KIND, json!({})))).await;
    assert_error(status, &body, 422, "required", Some("/data/relationships/client"));
    assert_eq!(server.count("SELECT COUNT(*) FROM client_resource_server_grants").await, 4);

    // Deleting frees the pair.
    let (status, _) = server.api(Method::DELETE, &format!("{PATH}/{first}"), &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.api(Method::GET, &format!("{PATH}/{first}"), &admin, None).await;
    assert_not_found(status, &body);
    let (status, body) = post_grant(&server, &admin, json!({}), &client, &docs).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
});
